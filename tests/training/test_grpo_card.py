"""The GRPO model card is built from the run's own files: config and step, reward curve, reports."""

from __future__ import annotations

import json

import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from reasongen.types import CATEGORIES
from training.grpo_card import main


def _report(path, overall: float, cats: dict[str, float]):
    path.mkdir(parents=True)
    counts = {c: {"prompts": 10} for c in CATEGORIES}
    report = {"overall": overall, "categories": cats, "counts": counts, "settings": {"guidance": 2.0},
              "plan": {"images": 60, "faithfulness": 0.9, "iou": overall},
              "description": {"images": 60, "faithfulness": overall}}  # fmt: skip
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


def test_card_shows_the_monitor_and_draws_its_plot_beside_the_card(tmp_path):
    """A run with monitor_rewards: its card gets the proxy-versus-gold numbers (held-out first,
    best and last, rollouts at both ends, the verdict, the cost) and monitor.png in both folders.
    The records are simulated: the proxy climbs while the gold peaks at step 2 and falls."""
    run = tmp_path / "run"
    cfg = {"model": "m", "group_size": 8, "prompts_per_step": 4, "monitor_rewards": ["shapes"]}
    ckpt = _checkpoint(run, 4, cfg)
    setup = {"kind": "setup", "source": "shapes validation set", "prompts": 60, "rewards": ["learned"],
             "categories": {"counting": 30, "position": 30}, "monitor_rewards": ["shapes"]}  # fmt: skip
    held = [{"kind": "heldout", "step": s, "monitor_heldout/shapes": g, "monitor_heldout/shapes_se": 0.02,
             "monitor_heldout/proxy": p, "monitor_heldout/seconds": 3.0}
            for s, g, p in [(0, 0.80, 1.0), (2, 0.90, 2.0), (4, 0.60, 3.0), (6, 0.1, 9.0)]]  # fmt: skip
    roll = [{"kind": "rollouts", "step": s, "monitor/shapes": 0.8 - 0.05 * s, "monitor/proxy": 1.0 + 0.5 * s,
             "monitor/seconds": 0.5, "monitor/share": 0.25} for s in range(1, 7)]  # fmt: skip
    (run / "monitor.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [setup, *held, *roll]))
    text = _card(tmp_path, ckpt, 0.6, {c: 0.6 for c in CATEGORIES})
    assert "## Over-optimisation monitor" in text and "optimised reward (learned)" in text
    assert "60 prompts, shapes validation set (counting 30, position 30)" in text
    assert "| held-out, first | 0 | 1.000 | 0.800 |" in text
    assert "| held-out, best gold | 2 | 2.000 | 0.900 |" in text
    assert "| held-out, last | 4 | 3.000 | 0.600 |" in text  # step 6 is after the checkpoint
    assert "| rollouts, first 2 steps | | 1.750 | 0.725 |" in text  # steps 1-2 of 1-4
    assert "| rollouts, last 2 steps | | 2.750 | 0.625 |" in text
    assert "**the held-out gold fell** from its best, 0.900 at step 2, to 0.600" in text
    assert "The monitor took 11.0 s (25.0 % of the run's wall time)." in text  # 4 × 0.5 + 3 × 3
    assert "![proxy versus gold](monitor.png)" in text
    for folder in (run, tmp_path / "model"):
        with Image.open(folder / "monitor.png") as im:
            assert im.format == "PNG"


def test_card_without_a_monitor_has_no_monitor_section(tmp_path):
    cfg = {"model": "m", "group_size": 8, "prompts_per_step": 4, "device": "cpu"}
    text = _card(tmp_path, _checkpoint(tmp_path / "run", 2, cfg), 0.6, {c: 0.6 for c in CATEGORIES})
    assert "Over-optimisation" not in text and not (tmp_path / "model" / "monitor.png").exists()


def test_card_gives_each_suite_its_own_table_and_names_the_model_and_its_scores(tmp_path):
    ckpt = _checkpoint(tmp_path / "run", 4, {"prompts_per_step": 4, "group_size": 8,
                                             "model": "/somewhere/shapes-janus-full"})  # fmt: skip
    comp = ["count_color", "two_counts"]
    _report(tmp_path / "gb", 0.5, {c: 0.5 for c in CATEGORIES})
    _report(tmp_path / "ga", 0.9, {c: 0.9 for c in CATEGORIES})
    _report(tmp_path / "cb", 0.4, {c: 0.4 for c in comp})
    _report(tmp_path / "ca", 0.8, {"count_color": 0.9, "two_counts": 0.7})
    out = tmp_path / "shapes-janus-full-r1"
    out.mkdir()
    args = [str(out), "--checkpoint", str(ckpt), "--recipe-file", "training/recipes/shapes_full.yaml"]
    for name, b, a in (("geneval", "gb", "ga"), ("compositional", "cb", "ca")):
        args += ["--before", f"{name}={tmp_path / b}", "--after", f"{name}={tmp_path / a}"]
    assert main(args) == 0
    text = (out / "README.md").read_text()
    assert text.startswith("# shapes-janus-full-r1: the embedded model after GRPO")
    assert "`assets/models/shapes-janus-full` (supervised only)" in text
    assert "model=assets/models/shapes-janus-full," in text and "/somewhere" not in text
    assert "--config training/recipes/shapes_full.yaml" in text
    assert "geneval 0.900 (SFT 0.500); compositional 0.800 (SFT 0.400)" in text
    assert "| category | geneval SFT | geneval GRPO | Δ |" in text
    assert "| category | compositional SFT | compositional GRPO | Δ |" in text
    assert "Recipe outcome" not in text  # no --recipe-runs: no distribution section
    (tmp_path / "summary.md").write_text(
        "# Recipe outcome over 3 runs\n\n| run | ... |\n\n- **geneval**: gain mean +0.1\n"
    )
    assert main([*args, "--recipe-runs", str(tmp_path / "summary.md")]) == 0
    text = (out / "README.md").read_text()
    assert "## Recipe outcome over 3 runs\n" in text and "- **geneval**: gain mean +0.1" in text
    assert "one draw from that distribution: the run `run`." in text
    assert "| two_counts | 0.400 | 0.700 | +0.300 |" in text
    assert "| **overall** | 0.400 | 0.800 | +0.400 |" in text
    # a second GRPO stage: its parent is the first stage's model, and the tables say so
    stage = [*args, "--parent-note", "the first GRPO stage", "--before-label", "stage 1"]
    assert main(stage) == 0
    text = (out / "README.md").read_text()
    assert "`assets/models/shapes-janus-full` (the first GRPO stage)" in text
    assert "supervised only" not in text
    assert "geneval 0.900 (stage 1 0.500)" in text and "SFT" not in text
    assert "| category | geneval stage 1 | geneval GRPO | Δ |" in text
    # a caveat ends the first paragraph, which the app's "About this model" panel shows
    from webui.model_card import card_summary

    assert main([*args, "--caveat", "Large objects are\n drawn worse than by SFT."]) == 0
    summary = card_summary(str(out))
    assert summary.endswith("compositional 0.800 (SFT 0.400). Large objects are drawn worse than by SFT.")
    assert "| two_counts | 0.500" not in text  # GenEval's table has no compositional rows
    assert (
        "- `compositional`: description faithfulness (the CoT names what the prompt asks) 0.400 → 0.800"
        in text
    )
