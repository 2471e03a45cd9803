"""Annotate tab: our own login against the users table, then rank candidates side by side.

Login is checked by ``annotation.store.Store.authenticate`` (scrypt hashes) behind per-address and
per-username limits; the session keeps the user in a server-side ``gr.State`` and the browser keeps
a signed token (HMAC, see ``auth.TokenSigner``) in its localStorage so a reload logs back in. Every
request checks that token: it expires (``token_ttl_s``) and logging out revokes it server-side.
Every rank choice is saved as a draft in localStorage too, so a half-done ranking survives a
reload (the store serves the same open assignment again). All events
here run on their own queue (``ANNOTATE_QUEUE``), never behind generation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .annotate_keys import keyboard_helper
from .common import (
    ANNOTATE_LIMIT,
    ANNOTATE_QUEUE,
    IMAGE_BUTTONS,
    client_address,
    refuse,
    require_user,
    show_image,
    ui_errors,
)
from .services import MAX_SLOTS, Services

log = logging.getLogger("reasongen.app")

NO_STUDY = "Pick a study and press **Start** to get a task."
LOGIN_OUTPUTS = 6
"""user state, token, login message, login box, work box, study dropdown."""
AUTH_KEY, DRAFT_KEY = "reasongen-token", "reasongen-draft"
RESTORE_JS = f"() => [localStorage.getItem('{AUTH_KEY}') || '', localStorage.getItem('{DRAFT_KEY}') || '']"
"""Run in the browser at page load: hands the stored token and draft to ``on_restore``."""


def _draft(value: Any) -> dict[str, Any]:
    """A draft as stored in the browser (JSON text) or as a dict; anything else is no draft."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


@dataclass
class AnnotateTab:
    """Components other tabs and tests wire to."""

    username: Any
    password: Any
    login: Any
    login_message: Any
    login_box: Any
    work_box: Any
    study: Any
    submit: Any
    skip: Any
    ranks: list[Any]
    message: Any
    auth: Any
    draft: Any
    login_event: Any
    logout_event: Any
    on_restore: Any
    """Page-load handler (with ``RESTORE_JS``): logs back in and reopens the task and its draft."""
    restore_outputs: list[Any]


def _user_dict(info: Any, token: str) -> dict[str, Any]:
    return {"id": int(info.id), "username": info.username, "role": info.role, "token": token}


def _login_gate(services: Services, name: str, address: str) -> None:
    """Refuse a login attempt that a limit forbids (nothing counted then), else count it as a
    failure of ``name`` and of ``address`` until it succeeds."""
    if wait := services.login_limiter.check(address):
        log.warning("login refused: too many attempts from %s (%r)", address, name)
        raise refuse(f"Too many login attempts from your address; try again in {wait:.0f} s.", "Slow down")
    if wait := services.address_backoff.attempt(address):
        log.warning("login refused: too many failed logins from %s (%r)", address, name)
        raise refuse(f"Too many failed logins from your address; try again in {wait:.0f} s.", "Slow down")
    if wait := services.user_backoff.attempt(name.casefold()):
        services.address_backoff.succeeded(address, reset=False)  # this attempt was not made
        log.warning("login refused: too many failed logins for %r (from %s)", name, address)
        raise refuse(f"Too many failed logins for this account; try again in {wait:.0f} s.", "Slow down")


def login(services: Services, username: str, password: str, address: str) -> tuple[dict[str, Any], str]:
    """Check a username and password; return the session user and a signed browser token.

    Attempts are limited per client ``address`` (``login_limit`` per rate window) and, after
    repeated failures, per username and per address with exponential backoff, whatever session
    or client they come from. A refusal is one warning line in the log.
    """
    name = (username or "").strip()[:128]
    _login_gate(services, name, address)
    info = services.store.authenticate(name, password or "")
    if info is None:
        log.warning("login failed for %r from %s", name, address)
        raise refuse("Wrong username or password (or the account is deactivated).", "Login failed")
    services.user_backoff.succeeded(name.casefold())
    services.address_backoff.succeeded(address, reset=False)
    log.info("login: %r from %s", name, address)
    token = services.signer.sign(info.id)
    return _user_dict(info, token), token


def logout(services: Services, user: Any) -> None:
    """End the login of this session's user: its token is revoked, so every tab and browser that
    holds it is logged out too."""
    if isinstance(user, dict) and services.signer.revoke(user.get("token")):
        log.info("logout: %r", user.get("username"))


def restore_user(services: Services, token: Any) -> dict[str, Any] | None:
    """The user a browser token stands for, if it is valid (not expired or logged out) and the
    account still active."""
    uid = services.signer.verify(token)
    if uid is None:
        return None
    try:
        info = services.store.get_user(uid)
    except ValueError:
        return None
    return _user_dict(info, token) if info.active else None


def _hidden_slot() -> list[Any]:
    return [gr.Column(visible=False), None, gr.Radio(choices=[], value=None), "", None]


def _view_frame(view: Any, saved: list[Any] | None) -> list[Any]:
    """Slot outputs (column, image, rank radio, CoT, plan per slot), then the submit row and the
    arena row (shown for groups of two)."""
    from PIL import Image

    from reasongen.plans import render_plan
    from reasongen.types import Plan

    k = len(view.candidates)
    choices = [str(r) for r in range(1, k + 1)]
    out: list[Any] = []
    for i in range(MAX_SLOTS):
        if i >= k:
            out += _hidden_slot()
            continue
        c = view.candidates[i]
        image = None
        if c.image_path:
            with Image.open(c.image_path) as im:
                image = show_image(im.convert("RGB"))
        plan = render_plan(Plan.from_dict(c.plan), 256) if c.plan else None
        value = saved[i] if saved and i < len(saved) and saved[i] in choices else None
        out += [gr.Column(visible=True), image,
                gr.Radio(choices=choices, value=value, label=f"Rank of image {i + 1}"),
                c.cot_text, plan]  # fmt: skip
    return [*out, gr.Row(visible=True), gr.Row(visible=k == 2)]


def _no_task_frame() -> list[Any]:
    out: list[Any] = []
    for _ in range(MAX_SLOTS):
        out += _hidden_slot()
    return [*out, gr.Row(visible=False), gr.Row(visible=False)]


def task_frame(services: Services, user: dict[str, Any], study: Any, draft: Any) -> list[Any]:
    """Outputs showing the user's next (or still open) task of ``study``: task state, prompt,
    guidelines, progress, message, then ``_view_frame``'s."""
    from annotation.workflow import next_task

    user = require_user(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study first.")
    st = services.store.get_study(study)
    view = next_task(services.store, int(user["id"]), st.id)
    progress = (
        _progress_text(services, st.name, user["username"]) + "  \n" + _task_line(services, user, st.id, view)
    )
    guidelines = st.guidelines or services.default_guidelines
    if view is None:
        out: list[Any] = [None, f"### {st.name}", guidelines, progress,
                          "**No task for you right now. Thank you!** Tasks held by others come back "
                          "if they are not finished: try again later."]  # fmt: skip
        return [*out, *_no_task_frame()]
    k = len(view.candidates)
    draft = _draft(draft)
    saved = draft.get("ranks") if draft.get("task_id") == view.task_id else None
    task = {"task_id": view.task_id, "study_id": st.id, "candidate_ids": [c.id for c in view.candidates],
            "shown_at": time.time()}  # fmt: skip
    hint = "Number keys rank the focused image, arrows move, Enter submits; click an image to compare."
    out = [task, f"### Prompt: {view.prompt}", guidelines, progress,
           f"Rank the {k} images: 1 = best, equal numbers = tie. {hint}"]  # fmt: skip
    return [*out, *_view_frame(view, saved)]


def edit_frame(services: Services, user: Any, study: Any) -> list[Any]:
    """Outputs (as ``task_frame``'s) showing the user's last ranking in ``study`` to change it,
    while ``annotation.annotator.EDIT_WINDOW_S`` allows."""
    from annotation.annotator import EDIT_WINDOW_S, last_ranking, ranking_view

    user = require_user(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study first.")
    st = services.store.get_study(study)
    last = last_ranking(services.store, int(user["id"]), st.id)
    if last is None:
        raise refuse(f"You have no ranking in this study to change: a ranking can be changed for "
                     f"{EDIT_WINDOW_S / 60:.0f} minutes after it is submitted (not a skip).",
                     "Nothing to change")  # fmt: skip
    view = ranking_view(services.store, int(user["id"]), last.ranking_id)
    task = {"task_id": view.task_id, "study_id": st.id, "candidate_ids": list(last.candidate_ids),
            "shown_at": time.time(), "ranking_id": last.ranking_id}  # fmt: skip
    progress = _progress_text(services, st.name, user["username"])
    msg = (f"**Changing your ranking of task {view.task_id}** ({last.seconds_left / 60:.1f} min left). "
           "Submit to save the change; Start / next task leaves it as it was.")  # fmt: skip
    out = [task, f"### Prompt: {view.prompt}", st.guidelines or services.default_guidelines, progress, msg]
    return [*out, *_view_frame(view, [str(r) for r in last.ranks])]


def _task_line(services: Services, user: dict[str, Any], study_id: int, view: Any) -> str:
    """ "Task x of y" in the study's regular tasks (as its figures count them): y is how many this
    annotator can answer as things stand (answered, open, and unseen ones still wanted)."""
    from annotation.annotator import position

    pos = position(services.store, int(user["id"]), study_id)
    if view is None:
        return f"You answered {pos.done} of the study's {pos.tasks} tasks; none is left for you now."
    line = f"**Task {min(pos.done + 1, pos.reachable)} of {pos.reachable}**"
    return line if pos.reachable == pos.tasks else f"{line} (the study has {pos.tasks}; others do the rest)."


def _progress_text(services: Services, study: str, username: str) -> str:
    from annotation.workflow import progress

    p = progress(services.store, study)
    mine = p["annotators"].get(username, {"ranked": 0, "controls": 0, "skipped": 0})
    # Both figures count rankings of regular tasks; checks (control tasks) and skips apart.
    pending = f", {p['rankings_pending']} in progress" if p["rankings_pending"] else ""
    return (
        f"Study progress: {p['rankings_done']}/{p['rankings_wanted']} rankings "
        f"({100 * p['fraction_done']:.0f}%{pending}). You: {mine['ranked']} ranked, "
        f"{mine['controls']} checks, {mine['skipped']} skipped."
    )


def submit(
    services: Services,
    user: Any,
    task: Any,
    ranks: list[Any],
    skipped: bool,
    *,
    reason: str | None = None,
    both_bad: bool = False,
) -> str:
    """Store the ranking (or a skip, with its ``reason``) of the open task, or the change of a
    submitted ranking (a task opened by ``edit_frame``); return a confirmation line."""
    from annotation.annotator import edit_ranking
    from annotation.validation import MAX_TIME_TAKEN_S
    from annotation.workflow import submit_ranking

    user = require_user(services.current_user(user))
    if not task or not task.get("task_id"):
        raise gr.Error("There is no open task: pick a study and press Start.")
    cids = task["candidate_ids"]
    taken = min(max(0.0, time.time() - float(task.get("shown_at", time.time()))), MAX_TIME_TAKEN_S)
    editing = task.get("ranking_id")
    if editing and skipped:
        raise refuse("You are changing a submitted ranking: submit it, or press Start for the next task.")
    ranking = None
    if not skipped:
        given = list(ranks)[: len(cids)]
        missing = [str(i + 1) for i, r in enumerate(given) if r in (None, "")]
        if missing or len(given) < len(cids):
            raise gr.Error(f"Give every image a rank (missing: image {', '.join(missing)}).",
                           title="Ranking incomplete")  # fmt: skip
        try:
            ranking = {int(c): int(r) for c, r in zip(cids, given)}
        except (TypeError, ValueError):
            raise gr.Error("Ranks must be whole numbers.") from None
    if editing:
        rid = edit_ranking(services.store, int(user["id"]), int(editing), ranking, both_bad=both_bad)
        return f"Changed your ranking of task {task['task_id']} (ranking {rid})."
    res = submit_ranking(services.store, int(user["id"]), int(task["study_id"]), int(task["task_id"]),
                         ranking, skipped=skipped, time_taken_s=taken, skip_reason=reason,
                         both_bad=both_bad)  # fmt: skip
    what = "Skipped" if skipped else "Saved"
    return f"{what} task {task['task_id']} (ranking {res.ranking_id})."


SKIP_REASONS = [
    "Cannot tell them apart",
    "Images missing or broken",
    "Prompt unclear",
    "Not sure of the guidelines",
]
"""The reasons offered for a skip (the annotator may also write their own)."""


def skip_reason(choice: Any, note: Any) -> str | None:
    """The stored reason of a skip: the listed reason and the annotator's words, either may be empty."""
    parts = [str(x).strip() for x in (choice, note) if x and str(x).strip()]
    return ": ".join(parts)[:500] or None


ARENA = {"a": ("1", "2"), "tie": ("1", "1"), "b": ("2", "1"), "both_bad": ("1", "1")}
"""Arena answers for a group of two, as the ranks of image 1 (A) and image 2 (B)."""


def change_password(services: Services, user: Any, old: str, new: str, again: str) -> str:
    """Set the logged-in user's password (the old one required); a confirmation line."""
    from annotation.annotator import change_password as change

    user = require_user(services.current_user(user))
    if (new or "") != (again or ""):
        raise refuse("The two new passwords differ.", "Password not changed")
    change(services.store, int(user["id"]), old or "", new or "")
    log.info("password changed by %r", user["username"])
    return "Your password was changed."


def _studies_dropdown(services: Services, user: Any, value: str | None = None) -> Any:
    """The studies this user can work in now (``annotation.annotator.open_studies``)."""
    from annotation.annotator import open_studies

    names = [s.name for s in open_studies(services.store, int(user["id"]))] if user else []
    return gr.Dropdown(choices=names, value=value or (names[0] if len(names) == 1 else None))


def restore_frame(services: Services, token: Any, draft: Any, n_task_outputs: int) -> list[Any]:
    """Page-load outputs (login outputs, then task outputs): after a reload the browser hands back
    its token and draft; a valid token logs the user back in and reopens the drafted task."""
    user = restore_user(services, token)
    if user is None:
        return [gr.skip()] * (LOGIN_OUTPUTS + n_task_outputs)
    hello = f"Welcome back, **{user['username']}** ({user['role']})."
    head = [user, gr.skip(), hello, gr.Group(visible=False), gr.Column(visible=True)]
    dr = _draft(draft)
    names = {s.id: s.name for s in services.store.list_studies()}
    study = names.get(dr.get("study_id"))
    frame = [gr.skip()] * n_task_outputs
    if study is not None:
        # a task that cannot be reopened (study gone, nothing left) leaves the page as it is
        with contextlib.suppress(gr.Error, ValueError):
            frame = task_frame(services, user, study, dr)
    return [*head, _studies_dropdown(services, user, study), *frame]


def _browser_mirrors() -> tuple[Any, Any]:
    """Hidden mirrors of the login token and the ranking draft kept in the browser's localStorage:
    a JS-only change handler writes them through; the page-load event reads them back
    (``gr.BrowserState`` reads its value only after the load events have run)."""
    boxes = gr.Textbox(visible=False, elem_id="rg-auth-token"), gr.Textbox(visible=False, elem_id="rg-draft")
    for box, key in zip(boxes, (AUTH_KEY, DRAFT_KEY)):
        js = f"(v) => {{ v ? localStorage.setItem('{key}', v) : localStorage.removeItem('{key}'); }}"
        box.change(None, box, None, api_visibility="private", queue=False, js=js)
    return boxes


@dataclass
class _Work:
    """The panel a logged-in annotator works in."""

    box: Any
    study: Any
    start: Any
    logout: Any
    guidelines: Any
    progress: Any
    prompt: Any
    message: Any
    slots: list[list[Any]]  # per candidate: column, image, rank radio, CoT, plan
    buttons: Any
    submit: Any
    skip: Any
    reason: Any
    note: Any
    arena: Any
    arena_buttons: dict[str, Any]
    edit: Any
    account: list[Any]  # old, new, again, button, message


def _work_panel(services: Services) -> _Work:
    with gr.Column(visible=False) as box:
        with gr.Row():
            study = gr.Dropdown(
                choices=[], label="Study", elem_id="rg-study", scale=3, allow_custom_value=True
            )
            start = gr.Button("Start / next task", elem_id="rg-start", scale=1)
            logout = gr.Button("Log out", size="sm", elem_id="rg-logout", scale=1)
        with gr.Accordion("Guidelines", open=False):
            guidelines = gr.Markdown(services.default_guidelines)
        progress = gr.Markdown(elem_id="rg-progress")
        prompt = gr.Markdown(NO_STUDY, elem_id="rg-task-prompt")
        message = gr.Markdown(elem_id="rg-annotate-message")
        slots = []
        with gr.Row(equal_height=False):
            for i in range(MAX_SLOTS):
                with gr.Column(visible=False, min_width=180, elem_id=f"rg-slot-{i}") as col:
                    image = gr.Image(label=f"Image {i + 1}", format="png", buttons=IMAGE_BUTTONS,
                                     interactive=False, height=220, elem_id=f"rg-cand-{i}")  # fmt: skip
                    rank = gr.Radio(choices=[], label=f"Rank of image {i + 1}", elem_id=f"rg-rank-{i}")
                    with gr.Accordion("Reasoning", open=False):
                        cot = gr.Textbox(label="Chain of thought", lines=4, interactive=False)
                        plan = gr.Image(label="Plan", format="png", buttons=IMAGE_BUTTONS,
                                        interactive=False, height=160)  # fmt: skip
                slots.append([col, image, rank, cot, plan])
        with gr.Row(visible=False, elem_id="rg-arena") as arena:
            labels = {
                "a": "A (image 1) is better",
                "tie": "Tie",
                "b": "B (image 2) is better",
                "both_bad": "Both are bad",
            }
            arena_buttons = {k: gr.Button(v, size="sm", elem_id=f"rg-arena-{k}") for k, v in labels.items()}
        with gr.Row(visible=False) as buttons:
            submit = gr.Button("Submit ranking (Enter)", variant="primary", elem_id="rg-submit", scale=2)
            reason = gr.Dropdown(SKIP_REASONS, value=None, label="Skip reason", allow_custom_value=False,
                                 elem_id="rg-skip-reason", scale=2)  # fmt: skip
            note = gr.Textbox(label="Details (optional)", max_length=300, elem_id="rg-skip-note", scale=2)
            skip = gr.Button("Skip this task", elem_id="rg-skip", scale=1)
        edit = gr.Button(
            "Change my last ranking (for 5 minutes after submitting)", size="sm", elem_id="rg-edit-last"
        )
        with gr.Accordion("My account", open=False):
            old = gr.Textbox(label="Current password", type="password", max_length=1024, elem_id="rg-pw-old")
            new = gr.Textbox(label="New password", type="password", max_length=1024, elem_id="rg-pw-new")
            again = gr.Textbox(
                label="New password again", type="password", max_length=1024, elem_id="rg-pw-again"
            )
            change = gr.Button("Change password", size="sm", elem_id="rg-pw-change")
            pw_message = gr.Markdown(elem_id="rg-pw-message")
        keyboard_helper()
    return _Work(box, study, start, logout, guidelines, progress, prompt, message, slots, buttons, submit,
                 skip, reason, note, arena, arena_buttons, edit,
                 [old, new, again, change, pw_message])  # fmt: skip


def build_annotate_tab(services: Services, user_state: Any) -> AnnotateTab:
    """Lay out the Annotate tab and wire its events (call inside a ``gr.Blocks``)."""
    auth, draft = _browser_mirrors()
    task_state = gr.State(None)
    with gr.Group(visible=True) as login_box:
        gr.Markdown("**Log in** to annotate (accounts: `python -m annotation user add NAME`).")
        with gr.Row():
            username = gr.Textbox(label="Username", max_length=64, elem_id="rg-username")
            password = gr.Textbox(label="Password", type="password", max_length=1024, elem_id="rg-password")
        login_btn = gr.Button("Log in", variant="primary", elem_id="rg-login")
    login_message = gr.Markdown(elem_id="rg-login-message")
    w = _work_panel(services)
    work_box, study, ranks = w.box, w.study, [slot[2] for slot in w.slots]

    task_outputs: list[Any] = [task_state, w.prompt, w.guidelines, w.progress, w.message]
    task_outputs += [c for slot in w.slots for c in slot] + [w.buttons, w.arena]
    q = {"concurrency_id": ANNOTATE_QUEUE, "concurrency_limit": ANNOTATE_LIMIT}

    def studies_update(user: Any) -> Any:
        return _studies_dropdown(services, user)

    @ui_errors
    def on_login(name: str, pw: str, request: gr.Request) -> tuple[Any, ...]:
        user, token = login(services, name, pw, client_address(request))
        hello = f"Logged in as **{user['username']}** ({user['role']})."
        return user, token, hello, gr.Group(visible=False), gr.Column(visible=True), studies_update(user)

    login_outputs = [user_state, auth, login_message, login_box, work_box, study]
    assert len(login_outputs) == LOGIN_OUTPUTS
    login_event = login_btn.click(on_login, [username, password], login_outputs, api_name="login", **q)
    password.submit(on_login, [username, password], login_outputs, api_visibility="private", **q)

    def on_logout(user: Any) -> tuple[Any, ...]:
        logout(services, user)
        return None, "", "Logged out.", gr.Group(visible=True), gr.Column(visible=False), gr.Dropdown()

    logout_event = w.logout.click(on_logout, user_state, login_outputs, api_name="logout", **q)

    @ui_errors
    def on_start(user: Any, st: Any, dr: Any) -> list[Any]:
        return task_frame(services, user, st, dr)

    w.start.click(on_start, [user_state, study, draft], task_outputs, api_name="next_task", **q)

    def on_rank(task: Any, *values: Any) -> Any:
        if not task:
            return gr.skip()
        return json.dumps({"task_id": task["task_id"], "study_id": task["study_id"], "ranks": list(values)})

    # one event for all the rank boxes, "always_last": a choice made while the previous draft is on
    # its way waits for it and sends the newest ranks, so drafts cannot land out of order
    gr.on([r.input for r in ranks], on_rank, [task_state, *ranks], draft, api_visibility="private",
          queue=False, trigger_mode="always_last")  # fmt: skip

    def then_next(user: Any, task: Any, st: Any, msg: str) -> list[Any]:
        out = task_frame(services, user, st or (task or {}).get("study_id"), {})
        out[4] = f"{msg} {out[4]}"
        return [*out, ""]

    @ui_errors
    def on_submit(user: Any, task: Any, st: Any, *values: Any) -> list[Any]:
        return then_next(user, task, st, submit(services, user, task, list(values), skipped=False))

    @ui_errors
    def on_skip(user: Any, task: Any, st: Any, why: Any, words: Any) -> list[Any]:
        msg = submit(services, user, task, [], skipped=True, reason=skip_reason(why, words))
        return [*then_next(user, task, st, msg), gr.Dropdown(value=None), ""]

    w.submit.click(on_submit, [user_state, task_state, study, *ranks], [*task_outputs, draft],
                   api_name="submit_ranking", **q)  # fmt: skip
    w.skip.click(on_skip, [user_state, task_state, study, w.reason, w.note],
                 [*task_outputs, draft, w.reason, w.note], api_name="skip_task", **q)  # fmt: skip

    def arena_handler(choice: str) -> Any:
        @ui_errors
        def on_arena(user: Any, task: Any, st: Any) -> list[Any]:
            if not task or len(task.get("candidate_ids", [])) != 2:
                raise refuse("The quick answers are for tasks with two images.")
            ranks = list(ARENA[choice])
            return then_next(
                user, task, st, submit(services, user, task, ranks, False, both_bad=choice == "both_bad")
            )

        on_arena.__name__ = f"on_arena_{choice}"
        return on_arena

    for choice, button in w.arena_buttons.items():
        button.click(arena_handler(choice), [user_state, task_state, study], [*task_outputs, draft],
                     api_name=f"arena_{choice}", **q)  # fmt: skip

    @ui_errors
    def on_edit(user: Any, st: Any, task: Any) -> list[Any]:
        return edit_frame(services, user, st or (task or {}).get("study_id"))

    w.edit.click(on_edit, [user_state, study, task_state], task_outputs, api_name="edit_last_ranking", **q)

    old, new, again, change, pw_message = w.account

    @ui_errors
    def on_change_password(user: Any, o: str, n: str, a: str) -> tuple[str, str, str, str]:
        return change_password(services, user, o, n, a), "", "", ""

    change.click(on_change_password, [user_state, old, new, again], [pw_message, old, new, again],
                 api_name="change_password", **q)  # fmt: skip

    def on_restore(token: Any, dr: Any) -> list[Any]:
        return restore_frame(services, token, dr, len(task_outputs))

    return AnnotateTab(username, password, login_btn, login_message, login_box, work_box, study,
                       w.submit, w.skip, ranks, w.message, auth, draft, login_event, logout_event,
                       on_restore, [*login_outputs, *task_outputs])  # fmt: skip
