"""A recipe's outcome over repeated runs: evaluate every run, report the distribution, choose by validation.

    python -m training.recipe_runs --baseline assets/models/shapes-janus-full \\
        --run runs/s1 --run runs/s2 --run runs/s3 ... --out runs/recipe-report

One GRPO run is one draw: floating-point reduction order differs between machines (threads,
processes), so the same recipe and seed follow different trajectories elsewhere. This command
measures what a user reproducing a recipe should expect. For the baseline (the SFT model the runs
start from) and each run's exported model (``RUN/final`` by default, the tail average), it runs the
shapes benchmark (``python -m reasongen.eval shapes``, prompt seed 0) and the validation set
(prompt seed 1, benchmark texts excluded) for each suite, caching each report under ``--out``; then
it writes ``summary.json`` and ``summary.md``:

- one row per run: what was perturbed (seed, processes, torch threads), steps, training minutes,
  benchmark overall per suite and its gain over the baseline, the watched category (counting by
  default), validation overall, and how collapsed its plans are (``layout_mode_share``);
- the distribution per suite: mean, standard deviation, spread (min–max) and worst gain, for the
  overall score and the watched category;
- the run to ship, chosen on the validation sets only (highest mean validation overall across the
  suites; ties to the earlier run), with its benchmark figures read only after the choice;
- with ``--control RUN_OR_MODEL``, a second reference: the run that had everything but the ingredient
  under study (for GRPO with a supervised mix, the supervised term alone: ``training.ptx_dump`` +
  ``training.sft``). Each run's benchmark gain over it, and its distribution, stand beside the gain
  over the baseline, so a gain is credited to the ingredient only where it exceeds the control's.

What perturbs a run is read from the run itself: the seed and ``torch_threads`` from the last
checkpoint's ``trainer_state/extra.pt``, the number of processes from the random-state files
accelerate saves there (one per process).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .run_logs import step_wall_times, training_minutes

SPLITS: dict[str, dict[str, Any]] = {
    "benchmark": {"prompt_seed": 0, "exclude_benchmark": 0},
    "validation": {"prompt_seed": 1, "exclude_benchmark": 600},
}
"""The two prompt sets: the benchmark (reported) and the validation set (the only one choices use)."""

N_PROMPTS: dict[str, dict[str, int]] = {
    "geneval": {"benchmark": 600, "validation": 300},
    "compositional": {"benchmark": 280, "validation": 280},
}
"""Prompts per suite and split, as every figure in the README and the cards."""

Evaluate = Callable[[str, str, str, Path], dict[str, Any]]
"""``evaluate(model, suite, split, out_dir) -> report`` (``report.json`` of ``reasongen.eval``)."""


@dataclass
class RecipeRunsConfig:
    """Settings of ``python -m training.recipe_runs``."""

    baseline: str = field(metadata={"help": "the model every run starts from (gains are against it)"})
    runs: list[str] = field(metadata={"help": "run folders (--out_dir of training.grpo), in order"})
    out: str = field(metadata={"help": "folder for the cached reports, summary.json and summary.md"})
    model_subdir: str = field(
        default="final", metadata={"help": "what each run exports (final/ = tail average)"}
    )
    suites: tuple[str, ...] = field(
        default=("geneval", "compositional"), metadata={"help": "benchmark suites"}
    )
    watch: str = field(default="counting", metadata={"help": "category reported beside overall"})
    threads: int = field(default=1, metadata={"help": "torch threads of each evaluation"})
    control: str = field(
        default="",
        metadata={
            "help": "a run folder (its --model-subdir is evaluated) or a model: the run without the "
            "ingredient under study; each run's gain over it is reported too"
        },
    )

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in N_PROMPTS]
        if unknown:
            raise ValueError(f"unknown suite(s) {unknown}; choose from {', '.join(N_PROMPTS)}")
        if len(self.runs) < 1:
            raise ValueError("give at least one --run")
        if len(set(self.runs)) != len(self.runs):
            raise ValueError("a run is given twice: each run must be one draw")
        if self.control and Path(self.control).resolve() in {Path(r).resolve() for r in self.runs}:
            raise ValueError("the control is also given as a --run: it is the reference, not a draw")


# --------------------------------------------------------------------------- reading runs


def run_info(run_dir: Path) -> dict[str, Any]:
    """What a run was: ``seed``, ``torch_threads``, ``processes``, ``steps`` and ``minutes`` of
    training (sum of step-to-step times, leaving out pauses longer than ten median steps, so a
    killed-and-resumed run counts only its training)."""
    import torch

    ckpts = sorted(
        run_dir.glob("checkpoint-*/trainer_state/extra.pt"), key=lambda p: int(p.parts[-3].split("-")[1])
    )
    if not ckpts:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint-*/trainer_state: not a training.grpo run folder"
        )
    extra = torch.load(ckpts[-1], weights_only=False, map_location="cpu")
    cfg, step = extra["config"], int(extra["step"])
    processes = len(list(ckpts[-1].parent.glob("random_states_*.pkl"))) or 1
    return {
        "run": run_dir.name,
        "seed": cfg.get("seed"),
        "torch_threads": cfg.get("torch_threads"),
        "processes": processes,
        "steps": step,
        "minutes": training_minutes(step_wall_times(run_dir, step)),
    }


# --------------------------------------------------------------------------- evaluation


def evaluate_with_cli(threads: int) -> Evaluate:
    """The real evaluation: ``reasongen.eval``'s shapes benchmark, no images saved."""

    def evaluate(model: str, suite: str, split: str, out_dir: Path) -> dict[str, Any]:
        from reasongen.eval.cli import ShapesBenchConfig, run_shapes

        cfg = ShapesBenchConfig(out=str(out_dir), model=model, suite=suite, n=N_PROMPTS[suite][split],
                                no_images=True, threads=threads, **SPLITS[split])  # fmt: skip
        return run_shapes(cfg)

    return evaluate


def cached_report(model: str, suite: str, split: str, out_dir: Path, evaluate: Evaluate) -> dict[str, Any]:
    """``out_dir/report.json`` if it was written for this model, suite and split; else evaluate."""
    path = out_dir / "report.json"
    if path.is_file():
        report = json.loads(path.read_text())
        same = (report.get("suite") == suite and report.get("model") == model
                and report.get("prompt_seed") == SPLITS[split]["prompt_seed"]
                and report.get("exclude_benchmark") == SPLITS[split]["exclude_benchmark"]
                and report.get("n_prompts") == N_PROMPTS[suite][split])  # fmt: skip
        if same:
            return report
    return evaluate(model, suite, split, out_dir)


# --------------------------------------------------------------------------- statistics


def distribution(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min, max of a list of gains or scores."""
    vals = [float(v) for v in values]
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"need finite values, got {vals}")
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"n": len(vals), "mean": statistics.fmean(vals), "std": std, "min": min(vals), "max": max(vals)}


def choose_by_validation(rows: Sequence[dict[str, Any]], suites: Sequence[str]) -> int:
    """Index of the run with the highest mean validation overall across ``suites`` (earliest on ties).
    Only validation figures are read."""
    scores = [statistics.fmean(r["validation"][s]["overall"] for s in suites) for r in rows]
    return max(range(len(rows)), key=lambda i: (scores[i], -i))


def summarise(
    base: dict[str, Any],
    rows: list[dict[str, Any]],
    suites: Sequence[str],
    watch: str,
    control: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The distribution of benchmark gains over ``rows`` (each with ``benchmark``/``validation``
    reports per suite) against ``base`` (the baseline's reports), and the chosen run; with
    ``control`` (reports of the same shape), also the distribution of gains over it."""
    dist: dict[str, Any] = {}
    for s in suites:
        b = base["benchmark"][s]
        gains = [r["benchmark"][s]["overall"] - b["overall"] for r in rows]
        scores = [r["benchmark"][s]["overall"] for r in rows]
        d: dict[str, Any] = {
            "baseline": b["overall"],
            "overall": distribution(scores),
            "gain": distribution(gains),
        }
        if control is not None:
            c = control["benchmark"][s]["overall"]
            d["control"] = c
            d["gain_over_control"] = distribution([r["benchmark"][s]["overall"] - c for r in rows])
        if watch in b["categories"]:
            d[watch] = distribution([r["benchmark"][s]["categories"][watch] for r in rows])
            d[watch]["baseline"] = b["categories"][watch]
        dist[s] = d
    chosen = choose_by_validation(rows, suites)
    return {
        "suites": list(suites),
        "watch": watch,
        "distribution": dist,
        "chosen": rows[chosen]["info"]["run"],
        "control": None if control is None else control["info"]["run"],
    }


# --------------------------------------------------------------------------- report


def _f(x: float) -> str:
    return f"{x:.3f}"


def _g(x: float) -> str:
    return f"{x:+.3f}"


def markdown(
    base: dict[str, Any],
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    control: dict[str, Any] | None = None,
) -> str:
    """``summary.md``: the runs table, the distribution per suite, the chosen run; with ``control``,
    its row and each run's gain over it."""
    suites, watch = summary["suites"], summary["watch"]
    head = ["run", "seed", "processes", "threads", "steps", "minutes"]
    for s in suites:
        head += (
            [f"{s} benchmark", "gain"]
            + (["vs control"] if control is not None else [])
            + ([watch] if watch in summary["distribution"][s] else [])
            + [f"{s} validation", "same layout"]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # each row with its role: the baseline (no gain of its own), the control (no gain over itself), a run
    table: list[tuple[str, dict[str, Any]]] = [
        ("baseline", {**base, "info": {"run": f"baseline ({Path(base['model']).name})"}})
    ]
    if control is not None:
        named = {**control["info"], "run": f"control ({control['info']['run']})"}
        table.append(("control", {**control, "info": named}))
    table += [("run", r) for r in rows]
    for role, r in table:
        i = r["info"]
        cells = [i["run"], *(str(i.get(k, "")) for k in ("seed", "processes", "torch_threads", "steps"))]
        cells.append(
            f"{i['minutes']:.1f}"
            if isinstance(i.get("minutes"), float) and math.isfinite(i["minutes"])
            else ""
        )
        for s in suites:
            bench, b0 = r["benchmark"][s], base["benchmark"][s]
            cells += [
                _f(bench["overall"]),
                "" if role == "baseline" else _g(bench["overall"] - b0["overall"]),
            ]
            if control is not None:
                c0 = control["benchmark"][s]["overall"]
                cells.append(_g(bench["overall"] - c0) if role == "run" else "")
            if watch in summary["distribution"][s]:
                cells.append(_f(bench["categories"][watch]))
            cells.append(_f(r["validation"][s]["overall"]))
            share = bench.get("plan", {}).get(
                "layout_mode_share"
            )  # reasongen.eval.shapes_bench.layout_mode_share
            cells.append(_f(share) if share is not None else "")
        if i["run"] == summary["chosen"]:
            cells[0] = f"**{cells[0]}** (chosen)"
        lines.append("| " + " | ".join(cells) + " |")
    out = [f"# Recipe outcome over {len(rows)} runs", "", "\n".join(lines), ""]
    for s in suites:
        d = summary["distribution"][s]
        g, o = d["gain"], d["overall"]
        out.append(
            f"- **{s}** (baseline {_f(d['baseline'])}): gain mean {_g(g['mean'])} (sd {g['std']:.3f}), "
            f"spread {_g(g['min'])} to {_g(g['max'])}, worst {_g(g['min'])}; "
            f"score mean {_f(o['mean'])}, range {_f(o['min'])}–{_f(o['max'])}"
        )
        if "gain_over_control" in d:
            gc = d["gain_over_control"]
            out.append(
                f"  - over the control ({summary['control']}, {_f(d['control'])}): gain mean "
                f"{_g(gc['mean'])} (sd {gc['std']:.3f}), spread {_g(gc['min'])} to {_g(gc['max'])}"
            )
        if watch in d:
            w = d[watch]
            out.append(f"  - {watch}: mean {_f(w['mean'])}, range {_f(w['min'])}–{_f(w['max'])}"
                       f" (baseline {_f(w['baseline'])})")  # fmt: skip
    out += [
        "",
        f"Chosen by validation (highest mean validation overall over {', '.join(suites)}): "
        f"**{summary['chosen']}**. Benchmark: prompt seed 0; validation: prompt seed 1 with the "
        "benchmark's texts excluded; `got-r1`, generation seed 0. *Same layout*: the share of a "
        "category's benchmark plans in its most common box layout, mean over categories (near 0: plans "
        "vary; near 1: collapsed to one layout).",
        "",
    ]
    return "\n".join(out)


def control_model(control: str, model_subdir: str) -> tuple[str, str]:
    """``(model, name)`` of a ``--control``: a run folder's ``model_subdir`` (``final/``) or a model
    folder itself; the name (the folder's) keys its cached reports."""
    path = Path(control)
    for model in (path / model_subdir, path):
        if (model / "config.json").is_file():
            return str(model), path.name
    raise FileNotFoundError(
        f"control {control} is neither a run folder with {model_subdir}/config.json nor a model folder"
    )


def collect(
    cfg: RecipeRunsConfig, evaluate: Evaluate
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Evaluate (or read the cached reports of) the baseline, every run's exported model and the
    control (None without ``--control``)."""
    out = Path(cfg.out)

    def reports(model: str, name: str) -> dict[str, Any]:
        return {
            split: {
                s: cached_report(model, s, split, out / name / f"{s}-{split}", evaluate) for s in cfg.suites
            }
            for split in SPLITS
        }

    # every run is checked before anything is evaluated: a wrong folder fails in seconds, not minutes
    models, infos = [], []
    for run in map(Path, cfg.runs):
        model = run / cfg.model_subdir
        if not (model / "config.json").is_file():
            raise FileNotFoundError(
                f"{model} is not an exported model (no config.json): has the run finished?"
            )
        models.append(str(model))
        infos.append(run_info(run))
    names = [i["run"] for i in infos]
    control_at = control_model(cfg.control, cfg.model_subdir) if cfg.control else None
    if control_at is not None:
        names.append(control_at[1])
    if len(set(names)) != len(names) or "baseline" in names:
        raise ValueError(
            f"run and control folders must have distinct names, none 'baseline' (reports are cached "
            f"by name): {names}"
        )
    base = {"model": cfg.baseline, "info": {"run": "baseline"}, **reports(cfg.baseline, "baseline")}
    rows = [{"model": m, "info": i, **reports(m, i["run"])} for m, i in zip(models, infos, strict=True)]
    control = None
    if control_at is not None:
        model, name = control_at
        control = {"model": model, "info": {"run": name}, **reports(model, name)}
    return base, rows, control


def main(argv: list[str] | None = None, evaluate: Evaluate | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.recipe_runs", description=(__doc__ or "").split("\n\n")[0]
    )
    for f in dataclasses.fields(RecipeRunsConfig):
        flag = "--run" if f.name == "runs" else "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        if f.name == "runs":
            kw.update(action="append", required=True)
        elif f.name == "suites":
            kw.update(default=",".join(f.default), type=lambda v: tuple(x for x in v.split(",") if x))  # type: ignore[arg-type]
        elif f.default is dataclasses.MISSING:
            kw.update(required=True)
        else:
            kw.update(default=f.default, type=type(f.default))
        ap.add_argument(flag, **kw)
    try:
        cfg = RecipeRunsConfig(**vars(ap.parse_args(argv)))
        base, rows, control = collect(cfg, evaluate or evaluate_with_cli(cfg.threads))
        summary = summarise(base, rows, cfg.suites, cfg.watch, control)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    strip = ("results", "counts", "config")

    def slim(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in SPLITS} | {
            sp: {s: {k: v for k, v in r[sp][s].items() if k not in strip} for s in cfg.suites}
            for sp in SPLITS
        }

    record = {**summary, "runs": [slim(r) for r in [base, *rows]]}
    if control is not None:
        record["control_reports"] = slim(control)
    (out / "summary.json").write_text(json.dumps(record, indent=1, default=str))
    text = markdown(base, rows, summary, control)
    (out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
