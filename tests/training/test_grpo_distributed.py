"""Two CPU processes (gloo, through accelerate) make the same GRPO update as one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reasongen.loading import load_model
from reasongen.rewards import RewardOutput
from reasongen.tiny import save_tiny
from training.grpo import GRPOConfig, train


def low_tokens(samples) -> RewardOutput:
    scores = [sum(t < 32 for t in s.image_token_ids) / len(s.image_token_ids) for s in samples]
    return RewardOutput("low_tokens", scores, [{} for _ in samples])


def _fresh_accelerate_state() -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _run(cfg_json: str) -> None:
    """Entry of each process (also called in-process for the single-process baseline)."""
    _fresh_accelerate_state()
    torch.set_num_threads(1)
    cfg = GRPOConfig(**json.loads(cfg_json))
    train(cfg, reward_fn=low_tokens)
    _fresh_accelerate_state()


def test_two_processes_equal_one_process(tmp_path: Path) -> None:
    from accelerate import debug_launcher

    model_dir = save_tiny(tmp_path / "tiny", seed=5)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\ntwo green triangles\na blue star\n")
    base = dict(model=str(model_dir), prompts=str(prompts), recipe="got-r1", group_size=3,
                prompts_per_step=2, max_cot_tokens=4, guidance=3.0, lr=0.5, max_steps=2,
                optimizer="sgd", grad_clip=0.0, lr_scheduler="linear", warmup_steps=2,
                save_every=0, device="cpu", progress=False, tensorboard=False, rewards=["toy"],
                kl_coef=0.02, adaptive_entropy=True, dynamic_sampling=False)  # fmt: skip
    one = {**base, "out_dir": str(tmp_path / "one")}
    two = {**base, "out_dir": str(tmp_path / "two")}
    _run(json.dumps(one))
    debug_launcher(_run, args=(json.dumps(two),), num_processes=2)
    a = load_model(tmp_path / "one" / "final", device="cpu").model.state_dict()
    b = load_model(tmp_path / "two" / "final", device="cpu").model.state_dict()
    start = load_model(model_dir, device="cpu").model.state_dict()
    # SGD keeps the update linear in the gradient, so a mis-scaled loss (e.g. DDP's averaging
    # not undone, or per-process token means) would show here; Adam would hide it. The warm-up
    # (lr 0 at the first step, lr/2 at the second) would show a schedule that steps once per
    # process instead of once per optimizer step.
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 1e-3
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-4 * moved, f"{worst} differs by {diffs[worst]} (moved {moved})"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
