"""Ranked groups for training from human rankings (GRPO with the ranking as the group's reward).

Each regular task whose candidates were sampled together is a group; its reward per candidate
is the mean, over the task's (non-excluded, non-skipped) rankings, of the fraction of the other
candidates it beat (a tie counts ½): 1 = ranked first by everyone, 0 = last by everyone. The
stored samples carry the behaviour log-probs the trainer needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from annotation import stats
from annotation.tables import rankings_frame

if TYPE_CHECKING:
    from annotation.store import Store


@dataclass
class RankedGroup:
    task_id: int
    prompt: str
    candidate_ids: list[int]
    samples: list[Any]
    """``reasongen.types.Sample`` objects in ``candidate_ids`` order."""
    rewards: list[float]
    """Per candidate, in [0, 1]: mean fraction of the group it beat (ties ½)."""
    n_rankings: int


def borda_rewards(rankings: pd.DataFrame) -> pd.DataFrame:
    """Per (task, candidate): mean over rankings of the fraction of other candidates beaten."""
    df = rankings[rankings["rank"].notna()][["ranking_id", "task_id", "candidate_id", "rank"]]
    m = df.merge(df, on=["ranking_id", "task_id"], suffixes=("", "_o"))
    m = m[m["candidate_id"] != m["candidate_id_o"]]
    m = m.assign(s=(m["rank"] < m["rank_o"]).astype(float) + 0.5 * (m["rank"] == m["rank_o"]))
    per_ranking = m.groupby(["task_id", "ranking_id", "candidate_id"])["s"].mean().reset_index()
    out = per_ranking.groupby(["task_id", "candidate_id"])["s"].agg(reward="mean", n_rankings="count")
    return out.reset_index()


def ranked_groups(
    store: Store,
    study: int | str,
    *,
    min_rankings: int = 1,
    min_pass_rate: float = 0.75,
    with_images: bool = False,
) -> list[RankedGroup]:
    """The study's regular tasks with at least ``min_rankings`` rankings from annotators who pass
    the control tasks, as groups of stored samples with their human rewards."""
    df = rankings_frame(store, study)
    if df.empty:
        return []
    kept = stats.exclude_annotators(df, stats.control_results(df, min_pass_rate=min_pass_rate))
    kept = kept[~kept["is_control"]]
    rewards = borda_rewards(kept)
    groups = []
    for task_id, g in rewards.groupby("task_id", sort=True):
        n = int(g["n_rankings"].min())
        if n < min_rankings:
            continue
        ids = [int(c) for c in g["candidate_id"]]
        samples = [store.load_sample(c, with_image=with_images) for c in ids]
        groups.append(
            RankedGroup(int(task_id), samples[0].prompt, ids, samples, [float(r) for r in g["reward"]], n)
        )
    return groups
