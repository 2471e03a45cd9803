"""The GRPO model card is built from the run's own files: config and step, reward curve, reports."""

from __future__ import annotations

import json

import torch
from torch.utils.tensorboard import SummaryWriter

from reasongen.types import CATEGORIES
from training.grpo_card import main


def _report(path, overall: float, cats: dict[str, float]):
    path.mkdir(parents=True)
    counts = {c: {"prompts": 10} for c in CATEGORIES}
    report = {"overall": overall, "categories": cats, "counts": counts, "settings": {"guidance": 2.0},
              "plan": {"images": 60, "faithfulness": 0.9, "iou": overall}}  # fmt: skip
    (path / "report.json").write_text(json.dumps(report))


def _checkpoint(run, step: int, cfg: dict):
    """A run's ``checkpoint-<step>`` folder holding only the trainer state the card reads."""
    ckpt = run / f"checkpoint-{step}"
    (ckpt / "trainer_state").mkdir(parents=True)
    torch.save({"step": step, "config": cfg}, ckpt / "trainer_state" / "extra.pt")
    return ckpt


def _card(tmp_path, ckpt, after: float, after_cats: dict[str, float], averaged: list[str] = ()) -> str:
    """Write the card for ``ckpt`` against an SFT report of 0.5 everywhere; return its text.
    ``averaged`` names checkpoints whose mean the model is (its ``averaged_from.json``)."""
    _report(tmp_path / "before", 0.5, {c: 0.5 for c in CATEGORIES})
    _report(tmp_path / "after", after, after_cats)
    out = tmp_path / "model"
    out.mkdir()
    if averaged:
        (out / "averaged_from.json").write_text(json.dumps({"checkpoints": list(averaged)}))
    assert main([str(out), "--checkpoint", str(ckpt), "--before", f"got-r1={tmp_path / 'before'}",
                 "--after", f"got-r1={tmp_path / 'after'}"]) == 0  # fmt: skip
    return (out / "README.md").read_text()


def test_card_reads_step_config_reward_curve_and_per_category_deltas(tmp_path):
    run = tmp_path / "run"
    cfg = {"model": "m", "group_size": 8, "prompts_per_step": 4, "lr": 1e-4, "device": "cpu"}
    ckpt = _checkpoint(run, 4, cfg)
    writer = SummaryWriter(str(run / "tb"))
    for step, (reward, t) in enumerate([(0.5, 0.0), (0.6, 60.0), (0.7, 120.0), (0.8, 180.0), (0.9, 240.0)]):
        writer.add_scalar("grpo/reward/mean", reward, step, walltime=1000.0 + t)
    writer.add_scalar("grpo/reward/mean", 0.1, 9, walltime=5000.0)  # after the checkpoint: ignored
    writer.close()
    text = _card(tmp_path, ckpt, 0.6, {c: 0.5 + 0.02 * i for i, c in enumerate(CATEGORIES)})
    assert "4 steps of 4 prompts × 8 samples (128 rollouts), one optimizer step each" in text
    assert "**4.0 min** of wall time" in text  # steps 0..4: 240 s
    assert "0.500 over the first 1 steps, 0.900 over the last 1" in text
    assert "| **overall** | 0.500 | 0.600 | +0.100 |" in text
    assert f"| {CATEGORIES[-1]} | 0.500 | {0.5 + 0.02 * (len(CATEGORIES) - 1):.3f} |" in text
    assert "60 held-out prompts" in text


def test_card_counts_optimizer_steps_when_each_batch_is_reused(tmp_path):
    cfg = {"model": "m", "group_size": 8, "prompts_per_step": 4, "ppo_epochs": 4, "device": "cpu"}
    text = _card(tmp_path, _checkpoint(tmp_path / "run", 3, cfg), 0.6, {c: 0.6 for c in CATEGORIES})
    assert "3 steps of 4 prompts × 8 samples (96 rollouts), each batch used for 4 optimizer steps" in text
    assert "(12 in all)" in text
    assert "ppo_epochs=4" in text


def test_card_names_the_weights_single_checkpoint_or_tail_average(tmp_path):
    cfg = {"model": "m", "group_size": 8, "prompts_per_step": 4, "device": "cpu"}
    ckpt = _checkpoint(tmp_path / "run", 4, cfg)
    text = _card(tmp_path / "one", ckpt, 0.6, {c: 0.6 for c in CATEGORIES})
    assert "- Weights: the step-4 checkpoint." in text
    averaged = [f"runs/x/checkpoint-{s}" for s in (2, 3, 4)]
    text = _card(tmp_path / "avg", ckpt, 0.6, {c: 0.6 for c in CATEGORIES}, averaged)
    assert "mean of the 3 checkpoints at steps 2, 3, 4" in text and "`average_last: 3`" in text
