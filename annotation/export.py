"""Export a study: tables (CSV, Parquet or JSONL) and an image folder for ``datasets``.

Files written under ``out``:

- ``rankings.<ext>``: one row per (ranking, candidate), see :func:`annotation.tables.rankings_frame`;
- ``pairwise.<ext>``: every candidate pair within each non-control ranking (tie = ½), with
  ``excluded`` marking annotators who failed the control tasks;
- ``ratings.<ext>``: Bradley–Terry strengths with bootstrap 95% intervals, per system
  (``model:recipe``), per model and per recipe (column ``level``), from non-excluded annotators;
- ``candidates.<ext>``: every candidate with its reward scores and the whole stored sample;
- ``controls.<ext>``: control-task pass rates per annotator;
- ``summary.json``: Krippendorff's α, per-annotator agreement, win rates, recipe comparison;
- ``images/``: ``<candidate_id>.png`` plus ``metadata.jsonl`` in the layout that
  ``datasets.load_dataset("imagefolder", data_dir=out / "images")`` reads as it is.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from annotation import stats
from annotation.tables import candidates_frame, rankings_frame

if TYPE_CHECKING:
    from annotation.store import Store

FORMATS = ("csv", "parquet", "jsonl")


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
) -> dict[str, Path]:
    """Write the study's tables, summary and image folder under ``out``; return the paths."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rankings = rankings_frame(store, study)
    cands = candidates_frame(store, study)
    controls = stats.control_results(rankings, min_pass_rate=min_pass_rate)
    excluded = set(controls.loc[controls["excluded"], "annotator"])
    kept = stats.exclude_annotators(rankings, controls)

    pairs = stats.pairwise_outcomes(rankings, "system")
    pairs["excluded"] = pairs["annotator"].isin(excluded)
    ratings = _ratings(kept, n_boot=n_boot, seed=seed)

    paths = {
        "rankings": write_table(rankings, out / "rankings", fmt),
        "pairwise": write_table(pairs, out / "pairwise", fmt),
        "ratings": write_table(ratings, out / "ratings", fmt),
        "candidates": write_table(cands, out / "candidates", fmt),
        "controls": write_table(controls, out / "controls", fmt),
    }
    summary = {
        "study": store.get_study(study).name,
        "rankings": int(rankings["ranking_id"].nunique()),
        "excluded_annotators": sorted(excluded),
        "alpha_ordinal": _plain(stats.ranking_alpha(kept)),
        "agreement": stats.annotator_agreement(kept).to_dict(orient="records"),
        "win_rates": json.loads(stats.win_rate_matrix(pairs[~pairs["excluded"]]).to_json(orient="index")),
        "recipes": stats.recipe_comparison(kept, n_boot=n_boot, seed=seed).to_dict("records"),
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
    (one JSON object per image with ``file_name`` first; consistent types on every line)."""
    folder.mkdir(parents=True, exist_ok=True)
    ranked = rankings[rankings["rank"].notna() & ~rankings["is_control"]]
    per = ranked.groupby("candidate_id")["rank"].agg(["mean", "count"])
    lines = []
    for c in cands.itertuples(index=False):
        if not c.image_path:
            continue
        name = f"{c.candidate_id}.png"
        target = folder / name
        if not target.exists():
            shutil.copyfile(store.data_dir / c.image_path, target)
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
