"""Box geometry for rewards, in ONE convention: normalised ``(x1, y1, x2, y2)`` floats in [0, 1],
origin at the top-left corner, y growing downwards (image convention).

Detectors give pixels, plans give GoT integers in 0–1000: both are converted here before any
comparison, so thresholds (relation margins, "near" distances) always mean fractions of the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..plans import match_boxes
from ..types import COORD_MAX, Box

NBox = tuple[float, float, float, float]
"""A normalised box ``(x1, y1, x2, y2)`` in [0, 1], top-left origin."""

SPATIAL_RELATIONS = ("left of", "right of", "above", "below", "near")


def from_pixels(box: Sequence[float], width: int, height: int) -> NBox:
    """Pixel ``(x1, y1, x2, y2)`` → normalised, clipped to the image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        min(max(x1 / width, 0.0), 1.0),
        min(max(y1 / height, 0.0), 1.0),
        min(max(x2 / width, 0.0), 1.0),
        min(max(y2 / height, 0.0), 1.0),
    )


def from_cxcywh(box: Sequence[float]) -> NBox:
    """Normalised centre/size (DETR-style heads) → normalised corners, clipped to [0, 1]."""
    cx, cy, w, h = (float(v) for v in box)
    return tuple(min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))  # type: ignore[return-value]


def from_plan_box(box: Box) -> NBox:
    """GoT box (0–1000 integers) → normalised."""
    return (box.x1 / COORD_MAX, box.y1 / COORD_MAX, box.x2 / COORD_MAX, box.y2 / COORD_MAX)


def to_plan_box(label: str, box: NBox) -> Box:
    """Normalised → GoT box (rounded to 0–1000 integers); a non-finite coordinate is a ValueError."""
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"box {box} of {label!r} has a non-finite coordinate")
    x1, y1, x2, y2 = (round(min(max(v, 0.0), 1.0) * COORD_MAX) for v in box)
    return Box(label, x1, y1, x2, y2)


def center(box: NBox) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def iou(a: NBox, b: NBox) -> float:
    """Intersection over union of two normalised boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: Sequence[NBox], scores: Sequence[float], iou_threshold: float = 0.5) -> list[int]:
    """Indices kept by non-maximum suppression (torchvision's), highest score first."""
    if not boxes:
        return []
    import torch
    from torchvision.ops import nms as tv_nms

    b = torch.tensor([list(x) for x in boxes], dtype=torch.float32)  # [N, 4]
    s = torch.tensor(list(scores), dtype=torch.float32)  # [N]
    return [int(i) for i in tv_nms(b, s, iou_threshold)]


def relation_holds(a: NBox, b: NBox, relation: str, margin: float = 0.05, near: float = 0.3) -> bool:
    """Is box ``a`` ``relation`` box ``b``? Centres are compared in normalised coordinates.

    ``left of``: a's centre is more than ``margin`` to the left of b's (only the stated axis is
    compared, as GenEval does). ``above``: a's centre is more than ``margin`` higher (smaller
    y). ``near``: centre distance at most ``near`` (a fraction of the image side).
    """
    (ax, ay), (bx, by) = center(a), center(b)
    if relation == "left of":
        return ax < bx - margin
    if relation == "right of":
        return ax > bx + margin
    if relation == "above":
        return ay < by - margin
    if relation == "below":
        return ay > by + margin
    if relation in ("near", "next to"):
        return math.hypot(ax - bx, ay - by) <= near
    raise ValueError(f"unknown relation {relation!r}; choose one of {', '.join(SPATIAL_RELATIONS)}")


def plan_image_iou(
    planned: Sequence[Box], found: Sequence[Box]
) -> tuple[float, list[tuple[int, int, float]]]:
    """Mean IoU over the planned boxes after optimal one-to-one matching (``plans.match_boxes``).

    Unmatched planned boxes count as 0, so a plan whose objects are missing from the image scores
    lower; extra found boxes cost nothing. Returns the mean and the ``(planned_index, found_index,
    iou)`` pairs. An empty plan gives 0.
    """
    if not planned:
        return 0.0, []
    pairs = match_boxes(list(planned), list(found))
    return sum(p[2] for p in pairs) / len(planned), pairs
