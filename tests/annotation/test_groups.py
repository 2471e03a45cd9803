"""Ranked groups for human-ranking GRPO, abandoned assignments, and migration round trips."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from annotation.db import current_revision, downgrade, upgrade
from annotation.groups import ranked_groups
from annotation.store import Store
from annotation.workflow import next_task, submit_ranking


def test_ranked_groups_give_borda_rewards(store: Store, populate_study) -> None:
    sid, tasks = populate_study(store, n_prompts=2, per_system=2, group_size=4, rankings_per_task=2)
    a, b = (store.create_user(n, "password123").id for n in ("a", "b"))
    answers = {}
    for u in (a, b):
        while (view := next_task(store, u, sid)) is not None:
            ids = sorted(c.id for c in view.candidates)
            # a: strict order; b: same best and worst, middle two tied
            ranking = [[i] for i in ids] if u == a else [[ids[0]], ids[1:3], [ids[3]]]
            submit_ranking(store, u, sid, view.task_id, ranking)
            answers.setdefault(view.task_id, ids)
    groups = ranked_groups(store, sid)
    assert [g.task_id for g in groups] == sorted(tasks)
    for g in groups:
        ids = answers[g.task_id]
        assert g.candidate_ids == ids and g.n_rankings == 2
        # a: 1, 2/3, 1/3, 0; b: 1, 1/2, 1/2, 0 -> means
        assert g.rewards == pytest.approx([1.0, (2 / 3 + 0.5) / 2, (1 / 3 + 0.5) / 2, 0.0])
        assert [s.prompt for s in g.samples] == [g.prompt] * 4
        assert g.samples[0].image_logprobs == [-2.0, -1.5, -0.25, -3.0]
    assert ranked_groups(store, sid, min_rankings=3) == []


def test_abandoned_assignment_frees_its_place_after_the_ttl(store: Store, populate_study) -> None:
    sid, tasks = populate_study(store, n_prompts=1, per_system=2, group_size=4, rankings_per_task=1)
    a, b = (store.create_user(n, "password123").id for n in ("a", "b"))
    held = next_task(store, a, sid)  # a opens the only task and walks away
    assert next_task(store, b, sid) is None  # still held within the TTL
    late = next_task(store, b, sid, pending_ttl_s=0.0)  # after the TTL it is served again
    assert late is not None and late.task_id == held.task_id == tasks[0]
    submit_ranking(store, b, sid, late.task_id, [[c.id] for c in late.candidates])
    # a may still hand in their answer; the task then simply has one extra ranking
    assert submit_ranking(store, a, sid, held.task_id, [[c.id] for c in held.candidates]).created


def test_migrations_downgrade_and_upgrade_again(tmp_path) -> None:
    st = Store(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "data", password_cost=16)
    downgrade(st.engine, "base")
    assert current_revision(st.engine) is None
    assert inspect(st.engine).get_table_names() == ["alembic_version"]
    upgrade(st.engine, "head")
    assert current_revision(st.engine) == "0004"
    assert st.create_user("after", "password123").id == 1
    st.close()
