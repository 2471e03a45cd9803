"""Export a study: tables (CSV, Parquet or JSONL) and an image folder for ``datasets``.

Files written under ``out``:

- ``rankings.<ext>``: one row per (ranking, candidate), see :func:`annotation.tables.rankings_frame`;
- ``pairwise.<ext>``: every candidate pair within each non-control ranking (tie = ½), with
  ``annotator_simulated`` marking simulated annotators and ``excluded`` marking the pairs the
  statistics leave out (annotators who failed the control tasks, and simulated annotators
  unless ``include_simulated``);
- ``ratings.<ext>``: Bradley–Terry strengths with bootstrap 95% intervals, per system
  (``model:recipe``), per model and per recipe (column ``level``), from non-excluded annotators;
- ``candidates.<ext>``: every candidate with its reward scores and the whole stored sample;
- ``controls.<ext>``: control-task pass rates per annotator;
- ``agreement.<ext>``: each stored reward's agreement with the counted annotators' rankings
  (pairwise accuracy, Kendall τ-b, task-clustered 95% intervals) beside the human–human ceiling,
  see :mod:`annotation.agreement` (only the ceiling row when no reward scores are stored);
- ``summary.json``: Krippendorff's α, per-annotator agreement, win rates, recipe comparison,
  reward agreement (as ``agreement.<ext>``) and each annotator against the others
  (``annotator_ceiling``),
  and which annotators were simulated and whether the statistics include them;
- ``images/``: ``<candidate_id>.png`` plus ``metadata.jsonl`` in the layout that
  ``datasets.load_dataset("imagefolder", data_dir=out / "images")`` reads as it is (candidates
  stored without an image have no file there; ``summary.json`` counts them).

An export is written completely or not at all: everything goes into a temporary sibling folder
that replaces ``out`` only once it is complete, so a failure leaves the previous export (or no
folder) and a re-export never mixes its files with an earlier study's. ``out`` must be new, empty
or a previous export: a folder holding anything else is refused, never replaced. JSON lines carry
no header, so ``summary.json`` lists each table's columns (``tables``), which an empty table's
``.jsonl`` file cannot show.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from annotation import stats
from annotation.agreement import annotator_ceiling, reward_agreement
from annotation.errors import AnnotationError
from annotation.tables import (
    candidates_frame,
    rankings_frame,
    reward_scores_frame,
    select_annotators,
    simulated_annotators,
)

if TYPE_CHECKING:
    from annotation.store import Store

FORMATS = ("csv", "parquet", "jsonl")
TABLES = ("rankings", "pairwise", "ratings", "candidates", "controls", "agreement")
EXPORT_NAMES = frozenset({f"{t}.{fmt}" for t in TABLES for fmt in FORMATS} | {"summary.json", "images"})
"""Everything an export writes at the top of its folder (what may be replaced by a new one)."""


def write_table(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    """Write ``df`` to ``path`` (suffix added) as CSV, Parquet or JSON lines."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    path = path.with_suffix(f".{fmt}")
    df = df.copy()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].map(lambda t: t.isoformat() if pd.notna(t) else None)
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        with path.open("w", encoding="utf-8") as f:
            for rec in df.to_dict(orient="records"):
                f.write(json.dumps({k: _plain(x) for k, x in rec.items()}, ensure_ascii=False))
                f.write("\n")
    return path


def _plain(x: Any) -> Any:
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def export_study(
    store: Store,
    study: int | str,
    out: str | Path,
    fmt: str = "parquet",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_pass_rate: float = 0.75,
    include_simulated: bool = False,
    actor: int | str | None = None,
) -> dict[str, Path]:
    """Write the study's tables, summary and image folder under ``out``; return the paths.

    Rankings by simulated annotators stay in the rankings and pairwise tables, labelled
    (``annotator_simulated``), but the statistics (ratings, win rates, agreement, controls,
    summary) use people's rankings only unless ``include_simulated``; the summary says which.

    ``actor`` is who asks (a user id or name; None: the administrator, e.g. the CLI): an
    annotator or a deactivated user gets ``PermissionDeniedError`` before anything is written.

    All or nothing: the files are written into a temporary sibling folder that then replaces
    ``out`` (see the module docstring). Raises ``AnnotationError`` when ``out`` holds files that
    are not an export's, or when a stored image is missing; ``out`` is then left as it was.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    store.require_researcher(actor, "exporting a study")
    out = Path(out).absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir()
    try:
        paths = _write_export(
            store,
            study,
            staging,
            fmt,
            n_boot=n_boot,
            seed=seed,
            min_pass_rate=min_pass_rate,
            include_simulated=include_simulated,
        )
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: out / path.relative_to(staging) for name, path in paths.items()}


def _check_target(out: Path) -> None:
    """Refuse an ``out`` that is a file or a folder holding anything an export does not write."""
    if out.exists() and not out.is_dir():
        raise AnnotationError(f"export folder {out} is a file; choose a new or empty folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_NAMES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise AnnotationError(
                f"refusing to replace {out}: it holds {len(foreign)} file(s) an export does not "
                f"write ({shown}); choose a new, empty or previous export folder"
            )


def _swap_in(staging: Path, out: Path) -> None:
    """Put the finished ``staging`` folder in place of ``out`` (renames; the old export is removed
    only after the new one is in place, and restored if that fails)."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_export(
    store: Store,
    study: int | str,
    out: Path,
    fmt: str,
    *,
    n_boot: int,
    seed: int,
    min_pass_rate: float,
    include_simulated: bool,
) -> dict[str, Path]:
    """Write every file of the export into the existing, empty folder ``out``."""
    rankings = rankings_frame(store, study)
    simulated = set(simulated_annotators(rankings))
    counted = select_annotators(rankings, include_simulated)
    cands = candidates_frame(store, study)
    controls = stats.control_results(counted, min_pass_rate=min_pass_rate)
    excluded = set(controls.loc[controls["excluded"], "annotator"])
    kept = stats.exclude_annotators(counted, controls)

    pairs = stats.pairwise_outcomes(rankings, "system")
    pairs["annotator_simulated"] = pairs["annotator"].isin(simulated)
    left_out = excluded | (set() if include_simulated else simulated)
    pairs["excluded"] = pairs["annotator"].isin(left_out)
    ratings = _ratings(kept, n_boot=n_boot, seed=seed)
    agreement = reward_agreement(kept, reward_scores_frame(store, study), n_boot=n_boot, seed=seed)

    paths = {
        "rankings": write_table(rankings, out / "rankings", fmt),
        "pairwise": write_table(pairs, out / "pairwise", fmt),
        "ratings": write_table(ratings, out / "ratings", fmt),
        "candidates": write_table(cands, out / "candidates", fmt),
        "controls": write_table(controls, out / "controls", fmt),
        "agreement": write_table(agreement, out / "agreement", fmt),
    }
    summary = {
        "study": store.get_study(study).name,
        "rankings": int(rankings["ranking_id"].nunique()),
        "excluded_annotators": sorted(excluded),
        "simulated_annotators": sorted(simulated),
        "statistics_include_simulated": bool(include_simulated),
        "alpha_ordinal": _plain(stats.ranking_alpha(kept)),
        "agreement": stats.annotator_agreement(kept).to_dict(orient="records"),
        "win_rates": json.loads(stats.win_rate_matrix(pairs[~pairs["excluded"]]).to_json(orient="index")),
        "recipes": stats.recipe_comparison(kept, n_boot=n_boot, seed=seed).to_dict("records"),
        "reward_agreement": [{k: _plain(x) for k, x in r.items()} for r in agreement.to_dict("records")],
        "annotator_ceiling": annotator_ceiling(kept).to_dict("records"),
        "candidates_without_image": int((~_has_image(cands)).sum()),
        "tables": {
            name: {"file": paths[name].name, "rows": len(df), "columns": [str(c) for c in df.columns]}
            for name, df in zip(TABLES, (rankings, pairs, ratings, cands, controls, agreement), strict=True)
        },
    }
    paths["summary"] = out / "summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    paths["images"] = export_images(store, cands, kept, out / "images")
    return paths


def _ratings(kept: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    frames = []
    for level in ("system", "model_id", "recipe"):
        pairs = stats.pairwise_outcomes(kept, level)
        if (pairs["item_a"] != pairs["item_b"]).any():
            bt = stats.bradley_terry(pairs, n_boot=n_boot, seed=seed)
            frames.append(bt.assign(level=level))
    cols = ["level", "item", "theta", "ci_low", "ci_high", "comparisons", "win_rate"]
    return pd.concat(frames)[cols] if frames else pd.DataFrame(columns=cols)


def export_images(store: Store, cands: pd.DataFrame, rankings: pd.DataFrame, folder: Path) -> Path:
    """Copy candidate images to ``folder/<candidate_id>.png`` and write ``metadata.jsonl``
    (one JSON object per image with ``file_name`` first; consistent types on every line).

    Candidates without an image are left out; every listed file is copied from the store (an
    existing file of the same name is overwritten). Raises ``AnnotationError`` if a stored image
    file is missing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ranked = rankings[rankings["rank"].notna() & ~rankings["is_control"]]
    per = ranked.groupby("candidate_id")["rank"].agg(["mean", "count"])
    lines = []
    for c, has_image in zip(cands.itertuples(index=False), _has_image(cands), strict=True):
        if not has_image:
            continue
        name = f"{c.candidate_id}.png"
        source = store.data_dir / c.image_path
        if not source.is_file():
            raise AnnotationError(f"candidate {c.candidate_id}'s image {source} is missing from the store")
        shutil.copyfile(source, folder / name)
        has = c.candidate_id in per.index
        lines.append(
            {
                "file_name": name,
                "candidate_id": int(c.candidate_id),
                "prompt": c.prompt,
                "model_id": c.model_id,
                "recipe": c.recipe,
                "system": c.system,
                "seed": int(c.seed),
                "sample_index": int(c.sample_index),
                "cot_text": c.cot_text,
                "image_sha256": c.image_sha256,
                "mean_rank": float(per.loc[c.candidate_id, "mean"]) if has else None,
                "times_ranked": int(per.loc[c.candidate_id, "count"]) if has else 0,
                "rewards": c.rewards,
            }
        )
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return folder


def _has_image(cands: pd.DataFrame) -> pd.Series:
    """Per candidate: whether it has a stored image (a missing path may read as None or NaN)."""
    return cands["image_path"].map(lambda p: isinstance(p, str) and p != "").astype(bool)
