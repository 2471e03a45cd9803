"""Helpers shared by the tabs: who is logged in, error translation, small HTML renderers."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr

log = logging.getLogger("reasongen.app")

GENERATE_QUEUE = "generate"
"""concurrency_id of every event that runs the model: one shared queue."""
ANNOTATE_QUEUE = "annotate"
"""concurrency_id of login, task and ranking events: never behind generation."""
ANNOTATE_LIMIT = 16
IMAGE_BUTTONS = ["download", "fullscreen"]
"""No "share" button: it would upload to Hugging Face."""


def model_label(model_id: str, cwd: Path | None = None) -> str:
    """How the page names the model: a hub id as is, a local folder relative to the working
    directory when under it, else by its folder name (never the server's absolute path)."""
    path = Path(model_id)
    if not path.is_absolute():
        return model_id
    try:
        return str(path.relative_to(cwd or Path.cwd()))
    except ValueError:
        return path.name


def require_user(user: dict[str, Any] | None) -> dict[str, Any]:
    """The logged-in user of this session, or a UI error saying to log in."""
    if not user or "id" not in user:
        raise gr.Error("Please log in first (Annotate tab).", title="Not logged in")
    return user


def require_researcher(user: dict[str, Any] | None) -> dict[str, Any]:
    """The logged-in researcher, or a UI error (visitors and annotators see no study data)."""
    if not user or user.get("role") != "researcher":
        raise gr.Error(
            f"Study results and study management are for researchers; you are logged in as "
            f"{user.get('username')!r}, an {user.get('role')}."
            if user
            else "Study results and study management are for researchers: log in on the Annotate "
            "tab with a researcher account.",
            title="Researchers only",
        )
    return user


def client_address(request: Any) -> str:
    """The client's address as the server sees it (``gr.Request.client.host``), the key of the
    per-address limits: the direct peer, or for a peer on this machine (a local reverse proxy) the
    address it names in ``X-Forwarded-For`` (uvicorn's default, ``FORWARDED_ALLOW_IPS``)."""
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return str(host) if host else "unknown"


def refuse(message: str, title: str = "Error") -> gr.Error:
    """A ``gr.Error`` that Gradio shows the user without printing a traceback (the caller logs)."""
    return gr.Error(message, title=title, print_exception=False)


def _as_ui_error(fn: Callable[..., Any], err: Exception, failure: str) -> gr.Error:
    """``gr.Error`` for ``err``: the message itself for bad input (``ValueError``, annotation
    errors), a generic ``failure`` message for anything else. A refusal is logged as one line
    (unless its raiser logged it: a ``gr.Error`` made with ``print_exception=False``), an
    unexpected failure with its traceback, and Gradio prints no traceback of its own."""
    if isinstance(err, gr.Error):
        if err.print_exception:
            log.info("refused %s: %s", fn.__name__, err.message)
            err.print_exception = False
        return err
    if isinstance(err, ValueError):
        log.info("refused %s: %s", fn.__name__, err)
        return refuse(str(err))
    log.exception("handler %s failed", fn.__name__)
    return refuse(f"{failure} ({type(err).__name__}: {err}).")


def ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ``ValueError`` (bad input, annotation errors) into ``gr.Error`` messages and any other
    failure into a generic ``gr.Error``, so the page never dies on an exception; each refusal is
    one log line, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise _as_ui_error(fn, err, "Something went wrong") from None

    return wrapper


def quiet_input_errors(demo: gr.Blocks) -> None:
    """Make Gradio's own input checks (a number above a slider's maximum, a choice not offered,
    sent by an API client) refusals like the handlers': one log line and no traceback. They are
    raised while Gradio preprocesses an event's inputs, before any handler runs."""
    preprocess = demo.preprocess_data

    @wraps(preprocess)
    async def quiet(*args: Any, **kwargs: Any) -> Any:
        try:
            return await preprocess(*args, **kwargs)
        except gr.Error as err:
            if err.print_exception:
                log.info("refused input: %s", err.message)
                err.print_exception = False
            raise

    demo.preprocess_data = quiet  # type: ignore[method-assign]


def ui_errors_stream(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``ui_errors`` for generator handlers."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from fn(*args, **kwargs)
        except Exception as err:
            raise _as_ui_error(fn, err, "Generation failed") from None

    return wrapper


SHOW_SIZE = 256
"""Images smaller than this are scaled up for display (nearest neighbour keeps token blocks crisp)."""


def show_image(image: Any) -> Any:
    """``image`` scaled up by a whole factor to at least ``SHOW_SIZE`` pixels wide (None stays None)."""
    if image is None or image.width >= SHOW_SIZE:
        return image
    from PIL import Image

    k = -(-SHOW_SIZE // image.width)
    return image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)


def scores_html(row: dict[str, float | None], errors: dict[str, str] | None = None) -> str:
    """A candidate's reward scores as numbers with bars (bar length: score clipped to [0, 1])."""
    if not row and not errors:
        return "<p><em>No rewards configured.</em></p>"
    lines = ['<table class="rg-scores">']
    for name, val in row.items():
        label = html.escape(name)
        if val is None:
            num, width = "n/a", 0.0
        else:
            num, width = f"{val:.3f}", max(0.0, min(1.0, val)) * 100
        strong = ' class="rg-combined"' if name == "combined" else ""
        lines.append(
            f"<tr{strong}><td>{label}</td><td class='rg-num'>{num}</td>"
            f"<td class='rg-barcell'><div class='rg-bar' style='width:{width:.1f}%'></div></td></tr>"
        )
    for name, msg in (errors or {}).items():
        lines.append(
            f"<tr><td>{html.escape(name)}</td><td colspan='2' class='rg-err'>unavailable: "
            f"{html.escape(msg[:200])}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


CSS = """
.rg-scores { width: 100%; border-collapse: collapse; font-size: 0.9em; }
.rg-scores td { padding: 2px 6px; }
.rg-num { text-align: right; font-variant-numeric: tabular-nums; width: 4.5em; }
.rg-barcell { width: 50%; }
.rg-bar { height: 0.8em; background: #4f7cff; border-radius: 3px; }
.rg-combined td { font-weight: bold; border-top: 1px solid #999; }
.rg-combined .rg-bar { background: #16a34a; }
.rg-err { color: #b45309; font-size: 0.85em; }
.rg-pixel img { image-rendering: pixelated; object-fit: contain !important; }
.rg-count { font-size: 0.85em; color: #666; }
.rg-over { color: #b91c1c; font-weight: bold; }
"""

KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    const b = document.querySelector('#rg-submit');
    if (b && b.offsetParent !== null) { e.preventDefault(); b.click(); }
  }
});
</script>
"""
