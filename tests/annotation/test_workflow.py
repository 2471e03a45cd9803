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
            submit_ranking(store, u, sid, view.task_id, _answer(view))
    n_regular = served.count(False)
    assert n_regular == 20  # every regular task got its one ranking
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
