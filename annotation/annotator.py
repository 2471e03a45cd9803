"""What an annotator sees and may change of their own work: the studies open to them, their place
in a study ("task x of y"), editing their last ranking for a few minutes, their password.

Functions of a ``Store``; the rules for serving and quotas stay in :mod:`annotation.workflow` and
:mod:`annotation.quota`, and these functions apply the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import quota
from annotation import validation as v
from annotation.errors import ConflictError, NotFoundError, PermissionDeniedError
from annotation.lookups import load_study, load_user
from annotation.models import Assignment, Ranking, RankingEntry, Study, Task, utcnow
from annotation.store import Store, StudyInfo
from annotation.workflow import (
    PENDING_TTL_S,
    TaskView,
    _lock_study,
    _open_study,
    _view,
    check_both_bad,
    check_lists_task,
)

EDIT_WINDOW_S = 300.0
"""An annotator may change a submitted ranking for this long after submitting it."""


@dataclass(frozen=True)
class LastRanking:
    """An annotator's most recent ranking in a study that they may still edit."""

    ranking_id: int
    task_id: int
    candidate_ids: tuple[int, ...]
    """In the order the annotator was shown them."""
    ranks: tuple[int, ...]
    """The rank of each of ``candidate_ids``."""
    seconds_left: float


@dataclass(frozen=True)
class Position:
    """Where an annotator stands in a study, in regular tasks (control tasks are not counted,
    like the study's own figures in ``workflow.progress``)."""

    done: int
    """Regular tasks this annotator answered (ranked or skipped)."""
    open: int
    """Regular tasks assigned to them and not answered yet (0 or 1 in practice)."""
    available: int
    """Regular tasks they have not seen that still want rankings now."""
    tasks: int
    """Regular tasks in the study."""

    @property
    def reachable(self) -> int:
        """How many regular tasks this annotator can answer in all, as things stand."""
        return self.done + self.open + self.available


def open_studies(store: Store, annotator_id: int, *, pending_ttl_s: float = PENDING_TTL_S) -> list[StudyInfo]:
    """The studies an annotator can work in now: not archived, and with an unanswered assignment
    of theirs or a regular task they have not seen whose quota is not used up (the tasks
    ``workflow.next_task`` would serve them). A deactivated annotator has none."""
    v.check_id(annotator_id, "annotator_id")
    ids = []
    with store.session() as s:
        user = load_user(s, annotator_id)
        if not user.active:
            return []
        for study in s.scalars(select(Study).where(Study.archived_at.is_(None)).order_by(Study.id)):
            pos = _position(s, user.id, study, pending_ttl_s)
            if pos.open or pos.available:
                ids.append(study.id)
    return [store.get_study(i) for i in ids]


def position(
    store: Store, annotator_id: int, study: int | str, *, pending_ttl_s: float = PENDING_TTL_S
) -> Position:
    """This annotator's place in ``study`` (see ``Position``)."""
    v.check_id(annotator_id, "annotator_id")
    with store.session() as s:
        return _position(s, load_user(s, annotator_id).id, load_study(s, study), pending_ttl_s)


def _position(s: Session, user_id: int, study: Study, pending_ttl_s: float) -> Position:
    ignore = quota.not_counting(s, study.id, quota.MIN_PASS_RATE)
    loads = quota.task_loads(s, study.id, pending_ttl_s, ignore)
    regular = set(s.scalars(select(Task.id).where(Task.study_id == study.id, Task.is_control.is_(False))))
    mine = s.execute(
        select(Assignment.task_id, Assignment.completed_at, Ranking.id)
        .outerjoin(Ranking, Ranking.assignment_id == Assignment.id)
        .where(Assignment.annotator_id == user_id, Assignment.task_id.in_(regular))
    ).all()
    done = sum(rid is not None for _, _, rid in mine)
    open_ = sum(rid is None and completed is None for _, completed, rid in mine)
    seen = {t for t, _, _ in mine}
    want = study.rankings_per_task
    available = sum(t not in seen and (loads[t].used if t in loads else 0) < want for t in regular)
    return Position(done, open_, available, len(regular))


def last_ranking(
    store: Store, annotator_id: int, study: int | str, *, window_s: float = EDIT_WINDOW_S
) -> LastRanking | None:
    """The annotator's most recent ranking in ``study`` if it is not a skip and was submitted less
    than ``window_s`` seconds ago (so ``edit_ranking`` would take a change), else None."""
    v.check_id(annotator_id, "annotator_id")
    with store.session() as s:
        st = load_study(s, study)
        r = s.scalar(
            select(Ranking)
            .join(Task, Task.id == Ranking.task_id)
            .where(Ranking.annotator_id == annotator_id, Task.study_id == st.id)
            .order_by(Ranking.id.desc())
            .limit(1)
        )
        if r is None or r.skipped:
            return None
        left = window_s - (utcnow() - quota._aware(r.created_at)).total_seconds()
        if left <= 0:
            return None
        order = s.scalar(select(Assignment.shown_order).where(Assignment.id == r.assignment_id))
        rank_of = {e.candidate_id: e.rank for e in r.entries}
        return LastRanking(r.id, r.task_id, tuple(order), tuple(rank_of[c] for c in order), left)


def ranking_view(store: Store, annotator_id: int, ranking_id: int) -> TaskView:
    """The task of one of the annotator's rankings as they were shown it (to change the ranking)."""
    v.check_id(annotator_id, "annotator_id")
    v.check_id(ranking_id, "ranking_id")
    with store.session() as s:
        r = s.get(Ranking, ranking_id)
        if r is None:
            raise NotFoundError(f"ranking {ranking_id} does not exist")
        if r.annotator_id != annotator_id:
            raise PermissionDeniedError(f"ranking {ranking_id} is not this annotator's")
        task = s.get(Task, r.task_id)
        return _view(store, s, s.get(Assignment, r.assignment_id), s.get(Study, task.study_id))


def edit_ranking(
    store: Store,
    annotator_id: int,
    ranking_id: int,
    ranking: Any,
    *,
    both_bad: bool = False,
    window_s: float = EDIT_WINDOW_S,
) -> int:
    """Replace the ranks of one of the annotator's own rankings, less than ``window_s`` seconds
    after it was submitted; returns the ranking's id. The ranking row is updated in place
    (``edited_at`` set), so quotas and what counts do not change.

    Refused: a ranking of someone else (``PermissionDeniedError``), a skip or a ranking older than
    the window (``ConflictError``), an archived study (``PermissionDeniedError``), a payload that
    does not list the task's candidates exactly once (``AnnotationError``).
    """
    v.check_id(annotator_id, "annotator_id")
    v.check_id(ranking_id, "ranking_id")
    ranks = v.normalize_ranking(ranking)
    check_both_bad(ranks, both_bad)
    with store.session() as s:
        r = s.get(Ranking, ranking_id)
        if r is None:
            raise NotFoundError(f"ranking {ranking_id} does not exist")
        task = s.get(Task, r.task_id)
        _lock_study(s, task.study_id)
        user = load_user(s, annotator_id, active=True)
        if r.annotator_id != user.id:
            raise PermissionDeniedError(f"ranking {ranking_id} is not {user.username!r}'s")
        _open_study(s, task.study_id)
        if r.skipped:
            raise ConflictError(f"task {task.id} was skipped; a skip cannot be edited into a ranking")
        age = (utcnow() - quota._aware(r.created_at)).total_seconds()
        if age > window_s:
            raise ConflictError(
                f"ranking {ranking_id} was submitted {age / 60:.0f} min ago; it can be changed only "
                f"within {window_s / 60:.0f} min"
            )
        check_lists_task(s, task.id, ranks)
        for e in list(r.entries):
            s.delete(e)
        s.flush()
        r.entries = [RankingEntry(candidate_id=c, rank=k) for c, k in sorted(ranks.items())]
        r.both_bad = both_bad
        r.edited_at = utcnow()
        return r.id


def change_password(store: Store, user_id: int, old_password: str, new_password: str) -> None:
    """Set a user's own password, given their current one (``PermissionDeniedError`` when it is
    wrong or the account is deactivated); the new one is checked like any password."""
    v.check_id(user_id, "user_id")
    with store.session() as s:
        name = load_user(s, user_id).username
    if store.authenticate(name, old_password or "") is None:
        raise PermissionDeniedError("the current password is wrong")
    store.reset_password(user_id, new_password, actor=user_id)
