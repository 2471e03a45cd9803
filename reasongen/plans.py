"""Layout plans: parse GoT box plans out of chain-of-thought text, format them, draw them, compare them.

The canonical GoT form is ``<|obj_start|>label<|obj_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``
with integer coordinates in 0–1000 and ``(x1, y1)`` the top-left corner. Models (and people) also
write tolerant variants, which the parser accepts:

- spaces anywhere, square brackets instead of parentheses, or four bare numbers ``(x1,y1,x2,y2)``;
- a box without the object tags, labelled by the text that precedes it on the same line
  (GoT's own SFT data: ``a playful brown dog (100,200),(350,450)``);
- floats, negative or too-large numbers (clamped to 0–1000), swapped corners (fixed).

A box that cannot be read (missing numbers, letters inside, zero area, unterminated tags) is
skipped and reported in ``Plan.errors``; parsing never raises on model output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.optimize import linear_sum_assignment

from .types import COORD_MAX, Box, Plan

OBJ_START, OBJ_END = "<|obj_start|>", "<|obj_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"

MAX_PLAN_BOXES = 64
"""Boxes beyond this many are dropped (reported): a runaway CoT must not flood the canvas."""

_NUM = r"[-+]?\d+(?:\.\d+)?"
# Two corner pairs "(x1,y1),(x2,y2)" or one 4-tuple "(x1,y1,x2,y2)"; () or [].
_COORDS = re.compile(
    rf"[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]]\s*,?\s*[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]]"
    rf"|[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]]"
)
_TAGGED = re.compile(
    re.escape(OBJ_START) + r"(.*?)" + re.escape(OBJ_END) + r"\s*" + re.escape(BOX_START) + r"(.*?)"
    r"(?:" + re.escape(BOX_END) + r"|(?=" + re.escape(OBJ_START) + r")|$)",
    re.S,
)
_BARE_LABEL = re.compile(r"([^\n.;:()\[\]<>]{1,80}?)\s*$")


def _clamp(v: float) -> int:
    return int(round(min(max(v, 0.0), float(COORD_MAX))))


def _box_from_numbers(label: str, nums: Sequence[str]) -> tuple[Box | None, str | None]:
    """Make a box from four numeric strings: clamp, fix swapped corners, reject empty ones."""
    x1, y1, x2, y2 = (_clamp(float(n)) for n in nums)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    label = " ".join(label.split())
    if not label:
        return None, "box without a label"
    if x2 - x1 == 0 or y2 - y1 == 0:
        return None, f"box {label!r} has zero area"
    return Box(label, x1, y1, x2, y2), None


def _coords_of(match: re.Match[str]) -> list[str]:
    groups = match.groups()
    return [g for g in groups[:4]] if groups[0] is not None else [g for g in groups[4:]]


def parse_plan(text: str) -> Plan:
    """Parse every box in ``text`` (tagged GoT form first, else bare ``label (x1,y1),(x2,y2)``)."""
    if not isinstance(text, str):
        raise ValueError(f"plan text must be a string, got {type(text).__name__}")
    boxes: list[Box] = []
    errors: list[str] = []
    tagged = list(_TAGGED.finditer(text))
    if tagged:
        for m in tagged:
            label, body = m.group(1), m.group(2)
            c = _COORDS.search(body)
            if c is None:
                errors.append(f"unreadable box for {' '.join(label.split())!r}: {body.strip()[:60]!r}")
                continue
            box, err = _box_from_numbers(label, _coords_of(c))
            boxes.append(box) if box else errors.append(str(err))
    else:
        for line in text.splitlines():
            start = 0
            for c in _COORDS.finditer(line):
                lm = _BARE_LABEL.search(line[start : c.start()])
                start = c.end()
                label = lm.group(1) if lm else ""
                label = label.strip(" ,-*")
                box, err = _box_from_numbers(label, _coords_of(c))
                boxes.append(box) if box else errors.append(str(err))
    if len(boxes) > MAX_PLAN_BOXES:
        errors.append(f"{len(boxes) - MAX_PLAN_BOXES} boxes beyond the limit of {MAX_PLAN_BOXES}")
        boxes = boxes[:MAX_PLAN_BOXES]
    return Plan(boxes=tuple(boxes), text=text, errors=tuple(errors))


def format_box(box: Box) -> str:
    """One box in GoT's canonical form."""
    return f"{OBJ_START}{box.label}{OBJ_END}{BOX_START}({box.x1},{box.y1}),({box.x2},{box.y2}){BOX_END}"


def format_plan(boxes: Sequence[Box], sep: str = " ") -> str:
    """Boxes in GoT's canonical form, joined by ``sep``; ``parse_plan`` reads it back exactly."""
    return sep.join(format_box(b) for b in boxes)


# --------------------------------------------------------------------------- geometry


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    ix = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def match_boxes(a: Sequence[Box], b: Sequence[Box]) -> list[tuple[int, int, float]]:
    """Optimal one-to-one matching maximising total IoU (Hungarian); pairs with IoU 0 are dropped.

    Returns ``(index_in_a, index_in_b, iou)`` sorted by ``index_in_a``.
    """
    if not a or not b:
        return []
    iou = np.array([[box_iou(x, y) for y in b] for x in a])  # [len(a), len(b)]
    rows, cols = linear_sum_assignment(-iou)
    return sorted((int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] > 0)


# --------------------------------------------------------------------------- drawing

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40),
]  # fmt: skip


def render_plan(plan: Plan | Sequence[Box], size: int | tuple[int, int] = 384) -> Image.Image:
    """Draw the plan's labelled boxes on a blank white canvas (used for display and R_spa)."""
    boxes = plan.boxes if isinstance(plan, Plan) else tuple(plan)
    w, h = (size, size) if isinstance(size, int) else size
    if w <= 0 or h <= 0:
        raise ValueError(f"canvas size must be positive, got {size!r}")
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, min(w, h) // 24))
    line = max(1, min(w, h) // 128)
    for i, b in enumerate(boxes):
        color = _PALETTE[i % len(_PALETTE)]
        xy = (b.x1 * w / COORD_MAX, b.y1 * h / COORD_MAX, b.x2 * w / COORD_MAX, b.y2 * h / COORD_MAX)
        draw.rectangle(xy, outline=color, width=line)
        tx, ty = xy[0] + line + 1, xy[1] + line
        bbox = draw.textbbox((tx, ty), b.label, font=font)
        draw.rectangle(bbox, fill=color)
        draw.text((tx, ty), b.label, fill="white", font=font)
    return canvas
