"""The Manage tab's handlers on a real SQLite store: studies and users created, archived, deleted,
deactivated and given new passwords, each stored; annotators and visitors refused, nothing
written."""

from __future__ import annotations

import gradio as gr
import pytest

from annotation.errors import ConflictError, PermissionDeniedError
from annotation.store import Store
from annotation.workflow import next_task, submit_ranking
from webui import manage_tab as m
from webui.services import AppConfig, Services


@pytest.fixture
def services(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "data", password_cost=16)
    svc = Services(AppConfig(data_dir=str(tmp_path)), None, store, rewards={}, examples=[],
                   guidelines="Default rules.")  # fmt: skip
    yield svc
    svc.close()


def login(services: Services, name: str, role: str = "researcher") -> dict:
    """A session user as the Annotate tab's login makes it (a signed token)."""
    info = services.store.create_user(name, f"{name}-password", role)
    return {"id": info.id, "username": name, "role": role, "token": services.signer.sign(info.id)}


def test_researcher_creates_archives_reopens_and_deletes_a_study(services):
    res = login(services, "res")
    msg = m.create_study(services, res, " pilot ", 4, 2, 0.1, "")
    assert "Created study **pilot**" in msg
    st = services.store.get_study("pilot")
    assert (st.group_size, st.rankings_per_task, st.control_rate) == (4, 2, 0.1)
    assert st.guidelines == "Default rules."  # empty guidelines: the app's default
    m.create_study(services, res, "second", 2, 1, 0, "Pick the sharper one.")
    assert services.store.get_study("second").guidelines == "Pick the sharper one."
    with pytest.raises(ConflictError, match="already exists"):
        m.create_study(services, res, "pilot", 3, 3, 0, "")
    with pytest.raises(ValueError, match="group_size"):
        m.create_study(services, res, "bad", 1, 3, 0, "")
    with pytest.raises(ValueError, match="whole number"):
        m.create_study(services, res, "bad", 2.5, 3, 0, "")

    m.set_archived(services, res, "pilot", True)
    assert services.store.get_study("pilot").archived
    assert [s.name for s in services.store.list_studies()] == ["second"]
    table = m.studies_table(services)
    assert table.set_index("name").loc["pilot", "archived"]  # archived studies stay listed here
    m.set_archived(services, res, "pilot", False)
    assert not services.store.get_study("pilot").archived

    with pytest.raises(ValueError, match="type its name"):
        m.delete_study(services, res, "pilot", "", False)
    assert services.store.get_study("pilot")  # not deleted without the confirmation
    assert "Deleted study **pilot**" in m.delete_study(services, res, "pilot", "pilot", False)
    assert list(m.studies_table(services)["name"]) == ["second"]


def test_a_study_with_rankings_is_deleted_only_with_force(services, sample_with_rankings):
    res = login(services, "res")
    name = sample_with_rankings(services.store)
    with pytest.raises(ConflictError, match="holds 1 ranking"):
        m.delete_study(services, res, name, name, False)
    assert services.store.get_study(name)
    msg = m.delete_study(services, res, name, name, True)
    assert "1 ranking(s), 1 task(s), 2 candidate(s)" in msg
    assert name not in set(m.studies_table(services)["name"])


def _sample(prompt: str, recipe: str, i: int):
    from PIL import Image

    from reasongen.types import Sample, SamplingSettings

    return Sample(
        prompt=prompt, recipe=recipe, model_id="m", seed=0, settings=SamplingSettings(), prompt_ids=[1],
        cot_text="", cot_token_ids=[], cot_logprobs=[], cot_end="boi", prefix_ids=[1],
        image_token_ids=[1], image_logprobs=[0.0], plan=None, image=Image.new("RGB", (8, 8), (i * 90, 0, 0)),
    )  # fmt: skip


@pytest.fixture
def sample_with_rankings():
    def make(store: Store) -> str:
        st = store.create_study("ranked", group_size=2, rankings_per_task=1)
        pid = store.add_prompts(st.id, ["a red circle"])[0]
        samples = [_sample("a red circle", r, i) for i, r in enumerate(("direct", "got-r1"))]
        ids = store.add_candidates(pid, samples)
        store.create_task(st.id, ids)
        ann = store.create_user("ranker", "ranker-password")
        view = next_task(store, ann.id, st.id)
        submit_ranking(store, ann.id, st.id, view.task_id, {ids[0]: 1, ids[1]: 2})
        return st.name

    return make


def test_researcher_adds_deactivates_reactivates_and_resets_users(services):
    res = login(services, "res")
    assert "Added annotator **ann**" in m.create_user(services, res, "ann", "ann-secret-1", "annotator")
    m.create_user(services, res, "boss", "boss-secret-1", "researcher")
    rows = m.users_table(services).set_index("username")
    assert rows.loc["ann", "role"] == "annotator" and rows.loc["boss", "role"] == "researcher"
    assert "password" not in " ".join(m.users_table(services).columns)
    with pytest.raises(ConflictError):
        m.create_user(services, res, "ann", "another-pass", "annotator")
    with pytest.raises(ValueError, match="8 characters"):
        m.create_user(services, res, "short", "pw", "annotator")

    m.set_active(services, res, "ann", False)
    assert not services.store.get_user("ann").active
    assert services.store.authenticate("ann", "ann-secret-1") is None
    m.set_active(services, res, "ann", True)
    assert services.store.authenticate("ann", "ann-secret-1") is not None
    with pytest.raises(ValueError, match="your own account"):
        m.set_active(services, res, "res", False)
    assert services.store.get_user("res").active

    m.reset_password(services, res, "ann", "brand-new-pass")
    assert services.store.authenticate("ann", "ann-secret-1") is None
    assert services.store.authenticate("ann", "brand-new-pass") is not None


def test_annotators_and_visitors_are_refused_and_nothing_is_written(services):
    ann = login(services, "ann", "annotator")
    services.store.create_study("keep", group_size=2, rankings_per_task=1)
    calls = [
        (m.create_study, ("new", 3, 3, 0.0, "")),
        (m.set_archived, ("keep", True)),
        (m.delete_study, ("keep", "keep", True)),
        (m.create_user, ("intruder", "intruder-pw", "researcher")),
        (m.set_active, ("ann", False)),
        (m.reset_password, ("ann", "someone-elses")),
    ]
    for fn, args in calls:
        for who in (ann, None, {"id": ann["id"], "role": "researcher", "token": "forged"}):
            with pytest.raises(gr.Error, match="researchers"):
                fn(services, who, *args)
    assert [s.name for s in services.store.list_studies()] == ["keep"]
    assert [u.username for u in services.store.list_users()] == ["ann"]
    assert services.store.get_user("ann").active


def test_a_researcher_deactivated_after_login_is_refused_by_the_store(services):
    res = login(services, "res")
    other = login(services, "other")
    services.store.set_user_active(res["id"], False)
    with pytest.raises(PermissionDeniedError):
        m.create_study(services, res, "late", 3, 3, 0.0, "")
    assert not m.studies_table(services)["name"].tolist()
    assert "Added" in m.create_user(services, other, "fine", "fine-password", "annotator")


def test_the_view_shows_the_tab_to_researchers_only(services):
    res = login(services, "res")
    ann = login(services, "ann", "annotator")
    services.store.create_study("visible", group_size=2, rankings_per_task=1)
    locked, body, _msg, studies, users, study, user = m.manage_view(services, res)
    assert locked.visible is False and body.visible is True
    assert list(studies["name"]) == ["visible"] and set(users["username"]) == {"res", "ann"}
    assert study.choices == [("visible", "visible")]
    assert sorted(c[0] for c in user.choices) == ["ann", "res"]
    locked, body, _msg, studies, users, *_ = m.manage_view(services, ann)
    assert locked.visible is True and body.visible is False and studies.empty and users.empty
