"""The annotator's tools through the app's API (gradio_client): the arena quick answers for groups
of two, skip reasons, changing the last ranking, "task x of y", the study picker, changing one's
password and the Results tab's word to an annotator."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webui.services import MAX_SLOTS

PASSWORDS = {"ann1": "ann1-password"}
STUDY = "webui-study"

ARENA_STUDY = "arena-study"


@pytest.fixture(scope="module")
def arena(webapp):
    """A study of two tasks of two candidates (copied from the main study), five rankings each."""
    return _pairs_study(webapp, ARENA_STUDY, 5)


def _pairs_study(webapp, name: str, wanted: int) -> int:
    store = webapp.store
    st = store.create_study(name, group_size=2, rankings_per_task=wanted)
    for members in _tasks(store, webapp.study_id):
        samples = [store.load_sample(c) for c in members[:2]]
        pid = store.add_prompts(st.id, [samples[0].prompt])[0]
        store.create_task(st.id, store.add_candidates(pid, samples))
    return st.id


def _tasks(store, study_id: int) -> list[list[int]]:
    from annotation.models import Task, TaskCandidate

    with store.session() as s:
        tids = s.scalars(select(Task.id).where(Task.study_id == study_id).order_by(Task.id)).all()
        return [
            list(s.scalars(select(TaskCandidate.candidate_id).where(TaskCandidate.task_id == t)))
            for t in tids
        ]


def _ranking(store, username: str, task_id: int):
    from annotation.models import Assignment, Ranking, User

    with store.session() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        r = s.scalar(select(Ranking).where(Ranking.annotator_id == uid, Ranking.task_id == task_id))
        order = s.scalar(select(Assignment.shown_order).where(Assignment.id == r.assignment_id))
        ranks = {e.candidate_id: e.rank for e in r.entries}
        return r.id, [ranks.get(c) for c in order], r.skipped, r.skip_reason, r.both_bad, r.edited_at


def _user_client(webapp, name: str, password: str):
    from gradio_client import Client

    c = Client(webapp.url, verbose=False, download_files=False, analytics_enabled=False)
    c.predict(name, password, api_name="/login")
    return c


def _open_task(store, username: str, study_id: int) -> int:
    from annotation.models import Assignment, Task, User

    with store.session() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        return s.scalar(
            select(Assignment.task_id)
            .join(Task, Task.id == Assignment.task_id)
            .where(Assignment.annotator_id == uid, Task.study_id == study_id)
            .where(Assignment.completed_at.is_(None))
        )


def test_arena_answers_and_changing_the_last_ranking(webapp, arena):
    store = webapp.store
    store.create_user("arena1", "arena1-password")
    c = _user_client(webapp, "arena1", "arena1-password")
    out = c.predict(ARENA_STUDY, None, api_name="/next_task")
    assert "Task 1 of 2" in out[2]
    first = _open_task(store, "arena1", arena)
    out = c.predict(ARENA_STUDY, api_name="/arena_b")
    assert "Saved task" in out[3] and "Task 2 of 2" in out[2]
    rid, ranks, skipped, _, both_bad, edited = _ranking(store, "arena1", first)
    assert (ranks, skipped, both_bad, edited) == ([2, 1], False, False, None)
    # the last ranking can be changed: shown again with its ranks, updated in place
    c.predict(ARENA_STUDY, api_name="/edit_last_ranking")
    out = c.predict(ARENA_STUDY, "1", "1", *([None] * (MAX_SLOTS - 2)), api_name="/submit_ranking")
    assert f"Changed your ranking of task {first}" in out[3]
    rid2, ranks, _, _, _, edited = _ranking(store, "arena1", first)
    assert (rid2, ranks) == (rid, [1, 1]) and edited is not None
    # the next task is still the open one; "both bad" stores a flagged tie
    second = _open_task(store, "arena1", arena)
    assert second is not None and second != first
    c.predict(ARENA_STUDY, None, api_name="/next_task")
    c.predict(ARENA_STUDY, api_name="/arena_both_bad")
    assert _ranking(store, "arena1", second)[1:5] == ([1, 1], False, None, True)
    from annotation.models import Ranking

    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(Ranking).where(Ranking.task_id.in_([first, second])))
    assert n == 2


def test_arena_answers_refuse_a_task_of_three(webapp, client):
    from gradio_client.exceptions import AppError

    client.predict("ann1", PASSWORDS["ann1"], api_name="/login")
    client.predict(STUDY, None, api_name="/next_task")
    with pytest.raises(AppError, match="two images"):
        client.predict(STUDY, api_name="/arena_a")


def test_skip_reason_is_stored(webapp, arena):
    store = webapp.store
    store.create_user("skipper", "skipper-password")
    c = _user_client(webapp, "skipper", "skipper-password")
    c.predict(ARENA_STUDY, None, api_name="/next_task")
    task = _open_task(store, "skipper", arena)
    out = c.predict(ARENA_STUDY, "Prompt unclear", "  which one is 'red'? ", api_name="/skip_task")
    assert "Skipped task" in out[3]
    assert _ranking(store, "skipper", task)[2:4] == (True, "Prompt unclear: which one is 'red'?")


def test_study_picker_lists_only_open_studies(webapp):
    from annotation.workflow import next_task, submit_ranking
    from webui.annotate_tab import _studies_dropdown

    store = webapp.store
    uid = store.create_user("picker", "picker-password").id
    small = _pairs_study(webapp, "small-study", 1)
    store.archive_study(_pairs_study(webapp, "archived-study", 1))
    store.create_study("empty-study", group_size=2, rankings_per_task=1)

    def names() -> list[str]:
        return [v for _, v in _studies_dropdown(webapp.services, {"id": uid}).choices]

    assert {"small-study", STUDY} <= set(names())
    assert not {"archived-study", "empty-study"} & set(names())
    # another annotator answers every task of the small study: nothing left there for "picker"
    helper = store.create_user("filler", "filler-password").id
    while (view := next_task(store, helper, small)) is not None:
        submit_ranking(store, helper, small, view.task_id, [[c.id] for c in view.candidates])
    assert "small-study" not in names() and STUDY in names()


def test_change_password_needs_the_old_one(webapp):
    from gradio_client.exceptions import AppError

    webapp.store.create_user("pwuser", "pwuser-password")
    c = _user_client(webapp, "pwuser", "pwuser-password")
    with pytest.raises(AppError, match="current password is wrong"):
        c.predict("nope", "new-secret-123", "new-secret-123", api_name="/change_password")
    with pytest.raises(AppError, match="differ"):
        c.predict("pwuser-password", "new-secret-123", "other-secret-123", api_name="/change_password")
    out = c.predict("pwuser-password", "new-secret-123", "new-secret-123", api_name="/change_password")
    assert out[0] == "Your password was changed."
    assert webapp.store.authenticate("pwuser", "pwuser-password") is None
    assert webapp.store.authenticate("pwuser", "new-secret-123") is not None


def test_results_tell_an_annotator_they_are_for_researchers(webapp, client):
    from gradio_client.exceptions import AppError

    client.predict("ann1", PASSWORDS["ann1"], api_name="/login")
    with pytest.raises(AppError, match="logged in as 'ann1', an annotator"):
        client.predict(STUDY, api_name="/study_results")
