"""The Manage tab through the served app (``gradio_client``): a researcher's calls are stored, an
annotator's and a visitor's are refused with nothing written."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

PASSWORDS = {"ann1": "ann1-password", "res1": "res1-password"}


def _login(client, name: str) -> None:
    client.predict(name, PASSWORDS[name], api_name="/login")


def test_researcher_manages_studies_and_users_through_the_app(webapp, client):
    store = webapp.store
    _login(client, "res1")
    msg, studies, users, *_ = client.predict(
        "managed-study", 2, 1, 0.1, "Rank by shape count.", api_name="/create_study"
    )
    assert "Created study **managed-study**" in msg
    rows = {r[1]: dict(zip(studies["headers"], r)) for r in studies["data"]}
    assert rows["managed-study"]["group_size"] == 2 and rows["managed-study"]["control_rate"] == 0.1
    st = store.get_study("managed-study")
    assert (st.group_size, st.rankings_per_task, st.guidelines) == (2, 1, "Rank by shape count.")

    client.predict("managed-study", api_name="/archive_study")
    assert store.get_study("managed-study").archived
    client.predict("managed-study", api_name="/reopen_study")
    assert not store.get_study("managed-study").archived

    msg, _, users, *_ = client.predict("newcomer", "newcomer-pass", "annotator", api_name="/create_user")
    assert "newcomer" in {r[1] for r in users["data"]}
    client.predict("newcomer", api_name="/deactivate_user")
    assert not store.get_user("newcomer").active
    with pytest.raises(AppError, match="Wrong username or password"):
        client.predict("newcomer", "newcomer-pass", api_name="/login")
    _login(client, "res1")
    client.predict("newcomer", api_name="/reactivate_user")
    client.predict("newcomer", "second-password", api_name="/reset_password")
    assert store.authenticate("newcomer", "second-password") is not None

    with pytest.raises(AppError, match="type its name"):
        client.predict("managed-study", "wrong", False, api_name="/delete_study")
    client.predict("managed-study", "managed-study", False, api_name="/delete_study")
    assert "managed-study" not in {s.name for s in store.list_studies(include_archived=True)}


def test_annotators_and_visitors_cannot_manage(webapp, client):
    store = webapp.store
    before = ({s.name for s in store.list_studies(include_archived=True)}, len(store.list_users()))
    for who in (None, "ann1"):
        if who:
            _login(client, who)
        with pytest.raises(AppError, match="researchers"):
            client.predict("sneaky", 2, 1, 0.0, "", api_name="/create_study")
        with pytest.raises(AppError, match="researchers"):
            client.predict("sneaky", "sneaky-password", "researcher", api_name="/create_user")
        with pytest.raises(AppError, match="researchers"):
            client.predict("ann1", api_name="/deactivate_user")
    after = ({s.name for s in store.list_studies(include_archived=True)}, len(store.list_users()))
    assert after == before and store.get_user("ann1").active
