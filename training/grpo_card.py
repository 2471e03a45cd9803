# ruff: noqa: E501  (the card is a Markdown template)
"""Write the model card (README.md) of a GRPO-trained shapes model from its measured numbers.

    python -m training.grpo_card MODEL_DIR --checkpoint RUN/checkpoint-N \\
        --before got-r1=BENCH_DIR --after got-r1=BENCH_DIR [--before direct=... --after direct=...] \\
        [--notes NOTES.md] [--recipe-file training/recipes/shapes_full.yaml]

Each ``NAME`` is one benchmark report pair; reports of other suites (``--suite compositional``)
get their own table with their own categories.

Reads the checkpoint's run config and step (``trainer_state/extra.pt``), the run's TensorBoard
scalars (wall time, reward curve), the over-optimisation monitor's ``monitor.jsonl`` when the run
had ``monitor_rewards`` (``training.monitor``; its proxy-versus-gold plot is drawn again into the
run folder and copied beside the card as ``monitor.png``) and each benchmark's ``report.json``
(``python -m reasongen.eval shapes``): no number is typed in by hand. ``--notes`` is the
"Limitations" section.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from reasongen.eval.report import group_by_suite

from .monitor import PLOT, plot_proxy_gold, read_records, summarise
from .run_logs import run_scalars, step_wall_times, training_minutes


def _table(before: dict[str, Any], after: dict[str, Any], label: str = "SFT") -> str:
    """Per-category before (``label``) / GRPO / Δ tables: one table for the benchmarks that share
    their categories (e.g. got-r1 and direct on the GenEval suite), one more for each other suite."""
    tables = []
    for cats, names in group_by_suite({n: after[n] for n in before}).items():
        lines = ["| category | " + " | ".join(f"{n} {label} | {n} GRPO | Δ" for n in names) + " |",
                 "|---|" + "---|---|---|" * len(names)]  # fmt: skip
        for cat in (*cats, "overall"):
            cells = []
            for n in names:
                b = before[n]["overall"] if cat == "overall" else before[n]["categories"].get(cat, math.nan)
                a = after[n]["overall"] if cat == "overall" else after[n]["categories"][cat]
                cells.append(f"{_num(b)} | {a:.3f} | {_signed(a - b)}")
            name = f"**{cat}**" if cat == "overall" else cat
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    plan = []
    for n in before:
        pb, pa = before[n].get("plan") or {}, after[n].get("plan") or {}
        if pb.get("images") and pa.get("images"):
            plan.append(f"- `{n}`: plan faithfulness {pb['faithfulness']:.3f} → {pa['faithfulness']:.3f}, "
                        f"plan–image IoU {pb['iou']:.3f} → {pa['iou']:.3f}")  # fmt: skip
        db, da = before[n].get("description") or {}, after[n].get("description") or {}
        if db.get("images") and da.get("images"):
            plan.append(f"- `{n}`: description faithfulness (the CoT names what the prompt asks) "
                        f"{db['faithfulness']:.3f} → {da['faithfulness']:.3f}")  # fmt: skip
    return "\n\n".join(tables) + "\n\n" + "\n".join(plan)


def _weights_line(model_dir: Path | None, step: int) -> str:
    """Which weights the model holds: the step-N checkpoint, or the mean of several
    (``averaged_from.json``, written by ``training.averaging``)."""
    manifest = model_dir / "averaged_from.json" if model_dir else None
    if manifest is None or not manifest.is_file():
        return f"the step-{step} checkpoint"
    names = [Path(p).name for p in json.loads(manifest.read_text())["checkpoints"]]
    steps = ", ".join(n.removeprefix("checkpoint-") for n in names)
    return (f"the element-wise mean of the {len(names)} checkpoints at steps {steps} (tail averaging, "
            f"`average_last: {len(names)}`; `python -m training.averaging`)")  # fmt: skip


def _num(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _signed(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.3f}"


def monitor_section(records: list[dict[str, Any]]) -> str:
    """The card's "Over-optimisation monitor" section from a run's monitor records ('' if none):
    held-out proxy and gold at the first, best-gold and last evaluations, rollout means at the
    start and end, whether the gold fell while the proxy rose, the monitor's cost and the plot."""
    summary = summarise(records)
    if not summary["gold"]:
        return ""
    setup = next((r for r in records if r.get("kind") == "setup"), {})
    optimised = ", ".join(setup.get("rewards", [])) or "the run's rewards"
    lines = ["## Over-optimisation monitor (`monitor_rewards`, `training.monitor`)", "",
             f"Proxy = the optimised reward ({optimised}); gold = a reward scored but never optimised."]  # fmt: skip
    if setup.get("source"):
        cats = ", ".join(f"{k} {v}" for k, v in sorted(setup.get("categories", {}).items()))
        lines.append(f"Held-out set: {setup['prompts']} prompts, {setup['source']} ({cats}); one "
                     "sample each with the rollout settings, the same seeds at every evaluation.")  # fmt: skip
    for name, g in summary["gold"].items():
        lines += ["", f"| gold: `{name}` | step | proxy | gold |", "|---|---|---|---|"]
        labels = {"first": "held-out, first", "best": "held-out, best gold", "last": "held-out, last"}
        for key, label in labels.items() if "heldout" in g else ():
            h = g["heldout"][key]
            lines.append(f"| {label} | {h['step']} | {_num(h['proxy'])} | {_num(h['gold'])} |")
        if "rollouts" in g:
            r, w = g["rollouts"], g["rollouts"]["window"]
            lines.append(f"| rollouts, first {w} steps | | {_num(r['proxy'][0])} | {_num(r['gold'][0])} |")
            lines.append(f"| rollouts, last {w} steps | | {_num(r['proxy'][1])} | {_num(r['gold'][1])} |")
        if "heldout" in g:
            first, best, last = (g["heldout"][k] for k in ("first", "best", "last"))
            if g["fell"]:
                verdict = (f"**the held-out gold fell** from its best, {best['gold']:.3f} at step {best['step']}, "
                           f"to {last['gold']:.3f} (more than twice the standard error of the difference)")  # fmt: skip
            else:
                verdict = (
                    "the held-out gold did not fall below its best by more than twice its standard error"
                )
            lines += ["", f"From step {first['step']} to {last['step']} the held-out proxy went "
                      f"{_num(first['proxy'])} → {_num(last['proxy'])}; {verdict}."]  # fmt: skip
    share = summary["share"]
    cost = f" ({100 * share:.1f} % of the run's wall time)" if math.isfinite(share) else ""
    lines += ["", f"The monitor took {summary['seconds']:.1f} s{cost}.", "",
              f"![proxy versus gold]({PLOT})", ""]  # fmt: skip
    return "\n".join(lines)


def card(
    checkpoint: Path,
    before: dict[str, Any],
    after: dict[str, Any],
    notes: str = "",
    model_dir: Path | None = None,
    recipe_file: str = "training/recipes/shapes.yaml",
    recipe_runs: str = "",
    caveat: str = "",
    parent_note: str = "supervised only",
    before_label: str = "SFT",
) -> str:
    """The model card text. ``checkpoint`` is the run's last checkpoint the model comes from;
    ``model_dir`` (optional) names the model and is read for ``averaged_from.json``;
    ``recipe_file`` is the recipe the run was started with; ``recipe_runs`` is the ``summary.md``
    of ``python -m training.recipe_runs`` over repeated runs of the recipe (this one among them),
    shown as the recipe's outcome distribution with this model as one draw. The first paragraph (which the app's
    "About this model" panel shows) ends with the model's overall score on each benchmark and then
    ``caveat`` (what the model is known to do badly), so a visitor reads both. ``parent_note``
    says what the parent is and ``before_label`` names its columns (a second GRPO stage's parent
    is the first stage's model, not an SFT one)."""
    extra = torch.load(checkpoint / "trainer_state" / "extra.pt", weights_only=False, map_location="cpu")
    cfg, step = extra["config"], extra["step"]
    rewards = run_scalars(checkpoint.parent, "grpo/reward/mean", step)
    monitor = monitor_section(read_records(checkpoint.parent, upto=step))
    minutes = training_minutes(step_wall_times(checkpoint.parent, step))  # pauses of a resumed run left out
    k = max(1, min(20, len(rewards) // 4))
    first = sum(v for *_, v in rewards[:k]) / k if rewards else float("nan")
    last = sum(v for *_, v in rewards[-k:]) / k if rewards else float("nan")
    n_prompts = sorted({sum(c["prompts"] for c in r["counts"].values()) for r in after.values()})
    settings = sorted({json.dumps(r.get("settings", {}), sort_keys=True) for r in after.values()})
    keys = ("model", "recipe", "rewards", "reward_options", "group_size", "prompts_per_step", "lr", "kl_coef", "kl_clamp", "text_kl_scale", "clip_low",
            "clip_high", "ptx_coef", "ptx_batch", "ppo_epochs", "temperature", "cot_temperature", "dynamic_sampling", "seed",
            "monitor_rewards")  # fmt: skip
    epochs = int(cfg.get("ppo_epochs", 1))
    updates = (f", each batch used for {epochs} optimizer steps ({step * epochs} in all)" if epochs > 1
               else ", one optimizer step each")  # fmt: skip
    name = model_dir.name if model_dir is not None else "shapes-janus-r1"
    parent = str(cfg.get("model") or "assets/models/shapes-janus")
    if not parent.startswith("assets/"):
        parent = f"assets/models/{Path(parent).name}"
    # the parent as the repository names it, not the path on the machine that trained it
    # ptx_batch only where the run mixed the supervised term in
    listed = [k_ for k_ in keys if k_ in cfg and (k_ != "ptx_batch" or cfg.get("ptx_coef"))]
    shown = ", ".join(f"{k_}={parent if k_ == 'model' else cfg[k_]}" for k_ in listed)
    scores = "; ".join(
        f"{n} {after[n]['overall']:.3f} ({before_label} {before[n]['overall']:.3f})" for n in after
    )
    caveat = " ".join(caveat.split())
    if caveat:
        scores += ". " + caveat.removesuffix(".")
    return f"""# {name}: the embedded model after GRPO

`{parent}` ({parent_note}) trained further with online GRPO on the shapes
world's detector reward, through `python -m training.grpo --config {recipe_file}`.
Same architecture, tokenizer and VQ as its parent (see that card); only the language model,
its embeddings and heads changed. Held-out benchmark (fraction of images judged correct, mean
of categories): {scores}.

## Run

- {step} steps of {cfg["prompts_per_step"]} prompts × {cfg["group_size"]} samples ({step * cfg["prompts_per_step"] * cfg["group_size"]} rollouts){updates},
  **{minutes:.1f} min** of wall time on {cfg.get("device", "cpu")} (this project's 2-core CPU machine, shared with other jobs).
- Weights: {_weights_line(model_dir, step)}.
- Settings: {shown}.
- Training prompts: {cfg.get("num_shapes_prompts")} procedurally drawn prompts (seed {cfg.get("shapes_seed")}) with the
  benchmark's {cfg.get("holdout_benchmark")} prompt texts removed.
- Mean rollout reward: {first:.3f} over the first {k} steps, {last:.3f} over the last {k}.

## Benchmark before and after (`python -m reasongen.eval shapes`, {", ".join(map(str, n_prompts))} held-out prompts, seed 0)

{_table(before, after, before_label)}

Sampling settings: {", ".join(settings)}.

{runs_section(recipe_runs, checkpoint.parent.name)}{monitor}
## Limitations

{notes.strip() or "- Cell-aligned layouts only; no textures; 64 px images."}
"""


def runs_section(summary_md: str, run_name: str) -> str:
    """The card's section on the recipe over repeated runs (``training.recipe_runs``' summary.md,
    its title demoted one level), saying which run this model is; empty without a summary."""
    if not summary_md.strip():
        return ""
    body = summary_md.strip().removeprefix("# ")
    return f"## {body}\n\nThis model is one draw from that distribution: the run `{run_name}`.\n\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the run's (last) checkpoint-N folder")
    ap.add_argument("--before", action="append", default=[], help="NAME=DIR: the SFT model's report")
    ap.add_argument("--after", action="append", default=[], help="NAME=DIR: this model's report")
    ap.add_argument("--notes", type=Path, default=None, help="Markdown for the Limitations section")
    ap.add_argument("--recipe-file", default="training/recipes/shapes.yaml", help="the run's --config")
    ap.add_argument("--recipe-runs", type=Path, default=None,
                    help="summary.md of python -m training.recipe_runs over repeated runs of the recipe")  # fmt: skip
    ap.add_argument("--parent-note", default="supervised only", help="what the run's starting model is")
    ap.add_argument("--before-label", default="SFT", help="the starting model's name in the tables")
    ap.add_argument("--caveat", default="",
                    help="a sentence for the first paragraph (the app's About panel): what the model does badly")  # fmt: skip
    args = ap.parse_args(argv)

    def reports(items: list[str]) -> dict[str, Any]:
        return {
            n: json.loads((Path(d) / "report.json").read_text())
            for n, _, d in (i.partition("=") for i in items)
        }

    before, after = reports(args.before), reports(args.after)
    if not before or set(before) != set(after):
        ap.error("give --before and --after for the same benchmark names")
    notes = args.notes.read_text() if args.notes else ""
    (args.model_dir / "README.md").write_text(
        card(
            args.checkpoint,
            before,
            after,
            notes,
            args.model_dir,
            args.recipe_file,
            args.recipe_runs.read_text() if args.recipe_runs else "",
            args.caveat,
            args.parent_note,
            args.before_label,
        )
    )
    run_dir = args.checkpoint.parent
    extra = torch.load(args.checkpoint / "trainer_state" / "extra.pt", weights_only=False, map_location="cpu")
    step = extra["step"]
    plot = plot_proxy_gold(read_records(run_dir, upto=step), run_dir / PLOT)
    if plot is not None and plot.resolve() != (args.model_dir / PLOT).resolve():
        shutil.copyfile(plot, args.model_dir / PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
