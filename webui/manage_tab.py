"""Manage tab (researchers only): create, archive, reopen and delete studies; add users,
deactivate and reactivate them, reset their passwords.

Every handler checks the session's login and role on the server and then calls the
``annotation.store.Store`` method with ``actor=`` the logged-in user, so the store checks the
role again (an annotator, or a researcher deactivated since logging in, is refused there too).
Each handler returns a one-line message and the refreshed study and user tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from .common import ANNOTATE_LIMIT, ANNOTATE_QUEUE, require_researcher, ui_errors
from .services import Services

STUDY_COLUMNS = ["id", "name", "group_size", "rankings_per_task", "control_rate", "archived"]
USER_COLUMNS = ["id", "username", "role", "active"]


@dataclass
class ManageTab:
    locked: Any
    body: Any
    study: Any
    user: Any
    message: Any
    studies: Any
    users: Any

    @property
    def view_outputs(self) -> list[Any]:
        """What :func:`manage_view` updates when someone logs in or out."""
        return [self.locked, self.body, self.message, self.studies, self.users, self.study, self.user]


def _researcher(services: Services, user: Any) -> int:
    """The logged-in researcher's id (a ``gr.Error`` for anyone else)."""
    return int(require_researcher(services.current_user(user))["id"])


def studies_table(services: Services) -> pd.DataFrame:
    """Every study, archived ones included, by id."""
    rows = [
        (s.id, s.name, s.group_size, s.rankings_per_task, s.control_rate, s.archived)
        for s in services.store.list_studies(include_archived=True)
    ]
    return pd.DataFrame(rows, columns=STUDY_COLUMNS)


def users_table(services: Services) -> pd.DataFrame:
    """Every user (never a password hash), by id."""
    rows = [(u.id, u.username, u.role, u.active) for u in services.store.list_users()]
    return pd.DataFrame(rows, columns=USER_COLUMNS)


def _int(value: Any, what: str) -> int:
    if value is None or value == "" or float(value) != int(float(value)):
        raise ValueError(f"{what} must be a whole number.")
    return int(float(value))


def _name(value: Any, what: str) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise ValueError(f"Pick or type a {what}.")
    return text


def create_study(
    services: Services,
    user: Any,
    name: Any,
    group_size: Any,
    rankings_per_task: Any,
    control_rate: Any,
    guidelines: Any,
) -> str:
    """Create a study with these settings; the logged-in researcher is its creator."""
    actor = _researcher(services, user)
    study = services.store.create_study(
        _name(name, "study name"),
        group_size=_int(group_size, "Group size"),
        rankings_per_task=_int(rankings_per_task, "Rankings per task"),
        control_rate=float(control_rate or 0.0),
        guidelines=guidelines or services.default_guidelines,
        actor=actor,
    )
    return (
        f"Created study **{study.name}** (group size {study.group_size}, {study.rankings_per_task} "
        f"ranking(s) per task, control rate {study.control_rate:.2f})."
    )


def set_archived(services: Services, user: Any, study: Any, archived: bool) -> str:
    """Archive a study (no more tasks served, data kept) or reopen it."""
    actor = _researcher(services, user)
    info = services.store.archive_study(_name(study, "study"), archived, actor=actor)
    return f"Study **{info.name}** {'archived' if archived else 'reopened'}."


def delete_study(services: Services, user: Any, study: Any, confirm: Any, force: bool) -> str:
    """Delete a study for good. ``confirm`` must repeat the study's name; a study that holds
    rankings also needs ``force`` (the store refuses otherwise and suggests archiving)."""
    actor = _researcher(services, user)
    name = _name(study, "study")
    info = services.store.get_study(name)
    if (confirm or "").strip() != info.name:
        raise ValueError(f"To delete study {info.name!r}, type its name in the confirmation box.")
    counts = services.store.delete_study(info.id, force=bool(force), actor=actor)
    return (
        f"Deleted study **{info.name}**: {counts.get('rankings', 0)} ranking(s), "
        f"{counts.get('tasks', 0)} task(s), {counts.get('candidates', 0)} candidate(s)."
    )


def create_user(services: Services, user: Any, username: Any, password: Any, role: Any) -> str:
    """Add a user with this password and role."""
    actor = _researcher(services, user)
    info = services.store.create_user(
        _name(username, "username"), password or "", role or "annotator", actor=actor
    )
    return f"Added {info.role} **{info.username}**."


def set_active(services: Services, user: Any, username: Any, active: bool) -> str:
    """Deactivate (cannot log in, rankings stop counting) or reactivate a user. A researcher
    cannot deactivate their own account (nobody might be left to reactivate it)."""
    me = require_researcher(services.current_user(user))
    name = _name(username, "user")
    target = services.store.get_user(name)
    if not active and target.id == int(me["id"]):
        raise ValueError("You cannot deactivate your own account.")
    info = services.store.set_user_active(target.id, active, actor=int(me["id"]))
    return f"User **{info.username}** {'reactivated' if active else 'deactivated'}."


def reset_password(services: Services, user: Any, username: Any, password: Any) -> str:
    """Give a user a new password."""
    actor = _researcher(services, user)
    info = services.store.reset_password(_name(username, "user"), password or "", actor=actor)
    return f"New password set for **{info.username}**."


def build_manage_tab(services: Services, user_state: Any) -> ManageTab:
    """Lay out the Manage tab and wire its events (call inside a ``gr.Blocks``)."""
    locked = gr.Markdown("Study and user management is for researchers: log in on the **Annotate** tab.")
    with gr.Column(visible=False) as body:
        message = gr.Markdown(elem_id="rg-manage-message")
        with gr.Accordion("Studies", open=True):
            studies = gr.Dataframe(label="Studies", interactive=False, elem_id="rg-manage-studies")
            with gr.Row():
                new_name = gr.Textbox(label="New study name", scale=2, elem_id="rg-new-study")
                group_size = gr.Number(3, label="Group size", precision=0, minimum=2, maximum=64)
                per_task = gr.Number(3, label="Rankings per task", precision=0, minimum=1, maximum=64)
                control_rate = gr.Slider(0.0, 0.5, 0.0, step=0.05, label="Control task rate")
            guidelines = gr.Textbox(
                label="Guidelines (Markdown; empty: the default guidelines)", lines=3, max_lines=12
            )
            create = gr.Button("Create study", variant="primary", elem_id="rg-create-study")
            with gr.Row():
                study = gr.Dropdown(choices=[], label="Study", allow_custom_value=True, scale=2)
                archive = gr.Button("Archive", scale=1)
                reopen = gr.Button("Reopen", scale=1)
            with gr.Row():
                confirm = gr.Textbox(label="Type the study's name to delete it", scale=2)
                force = gr.Checkbox(label="Also delete its rankings", value=False, scale=1)
                delete = gr.Button("Delete study", variant="stop", scale=1, elem_id="rg-delete-study")
        with gr.Accordion("Users", open=True):
            users = gr.Dataframe(label="Users", interactive=False, elem_id="rg-manage-users")
            with gr.Row():
                username = gr.Textbox(label="Username", scale=2)
                password = gr.Textbox(label="Password (8+ characters)", type="password", scale=2)
                role = gr.Radio(["annotator", "researcher"], value="annotator", label="Role", scale=1)
                add = gr.Button("Add user", variant="primary", scale=1, elem_id="rg-add-user")
            with gr.Row():
                target = gr.Dropdown(choices=[], label="User", allow_custom_value=True, scale=2)
                deactivate = gr.Button("Deactivate", scale=1)
                reactivate = gr.Button("Reactivate", scale=1)
            with gr.Row():
                new_password = gr.Textbox(label="New password", type="password", scale=2)
                reset = gr.Button("Reset password", scale=1)
    q = {"concurrency_id": ANNOTATE_QUEUE, "concurrency_limit": ANNOTATE_LIMIT}
    outputs = [message, studies, users, study, target]

    def wire(button: Any, fn: Any, inputs: list[Any], api_name: str, *extra: Any) -> None:
        def handler(user: Any, *args: Any) -> list[Any]:
            return refreshed(services, fn(services, user, *args, *extra))

        handler.__name__ = api_name
        button.click(ui_errors(handler), [user_state, *inputs], outputs, api_name=api_name, **q)

    wire(create, create_study, [new_name, group_size, per_task, control_rate, guidelines], "create_study")
    wire(archive, set_archived, [study], "archive_study", True)
    wire(reopen, set_archived, [study], "reopen_study", False)
    wire(delete, delete_study, [study, confirm, force], "delete_study")
    wire(add, create_user, [username, password, role], "create_user")
    wire(deactivate, set_active, [target], "deactivate_user", False)
    wire(reactivate, set_active, [target], "reactivate_user", True)
    wire(reset, reset_password, [target, new_password], "reset_password")
    return ManageTab(locked, body, study, target, message, studies, users)


def manage_view(services: Services, user: Any) -> list[Any]:
    """Updates of ``ManageTab.view_outputs`` for the session's user: the tab's body with fresh
    tables for a researcher; for anyone else the locked notice, and the tables emptied."""
    user = services.current_user(user)
    if not user or user.get("role") != "researcher":
        empty = pd.DataFrame()
        return [gr.Markdown(visible=True), gr.Column(visible=False), "", empty, empty,
                gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)]  # fmt: skip
    return [gr.Markdown(visible=False), gr.Column(visible=True), *refreshed(services, "")]


def refreshed(services: Services, text: str) -> list[Any]:
    """``text``, both tables, and the study and user dropdowns offering their names."""
    st, us = studies_table(services), users_table(services)
    return [text, st, us, gr.Dropdown(choices=list(st["name"])), gr.Dropdown(choices=list(us["username"]))]
