"""The command-line entry points, run in-process on a tiny model with the real reward registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reasongen.loading import load_model
from reasongen.tiny import save_tiny
from training import grpo, sft

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"


def test_grpo_main_with_the_shapes_recipe_and_reward(tmp_path, capsys) -> None:
    # The recipe's own model (the shipped SFT model, 2 M parameters): a random tiny model draws
    # nothing the shapes detector accepts, so every group would have zero spread.
    model_dir = RECIPES.parents[1] / "assets" / "models" / "shapes-janus"
    out = tmp_path / "run"
    code = grpo.main(["--config", str(RECIPES / "shapes.yaml"), "--model", str(model_dir),
                      "--out_dir", str(out), "--max_steps", "2", "--group_size", "2",
                      "--prompts_per_step", "2", "--max_cot_tokens", "48", "--num_shapes_prompts",
                      "10", "--torch_threads", "1", "--save_every", "1", "--progress", "false",
                      "--eval_every", "1", "--eval_n", "6", "--average_last", "2"])  # fmt: skip
    assert code == 0 and "GRPO finished" in capsys.readouterr().out
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-1", "checkpoint-2"]
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all(0.0 <= e["eval/overall"] <= 1.0 and "eval/counting" in e for e in evals)
    # With seed 1, at step 1 both groups draw the same reward twice and are dropped after their
    # redraws, so no optimizer step is taken (the recipe's ppo_epochs would take several, and all
    # but the warm-up's first have a non-zero lr); at step 2 one group spreads and the model
    # changes.
    acc = EventAccumulator(str(next(out.glob("tb/**/events.out.tfevents.*"))))
    acc.Reload()
    assert [e.value for e in acc.Scalars("grpo/groups/kept")] == [0.0, 1.0]
    start = load_model(model_dir, device="cpu").model.state_dict()
    step1 = load_model(out / "checkpoint-1", device="cpu").model.state_dict()
    step2 = load_model(out / "checkpoint-2", device="cpu").model.state_dict()
    final = load_model(out / "final", device="cpu").model.state_dict()
    assert all(torch.equal(start[k], step1[k]) for k in start)
    assert not all(torch.equal(start[k], step2[k]) for k in start)
    # final/ is the mean of the last two checkpoints (--average_last 2), not checkpoint-2.
    for k, v in final.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ((step1[k].double() + step2[k].double()) / 2).to(v.dtype))
    assert not all(torch.equal(step2[k], final[k]) for k in start)
    # How the parent was loaded (a local folder) is not written into the checkpoints' tokenizer.
    for folder in ("checkpoint-2", "final"):
        tok_cfg = json.loads((out / folder / "tokenizer_config.json").read_text())
        assert tok_cfg["processor_class"] == "JanusProcessor"
        assert "local_files_only" not in tok_cfg and "is_local" not in tok_cfg


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grpo_main_trains_on_a_gpu(tmp_path, capsys) -> None:
    """The shapes recipe on CUDA (accelerate's device, the engine's CUDA graphs for rollouts, kept
    across optimizer steps): it trains, and the weights it writes are finite and changed."""
    model_dir = RECIPES.parents[1] / "assets" / "models" / "shapes-janus"
    out = tmp_path / "run"
    code = grpo.main(["--config", str(RECIPES / "shapes.yaml"), "--model", str(model_dir),
                      "--out_dir", str(out), "--max_steps", "3", "--prompts_per_step", "2",
                      "--device", "auto", "--save_every", "3", "--average_last", "0",
                      "--sample_images_every", "0", "--progress", "false"])  # fmt: skip
    assert code == 0 and "GRPO finished" in capsys.readouterr().out
    acc = EventAccumulator(str(next(out.glob("tb/**/events.out.tfevents.*"))))
    acc.Reload()
    assert sum(e.value for e in acc.Scalars("grpo/groups/kept")) > 0
    start = load_model(model_dir, device="cpu").model.state_dict()
    final = load_model(out / "checkpoint-3", device="cpu").model.state_dict()
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    assert not all(torch.equal(start[k], final[k]) for k in start)


def test_sft_main(tmp_path, capsys) -> None:
    model_dir = save_tiny(tmp_path / "tiny", seed=2)
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "a red circle", "cot": "a red circle", "image_tokens": list(range(16))},
            {"prompt": "a blue star", "recipe": "direct", "image_tokens": [5] * 16}]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = sft.main(["--config", str(RECIPES / "sft_shapes.yaml"), "--model", str(model_dir),
                     "--data", str(data), "--out_dir", str(tmp_path / "run"), "--max_steps", "2",
                     "--batch_size", "2", "--progress", "false", "--tensorboard", "false"])  # fmt: skip
    assert code == 0 and "SFT finished" in capsys.readouterr().out
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert sft.main(["--model", str(model_dir), "--data", str(tmp_path / "missing.jsonl"),
                     "--out_dir", str(tmp_path / "r2"), "--progress", "false"]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert sft.main(["--model", str(model_dir)]) == 2
    assert "error: --data is required" in capsys.readouterr().err
