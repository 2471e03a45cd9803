"""Simulated annotator panels on rendered shapes studies: each profile shows its statistic."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from sqlalchemy import select

from annotation.agreement import annotator_ceiling
from annotation.errors import AnnotationError, NotFoundError
from annotation.models import Assignment, Ranking
from annotation.simulate import noisy_order, parse_panel, simulate_panel
from annotation.stats import control_results
from annotation.tables import rankings_frame, select_annotators

CAREFUL = ["right", "loose_plan", "wrong_image", "blank"]


def test_parse_panel_reads_counts_and_refuses_bad_specs() -> None:
    assert parse_panel("careful:6,noisy:3, position:1,spammer:1") == [
        ("careful", 6), ("noisy", 3), ("position", 1), ("spammer", 1)
    ]  # fmt: skip
    for bad, msg in [
        ("careless:2", "unknown annotator profile 'careless'"),
        ("careful:0", "whole number >= 1"),
        ("careful:x", "whole number >= 1"),
        ("careful", "whole number >= 1"),
        ("careful:1,careful:2", "twice"),
        ("", "PROFILE:COUNT"),
        ("careful:2000", "at most"),
    ]:
        with pytest.raises(AnnotationError, match=msg):
            parse_panel(bad)


def test_noisy_order_swaps_adjacent_groups_at_the_flip_rate() -> None:
    rng = random.Random(0)
    swaps = chances = inversions = 0
    for _ in range(3000):
        out, n = noisy_order([[0], [1, 2], [3], [4]], 0.2, rng)
        swaps += n
        chances += 3
        seq = [{0: 0, 1: 1, 2: 1, 3: 2, 4: 3}[g[0]] for g in out]  # careful group index in new order
        inversions += sum(a > b for i, a in enumerate(seq) for b in seq[i + 1 :])
        assert sorted(map(sorted, out)) == [[0], [1, 2], [3], [4]]  # groups kept whole
    assert inversions == swaps  # every swap adds one discordant group pair
    assert swaps / chances == pytest.approx(0.2, abs=0.02)
    assert noisy_order([[1], [2]], 0.0, rng) == ([[1], [2]], 0)
    assert noisy_order([[1], [2], [3]], 1.0, rng) == ([[2], [3], [1]], 2)


def _orders(df: pd.DataFrame) -> dict[tuple[str, int], list[list[int]]]:
    """(annotator, task) → tie groups best first."""
    out = {}
    for (who, tid), g in df[df["rank"].notna()].groupby(["annotator", "task_id"]):
        out[who, int(tid)] = [sorted(x["candidate_id"].astype(int)) for _, x in g.groupby("rank")]
    return out


def test_profiles_rank_as_described_and_show_their_statistics(store, make_shapes_study) -> None:
    sid, kinds = make_shapes_study(store, n_prompts=6, rankings_per_task=20, controls=6, control_rate=0.5)
    run = simulate_panel(store, sid, "careful:2,noisy:8,position:1,spammer:3", flip=0.3, seed=4)
    assert list(run.annotators) == [
        "sim-careful-1", "sim-careful-2", *[f"sim-noisy-{i}" for i in range(1, 9)], "sim-position-1",
        "sim-spammer-1", "sim-spammer-2", "sim-spammer-3",
    ]  # fmt: skip
    assert all(store.get_user(n).simulated for n in run.annotators)
    df = rankings_frame(store, sid)
    assert df["annotator_simulated"].all() and run.total == df["ranking_id"].nunique()
    regular = df[~df["is_control"]]
    orders = _orders(regular)
    # Everyone ranked every regular task (the quota is above the panel's size).
    assert {who for who, _ in orders} == set(run.annotators) and len(orders) == 6 * 14
    # careful: right > loose plan > wrong image > blank on every task, no ties.
    for (who, _), groups in orders.items():
        if "careful" in who:
            assert [kinds[g[0]] for g in groups] == CAREFUL and all(len(g) == 1 for g in groups)
    # noisy: discordant adjacent swaps against the careful order at the flip rate.
    inversions = chances = 0
    for (who, _), groups in orders.items():
        if "noisy" in who:
            seq = [CAREFUL.index(kinds[g[0]]) for g in groups]
            inversions += sum(a > b for i, a in enumerate(seq) for b in seq[i + 1 :])
            chances += len(seq) - 1
    assert chances == 8 * 6 * 3 and inversions / chances == pytest.approx(0.3, abs=0.1)
    # The run's own count also covers the controls (right, then three tied blanks: one chance).
    assert run.swap_chances - chances == sum(run.rankings[f"sim-noisy-{i}"] for i in range(1, 9)) - 8 * 6
    assert run.swaps / run.swap_chances == pytest.approx(0.3, abs=0.1)
    # position: the order shown, first best.
    with store.session() as s:
        shown = {
            a.task_id: a.shown_order
            for a in s.scalars(
                select(Assignment).where(Assignment.annotator_id == store.get_user("sim-position-1").id)
            )
        }
    for (who, tid), groups in orders.items():
        if who == "sim-position-1":
            assert [g[0] for g in groups] == shown[tid]
    # Controls: careful annotators pass every one, spammers fail and are excluded.
    ctl = control_results(df).set_index("annotator")
    assert (ctl.loc[["sim-careful-1", "sim-careful-2"], "pass_rate"] == 1.0).all()
    spam = ctl.loc[["sim-spammer-1", "sim-spammer-2", "sim-spammer-3"]]
    assert (spam["controls"] >= 2).all() and spam["excluded"].all()
    # Each annotator against the others: a spammer is near chance, careful ones the easiest to predict.
    per = annotator_ceiling(df).set_index("annotator")["accuracy"]
    noisy = per[[f"sim-noisy-{i}" for i in range(1, 9)]].mean()
    assert per[["sim-careful-1", "sim-careful-2"]].min() > noisy > per["sim-position-1"]
    assert (per[["sim-spammer-1", "sim-spammer-2", "sim-spammer-3"]] - 0.5).abs().max() < 0.15
    # Human-only statistics see none of them; asked for, all of them, labelled.
    assert select_annotators(df).empty
    assert select_annotators(df, include_simulated=True)["annotator_simulated"].all()


def test_a_panel_is_deterministic_for_a_seed(store, make_shapes_study, tmp_path) -> None:
    from annotation.store import Store

    def ranks(st: Store, sid: int, seed: int) -> list[tuple]:
        simulate_panel(st, sid, "noisy:3,spammer:2", flip=0.5, seed=seed)
        df = rankings_frame(st, sid)
        return sorted(zip(df["annotator"], df["task_id"], df["candidate_id"], df["rank"], strict=True))

    sid, _ = make_shapes_study(store, n_prompts=4, rankings_per_task=5)
    first = ranks(store, sid, 9)
    other = Store(f"sqlite:///{tmp_path / 'again.db'}", tmp_path / "again", password_cost=2**4)
    try:
        sid2, _ = make_shapes_study(other, n_prompts=4, rankings_per_task=5)
        assert ranks(other, sid2, 9) == first
        third = Store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "c", password_cost=2**4)
        sid3, _ = make_shapes_study(third, n_prompts=4, rankings_per_task=5)
        assert ranks(third, sid3, 10) != first
        third.close()
    finally:
        other.close()


def test_budget_quota_and_rerun(store, make_shapes_study) -> None:
    sid, _ = make_shapes_study(store, n_prompts=5, rankings_per_task=2)
    run = simulate_panel(store, sid, "careful:3", seed=0, max_rankings=4)
    assert run.total == 4
    rest = simulate_panel(store, sid, "careful:3", seed=0)  # the same users carry on
    assert run.total + rest.total == 10  # 5 tasks x 2 rankings wanted, then nothing is served
    with store.session() as s:
        per_task = pd.Series(list(s.scalars(select(Ranking.task_id)))).value_counts()
    assert (per_task == 2).all()


def test_bad_input_is_refused_before_anything_is_written(store, make_shapes_study) -> None:
    sid, _ = make_shapes_study(store, n_prompts=2)
    with pytest.raises(NotFoundError):
        simulate_panel(store, "no-such-study", "careful:1")
    with pytest.raises(AnnotationError, match="--flip must be a probability"):
        simulate_panel(store, sid, "noisy:1", flip=1.5)
    with pytest.raises(AnnotationError, match="unknown annotator profile"):
        simulate_panel(store, sid, "sloppy:1")
    other = store.create_study("sunsets", group_size=2, rankings_per_task=1)
    store.add_prompts(other.id, ["a beautiful sunset over the sea"])
    with pytest.raises(AnnotationError, match="not a shapes-world prompt"):
        simulate_panel(store, "sunsets", "careful:1")
    assert store.list_users() == []
    store.create_user("sim-careful-1", "password123")
    with pytest.raises(AnnotationError, match="is a person"):
        simulate_panel(store, sid, "careful:1")
    assert [u.username for u in store.list_users()] == ["sim-careful-1"]
    assert rankings_frame(store, sid).empty


def test_verified_controls_have_a_correct_best_among_wrong_others(store, make_shapes_study) -> None:
    from annotation.models import Task, TaskCandidate
    from annotation.simulate import ShapesJudge, add_verified_controls

    sid, kinds = make_shapes_study(store, n_prompts=6, rankings_per_task=4, control_rate=0.6)
    judge = ShapesJudge(store)
    made = add_verified_controls(store, sid, 8, seed=1, judge=judge)
    assert len(made) == 8
    with store.session() as s:
        for tid in made:
            task = s.get(Task, tid)
            members = list(s.scalars(select(TaskCandidate.candidate_id).where(TaskCandidate.task_id == tid)))
            assert task.is_control and len(members) == 4 and task.control_best_id in members
            assert kinds[task.control_best_id] in ("right", "loose_plan")  # the correct ones
            for cid in members:
                if cid != task.control_best_id:
                    assert judge.verdict(cid, task.prompt_id)[:2] == (0.0, 0.0)
    simulate_panel(store, sid, "careful:2,spammer:2", seed=2)
    ctl = control_results(rankings_frame(store, sid)).set_index("annotator")
    assert (ctl.loc[["sim-careful-1", "sim-careful-2"], "pass_rate"] == 1.0).all()
    assert (ctl.loc[["sim-careful-1", "sim-careful-2"], "controls"] >= 2).all()
    with pytest.raises(AnnotationError, match=r"only \d+ of 50 verified control tasks"):
        add_verified_controls(store, sid, 50, judge=judge)
    with pytest.raises(AnnotationError, match="whole number"):
        add_verified_controls(store, sid, 0)


def test_ensure_verified_controls_tops_up_and_never_reuses_a_best(store, make_shapes_study) -> None:
    from annotation.models import Task
    from annotation.simulate import ShapesJudge, control_task_count, ensure_verified_controls

    sid, _ = make_shapes_study(store, n_prompts=6, rankings_per_task=4, control_rate=0.6)
    judge = ShapesJudge(store)
    assert len(ensure_verified_controls(store, sid, 3, seed=1, judge=judge)) == 3
    assert ensure_verified_controls(store, sid, 3, seed=1, judge=judge) == []  # a re-run adds none
    assert len(ensure_verified_controls(store, sid, 5, seed=1, judge=judge)) == 2  # topped up to 5
    assert control_task_count(store, sid) == 5
    with store.session() as s:
        bests = list(s.scalars(select(Task.control_best_id).where(Task.study_id == sid, Task.is_control)))
    assert len(bests) == len(set(bests)) == 5  # the same seed did not pick the same best again
    with pytest.raises(AnnotationError, match="whole number"):
        ensure_verified_controls(store, sid, -1)
    assert control_task_count(store, sid) == 5
