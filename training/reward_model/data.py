"""Rankings to learn from: read from a study in the annotation store (or several, pooled) or from
its export, filtered as the study statistics filter them, and split into training and held-out sets
by prompt.

A :class:`Ranking` is one annotator's answer to one regular task: the candidates it placed and
their ranks (1 = best, equal = tie). Skipped rankings, control tasks, rankings of fewer than two
candidates and annotators who fail the control tasks (``annotation.stats.control_results``) are
left out. Simulated annotators' rankings are kept unless ``people_only``; every count says how
many are simulated, so the model card can say so.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reasongen.types import Box


@dataclass(frozen=True)
class Ranking:
    """One annotator's ranking of one task's candidates (best first; equal ranks are ties)."""

    ranking_id: int
    task_id: int
    prompt: str
    annotator: str
    simulated: bool
    candidates: tuple[int, ...]
    ranks: tuple[int, ...]


@dataclass
class PreferenceData:
    """Rankings with the image file and prompt of every candidate they place."""

    rankings: list[Ranking]
    images: dict[int, Path]
    """Candidate id → image file."""
    prompts: dict[int, str]
    """Candidate id → the prompt its image was generated for."""
    source: str
    excluded_annotators: list[str] = field(default_factory=list)
    dropped_simulated: int = 0
    """Rankings by simulated annotators left out (``people_only``)."""
    plans: dict[int, tuple[Box, ...]] = field(default_factory=dict)
    """Candidate id → the boxes of its stored plan (absent: no plan)."""

    def counts(self) -> dict[str, Any]:
        """Rankings, tasks, prompts, candidates and annotators (people and simulated)."""
        who = {r.annotator: r.simulated for r in self.rankings}
        return {
            "rankings": len(self.rankings),
            "rankings_simulated": sum(r.simulated for r in self.rankings),
            "tasks": len({r.task_id for r in self.rankings}),
            "prompts": len({r.prompt for r in self.rankings}),
            "candidates": len({c for r in self.rankings for c in r.candidates}),
            "annotators_people": sorted(a for a, sim in who.items() if not sim),
            "annotators_simulated": sorted(a for a, sim in who.items() if sim),
            "excluded_annotators": list(self.excluded_annotators),
        }

    def subset(self, rankings: list[Ranking]) -> PreferenceData:
        return dataclasses.replace(self, rankings=rankings)


def rankings_from_frame(
    frame: pd.DataFrame,
    image_files: dict[int, Path],
    source: str,
    *,
    min_pass_rate: float = 0.75,
    people_only: bool = False,
) -> PreferenceData:
    """Build :class:`PreferenceData` from a long rankings table (``annotation.tables.rankings_frame``
    or an export's ``rankings`` table). Raises ``ValueError`` when nothing usable is left or a
    candidate's image file is missing."""
    from annotation import stats

    need = {"ranking_id", "task_id", "annotator", "candidate_id", "rank", "prompt", "is_control"}
    missing = need - set(frame.columns)
    if missing:
        raise ValueError(f"{source}: the rankings table lacks column(s) {', '.join(sorted(missing))}")
    df = frame.copy()
    df["is_control"] = df["is_control"].astype(bool)
    if "annotator_simulated" not in df.columns:
        df["annotator_simulated"] = False
    df["annotator_simulated"] = df["annotator_simulated"].fillna(False).astype(bool)
    if "control_best_id" not in df.columns:
        df["control_best_id"] = pd.NA
    controls = stats.control_results(df, min_pass_rate=min_pass_rate)
    excluded = sorted(controls.loc[controls["excluded"], "annotator"])
    df = stats.exclude_annotators(df, controls)
    df = df[df["rank"].notna() & ~df["is_control"]]
    dropped_sim = int(df.loc[df["annotator_simulated"], "ranking_id"].nunique()) if people_only else 0
    if people_only:
        df = df[~df["annotator_simulated"]]
    rankings = []
    for rid, g in df.sort_values(["ranking_id", "rank", "candidate_id"]).groupby("ranking_id", sort=True):
        if len(g) < 2:
            continue
        rankings.append(
            Ranking(
                int(rid),
                int(g["task_id"].iloc[0]),
                str(g["prompt"].iloc[0]),
                str(g["annotator"].iloc[0]),
                bool(g["annotator_simulated"].iloc[0]),
                tuple(int(c) for c in g["candidate_id"]),
                tuple(int(r) for r in g["rank"]),
            )
        )
    if not rankings:
        raise ValueError(
            f"{source}: no usable ranking (need regular, non-skipped rankings of two or more candidates "
            f"by annotators who pass the controls{'; people only' if people_only else ''})"
        )
    ids = {c for r in rankings for c in r.candidates}
    absent = sorted(c for c in ids if c not in image_files or not Path(image_files[c]).is_file())
    if absent:
        shown = ", ".join(map(str, absent[:5])) + (", ..." if len(absent) > 5 else "")
        raise ValueError(f"{source}: {len(absent)} ranked candidate(s) have no image file ({shown})")
    prompts = dict(zip(df["candidate_id"].astype(int), df["prompt"].astype(str), strict=True))
    return PreferenceData(
        rankings, {c: Path(image_files[c]) for c in ids}, prompts, source, excluded, dropped_sim
    )


def plans_of(cands: pd.DataFrame) -> dict[int, tuple[Box, ...]]:
    """Candidate id → plan boxes, from a candidates table's ``sample_json`` column (if any)."""
    out: dict[int, tuple[Box, ...]] = {}
    if "sample_json" not in cands.columns:
        return out
    for c, raw in zip(cands["candidate_id"], cands["sample_json"], strict=True):
        plan = json.loads(raw).get("plan") if isinstance(raw, str) and raw else None
        if plan:
            out[int(c)] = tuple(Box.from_dict(b) for b in plan.get("boxes", []))
    return out


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path}: an export table is .csv, .parquet or .jsonl")


def read_study(study: str, db_url: str = "", data_dir: str = "data", **kw: Any) -> PreferenceData:
    """A study's rankings from the annotation store (``db_url``, else ``data_dir``'s SQLite file,
    which must exist: nothing is created)."""
    from sqlalchemy.engine import make_url

    from annotation.db import current_revision
    from annotation.store import Store
    from annotation.tables import candidates_frame, rankings_frame
    from training.human import existing_database

    url = existing_database(db_url, data_dir)
    shown = make_url(url).render_as_string(hide_password=True)
    with Store(url, data_dir, migrate=False) as store:
        if current_revision(store.engine) is None:
            raise ValueError(f"{shown} is not an annotation database (it has no tables)")
        info = store.find_study(study)
        frame = rankings_frame(store, info.id)
        cands = candidates_frame(store, info.id, with_sample=True)
        root = store.data_dir
    files: dict[int, Path] = {}
    for c, p in zip(cands.get("candidate_id", []), cands.get("image_path", []), strict=True):
        if isinstance(p, str) and p:
            files[int(c)] = root / p
    data = rankings_from_frame(frame, files, f"study {info.name!r} at {shown}", **kw)
    return dataclasses.replace(data, plans=plans_of(cands))


def read_studies(studies: str, db_url: str = "", data_dir: str = "data", **kw: Any) -> PreferenceData:
    """The rankings of one study or of several, comma-separated (study names cannot hold a comma),
    pooled: each study is read and filtered by its own controls as :func:`read_study` does, then
    their rankings are joined (ids are the database's, so they never clash). Raises ``ValueError``
    for an empty reference or one study named twice (by the same reference, or by its name and its
    id); a study with no usable ranking fails as it does alone."""
    refs = [r.strip() for r in studies.split(",")]
    if not all(refs):
        raise ValueError(f"--study {studies!r} has an empty name between commas")
    if len(set(refs)) != len(refs):
        raise ValueError(f"--study {studies!r} names a study twice")
    parts = [read_study(ref, db_url, data_dir, **kw) for ref in refs]
    # two references to one study (its name and its id, say): the source names the study itself
    seen: set[str] = set()
    for part in parts:
        if part.source in seen:
            raise ValueError(f"--study {studies!r} names a study twice ({part.source})")
        seen.add(part.source)
    return parts[0] if len(parts) == 1 else pool(parts)


def pool(parts: list[PreferenceData]) -> PreferenceData:
    """Several sources' rankings as one (their images, prompts and plans joined); an annotator left
    out by any part's controls is listed once. Raises ``ValueError`` when two parts hold the same
    ranking id (two exports of one study, say), which would count it twice."""
    seen: set[int] = set()
    for part in parts:
        ids = {r.ranking_id for r in part.rankings}
        if ids & seen:
            raise ValueError(f"{part.source} repeats rankings of an earlier source: pool each study once")
        seen |= ids
    return PreferenceData(
        rankings=[r for part in parts for r in part.rankings],
        images={k: v for part in parts for k, v in part.images.items()},
        prompts={k: v for part in parts for k, v in part.prompts.items()},
        source=" + ".join(part.source for part in parts),
        excluded_annotators=sorted({a for part in parts for a in part.excluded_annotators}),
        dropped_simulated=sum(part.dropped_simulated for part in parts),
        plans={k: v for part in parts for k, v in part.plans.items()},
    )


def read_export(path: str | Path, **kw: Any) -> PreferenceData:
    """An export's rankings (``python -m annotation export``): the export folder or its
    ``rankings.<csv|parquet|jsonl>`` file; images from the folder's ``images/<candidate_id>.png``,
    plans from its ``candidates`` table when it is there."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("rankings.*"))
        if not found:
            raise ValueError(f"{path} holds no rankings.csv/.parquet/.jsonl: is it an export folder?")
        table, folder = found[0], path
    elif path.is_file():
        table, folder = path, path.parent
    else:
        raise ValueError(f"no export at {path}")
    frame = _read_table(table)
    images = folder / "images"
    files = {int(p.stem): p for p in images.glob("*.png") if p.stem.isdigit()} if images.is_dir() else {}
    data = rankings_from_frame(frame, files, f"export {folder}", **kw)
    cands = folder / f"candidates{table.suffix}"
    return dataclasses.replace(data, plans=plans_of(_read_table(cands))) if cands.is_file() else data


def split_by_prompt(
    data: PreferenceData, held_out: float, seed: int
) -> tuple[PreferenceData, PreferenceData]:
    """Training and held-out sets with no prompt in both: a seeded shuffle of the distinct prompts,
    the first ``round(held_out × prompts)`` (at least one) held out."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be between 0 and 1, got {held_out}")
    prompts = sorted({r.prompt for r in data.rankings})
    if len(prompts) < 2:
        raise ValueError(
            f"{data.source}: a split by prompt needs rankings of at least two prompts, got {len(prompts)}"
        )
    random.Random(seed).shuffle(prompts)
    k = min(len(prompts) - 1, max(1, round(held_out * len(prompts))))
    test = set(prompts[:k])
    return (
        data.subset([r for r in data.rankings if r.prompt not in test]),
        data.subset([r for r in data.rankings if r.prompt in test]),
    )


def annotator_counts(data: PreferenceData) -> Counter[str]:
    """Rankings per annotator."""
    return Counter(r.annotator for r in data.rankings)
