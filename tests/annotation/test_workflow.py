"""Task assignment and ranking submission: properties, hostile input, atomicity, concurrency."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from annotation.errors import AnnotationError, ConflictError, NotFoundError, PermissionDeniedError
from annotation.models import Assignment, Ranking, RankingEntry, Task
from annotation.store import Store
from annotation.workflow import next_task, progress, submit_ranking


def _users(store: Store, n: int, prefix: str = "ann") -> list[int]:
    return [store.create_user(f"{prefix}{i}", "password123").id for i in range(n)]


def _count(store: Store, model) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def _answer(view) -> list[list[int]]:
    """A deterministic ranking with a tie: lowest id best, next two tied, rest in order."""
    ids = sorted(c.id for c in view.candidates)
    return [[ids[0]], ids[1:3], *[[i] for i in ids[3:]]]


def _control_best(store: Store, task_id: int) -> int | None:
    with store.session() as s:
        return s.get(Task, task_id).control_best_id


def _careful_answer(store: Store, view) -> list[list[int]]:
    """``_answer``, but a control task's known best candidate first (the control is passed)."""
    best = _control_best(store, view.task_id)
    if best is None:
        return _answer(view)
    return [[best], *[[c.id] for c in view.candidates if c.id != best]]


def _failing_answer(store: Store, view) -> list[list[int]]:
    """``_answer``, but a control task's known best candidate last (the control is failed)."""
    best = _control_best(store, view.task_id)
    if best is None:
        return _answer(view)
    return [*[[c.id] for c in view.candidates if c.id != best], [best]]


def test_assignment_never_repeats_and_stops_at_wanted(store: Store, populate_study) -> None:
    sid, tasks = populate_study(store, n_prompts=4, per_system=2, group_size=4, rankings_per_task=2)
    users = _users(store, 3)
    served: dict[int, list[int]] = {u: [] for u in users}
    for _round in range(10):
        for u in users:
            view = next_task(store, u, sid)
            if view is not None:
                served[u].append(view.task_id)
                submit_ranking(store, u, sid, view.task_id, _answer(view), time_taken_s=1.5)
    for u in users:
        assert len(served[u]) == len(set(served[u]))  # never the same task twice
        assert next_task(store, u, sid) is None
    per_task = Counter(t for ts in served.values() for t in ts)
    assert set(per_task) == set(tasks)
    assert all(n == 2 for n in per_task.values())  # exactly the number wanted, never more
    prog = progress(store, sid)
    assert prog["rankings_done"] == prog["rankings_wanted"] == 8 and prog["fraction_done"] == 1.0


def test_fewest_rankings_first(store: Store, populate_study) -> None:
    sid, _tasks = populate_study(store, n_prompts=3, per_system=2, group_size=4, rankings_per_task=3)
    a, b, c = _users(store, 3)
    first_a = next_task(store, a, sid)
    submit_ranking(store, a, sid, first_a.task_id, _answer(first_a))
    # b must get a task nobody has ranked yet, not a's
    first_b = next_task(store, b, sid)
    assert first_b.task_id != first_a.task_id
    submit_ranking(store, b, sid, first_b.task_id, _answer(first_b))
    first_c = next_task(store, c, sid)
    assert first_c.task_id not in {first_a.task_id, first_b.task_id}
    # an open (unsubmitted) assignment counts toward the load and is served again on reload
    assert next_task(store, c, sid).assignment_id == first_c.assignment_id


def test_shuffle_is_per_annotator_and_recorded(store: Store, populate_study) -> None:
    sid, _tasks = populate_study(store, n_prompts=1, per_system=4, group_size=8, rankings_per_task=20)
    users = _users(store, 12)
    orders = []
    for u in users:
        view = next_task(store, u, sid)
        with store.session() as s:
            a = s.get(Assignment, view.assignment_id)
            canonical = [m.candidate_id for m in s.get(Task, view.task_id).members]
        assert a.shown_order == [cand.id for cand in view.candidates]
        assert sorted(a.shown_order) == sorted(canonical)
        orders.append(tuple(a.shown_order))
    assert len(set(orders)) >= 10  # 8! orders: 12 annotators almost surely see different ones
    assert all(cand.image_path and cand.cot_text for cand in view.candidates)


def test_control_tasks_are_mixed_in_at_the_rate(store: Store, populate_study) -> None:
    sid, _tasks = populate_study(
        store, n_prompts=20, per_system=1, group_size=2, rankings_per_task=1, control_rate=0.3
    )
    controls = set(store.add_control_tasks(sid, 40, seed=0))
    served = []
    for u in _users(store, 2):
        while (view := next_task(store, u, sid)) is not None:
            served.append(view.task_id in controls)
            submit_ranking(store, u, sid, view.task_id, _careful_answer(store, view))
    n_regular = served.count(False)
    assert n_regular == 20  # every regular task got its one ranking (both pass every control)
    frac = served.count(True) / len(served)
    assert 0.15 < frac < 0.45


def test_no_controls_when_rate_is_zero(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=4, per_system=1, group_size=2, rankings_per_task=1)
    controls = set(store.add_control_tasks(sid, 4))
    (u,) = _users(store, 1)
    while (view := next_task(store, u, sid)) is not None:
        assert view.task_id not in controls
        submit_ranking(store, u, sid, view.task_id, _answer(view))


def test_submission_is_idempotent_and_conflicts_are_refused(store: Store, populate_study) -> None:
    sid, _ = populate_study(store)
    (u,) = _users(store, 1)
    view = next_task(store, u, sid)
    ids = [c.id for c in view.candidates]
    first = submit_ranking(store, u, sid, view.task_id, [[ids[0]], [ids[1], ids[2]], [ids[3]]])
    assert first.created
    # the same answer as a mapping is the same ranking: idempotent
    again = submit_ranking(store, u, sid, view.task_id, {ids[0]: 1, ids[1]: 5, ids[2]: 5, ids[3]: 9})
    assert again.ranking_id == first.ranking_id and not again.created
    with pytest.raises(ConflictError, match="different"):
        submit_ranking(store, u, sid, view.task_id, [[ids[3]], [ids[1], ids[2]], [ids[0]]])
    with store.session() as s:
        entries = dict(s.execute(select(RankingEntry.candidate_id, RankingEntry.rank)).all())
    assert entries == {ids[0]: 1, ids[1]: 2, ids[2]: 2, ids[3]: 3}
    assert _count(store, Ranking) == 1


def test_skipped_ranking(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=1, per_system=2, group_size=4, rankings_per_task=1)
    a, b = _users(store, 2)
    view = next_task(store, a, sid)
    res = submit_ranking(store, a, sid, view.task_id, skipped=True, time_taken_s=2.0)
    assert res.created
    with pytest.raises(AnnotationError, match="skipped"):
        submit_ranking(store, a, sid, view.task_id, _answer(view), skipped=True)
    # a skip does not count toward the wanted rankings: b still gets the task
    assert next_task(store, b, sid).task_id == view.task_id
    assert next_task(store, a, sid) is None


def test_hostile_submissions_get_clear_errors(store: Store, populate_study) -> None:
    sid, _ = populate_study(store)
    sid2, _ = populate_study(store, name="other study")
    a, b = _users(store, 2)
    view = next_task(store, a, sid)
    other = next_task(store, a, sid2)
    ids = [c.id for c in view.candidates]
    t = view.task_id
    cases = [
        ((a, sid, t, [[ids[0]], [ids[0]], ids[1:]]), AnnotationError, "more than once"),
        ((a, sid, t, [ids[:3]]), AnnotationError, "missing"),
        ((a, sid, t, [[*ids, 99_999]]), AnnotationError, "not in the task"),
        ((a, sid, t, [ids[:2], [], ids[2:]]), AnnotationError, "empty"),
        ((a, sid, t, [["1 OR 1=1"], ids]), AnnotationError, "integer id"),
        ((a, sid, t, ["1 OR 1=1", ids]), AnnotationError, "must be a list of candidate ids"),
        ((a, sid, "1; DROP TABLE rankings", [ids]), AnnotationError, "integer id"),
        ((a, sid, t, "[[1],[2]]"), AnnotationError, "list of tie groups"),
        ((a, sid, t, [[True, *ids[1:]]]), AnnotationError, "integer id"),
        ((a, sid, t, [list(range(1, 1_000_001))]), AnnotationError, "more than 64"),
        ((a, sid, t, list(range(1, 1_000_001))), AnnotationError, "at most 64"),
        ((a, sid, t, {i: 10**9 for i in ids}), AnnotationError, "rank of candidate"),
        ((a, sid, 10**9, [ids]), NotFoundError, "does not exist"),
        ((a, sid, other.task_id, [ids]), PermissionDeniedError, "does not belong"),
        ((a, sid2, t, [ids]), PermissionDeniedError, "does not belong"),
        ((b, sid, t, [ids]), PermissionDeniedError, "not assigned"),
        ((10**6, sid, t, [ids]), NotFoundError, "user"),
        ((a, sid, t, None), AnnotationError, "required"),
        ((-1, sid, t, [ids]), AnnotationError, "positive"),
    ]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            submit_ranking(store, *args)
    for bad_time in (float("nan"), -1.0, 1e308, "3s"):
        with pytest.raises(AnnotationError, match="time_taken_s"):
            submit_ranking(store, a, sid, t, [ids], time_taken_s=bad_time)
    store.set_user_active(a, False)
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        submit_ranking(store, a, sid, t, [ids])
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        next_task(store, a, sid)
    assert _count(store, Ranking) == 0 and _count(store, RankingEntry) == 0


def test_failed_transaction_leaves_no_partial_rows(store: Store, populate_study) -> None:
    sid, _ = populate_study(store)
    (u,) = _users(store, 1)
    view = next_task(store, u, sid)

    def explode(session: Session, _ctx) -> None:
        if any(isinstance(o, RankingEntry) for o in session.new) or _rows_flushed(session):
            raise RuntimeError("disk on fire after the ranking rows were flushed")

    flushed = {"n": 0}

    def _rows_flushed(session: Session) -> bool:
        n = session.execute(select(func.count()).select_from(RankingEntry)).scalar()
        flushed["n"] = max(flushed["n"], n)
        return n > 0

    event.listen(Session, "after_flush_postexec", explode)
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            submit_ranking(store, u, sid, view.task_id, _answer(view))
    finally:
        event.remove(Session, "after_flush_postexec", explode)
    assert flushed["n"] == 4  # the rows really were written inside the transaction...
    assert _count(store, Ranking) == 0 and _count(store, RankingEntry) == 0  # ...and rolled back
    with store.session() as s:
        assert s.get(Assignment, view.assignment_id).completed_at is None
    assert submit_ranking(store, u, sid, view.task_id, _answer(view)).created  # retry works


def test_32_threads_submitting_lose_and_duplicate_nothing(store: Store, populate_study) -> None:
    sid, tasks = populate_study(store, n_prompts=8, per_system=2, group_size=4, rankings_per_task=6)
    users = _users(store, 32)
    barrier = threading.Barrier(32)

    def work(u: int) -> list[tuple[int, int, dict]]:
        barrier.wait()
        done = []
        while (view := next_task(store, u, sid)) is not None:
            ranking = _answer(view)
            res = submit_ranking(store, u, sid, view.task_id, ranking, time_taken_s=0.5)
            res2 = submit_ranking(store, u, sid, view.task_id, ranking)  # a double click
            assert res.created and not res2.created and res.ranking_id == res2.ranking_id
            done.append((res.ranking_id, view.task_id, ranking))
        return done

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(work, users))
    mine = [r for rs in results for r in rs]
    assert len(mine) == len(tasks) * 6  # every wanted ranking was taken exactly once
    with store.session() as s:
        rows = s.execute(select(Ranking.id, Ranking.task_id, Ranking.annotator_id)).all()
        entries = s.execute(
            select(RankingEntry.ranking_id, RankingEntry.candidate_id, RankingEntry.rank)
        ).all()
    assert sorted(r.id for r in rows) == sorted(r[0] for r in mine)
    assert len({(r.task_id, r.annotator_id) for r in rows}) == len(rows)
    assert Counter(r.task_id for r in rows) == dict.fromkeys(tasks, 6)
    assert len(entries) == 4 * len(rows)
    stored = {}
    for rid, cid, rank in entries:
        stored.setdefault(rid, {})[cid] = rank
    for rid, _task, ranking in mine:
        assert stored[rid] == {c: lvl for lvl, grp in enumerate(ranking, 1) for c in grp}


def test_32_threads_same_submission_store_one_row(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=1, per_system=2)
    (u,) = _users(store, 1)
    view = next_task(store, u, sid)
    barrier = threading.Barrier(32)

    def work(_i: int):
        barrier.wait()
        return submit_ranking(store, u, sid, view.task_id, _answer(view))

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(work, range(32)))
    assert sum(r.created for r in results) == 1
    assert len({r.ranking_id for r in results}) == 1
    assert _count(store, Ranking) == 1 and _count(store, RankingEntry) == 4


# ---------------------------------------------------------------------- quotas (issue 19, item 10)


def _backdate(store: Store, assignment_id: int, hours: float = 2.0) -> None:
    """Make an assignment look served ``hours`` ago (past the pending time-to-live)."""
    from datetime import timedelta

    from annotation.models import utcnow

    with store.session() as s:
        s.get(Assignment, assignment_id).created_at = utcnow() - timedelta(hours=hours)


def _rankings_of(store: Store, task_id: int) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(Ranking).where(Ranking.task_id == task_id))


def test_rankings_of_excluded_annotators_stop_filling_tasks(store: Store, populate_study) -> None:
    sid, tasks = populate_study(
        store, n_prompts=4, per_system=1, group_size=2, rankings_per_task=1, control_rate=0.9
    )
    store.add_control_tasks(sid, 4, seed=0)
    bad, good = _users(store, 2)
    results = []
    while (view := next_task(store, bad, sid)) is not None:
        results.append(submit_ranking(store, bad, sid, view.task_id, _failing_answer(store, view)))
    prog = progress(store, sid)
    assert prog["annotators"]["ann0"]["controls"] >= 1 and prog["annotators"]["ann0"]["ranked"] == 4
    assert prog["excluded"] == ["ann0"] and prog["annotators"]["ann0"]["excluded"]
    # the excluded annotator's 4 rankings are stored but fill nothing: the study is not done...
    assert prog["rankings_done"] == 0 and prog["rankings_not_counted"] == 4 and prog["fraction_done"] == 0
    assert not any(r.counted for r in results)
    # ...and a new annotator is served every regular task again
    served = []
    while (view := next_task(store, good, sid)) is not None:
        res = submit_ranking(store, good, sid, view.task_id, _careful_answer(store, view))
        assert res.counted == (view.task_id in tasks)
        served.append(view.task_id)
    assert set(tasks) <= set(served)
    prog = progress(store, sid)
    assert prog["rankings_done"] == prog["rankings_wanted"] == 4 and prog["fraction_done"] == 1.0
    assert prog["annotators"]["ann1"]["counted"] == 4 and not prog["annotators"]["ann1"]["excluded"]
    assert _count(store, Ranking) == len(results) + len(served)  # nothing deleted


def test_deactivated_annotator_frees_held_and_counted_slots(store: Store, populate_study) -> None:
    sid, (task,) = populate_study(store, n_prompts=1, per_system=1, group_size=2, rankings_per_task=1)
    a, b, c = _users(store, 3)
    assert next_task(store, a, sid).task_id == task  # a's open assignment holds the only slot
    assert next_task(store, b, sid) is None
    assert progress(store, sid)["rankings_pending"] == 1
    store.set_user_active(a, False)  # a leaves: the slot reopens at once, not after an hour
    assert progress(store, sid)["rankings_pending"] == 0
    view = next_task(store, b, sid)
    assert view.task_id == task
    submit_ranking(store, b, sid, task, _answer(view))
    assert next_task(store, c, sid) is None
    store.set_user_active(b, False)  # b's submitted ranking stops counting: c may rank it
    prog = progress(store, sid)
    assert prog["rankings_done"] == 0 and prog["rankings_not_counted"] == 1
    assert not prog["annotators"]["ann1"]["active"] and prog["annotators"]["ann1"]["counted"] == 0
    assert next_task(store, c, sid).task_id == task
    store.set_user_active(b, True)  # reactivated: b's ranking counts again
    assert store.get_user(b).active and progress(store, sid)["rankings_done"] == 1


def test_stale_assignment_cannot_push_a_task_over_quota(store: Store, populate_study) -> None:
    sid, (task,) = populate_study(store, n_prompts=1, per_system=1, group_size=2, rankings_per_task=1)
    a, b = _users(store, 2)
    late = next_task(store, a, sid)
    _backdate(store, late.assignment_id)  # a walked away: the slot is free again
    view = next_task(store, b, sid)
    assert view.task_id == task
    submit_ranking(store, b, sid, task, _answer(view))
    with pytest.raises(ConflictError, match="NOT stored"):
        submit_ranking(store, a, sid, task, _answer(late))
    assert _rankings_of(store, task) == 1
    assert progress(store, sid)["rankings_done"] == 1
    # a's dead assignment is closed, not served again forever
    assert next_task(store, a, sid) is None
    with store.session() as s:
        closed = s.get(Assignment, late.assignment_id)
        assert closed.completed_at is not None
    with pytest.raises(ConflictError, match="NOT stored"):
        submit_ranking(store, a, sid, task, _answer(late))


def test_stale_assignment_with_room_is_renewed_and_taken(store: Store, populate_study) -> None:
    sid, (task,) = populate_study(store, n_prompts=1, per_system=1, group_size=2, rankings_per_task=1)
    a, b = _users(store, 2)
    first = next_task(store, a, sid)
    _backdate(store, first.assignment_id)
    again = next_task(store, a, sid)  # nobody took the slot: the same assignment, renewed
    assert again.assignment_id == first.assignment_id
    assert next_task(store, b, sid) is None  # renewed: it holds the slot again
    _backdate(store, first.assignment_id)
    res = submit_ranking(store, a, sid, task, _answer(first))  # late, but the slot is free
    assert res.created and res.counted and _rankings_of(store, task) == 1


def test_32_stale_assignments_submitting_at_once_fill_exactly_the_quota(store: Store, populate_study) -> None:
    sid, (task,) = populate_study(store, n_prompts=1, per_system=1, group_size=2, rankings_per_task=3)
    users = _users(store, 32)
    with store.session() as s:
        order = [m.candidate_id for m in s.get(Task, task).members]
        s.add_all(Assignment(task_id=task, annotator_id=u, shown_order=order) for u in users)
    from datetime import timedelta

    from annotation.models import utcnow

    with store.session() as s:
        for a in s.scalars(select(Assignment)):
            a.created_at = utcnow() - timedelta(hours=2)  # all served two hours ago
    barrier = threading.Barrier(32)

    def work(u: int) -> str:
        barrier.wait()
        try:
            submit_ranking(store, u, sid, task, [[order[0]], [order[1]]])
            return "stored"
        except ConflictError:
            return "refused"

    with ThreadPoolExecutor(32) as pool:
        outcomes = Counter(pool.map(work, users))
    assert outcomes == {"stored": 3, "refused": 29}
    assert _rankings_of(store, task) == 3 and _count(store, RankingEntry) == 6


def test_progress_counts_regular_and_control_work_separately(store: Store, populate_study) -> None:
    sid, tasks = populate_study(
        store, n_prompts=4, per_system=1, group_size=2, rankings_per_task=2, control_rate=0.5
    )
    controls = set(store.add_control_tasks(sid, 6, seed=0))
    (u,) = _users(store, 1)
    n_regular = n_control = n_skipped = 0
    while (view := next_task(store, u, sid)) is not None:
        if view.task_id == tasks[0]:
            submit_ranking(store, u, sid, view.task_id, skipped=True)
            n_skipped += 1
            continue
        submit_ranking(store, u, sid, view.task_id, _careful_answer(store, view))
        n_control += view.task_id in controls
        n_regular += view.task_id not in controls
    assert n_control >= 1
    prog = progress(store, sid)
    mine = prog["annotators"]["ann0"]
    assert mine == {
        "ranked": n_regular,
        "controls": n_control,
        "skipped": n_skipped,
        "submitted": n_regular + n_control + n_skipped,
        "counted": n_regular,
        "excluded": False,
        "active": True,
    }
    # the study figure counts exactly the same regular rankings as the annotator's own figure
    assert prog["rankings_done"] == mine["counted"] == 3 and prog["rankings_wanted"] == 8


def test_archived_study_serves_nothing_and_takes_nothing(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=2, per_system=1, group_size=2, rankings_per_task=1)
    (u,) = _users(store, 1)
    view = next_task(store, u, sid)
    assert store.archive_study(sid).archived
    assert [s.id for s in store.list_studies()] == []
    assert [s.id for s in store.list_studies(include_archived=True)] == [sid]
    with pytest.raises(PermissionDeniedError, match="archived"):
        next_task(store, u, sid)
    with pytest.raises(PermissionDeniedError, match="archived"):
        submit_ranking(store, u, sid, view.task_id, _answer(view))
    assert not store.archive_study(sid, archived=False).archived
    assert submit_ranking(store, u, sid, view.task_id, _answer(view)).created
