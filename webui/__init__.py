"""ReasonGen's Gradio UI: the Generate, Annotate, Results and Manage tabs.

Why a package of its own: ``app.py`` must stay a thin entry point (flags, services, launch), and
the UI needs both libraries — ``reasongen`` (generation, plans, rewards) and ``annotation`` (users,
studies, rankings, statistics) — while ``reasongen`` may not import ``annotation``. So the UI lives
here, above both, and ``app.py`` only wires it.

- :mod:`webui.services`: ``AppConfig``, ``Services`` (model, store, rewards, rate limits);
- :mod:`webui.auth`: signed, expiring, revocable login tokens and the signing key file;
  :mod:`webui.ratelimit`: the per-address and per-username limits and login backoff;
- :mod:`webui.security`: the HTTP security headers (CSP, framing, nosniff, referrer);
- :mod:`webui.generate_tab`, :mod:`webui.compare_tab`, :mod:`webui.annotate_tab`,
  :mod:`webui.results_tab`, :mod:`webui.manage_tab`: the tabs (:mod:`webui.streaming`,
  :mod:`webui.reasoning` and :mod:`webui.model_card` serve the first two);
- :func:`build_demo` assembles them; :func:`launch` serves a demo.

Importing this package sets ``GRADIO_ANALYTICS_ENABLED=False`` and ``HF_HUB_OFFLINE=1`` unless they
are already set (both are needed for Gradio to make no network calls), and loads nothing else.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from typing import Any

import gradio as gr

from .auth import TokenSigner
from .common import CSS, KEYBOARD_JS, model_label, quiet_input_errors
from .ratelimit import RateLimiter
from .services import AppConfig, Services, build_rewards

__all__ = ["AppConfig", "RateLimiter", "Services", "TokenSigner", "build_demo", "build_rewards", "launch"]

QUEUE_MAX_SIZE = 64
"""Requests waiting in the queue beyond this are refused with a 'queue full' message."""


def build_demo(services: Services) -> gr.Blocks:
    """The whole app as a ``gr.Blocks`` (not launched)."""
    from .annotate_tab import RESTORE_JS, build_annotate_tab
    from .compare_tab import build_compare_tab
    from .generate_tab import build_generate_tab
    from .manage_tab import build_manage_tab, manage_view
    from .results_tab import build_results_tab

    model_id = model_label(getattr(services.loaded, "model_id", "?"))
    with gr.Blocks(title="ReasonGen") as demo:
        user_state = gr.State(None)
        gr.Markdown(
            "# ReasonGen\nWatch a reasoning text-to-image model think (chain of thought), plan "
            f"(boxes) and draw, with every reward's score. Model: `{model_id}`."
        )
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                gen = build_generate_tab(services, user_state)
            with gr.Tab("Compare", id="compare"):
                cmp = build_compare_tab(services, user_state)
            with gr.Tab("Annotate", id="annotate"):
                ann = build_annotate_tab(services, user_state)
            with gr.Tab("Results", id="results"):
                res = build_results_tab(services, user_state)
            with gr.Tab("Manage", id="manage"):
                man = build_manage_tab(services, user_state)

        def role_views(user: Any) -> list[Any]:
            user = services.current_user(user)
            researcher = bool(user) and user.get("role") == "researcher"
            names = [s.name for s in services.store.list_studies()] if researcher else []
            return [
                gr.Group(visible=researcher),
                gr.Dropdown(choices=names, value=None),
                gr.Markdown(visible=not researcher),
                gr.Column(visible=researcher),
                gr.Dropdown(choices=names, value=names[0] if len(names) == 1 else None),
                gr.Group(visible=researcher),
                gr.Dropdown(choices=names, value=None),
                *manage_view(services, user),
            ]

        role_outputs = [gen.send_group, gen.study_choice, res.locked, res.body, res.study, cmp.send_group,
                        cmp.study_choice, *man.view_outputs]  # fmt: skip
        private = {"api_visibility": "private", "queue": False}
        ann.login_event.then(role_views, user_state, role_outputs, **private)
        ann.logout_event.then(role_views, user_state, role_outputs, **private)
        restore = demo.load(ann.on_restore, [ann.auth, ann.draft], ann.restore_outputs, js=RESTORE_JS,
                            api_visibility="private")  # fmt: skip
        restore.then(role_views, user_state, role_outputs, **private).then(
            lambda user: gr.Tabs(selected="annotate") if user else gr.skip(), user_state, tabs, **private
        )
    quiet_input_errors(demo)
    demo.queue(max_size=QUEUE_MAX_SIZE)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Serve ``demo`` with the app's CSS, keyboard shortcuts and security headers
    (``webui.security``); extra kwargs go to ``launch``."""
    from starlette.middleware import Middleware

    from .security import SecurityHeaders

    kwargs.setdefault("footer_links", ["api"])
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(SecurityHeaders)]
    kwargs["app_kwargs"] = app_kwargs
    from .reasoning import CSS as REASONING_CSS

    return demo.launch(
        server_name=host, server_port=port, css=CSS + REASONING_CSS, head=KEYBOARD_JS, **kwargs
    )
