"""Study data as pandas tables (the inputs of :mod:`annotation.stats` and of the export)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import select

from annotation.lookups import load_study, system_label
from annotation.models import (
    Candidate,
    Prompt,
    Ranking,
    RankingEntry,
    RewardScore,
    Task,
    TaskCandidate,
    User,
)

if TYPE_CHECKING:
    from annotation.store import Store

RANKING_COLUMNS = [
    "ranking_id",
    "task_id",
    "annotator_id",
    "annotator",
    "annotator_simulated",
    "is_control",
    "control_best_id",
    "skipped",
    "skip_reason",
    "both_bad",
    "time_taken_s",
    "created_at",
    "edited_at",
    "candidate_id",
    "rank",
    "prompt_id",
    "prompt",
    "model_id",
    "recipe",
    "system",
    "seed",
    "sample_index",
]


def rankings_frame(store: Store, study: int | str) -> pd.DataFrame:
    """One row per (ranking, candidate) of a study; a skipped ranking is one row with no
    candidate and no rank (``skip_reason`` says why, if the annotator said). ``both_bad`` marks
    an arena "both bad" tie; ``edited_at`` is set when the annotator changed the ranking later.
    ``annotator_simulated`` marks rankings by simulated annotators (see :func:`select_annotators`).
    ``system`` is ``model_id:recipe``; ``prompt`` is the candidate's own prompt (for control
    tasks it may differ from the task's)."""
    with store.session() as s:
        st = load_study(s, study)
        q = (
            select(
                Ranking.id.label("ranking_id"),
                Ranking.task_id,
                Ranking.annotator_id,
                User.username.label("annotator"),
                User.simulated.label("annotator_simulated"),
                Task.is_control,
                Task.control_best_id,
                Ranking.skipped,
                Ranking.skip_reason,
                Ranking.both_bad,
                Ranking.time_taken_s,
                Ranking.created_at,
                Ranking.edited_at,
                RankingEntry.candidate_id,
                RankingEntry.rank,
                Candidate.prompt_id,
                Prompt.text.label("prompt"),
                Candidate.model_id,
                Candidate.recipe,
                Candidate.seed,
                Candidate.sample_index,
            )
            .join(Task, Task.id == Ranking.task_id)
            .join(User, User.id == Ranking.annotator_id)
            .outerjoin(RankingEntry, RankingEntry.ranking_id == Ranking.id)
            .outerjoin(Candidate, Candidate.id == RankingEntry.candidate_id)
            .outerjoin(Prompt, Prompt.id == Candidate.prompt_id)
            .where(Task.study_id == st.id)
            .order_by(Ranking.id, RankingEntry.rank, RankingEntry.candidate_id)
        )
        rows = [r._asdict() for r in s.execute(q)]
    df = pd.DataFrame(rows, columns=[c for c in RANKING_COLUMNS if c != "system"])
    df["system"] = [
        system_label(m, r) if isinstance(m, str) else None
        for m, r in zip(df["model_id"], df["recipe"], strict=True)
    ]
    for col in ("candidate_id", "rank", "control_best_id", "prompt_id", "seed", "sample_index"):
        df[col] = df[col].astype("Int64")
    df["is_control"] = df["is_control"].astype(bool)
    df["skipped"] = df["skipped"].astype(bool)
    df["annotator_simulated"] = df["annotator_simulated"].fillna(False).astype(bool)
    df["both_bad"] = df["both_bad"].fillna(False).astype(bool)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    df["edited_at"] = pd.to_datetime(df["edited_at"], utc=True)
    return df[RANKING_COLUMNS]


def candidates_frame(store: Store, study: int | str, *, with_sample: bool = True) -> pd.DataFrame:
    """One row per candidate of the study's prompts: ids, model, recipe, seed, image path
    (relative to the data directory), reward scores as a JSON object string and, if asked, the
    whole stored sample (``Sample.to_dict()``) as a JSON string."""
    with store.session() as s:
        st = load_study(s, study)
        cands = s.execute(
            select(Candidate, Prompt.text, Prompt.position)
            .join(Prompt, Prompt.id == Candidate.prompt_id)
            .where(Prompt.study_id == st.id)
            .order_by(Candidate.id)
        ).all()
        ids = [c.id for c, _, _ in cands]
        rewards: dict[int, dict[str, float | None]] = {}
        for r in s.scalars(select(RewardScore).where(RewardScore.candidate_id.in_(ids))):
            rewards.setdefault(r.candidate_id, {})[r.name] = r.score
        in_tasks = set(
            s.scalars(select(TaskCandidate.candidate_id).where(TaskCandidate.candidate_id.in_(ids)))
        )
        rows = []
        for c, text, position in cands:
            row = {
                "candidate_id": c.id,
                "prompt_id": c.prompt_id,
                "prompt_position": position,
                "prompt": text,
                "model_id": c.model_id,
                "recipe": c.recipe,
                "system": system_label(c.model_id, c.recipe),
                "seed": c.seed,
                "sample_index": c.sample_index,
                "cot_text": c.sample.get("cot_text", ""),
                "image_path": c.image_path,
                "image_sha256": c.image_sha256,
                "in_task": c.id in in_tasks,
                "rewards": json.dumps(rewards.get(c.id, {}), sort_keys=True),
            }
            if with_sample:
                row["sample_json"] = json.dumps(c.sample)
            rows.append(row)
    return pd.DataFrame(rows)


def candidate_ranks(rankings: pd.DataFrame, candidates: pd.DataFrame, system: str) -> pd.DataFrame:
    """The candidates of one ``system`` (``model_id:recipe``) with how annotators ranked them:
    ``ranks`` as "rank/group size" per answered ranking, ``times_ranked``, ``mean_rank`` and
    ``mean_position`` (0 = always first, 1 = always last; ties share their rank). Inputs are
    :func:`rankings_frame` and :func:`candidates_frame` of one study; controls are included
    (they are rankings of the candidate too). Sorted by prompt, then candidate id."""
    columns = ["candidate_id", "prompt", "seed", "times_ranked", "ranks", "mean_rank", "mean_position",
               "rewards", "image_path"]  # fmt: skip
    if candidates.empty:
        return pd.DataFrame(columns=columns)
    mine = candidates[candidates["system"] == system]
    ranked = rankings[rankings["rank"].notna()]
    size = ranked.groupby("ranking_id")["candidate_id"].transform("count")
    ranked = ranked.assign(size=size, position=(ranked["rank"] - 1) / (size - 1).where(size > 1))
    rows = []
    for c in mine.sort_values(["prompt_position", "candidate_id"]).itertuples():
        r = ranked[ranked["candidate_id"] == c.candidate_id].sort_values("ranking_id")
        rows.append(
            {
                "candidate_id": int(c.candidate_id),
                "prompt": c.prompt,
                "seed": int(c.seed),
                "times_ranked": len(r),
                "ranks": ", ".join(f"{int(k)}/{int(n)}" for k, n in zip(r["rank"], r["size"], strict=True)),
                "mean_rank": float(r["rank"].astype(float).mean()) if len(r) else float("nan"),
                "mean_position": float(r["position"].astype(float).mean()) if len(r) else float("nan"),
                "rewards": c.rewards,
                "image_path": c.image_path,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def simulated_annotators(rankings: pd.DataFrame) -> list[str]:
    """The names of the simulated annotators among ``rankings``' rows, sorted."""
    if rankings.empty:
        return []
    return sorted(set(rankings.loc[rankings["annotator_simulated"], "annotator"]))


def select_annotators(rankings: pd.DataFrame, include_simulated: bool = False) -> pd.DataFrame:
    """The rankings human-only statistics use: people's, plus simulated annotators' only when
    ``include_simulated`` (their rows stay in every exported table, labelled, either way)."""
    if include_simulated or rankings.empty:
        return rankings
    return rankings[~rankings["annotator_simulated"]].reset_index(drop=True)


def reward_scores_frame(store: Store, study: int | str) -> pd.DataFrame:
    """One row per stored reward score of the study's candidates: ``candidate_id``, ``reward``
    (the name it was stored under, from ``study create --reward`` or ``annotation score``) and
    ``score`` (NaN where the reward did not apply)."""
    with store.session() as s:
        st = load_study(s, study)
        rows = s.execute(
            select(RewardScore.candidate_id, RewardScore.name, RewardScore.score)
            .join(Candidate, Candidate.id == RewardScore.candidate_id)
            .join(Prompt, Prompt.id == Candidate.prompt_id)
            .where(Prompt.study_id == st.id)
            .order_by(RewardScore.name, RewardScore.candidate_id)
        ).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=["candidate_id", "reward", "score"])
    df["candidate_id"] = df["candidate_id"].astype(int)
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype(float)
    return df
