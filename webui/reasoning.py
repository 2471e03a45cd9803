"""The chain of thought as readable HTML: each box of the plan as a labelled chip in the colour
the plan drawing gives it (``reasongen.plans.render_plan``), the rest as plain text."""

from __future__ import annotations

import html
import re

from reasongen.plans import _COORDS, _PALETTE, _TAGGED, parse_plan

_TOKEN = re.compile(r"<\|[a-z_]+\|>")


def _chip(label: str, coords: str, k: int) -> str:
    r, g, b = _PALETTE[k % len(_PALETTE)]
    return (
        f"<span class='rg-chip' style='border-color:rgb({r},{g},{b});background:rgba({r},{g},{b},0.15)'>"
        f"<span class='rg-chip-dot' style='background:rgb({r},{g},{b})'></span>{html.escape(label)} "
        f"<span class='rg-chip-xy'>{html.escape(coords)}</span></span>"
    )


def _plain(text: str) -> str:
    return html.escape(_TOKEN.sub(" ", text))


def cot_html(text: str) -> str:
    """``text`` (a CoT) as HTML with each readable box as a chip numbered like the plan's boxes;
    the special tokens are dropped and everything else is escaped."""
    boxes = parse_plan(text).boxes
    out: list[str] = []
    pos, k = 0, 0
    tagged = list(_TAGGED.finditer(text))
    for m in tagged or _COORDS.finditer(text):
        # the same reading as the plan's: a box it skipped (unreadable) stays plain text
        one = parse_plan(m.group(0) if tagged else "box " + m.group(0)).boxes
        if not one or k >= len(boxes):
            continue
        box = boxes[k]
        out.append(_plain(text[pos : m.start()]))
        out.append(_chip(box.label, f"({box.x1},{box.y1}),({box.x2},{box.y2})", k))
        pos, k = m.end(), k + 1
    out.append(_plain(text[pos:]))
    return "<div class='rg-cot-chips'>" + "".join(out).strip() + "</div>"


CSS = """
.rg-cot-chips { line-height: 1.9; font-size: 0.92em; white-space: pre-wrap; }
.rg-chip { display: inline-block; border: 2px solid; border-radius: 999px; padding: 0 8px;
  margin: 0 2px; white-space: nowrap; font-weight: 600; }
.rg-chip-dot { display: inline-block; width: 0.7em; height: 0.7em; border-radius: 50%; margin-right: 4px; }
.rg-chip-xy { font-weight: normal; font-size: 0.85em; opacity: 0.75; }
"""
