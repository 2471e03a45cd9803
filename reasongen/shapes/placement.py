"""Placing a scene's square boxes on the 1000×1000 canvas: apart from each other (by the world's
gap, or on a grid of ``cell``-sized cells) and, for relational scenes, so the relation holds.

Used by the GenEval scene sampler (``scene_sampler``) and the compositional one (``compose``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from reasongen.types import Box

from .scene import CELL_SIDES, GRID, MARGIN, MIN_GAP, SIZE_RANGE, Relation, relation_holds


def _snap(v: float) -> int:
    return round(v / GRID) * GRID


def _random_box(side: int, label: str, rng: random.Random, cell: int | None = None) -> Box:
    if cell:
        x1 = cell * rng.randint(0, (1000 - side) // cell)
        y1 = cell * rng.randint(0, (1000 - side) // cell)
    else:
        x1 = _snap(rng.uniform(MARGIN, 1000 - MARGIN - side))
        y1 = _snap(rng.uniform(MARGIN, 1000 - MARGIN - side))
    return Box(label, x1, y1, x1 + side, y1 + side)


def _apart(a: Box, b: Box, gap: int = MIN_GAP) -> bool:
    return a.x2 + gap <= b.x1 or b.x2 + gap <= a.x1 or a.y2 + gap <= b.y1 or b.y2 + gap <= a.y1


def box_side(size: str, rng: random.Random, cell: int | None = None) -> int:
    """A box side for ``size``: the cell side with ``cell``, else drawn from ``SIZE_RANGE``."""
    if cell:
        return CELL_SIDES[size]
    lo, hi = SIZE_RANGE[size]
    return _snap(rng.uniform(lo, hi))


def free_box(
    side: int, label: str, others: Sequence[Box], rng: random.Random, cell: int | None = None, tries: int = 50
) -> Box | None:
    """A square box of ``side`` at a random place apart from ``others`` (by the world's gap, or a
    cell with ``cell``), or None after ``tries`` draws."""
    gap = cell or MIN_GAP
    for _try in range(tries):
        box = _random_box(side, label, rng, cell)
        if all(_apart(box, other, gap) for other in others):
            return box
    return None


def place_boxes(
    specs: list[tuple[str, str, str]],
    rng: random.Random,
    relation: Relation | None = None,
    cell: int | None = None,
) -> list[Box]:
    """Place square boxes for ``(label, size, _)`` specs apart from each other (and related)."""
    for _ in range(2000):
        boxes: list[Box] = []
        for label, size, _t in specs:
            box = free_box(box_side(size, rng, cell), label, boxes, rng, cell)
            if box is None:
                break
            boxes.append(box)
        if len(boxes) != len(specs):
            continue
        if relation is None or relation_holds(
            boxes[relation.subject], relation.relation, boxes[relation.reference]
        ):
            return boxes
    raise RuntimeError(f"could not place {len(specs)} objects; sizes too large for the canvas")
