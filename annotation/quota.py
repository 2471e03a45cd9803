"""What counts toward a task's quota: the rules ``next_task``, ``submit_ranking`` and ``progress``
share, so the slots served, the rankings accepted and the figures shown always agree.

A regular task wants the study's ``rankings_per_task`` rankings. An annotator *counts* while
their account is active and the study's control tasks have not excluded them (a pass rate below
``MIN_PASS_RATE`` over at least ``MIN_CONTROLS`` answered controls, the rule of
``annotation.stats.control_results`` with its defaults). Toward a task's quota count:

- the task's non-skipped rankings by annotators who count (*counted rankings*), and
- assignments still open, younger than the pending time-to-live, of annotators who count
  (*held slots*).

So when an annotator is deactivated or excluded, their open assignments stop holding slots and
their rankings stop counting, and the slots reopen for others. Their rankings stay stored (the
export keeps them) but no figure counts them. Control tasks have no quota.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.models import Assignment, Ranking, RankingEntry, Task, User, utcnow

MIN_PASS_RATE = 0.75
"""Control pass rate below which an annotator's rankings stop counting (as in the stats)."""
MIN_CONTROLS = 1
"""Answered control tasks needed before the pass rate can exclude an annotator."""


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def excluded_annotators(s: Session, study_id: int, min_pass_rate: float = MIN_PASS_RATE) -> set[int]:
    """Ids of the annotators this study's control tasks exclude: a control is passed when its
    known best candidate is ranked first, alone; skipped controls are not counted."""
    best: dict[int, tuple[int, int | None]] = {}
    firsts: dict[int, list[int]] = {}
    top: dict[int, int] = {}
    for rid, annotator, best_id, cid, rank in s.execute(
        select(
            Ranking.id,
            Ranking.annotator_id,
            Task.control_best_id,
            RankingEntry.candidate_id,
            RankingEntry.rank,
        )
        .join(Task, Task.id == Ranking.task_id)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .where(Task.study_id == study_id, Task.is_control.is_(True), Ranking.skipped.is_(False))
    ):
        best[rid] = (annotator, best_id)
        if rank < top.get(rid, rank + 1):
            top[rid], firsts[rid] = rank, [cid]
        elif rank == top[rid]:
            firsts[rid].append(cid)
    answered: dict[int, list[bool]] = {}
    for rid, (annotator, best_id) in best.items():
        answered.setdefault(annotator, []).append(firsts[rid] == [best_id])
    return {a for a, ok in answered.items() if len(ok) >= MIN_CONTROLS and sum(ok) / len(ok) < min_pass_rate}


def not_counting(s: Session, study_id: int, min_pass_rate: float = MIN_PASS_RATE) -> set[int]:
    """Ids of the annotators whose rankings and open assignments do not count in this study:
    deactivated accounts and annotators excluded by the control tasks."""
    inactive = set(s.scalars(select(User.id).where(User.active.is_(False))))
    return inactive | excluded_annotators(s, study_id, min_pass_rate)


@dataclass(frozen=True)
class TaskLoad:
    """One regular task's quota use: counted rankings plus slots held by fresh assignments."""

    counted: int
    held: int

    @property
    def used(self) -> int:
        return self.counted + self.held


def task_loads(
    s: Session,
    study_id: int,
    pending_ttl_s: float,
    ignore: set[int],
    *,
    task_id: int | None = None,
    except_annotator: int | None = None,
) -> dict[int, TaskLoad]:
    """Quota use of the study's tasks (or of ``task_id`` alone), leaving out the annotators in
    ``ignore`` (see :func:`not_counting`) and ``except_annotator``.

    One statement, so one snapshot: under READ COMMITTED a submission committing between two
    separate counts (rankings, then open assignments) would be missed by both.
    """
    cutoff = utcnow() - timedelta(seconds=pending_ttl_s)
    q = (
        select(
            Assignment.task_id,
            Assignment.annotator_id,
            Assignment.completed_at,
            Assignment.created_at,
            Ranking.skipped,
        )
        .join(Task, Task.id == Assignment.task_id)
        .outerjoin(Ranking, Ranking.assignment_id == Assignment.id)
        .where(Task.study_id == study_id)
    )
    if task_id is not None:
        q = q.where(Assignment.task_id == task_id)
    counted: dict[int, int] = {}
    held: dict[int, int] = {}
    for tid, annotator, completed, created, skipped in s.execute(q):
        if annotator in ignore or annotator == except_annotator:
            continue
        if skipped is False:
            counted[tid] = counted.get(tid, 0) + 1
        elif completed is None and _aware(created) >= cutoff:
            held[tid] = held.get(tid, 0) + 1
    return {t: TaskLoad(counted.get(t, 0), held.get(t, 0)) for t in counted.keys() | held.keys()}


def is_fresh(created_at: datetime, pending_ttl_s: float) -> bool:
    """Whether an assignment made at ``created_at`` still holds its slot."""
    return _aware(created_at) >= utcnow() - timedelta(seconds=pending_ttl_s)
