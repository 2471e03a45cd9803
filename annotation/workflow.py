"""Serving tasks to annotators and taking their rankings: functions of a ``Store``.

``next_task`` never serves a task twice to one annotator, returns an unfinished assignment again
(a page reload does not burn a task), serves the regular task with the fewest submitted rankings
first until each has the number the study wants, mixes control tasks in at the study's rate, and
records the shuffled candidate order it showed. ``submit_ranking`` validates the payload, is
idempotent (the same answer again returns the stored ranking) and writes the ranking, its entries
and the assignment's completion in one transaction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation import validation as v
from annotation.errors import ConflictError, NotFoundError, PermissionDeniedError
from annotation.lookups import load_study, load_user
from annotation.models import (
    Assignment,
    Candidate,
    Prompt,
    Ranking,
    RankingEntry,
    Study,
    Task,
    TaskCandidate,
    User,
    utcnow,
)
from annotation.store import Store


@dataclass(frozen=True)
class CandidateView:
    """What an annotator sees of one candidate (no model, recipe or reward: the study is blind)."""

    id: int
    image_path: str | None
    cot_text: str
    plan: dict[str, Any] | None


@dataclass(frozen=True)
class TaskView:
    """A task as served to one annotator: candidates in that annotator's shuffled order."""

    task_id: int
    study_id: int
    assignment_id: int
    prompt: str
    guidelines: str
    candidates: tuple[CandidateView, ...]


@dataclass(frozen=True)
class SubmitResult:
    ranking_id: int
    created: bool
    """False when an identical ranking was already stored (an idempotent resubmission)."""


def _view(store: Store, s: Session, a: Assignment, study: Study) -> TaskView:
    task = s.get(Task, a.task_id)
    prompt = s.get(Prompt, task.prompt_id)
    cands = {c.id: c for c in s.scalars(select(Candidate).where(Candidate.id.in_(a.shown_order)))}
    views = []
    for cid in a.shown_order:
        c = cands[cid]
        path = str(store.data_dir / c.image_path) if c.image_path else None
        views.append(CandidateView(cid, path, c.sample.get("cot_text", ""), c.sample.get("plan")))
    return TaskView(task.id, study.id, a.id, prompt.text, study.guidelines, tuple(views))


PENDING_TTL_S = 3600.0
"""An unfinished assignment holds its place in a task's quota for this long (then it is
considered abandoned and the task may be served to someone else)."""


def next_task(
    store: Store, annotator_id: int, study_id: int, *, pending_ttl_s: float = PENDING_TTL_S
) -> TaskView | None:
    """The next task for this annotator in this study, or None when nothing is left for them.

    Rules: an unfinished assignment of theirs is returned again; a task is never served twice to
    one annotator; a regular task is eligible while its submitted (non-skipped) rankings plus
    assignments still open (younger than ``pending_ttl_s``) are fewer than the study wants, and
    the eligible task with the fewest is served first (ties: lowest id); with probability
    ``control_rate`` (a per-annotator seeded draw) an unseen control task is served instead.
    The candidate order is shuffled per annotator and stored in the assignment.
    """
    v.check_id(annotator_id, "annotator_id")
    v.check_id(study_id, "study_id")
    for attempt in range(3):
        try:
            with store.session() as s:
                if s.get_bind().dialect.name == "postgresql":
                    # Serialise assignment within a study (SQLite already does: BEGIN IMMEDIATE).
                    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 7_000_000 + study_id})
                return _next_task(store, s, annotator_id, study_id, pending_ttl_s)
        except IntegrityError:
            # Two concurrent calls for the same annotator raced on the same task: try again,
            # the other call's assignment is now visible and is returned as the open one.
            if attempt == 2:
                raise
    return None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _next_task(
    store: Store, s: Session, annotator_id: int, study_id: int, pending_ttl_s: float
) -> TaskView | None:
    user = load_user(s, annotator_id, active=True)
    study = load_study(s, study_id)
    mine = s.execute(
        select(Assignment, Task.is_control)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.annotator_id == user.id, Task.study_id == study.id)
        .order_by(Assignment.id)
    ).all()
    for a, _ in mine:
        if a.completed_at is None:
            return _view(store, s, a, study)
    seen = {a.task_id for a, _ in mine}
    # One statement, so one snapshot: under READ COMMITTED a submission committing between two
    # separate counts (rankings, then open assignments) would be missed by both.
    cutoff = utcnow() - timedelta(seconds=pending_ttl_s)
    load: dict[int, int] = {}
    for tid, completed, created, skipped in s.execute(
        select(Assignment.task_id, Assignment.completed_at, Assignment.created_at, Ranking.skipped)
        .join(Task, Task.id == Assignment.task_id)
        .outerjoin(Ranking, Ranking.assignment_id == Assignment.id)
        .where(Task.study_id == study.id)
    ):
        if (completed is None and _aware(created) >= cutoff) or skipped is False:
            load[tid] = load.get(tid, 0) + 1
    rows = s.execute(select(Task.id, Task.is_control).where(Task.study_id == study.id)).all()
    regular = []
    for tid, is_control in rows:
        n = load.get(tid, 0)
        if not is_control and tid not in seen and n < study.rankings_per_task:
            regular.append((n, tid))
    if not regular:
        return None
    controls = sorted(tid for tid, is_control in rows if is_control and tid not in seen)
    rng = random.Random(f"{study.seed}:{study.id}:{user.id}:{len(seen)}")
    if controls and rng.random() < study.control_rate:
        task_id = rng.choice(controls)
    else:
        task_id = min(regular)[1]
    order = list(
        s.scalars(
            select(TaskCandidate.candidate_id)
            .where(TaskCandidate.task_id == task_id)
            .order_by(TaskCandidate.position)
        )
    )
    rng.shuffle(order)
    a = Assignment(task_id=task_id, annotator_id=user.id, shown_order=order)
    s.add(a)
    s.flush()
    return _view(store, s, a, study)


def submit_ranking(
    store: Store,
    annotator_id: int,
    study_id: int,
    task_id: int,
    ranking: Any = None,
    *,
    skipped: bool = False,
    time_taken_s: float | None = None,
) -> SubmitResult:
    """Store an annotator's ranking of a task assigned to them.

    ``ranking`` is a list of tie groups, best first (``[[7], [3, 9], [4]]``) or a mapping
    ``{candidate_id: rank}``; each of the task's candidates must appear exactly once. With
    ``skipped=True`` no ranking is given. Submitting the same answer again returns the stored
    ranking (``created=False``); a different answer for an already answered task raises
    ``ConflictError``. Every other problem raises a subclass of ``AnnotationError``
    (a ``ValueError``) and writes nothing.
    """
    v.check_id(annotator_id, "annotator_id")
    v.check_id(study_id, "study_id")
    v.check_id(task_id, "task_id")
    if not isinstance(skipped, bool):
        raise v.AnnotationError("skipped must be True or False")
    time_taken = v.check_time_taken(time_taken_s)
    if skipped:
        if ranking not in (None, [], {}):
            raise v.AnnotationError("a skipped task carries no ranking; pass ranking=None")
        ranks: dict[int, int] = {}
    else:
        if ranking is None:
            raise v.AnnotationError("ranking is required unless skipped=True")
        ranks = v.normalize_ranking(ranking)
    for attempt in range(2):
        try:
            with store.session() as s:
                return _submit(s, annotator_id, study_id, task_id, ranks, skipped, time_taken)
        except IntegrityError:
            # A concurrent identical submission won the unique (task, annotator) race; the next
            # pass sees it and answers idempotently (or raises ConflictError if it differs).
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def _submit(
    s: Session,
    annotator_id: int,
    study_id: int,
    task_id: int,
    ranks: dict[int, int],
    skipped: bool,
    time_taken: float | None,
) -> SubmitResult:
    user = load_user(s, annotator_id, active=True)
    study = load_study(s, study_id)
    task = s.get(Task, task_id)
    if task is None:
        raise NotFoundError(f"task {task_id} does not exist")
    if task.study_id != study.id:
        raise PermissionDeniedError(f"task {task_id} does not belong to study {study.name!r}")
    assignment = s.scalar(
        select(Assignment).where(and_(Assignment.task_id == task.id, Assignment.annotator_id == user.id))
    )
    if assignment is None:
        raise PermissionDeniedError(
            f"task {task_id} was not assigned to user {user.username!r}; ask next_task for work"
        )
    members = set(s.scalars(select(TaskCandidate.candidate_id).where(TaskCandidate.task_id == task.id)))
    if not skipped and set(ranks) != members:
        missing = sorted(members - set(ranks))
        extra = sorted(set(ranks) - members)
        raise v.AnnotationError(
            f"the ranking must list each of task {task_id}'s {len(members)} candidates exactly "
            f"once; missing {missing[:10]}, not in the task {extra[:10]}"
        )
    existing = s.scalar(select(Ranking).where(Ranking.task_id == task.id, Ranking.annotator_id == user.id))
    if existing is not None:
        old = {e.candidate_id: e.rank for e in existing.entries}
        if existing.skipped == skipped and old == ranks:
            return SubmitResult(existing.id, False)
        raise ConflictError(
            f"task {task_id} was already answered by {user.username!r} with a different ranking"
        )
    r = Ranking(
        task_id=task.id,
        annotator_id=user.id,
        assignment_id=assignment.id,
        skipped=skipped,
        time_taken_s=time_taken,
    )
    r.entries = [RankingEntry(candidate_id=c, rank=k) for c, k in sorted(ranks.items())]
    s.add(r)
    assignment.completed_at = utcnow()
    s.flush()
    return SubmitResult(r.id, True)


def progress(store: Store, study: int | str) -> dict[str, Any]:
    """Counts for a study: tasks, rankings wanted/submitted, per-annotator work."""
    with store.session() as s:
        st = load_study(s, study)
        tasks = s.execute(select(Task.id, Task.is_control).where(Task.study_id == st.id)).all()
        regular = [t for t, c in tasks if not c]
        per_task = dict(
            s.execute(
                select(Ranking.task_id, func.count())
                .join(Task, Task.id == Ranking.task_id)
                .where(Task.study_id == st.id, Ranking.skipped.is_(False))
                .group_by(Ranking.task_id)
            ).all()
        )
        per_user = s.execute(
            select(User.username, func.count(), func.sum(case((Ranking.skipped, 1), else_=0)))
            .join(Ranking, Ranking.annotator_id == User.id)
            .join(Task, Task.id == Ranking.task_id)
            .where(Task.study_id == st.id)
            .group_by(User.username)
            .order_by(User.username)
        ).all()
    wanted = st.rankings_per_task
    done = sum(min(per_task.get(t, 0), wanted) for t in regular)
    return {
        "study": st.name,
        "tasks": len(regular),
        "control_tasks": len(tasks) - len(regular),
        "rankings_wanted": wanted * len(regular),
        "rankings_done": done,
        "tasks_complete": sum(per_task.get(t, 0) >= wanted for t in regular),
        "fraction_done": done / (wanted * len(regular)) if regular else 0.0,
        "annotators": {u: {"submitted": int(n), "skipped": int(k or 0)} for u, n, k in per_user},
    }
