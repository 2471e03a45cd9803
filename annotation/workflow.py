"""Serving tasks to annotators and taking their rankings: functions of a ``Store``.

``next_task`` never serves a task twice to one annotator, returns an unfinished assignment again
(a page reload does not burn a task), serves the regular task with the fewest submitted rankings
first until each has the number the study wants, mixes control tasks in at the study's rate, and
records the shuffled candidate order it showed. ``submit_ranking`` validates the payload, is
idempotent (the same answer again returns the stored ranking) and writes the ranking, its entries
and the assignment's completion in one transaction. What counts toward a task's quota (and so
what ``progress`` reports) is decided by :mod:`annotation.quota`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation import quota
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
    counted: bool = True
    """Whether the ranking counts toward its task's quota (False for skips, control tasks, and
    annotators who are excluded by the control tasks; see :mod:`annotation.quota`)."""


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


MAX_SKIP_REASON_CHARS = 500


def check_skip_reason(reason: Any, skipped: bool) -> str | None:
    """A skip reason as stored: stripped text, None when empty; only a skip carries one."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise v.AnnotationError("skip_reason must be text")
    reason = reason.strip()
    if reason and not skipped:
        raise v.AnnotationError("only a skipped task carries a skip reason")
    if len(reason) > MAX_SKIP_REASON_CHARS:
        raise v.AnnotationError(f"skip_reason is {len(reason)} characters; at most {MAX_SKIP_REASON_CHARS}")
    return reason or None


def check_both_bad(ranks: dict[int, int], both_bad: bool) -> None:
    """A "both bad" answer is a tie: ``AnnotationError`` unless every rank is the same."""
    if both_bad and len(set(ranks.values())) != 1:
        raise v.AnnotationError("a 'both bad' answer is a tie: give every candidate the same rank")


def check_lists_task(s: Session, task_id: int, ranks: dict[int, int]) -> None:
    """``AnnotationError`` unless ``ranks`` names each of the task's candidates exactly once."""
    members = set(s.scalars(select(TaskCandidate.candidate_id).where(TaskCandidate.task_id == task_id)))
    if set(ranks) != members:
        missing = sorted(members - set(ranks))
        extra = sorted(set(ranks) - members)
        raise v.AnnotationError(
            f"the ranking must list each of task {task_id}'s {len(members)} candidates exactly "
            f"once; missing {missing[:10]}, not in the task {extra[:10]}"
        )


def _lock_study(s: Session, study_id: int) -> None:
    """Serialise serving and quota-checked submissions within a study on PostgreSQL (SQLite
    already does: every transaction is ``BEGIN IMMEDIATE``)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 7_000_000 + study_id})


def next_task(
    store: Store,
    annotator_id: int,
    study_id: int,
    *,
    pending_ttl_s: float = PENDING_TTL_S,
    min_pass_rate: float = quota.MIN_PASS_RATE,
) -> TaskView | None:
    """The next task for this annotator in this study, or None when nothing is available to
    them *now*.

    Rules: an unfinished assignment of theirs is returned again (one older than ``pending_ttl_s``
    only while its task still has a free slot: it is then renewed, else closed unanswered);
    a task is never served twice to one annotator; a regular task is eligible while its quota
    use (:mod:`annotation.quota`: counted rankings plus slots held by fresh assignments) is below
    what the study wants, and the eligible task with the lowest use is served first (ties:
    lowest id); with probability ``control_rate`` (a per-annotator seeded draw) an unseen control
    task is served instead. The candidate order is shuffled per annotator and stored in the
    assignment.

    None is not final: slots reopen when another annotator's assignment expires, when an
    annotator is deactivated or excluded by the control tasks. ``progress`` tells how many
    slots are held (``rankings_pending``). An archived study raises ``PermissionDeniedError``.
    """
    v.check_id(annotator_id, "annotator_id")
    v.check_id(study_id, "study_id")
    for attempt in range(3):
        try:
            with store.session() as s:
                _lock_study(s, study_id)
                return _next_task(store, s, annotator_id, study_id, pending_ttl_s, min_pass_rate)
        except IntegrityError:
            # Two concurrent calls for the same annotator raced on the same task: try again,
            # the other call's assignment is now visible and is returned as the open one.
            if attempt == 2:
                raise
    return None


def _open_study(s: Session, study_id: int) -> Study:
    study = load_study(s, study_id)
    if study.archived_at is not None:
        raise PermissionDeniedError(f"study {study.name!r} is archived; it takes no more rankings")
    return study


def _next_task(
    store: Store, s: Session, annotator_id: int, study_id: int, pending_ttl_s: float, min_pass_rate: float
) -> TaskView | None:
    user = load_user(s, annotator_id, active=True)
    study = _open_study(s, study_id)
    ignore = quota.not_counting(s, study.id, min_pass_rate)
    mine = s.execute(
        select(Assignment, Task.is_control)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.annotator_id == user.id, Task.study_id == study.id)
        .order_by(Assignment.id)
    ).all()
    for a, is_control in mine:
        if a.completed_at is None:
            if is_control or user.id in ignore or quota.is_fresh(a.created_at, pending_ttl_s):
                return _view(store, s, a, study)
            # Expired: its slot may have gone to someone else meanwhile.
            loads = quota.task_loads(s, study.id, pending_ttl_s, ignore, task_id=a.task_id)
            load = loads.get(a.task_id)
            if load is None or load.used < study.rankings_per_task:
                a.created_at = utcnow()  # served again: it holds a slot for another TTL
                return _view(store, s, a, study)
            a.completed_at = utcnow()  # closed unanswered; a late submission is refused
    seen = {a.task_id for a, _ in mine}
    loads = quota.task_loads(s, study.id, pending_ttl_s, ignore)
    rows = s.execute(select(Task.id, Task.is_control).where(Task.study_id == study.id)).all()
    regular = []
    for tid, is_control in rows:
        n = loads[tid].used if tid in loads else 0
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
    skip_reason: str | None = None,
    both_bad: bool = False,
    pending_ttl_s: float = PENDING_TTL_S,
    min_pass_rate: float = quota.MIN_PASS_RATE,
) -> SubmitResult:
    """Store an annotator's ranking of a task assigned to them.

    ``ranking`` is a list of tie groups, best first (``[[7], [3, 9], [4]]``) or a mapping
    ``{candidate_id: rank}``; each of the task's candidates must appear exactly once. With
    ``skipped=True`` no ranking is given and ``skip_reason`` may say why (at most
    ``MAX_SKIP_REASON_CHARS`` characters). ``both_bad=True`` marks an arena answer "both bad": the
    ranking must then be a tie of all candidates. Submitting the same answer again returns the stored
    ranking (``created=False``); a different answer for an already answered task raises
    ``ConflictError``.

    A ranking that would count toward the task's quota from an assignment older than
    ``pending_ttl_s`` (whose slot may have gone to someone else) is refused with
    ``ConflictError`` when the task's quota is already used by others (counted rankings plus
    fresh assignments): a late answer never pushes a task above the rankings it wants, and the
    annotator is told it was not stored. A fresh assignment holds its slot and is always taken.
    Rankings of annotators excluded by the control tasks are stored with ``counted=False``.
    Every other problem raises a subclass of ``AnnotationError`` (a ``ValueError``) and writes
    nothing.
    """
    v.check_id(annotator_id, "annotator_id")
    v.check_id(study_id, "study_id")
    v.check_id(task_id, "task_id")
    if not isinstance(skipped, bool):
        raise v.AnnotationError("skipped must be True or False")
    time_taken = v.check_time_taken(time_taken_s)
    reason = check_skip_reason(skip_reason, skipped)
    if not isinstance(both_bad, bool):
        raise v.AnnotationError("both_bad must be True or False")
    if skipped:
        if ranking not in (None, [], {}):
            raise v.AnnotationError("a skipped task carries no ranking; pass ranking=None")
        ranks: dict[int, int] = {}
    else:
        if ranking is None:
            raise v.AnnotationError("ranking is required unless skipped=True")
        ranks = v.normalize_ranking(ranking)
        check_both_bad(ranks, both_bad)
    extra = {"skip_reason": reason, "both_bad": both_bad}
    for attempt in range(2):
        try:
            with store.session() as s:
                _lock_study(s, study_id)
                return _submit(
                    s,
                    annotator_id,
                    study_id,
                    task_id,
                    ranks,
                    skipped,
                    time_taken,
                    pending_ttl_s,
                    min_pass_rate,
                    extra,
                )
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
    pending_ttl_s: float,
    min_pass_rate: float,
    extra: dict[str, Any],
) -> SubmitResult:
    user = load_user(s, annotator_id, active=True)
    study = _open_study(s, study_id)
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
    if not skipped:
        check_lists_task(s, task.id, ranks)
    ignore = quota.not_counting(s, study.id, min_pass_rate)
    counts = not skipped and not task.is_control and user.id not in ignore
    existing = s.scalar(select(Ranking).where(Ranking.task_id == task.id, Ranking.annotator_id == user.id))
    if existing is not None:
        old = {e.candidate_id: e.rank for e in existing.entries}
        if existing.skipped == skipped and old == ranks:
            return SubmitResult(existing.id, False, counts)
        raise ConflictError(
            f"task {task_id} was already answered by {user.username!r} with a different ranking"
        )
    if counts and not quota.is_fresh(assignment.created_at, pending_ttl_s):
        load = quota.task_loads(s, study.id, pending_ttl_s, ignore, task_id=task.id).get(task.id)
        if load is not None and load.used >= study.rankings_per_task:
            raise ConflictError(
                f"task {task_id} already has the {study.rankings_per_task} ranking(s) it wants: "
                f"your assignment expired ({pending_ttl_s / 60:.0f} min after it was served) and "
                "others took its place; your ranking was NOT stored. Ask for the next task."
            )
    r = Ranking(
        task_id=task.id,
        annotator_id=user.id,
        assignment_id=assignment.id,
        skipped=skipped,
        time_taken_s=time_taken,
        **extra,
    )
    r.entries = [RankingEntry(candidate_id=c, rank=k) for c, k in sorted(ranks.items())]
    s.add(r)
    assignment.completed_at = utcnow()
    s.flush()
    return SubmitResult(r.id, True, counts)


def progress(
    store: Store,
    study: int | str,
    *,
    pending_ttl_s: float = PENDING_TTL_S,
    min_pass_rate: float = quota.MIN_PASS_RATE,
) -> dict[str, Any]:
    """A study's figures, counted by the rules of :mod:`annotation.quota`.

    - ``tasks``, ``control_tasks``: regular and control tasks;
    - ``rankings_wanted``: regular tasks x rankings per task;
    - ``rankings_done``: counted rankings of regular tasks (each task capped at the number
      wanted); ``fraction_done`` = done / wanted; ``tasks_complete``;
    - ``rankings_pending``: slots held by fresh open assignments (work in progress: a ``None``
      from ``next_task`` may change when these are answered or expire);
    - ``rankings_not_counted``: stored non-skipped rankings of regular tasks that do not count
      (annotators deactivated or excluded by the controls, or above a task's quota);
    - ``excluded``: usernames excluded by the control tasks;
    - ``annotators``: per username, ``ranked`` (regular tasks, not skipped), ``controls`` (control
      tasks answered), ``skipped``, ``submitted`` (all three together), ``counted`` (of
      ``ranked``, those that count), ``excluded`` and ``active``.
    """
    with store.session() as s:
        st = load_study(s, study)
        ignore = quota.not_counting(s, st.id, min_pass_rate)
        excluded = quota.excluded_annotators(s, st.id, min_pass_rate)
        loads = quota.task_loads(s, st.id, pending_ttl_s, ignore)
        tasks = s.execute(select(Task.id, Task.is_control).where(Task.study_id == st.id)).all()
        rows = s.execute(
            select(User.id, User.username, User.active, Task.is_control, Ranking.skipped)
            .join(Ranking, Ranking.annotator_id == User.id)
            .join(Task, Task.id == Ranking.task_id)
            .where(Task.study_id == st.id)
            .order_by(User.username)
        ).all()
    wanted = st.rankings_per_task
    regular = [t for t, c in tasks if not c]
    counted = {t: loads[t].counted if t in loads else 0 for t in regular}
    done = sum(min(n, wanted) for n in counted.values())
    annotators: dict[str, dict[str, Any]] = {}
    for uid, name, active, is_control, skipped in rows:
        a = annotators.setdefault(
            name,
            {
                "ranked": 0,
                "controls": 0,
                "skipped": 0,
                "submitted": 0,
                "counted": 0,
                "excluded": uid in excluded,
                "active": bool(active),
            },
        )
        a["submitted"] += 1
        if skipped:
            a["skipped"] += 1
        elif is_control:
            a["controls"] += 1
        else:
            a["ranked"] += 1
            a["counted"] += uid not in ignore
    ranked = sum(a["ranked"] for a in annotators.values())
    return {
        "study": st.name,
        "tasks": len(regular),
        "control_tasks": len(tasks) - len(regular),
        "rankings_wanted": wanted * len(regular),
        "rankings_done": done,
        "rankings_pending": sum(loads[t].held for t in regular if t in loads),
        "rankings_not_counted": ranked - done,
        "tasks_complete": sum(n >= wanted for n in counted.values()),
        "fraction_done": done / (wanted * len(regular)) if regular else 0.0,
        "excluded": sorted(a for a, x in annotators.items() if x["excluded"]),
        "annotators": annotators,
    }
