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


def task_frame(services: Services, user: dict[str, Any], study: Any, draft: Any) -> list[Any]:
    """Outputs showing the user's next (or still open) task of ``study``; see ``_task_outputs``."""
    from PIL import Image

    from annotation.workflow import next_task
    from reasongen.plans import render_plan
    from reasongen.types import Plan

    user = require_user(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study first.")
    st = services.store.get_study(study)
    view = next_task(services.store, int(user["id"]), st.id)
    progress = _progress_text(services, st.name, user["username"])
    guidelines = st.guidelines or services.default_guidelines
    if view is None:
        out: list[Any] = [None, f"### {st.name}", guidelines, progress,
                          "**No task for you right now. Thank you!** Tasks held by others come back "
                          "if they are not finished: try again later."]  # fmt: skip
        for _ in range(MAX_SLOTS):
            out += [gr.Column(visible=False), None, gr.Radio(choices=[], value=None), "", None]
        return [*out, gr.Row(visible=False)]
    k = len(view.candidates)
    draft = _draft(draft)
    saved = draft.get("ranks") if draft.get("task_id") == view.task_id else None
    task = {"task_id": view.task_id, "study_id": st.id, "candidate_ids": [c.id for c in view.candidates],
            "shown_at": time.time()}  # fmt: skip
    out = [task, f"### Prompt: {view.prompt}", guidelines, progress,
           f"Rank the {k} images: 1 = best, equal numbers = tie."]  # fmt: skip
    choices = [str(r) for r in range(1, k + 1)]
    for i in range(MAX_SLOTS):
        if i >= k:
            out += [gr.Column(visible=False), None, gr.Radio(choices=[], value=None), "", None]
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
    return [*out, gr.Row(visible=True)]


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


def submit(services: Services, user: Any, task: Any, ranks: list[Any], skipped: bool) -> str:
    """Store the ranking (or a skip) of the open task; return a confirmation line."""
    from annotation.validation import MAX_TIME_TAKEN_S
    from annotation.workflow import submit_ranking

    user = require_user(services.current_user(user))
    if not task or not task.get("task_id"):
        raise gr.Error("There is no open task: pick a study and press Start.")
    cids = task["candidate_ids"]
    taken = min(max(0.0, time.time() - float(task.get("shown_at", time.time()))), MAX_TIME_TAKEN_S)
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
    res = submit_ranking(services.store, int(user["id"]), int(task["study_id"]), int(task["task_id"]),
                         ranking, skipped=skipped, time_taken_s=taken)  # fmt: skip
    what = "Skipped" if skipped else "Saved"
    return f"{what} task {task['task_id']} (ranking {res.ranking_id})."


def _studies_dropdown(services: Services, user: Any, value: str | None = None) -> Any:
    names = [s.name for s in services.store.list_studies()] if user else []
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
                with gr.Column(visible=False, min_width=180) as col:
                    image = gr.Image(label=f"Image {i + 1}", format="png", buttons=IMAGE_BUTTONS,
                                     interactive=False, height=220, elem_id=f"rg-cand-{i}")  # fmt: skip
                    rank = gr.Radio(choices=[], label=f"Rank of image {i + 1}", elem_id=f"rg-rank-{i}")
                    with gr.Accordion("Reasoning", open=False):
                        cot = gr.Textbox(label="Chain of thought", lines=4, interactive=False)
                        plan = gr.Image(label="Plan", format="png", buttons=IMAGE_BUTTONS,
                                        interactive=False, height=160)  # fmt: skip
                slots.append([col, image, rank, cot, plan])
        with gr.Row(visible=False) as buttons:
            submit = gr.Button("Submit ranking (Ctrl+Enter)", variant="primary", elem_id="rg-submit")
            skip = gr.Button("Skip this task", elem_id="rg-skip")
    return _Work(
        box, study, start, logout, guidelines, progress, prompt, message, slots, buttons, submit, skip
    )


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
    task_outputs += [c for slot in w.slots for c in slot] + [w.buttons]
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

    for r in ranks:
        r.input(on_rank, [task_state, *ranks], draft, api_visibility="private", queue=False)

    @ui_errors
    def on_submit(user: Any, task: Any, st: Any, *values: Any) -> list[Any]:
        msg = submit(services, user, task, list(values), skipped=False)
        out = task_frame(services, user, st or (task or {}).get("study_id"), {})
        out[4] = f"{msg} {out[4]}"
        return [*out, ""]

    @ui_errors
    def on_skip(user: Any, task: Any, st: Any) -> list[Any]:
        msg = submit(services, user, task, [], skipped=True)
        out = task_frame(services, user, st or (task or {}).get("study_id"), {})
        out[4] = f"{msg} {out[4]}"
        return [*out, ""]

    w.submit.click(on_submit, [user_state, task_state, study, *ranks], [*task_outputs, draft],
                     api_name="submit_ranking", **q)  # fmt: skip
    w.skip.click(on_skip, [user_state, task_state, study], [*task_outputs, draft], api_name="skip_task",
                   **q)  # fmt: skip

    def on_restore(token: Any, dr: Any) -> list[Any]:
        return restore_frame(services, token, dr, len(task_outputs))

    return AnnotateTab(username, password, login_btn, login_message, login_box, work_box, study,
                       w.submit, w.skip, ranks, w.message, auth, draft, login_event, logout_event,
                       on_restore, [*login_outputs, *task_outputs])  # fmt: skip
