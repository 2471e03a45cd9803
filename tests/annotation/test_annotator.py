"""An annotator's own view and edits: open studies, task position, skip reasons, "both bad",
editing the last ranking within its window, changing one's password."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from annotation.annotator import (
    change_password,
    edit_ranking,
    last_ranking,
    open_studies,
    position,
)
from annotation.errors import AnnotationError, ConflictError, PermissionDeniedError
from annotation.models import Ranking, RankingEntry
from annotation.store import Store
from annotation.workflow import next_task, progress, submit_ranking


def _answer_all(store: Store, uid: int, study: int) -> int:
    n = 0
    while (view := next_task(store, uid, study)) is not None:
        submit_ranking(store, uid, study, view.task_id, [[c.id] for c in view.candidates])
        n += 1
    return n


def test_skip_reason_and_both_bad_are_stored(store: Store, populate_study) -> None:
    study, _ = populate_study(store, group_size=2)
    uid = store.create_user("ann", "password123").id
    view = next_task(store, uid, study)
    with pytest.raises(AnnotationError, match="only a skipped task"):
        submit_ranking(store, uid, study, view.task_id, [[c.id for c in view.candidates]], skip_reason="x")
    submit_ranking(store, uid, study, view.task_id, skipped=True, skip_reason="  Image broken: all black ")
    view2 = next_task(store, uid, study)
    a, b = (c.id for c in view2.candidates)
    with pytest.raises(AnnotationError, match="is a tie"):
        submit_ranking(store, uid, study, view2.task_id, {a: 1, b: 2}, both_bad=True)
    submit_ranking(store, uid, study, view2.task_id, {a: 1, b: 1}, both_bad=True)
    with store.session() as s:
        rows = {r.task_id: (r.skipped, r.skip_reason, r.both_bad) for r in s.scalars(select(Ranking))}
    assert rows == {
        view.task_id: (True, "Image broken: all black", False),
        view2.task_id: (False, None, True),
    }


def test_edit_last_ranking_updates_in_place_within_the_window(store: Store, populate_study) -> None:
    study, _ = populate_study(store, group_size=2)
    uid = store.create_user("ann", "password123").id
    view = next_task(store, uid, study)
    a, b = (c.id for c in view.candidates)
    rid = submit_ranking(store, uid, study, view.task_id, {a: 1, b: 2}).ranking_id
    before = progress(store, study)
    last = last_ranking(store, uid, study)
    assert last is not None and last.ranking_id == rid and last.candidate_ids == (a, b)
    assert last.ranks == (1, 2) and 0 < last.seconds_left <= 300
    assert edit_ranking(store, uid, rid, {a: 2, b: 1}) == rid
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == 1
        r = s.get(Ranking, rid)
        assert {e.candidate_id: e.rank for e in r.entries} == {a: 2, b: 1} and r.edited_at is not None
        assert s.scalar(select(func.count()).select_from(RankingEntry)) == 2
    after = progress(store, study)
    assert (after["rankings_done"], after["annotators"]) == (before["rankings_done"], before["annotators"])
    assert last_ranking(store, uid, study).ranks == (2, 1)
    # someone else may not edit it; a payload with other candidates is refused
    other = store.create_user("other", "password123").id
    with pytest.raises(PermissionDeniedError):
        edit_ranking(store, other, rid, {a: 1, b: 2})
    with pytest.raises(AnnotationError):
        edit_ranking(store, uid, rid, {a: 1})
    # after the window: refused, nothing changed, and not offered any more
    with store.session() as s:
        s.get(Ranking, rid).created_at -= timedelta(minutes=6)
    assert last_ranking(store, uid, study) is None
    with pytest.raises(ConflictError, match="within 5 min"):
        edit_ranking(store, uid, rid, {a: 1, b: 2})
    with store.session() as s:
        assert {e.candidate_id: e.rank for e in s.get(Ranking, rid).entries} == {a: 2, b: 1}


def test_a_skip_cannot_be_edited(store: Store, populate_study) -> None:
    study, _ = populate_study(store, group_size=2)
    uid = store.create_user("ann", "password123").id
    view = next_task(store, uid, study)
    rid = submit_ranking(store, uid, study, view.task_id, skipped=True).ranking_id
    assert last_ranking(store, uid, study) is None
    with pytest.raises(ConflictError, match="skipped"):
        edit_ranking(store, uid, rid, {c.id: 1 for c in view.candidates})


def test_open_studies_and_position(store: Store, populate_study) -> None:
    s1, tasks = populate_study(store, rankings_per_task=1, name="s1")
    populate_study(store, rankings_per_task=1, name="s2")
    s3, _ = populate_study(store, rankings_per_task=1, name="s3")
    store.archive_study(s3)
    u1, u2 = (store.create_user(n, "password123").id for n in ("u1", "u2"))
    assert [s.name for s in open_studies(store, u1)] == ["s1", "s2"]
    p = position(store, u1, s1)
    assert (p.done, p.open, p.available, p.tasks, p.reachable) == (0, 0, len(tasks), len(tasks), len(tasks))
    view = next_task(store, u1, s1)  # an open assignment holds its slot
    assert position(store, u1, s1).open == 1
    submit_ranking(store, u1, s1, view.task_id, [[c.id] for c in view.candidates])
    assert (position(store, u1, s1).done, position(store, u2, s1).available) == (1, len(tasks) - 1)
    # u2 takes the rest of s1: nothing left there for u1, s2 still open
    assert _answer_all(store, u2, s1) == len(tasks) - 1
    assert [s.name for s in open_studies(store, u1)] == ["s2"]
    p = position(store, u1, s1)
    assert (p.done, p.available, p.reachable) == (1, 0, 1)
    assert progress(store, s1)["rankings_done"] == p.tasks  # the same regular tasks as the study's figures
    store.set_user_active(u1, False)
    assert open_studies(store, u1) == []


def test_change_password_needs_the_old_one(store: Store) -> None:
    uid = store.create_user("ann", "password123").id
    with pytest.raises(PermissionDeniedError, match="current password"):
        change_password(store, uid, "wrong-password", "new-password-456")
    assert store.authenticate("ann", "password123") is not None
    change_password(store, uid, "password123", "new-password-456")
    assert store.authenticate("ann", "password123") is None
    assert store.authenticate("ann", "new-password-456") is not None


def test_edit_is_refused_in_an_archived_study_and_both_bad_must_be_a_tie(
    store: Store, populate_study
) -> None:
    study, _ = populate_study(store, group_size=2)
    uid = store.create_user("ann", "password123").id
    view = next_task(store, uid, study)
    a, b = (c.id for c in view.candidates)
    rid = submit_ranking(store, uid, study, view.task_id, {a: 1, b: 2}).ranking_id
    with pytest.raises(AnnotationError, match="is a tie"):
        edit_ranking(store, uid, rid, {a: 1, b: 2}, both_bad=True)
    edit_ranking(store, uid, rid, {a: 1, b: 1}, both_bad=True)
    with store.session() as s:
        assert s.get(Ranking, rid).both_bad is True
    store.archive_study(study)
    with pytest.raises(PermissionDeniedError, match="archived"):
        edit_ranking(store, uid, rid, {a: 2, b: 1})
