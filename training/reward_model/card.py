# ruff: noqa: E501  (the card is a Markdown template)
"""The model card (``README.md``) and ``metrics.json`` of a trained preference reward model, written
from the run's measured numbers and settings: nothing is typed in by hand."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path
from typing import Any


def _ci(m: dict[str, Any]) -> str:
    if m.get("pairs", 0) == 0:
        return "n/a (no pairs)"
    return f"{m['value']:.3f} (95% CI {m['ci_low']:.3f}–{m['ci_high']:.3f}; {m['pairs']} pairs, {m['tasks']} tasks)"


def simulated_note(counts: dict[str, Any]) -> str:
    """One sentence on whose rankings these are (simulated annotators named and counted)."""
    sim, total = counts["rankings_simulated"], counts["rankings"]
    if sim == 0:
        return f"All {total} rankings are by people ({len(counts['annotators_people'])} annotators); none are simulated."
    kind = "ALL SIMULATED" if sim == total else "PARTLY SIMULATED"
    return (
        f"**{kind}:** {sim} of the {total} rankings are by simulated annotators "
        f"({', '.join(counts['annotators_simulated'])}), i.e. software whose judgement is a function of an "
        f"automatic verdict, not people; {total - sim} by people ({len(counts['annotators_people'])} annotators)."
    )


def command_line(cfg: Any) -> str:
    """The command that reproduces ``cfg``: every setting that differs from its default, as a flag."""
    parts = ["python -m training.reward_model"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        base = f.default if f.default is not dataclasses.MISSING else None
        if value == base:
            continue
        if isinstance(value, bool):
            parts.append(f"--{f.name}" if value else f"--{f.name} false")
        else:
            parts.append(f"--{f.name} {shlex.quote(str(value))}")
    return " ".join(parts)


def _gap_line(gap: float) -> str:
    """The model's distance to the ceiling, or why there is none (one ranking per task)."""
    if math.isnan(gap):
        return (
            "No held-out task was ranked by two annotators, so there is no ceiling here: rank some tasks "
            "several times (training/human_loop.sh's ceiling study does) and compare there."
        )
    return f"Model minus ceiling: {gap:+.3f}."


def _validation_line(val: dict[str, Any] | None, cfg: Any) -> str:
    """The card's line on the step chosen on validation rankings ('' when none were set aside)."""
    if not val:
        return ""
    return (
        f"\n- Validation: {val['rankings']} of the training rankings ({val['prompts']} prompts, "
        f"{cfg.validation:.0%} of the training prompts) were set aside and not trained on; their accuracy, "
        f"measured every {cfg.eval_every} steps, chose step {val['selected_step']} of {cfg.steps} "
        f"({val['accuracy']:.3f}; step 0 is the starting model)."
    )


def write_card(out: Path, cfg: Any, metrics: dict[str, Any], losses: list[float]) -> Path:
    """Write ``metrics.json`` (metrics + settings + loss curve) and ``README.md`` into ``out``."""
    settings = dataclasses.asdict(cfg)
    (out / "metrics.json").write_text(
        json.dumps({**metrics, "settings": settings, "losses": losses}, indent=2) + "\n"
    )
    d, tr, te = metrics["data"], metrics["train"], metrics["held_out"]
    acc, ceil, start = (
        metrics["held_out_accuracy"],
        metrics["human_ceiling_held_out"],
        metrics["held_out_accuracy_at_start"],
    )
    gap = acc["value"] - ceil["value"] if ceil.get("pairs") else float("nan")
    excluded = ", ".join(d["excluded_annotators"]) or "none"
    dropped = metrics["dropped_simulated_rankings"]
    ceiling_note = (
        " The ceiling comes from the same annotators, simulated ones included: it is the agreement of software, "
        "not of people."
        if d["rankings_simulated"]
        else ""
    )
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in settings.items())
    text = f"""# Preference reward model (`learned`)

An open_clip image–text scorer trained on ranked candidates: score = logit scale × cosine(image, prompt)
(logit scale now {metrics["logit_scale"]:.2f}), as HPS v2 and PickScore score. Use it as the `learned` reward:
`--set learned.model={out}` (or `get_reward("learned", model="{out}")`).

## Data

- Source: {metrics["source"]}.
- {simulated_note(d)}
- {d["rankings"]} rankings of {d["tasks"]} tasks ({d["prompts"]} prompts, {d["candidates"]} candidates) after leaving out
  skipped rankings, control tasks and annotators who failed the controls (excluded: {excluded}){f"; {dropped} rankings by simulated annotators left out (people only)" if dropped else ""}.
- Split by prompt (seed {cfg.seed}, {cfg.held_out:.0%} of prompts held out): training {tr["rankings"]} rankings
  ({tr["prompts"]} prompts), held out {te["rankings"]} rankings ({te["prompts"]} prompts); no prompt is in both.{_validation_line(metrics.get("validation"), cfg)}

## Held-out pairwise accuracy

Pairs within each held-out ranking, ties apart; 95% intervals from {cfg.n_boot} bootstrap resamples of tasks.

| | accuracy |
|---|---|
| this model | {_ci(acc)} |
| at the start of training | {_ci(start)} |
| ceiling: annotator against annotator (each against each other of a task; human–human when they are people) | {_ci(ceil)} |
| training rankings (in-sample) | {_ci(metrics["train_accuracy"])} |

{_gap_line(gap)}{ceiling_note}

## Training

Started {metrics["init"]}; text side: `{cfg.text}`; image side: `{metrics.get("image_mode", "image")}`; {cfg.loss.replace("_", "–").title()} loss over rankings with ties; {cfg.steps} steps of {cfg.batch_rankings}
rankings on {metrics["device"]}, {metrics["train_seconds"]} s; mean loss {metrics["loss_first_10"]:.4f} over the first 10 steps,
{metrics["loss_last_10"]:.4f} over the last 10 (every step's loss is in `metrics.json`).

Command: `{command_line(cfg)}`

| setting | value |
|---|---|
{rows}

## Files

`open_clip_config.json` and `open_clip_model.safetensors` (open_clip's local-dir layout:
`open_clip.create_model_and_transforms("local-dir:{out}")` loads it), `metrics.json`, this card.
"""
    path = out / "README.md"
    path.write_text(text)
    return path
