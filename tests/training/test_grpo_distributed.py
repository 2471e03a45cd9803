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
    """Share of image tokens below 32; the same 0.5 for every sample of a prompt saying "flat"
    (no spread: dynamic sampling drops its group)."""
    scores = [0.5 if "flat" in s.prompt else sum(t < 32 for t in s.image_token_ids) / len(s.image_token_ids)
              for s in samples]  # fmt: skip
    return RewardOutput("low_tokens", scores, [{} for _ in samples])


def _fresh_accelerate_state() -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _run(cfg_json: str) -> None:
    """Entry of each process (also called in-process for the single-process baseline). Each
    process writes how many samples balancing gave it at each step to ``balanced-RANK.txt``."""
    import training.grpo as grpo

    _fresh_accelerate_state()
    torch.set_num_threads(1)
    cfg = GRPOConfig(**json.loads(cfg_json))
    balance = grpo.balance_groups

    def recorded(groups, rank, world, gather):
        share = balance(groups, rank, world, gather)
        with open(Path(cfg.out_dir) / f"balanced-{rank}.txt", "a") as f:
            f.write(f"{sum(len(g.samples) for g in share)}\n")
        return share

    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    grpo.balance_groups = recorded
    try:
        train(cfg, reward_fn=low_tokens)
    finally:
        grpo.balance_groups = balance
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


def _flat_on_odd_slots(n: int, steps: int, slots: int) -> tuple[int, list[str]]:
    """A seed and ``n`` prompts such that every odd slot of the first ``steps`` steps draws a
    "flat" prompt and every even slot another one (training.rollouts.slot_rng picks them)."""
    from training.rollouts import slot_rng

    for seed in range(1000):
        picks = {(t, k): slot_rng(seed, t, k, 0).randrange(n) for t in range(steps) for k in range(slots)}
        odd = {i for (t, k), i in picks.items() if k % 2}
        even = {i for (t, k), i in picks.items() if not k % 2}
        if not odd & even:
            words = ["red circle", "green triangle", "blue star", "pink square"]
            return seed, [f"a {'flat ' if i in odd else ''}{words[i % 4]} {i}" for i in range(n)]
    raise AssertionError("no seed separates odd and even slots")


@pytest.mark.parametrize("slots", [4, 2])
def test_two_processes_balancing_kept_groups_equal_one_process(tmp_path: Path, slots: int) -> None:
    """Process 1's first draws have no spread (its odd slots) and process 0 keeps its groups: the
    redraws are dealt out over both processes, the kept samples are spread over them, and the
    update still equals one process's. With two slots process 0 redraws process 1's only slot, so
    process 1 ends the rollouts with no group of its own and trains on a share of process 0's."""
    from accelerate import debug_launcher

    model_dir = save_tiny(tmp_path / "tiny", seed=5)
    seed, texts = _flat_on_odd_slots(8, steps=2, slots=slots)
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(texts) + "\n")
    base = dict(model=str(model_dir), prompts=str(prompts), recipe="got-r1", group_size=3,
                prompts_per_step=slots, max_cot_tokens=4, guidance=3.0, lr=0.5, max_steps=2, seed=seed,
                optimizer="sgd", grad_clip=0.0, lr_scheduler="constant", warmup_steps=0,
                save_every=0, device="cpu", progress=False, tensorboard=False, rewards=["toy"],
                dynamic_sampling=True, max_resample=1, micro_batch_groups=1)  # fmt: skip
    runs = {"one": {}, "two": {}}
    if slots == 4:
        runs["two_unbalanced"] = {"balance_ranks": False}
    for name, extra in runs.items():
        cfg = json.dumps({**base, **extra, "out_dir": str(tmp_path / name)})
        if name == "one":
            _run(cfg)
        else:
            debug_launcher(_run, args=(cfg,), num_processes=2)
    start = load_model(model_dir, device="cpu").model.state_dict()
    final = {n: load_model(tmp_path / n / "final", device="cpu").model.state_dict() for n in runs}
    moved = max(float((final["one"][k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3
    # process 0 kept its groups (3 samples each) at both steps, process 1's were redrawn (pooled);
    # each process trained on a share; without balancing nothing was moved
    shares = [[int(x) for x in (tmp_path / "two" / f"balanced-{r}.txt").read_text().split()] for r in (0, 1)]
    totals = [a + b for a, b in zip(*shares)]
    least = 3 * slots // 2
    assert len(totals) == 2 and all(t >= least and t % 3 == 0 for t in totals) and min(shares[1]) > 0, shares
    assert not list((tmp_path / "two_unbalanced").glob("balanced-*.txt"))
    for name in runs.keys() - {"one"}:
        diffs = {k: float((final["one"][k] - final[name][k]).abs().max())
                 for k in start if start[k].is_floating_point()}  # fmt: skip
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] < 1e-4 * moved, f"{name}: {worst} differs by {diffs[worst]} (moved {moved})"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
