"""Scenes of the shapes world: vocabularies, sizes, object and scene types, the relation test.

A scene is a handful of non-overlapping coloured shapes on a plain light background. Boxes are in
GoT coordinates (integers 0–1000, ``(x1, y1)`` top left), snapped to multiples of ``GRID`` and
always square: the shape is drawn to fill its box (see ``reasongen.shapes.render``), so a box read
off an image is the box that was planned. Scenes are drawn by
``reasongen.shapes.scene_sampler.sample_scene``, for one of GenEval's six categories together
with their prompt and GenEval-style metadata.

Rendering facts a detector can rely on (kept here so detector and renderer agree):

- background ``BACKGROUND``; every object's fill is exactly its colour's RGB in ``COLORS``;
- textures (``striped``: diagonal stripes, ``dotted``: a dot grid) are drawn inside the shape in
  the object's colour mixed half-way with white (``texture_rgb``), covering well under half of it;
- objects keep a gap of at least ``MIN_GAP`` units from each other and ``MARGIN`` from the border;
- in ``position`` scenes the relation is unambiguous: for left/right the boxes are separated
  horizontally and their centres differ by at most ``MAX_CROSS_OFFSET`` vertically (mirror for
  above/below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasongen.types import RELATIONS, Box

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
"""Shape classes (GenEval 'class' names in metadata)."""

PLURALS: dict[str, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 30, 36),
    "orange": (250, 128, 0),
    "yellow": (238, 214, 0),
    "green": (28, 160, 60),
    "blue": (30, 80, 225),
    "purple": (130, 40, 190),
    "pink": (250, 125, 205),
    "black": (25, 25, 25),
}
"""Colour names and their exact fill RGB, chosen far apart from each other and the background."""

BACKGROUND: tuple[int, int, int] = (246, 244, 238)

SIZES: tuple[str, ...] = ("small", "large")
SIZE_RANGE: dict[str, tuple[int, int]] = {"small": (200, 260), "large": (320, 400)}
"""Side of an object's (square) box in GoT units, per size; the two ranges do not overlap."""

TEXTURES: tuple[str, ...] = ("striped", "dotted")
TEXTURE_PROB = 0.2
"""Probability that an object gets one of ``TEXTURES`` (otherwise plain)."""

GRID = 10
CELL_SIDES: dict[str, int] = {"small": 250, "large": 375}
"""Box sides in cell-aligned layouts (``cell=125``: 2 and 3 cells of an 8 × 8 grid)."""
MARGIN = 40
MIN_GAP = 40
MAX_CROSS_OFFSET = 120
MAX_COUNT = 4


def size_threshold_for(cell: int | None = None) -> int:
    """Box side (GoT units) from which an object is ``large`` rather than ``small``.

    Free layouts draw sides from ``SIZE_RANGE``, cell-aligned layouts (the embedded model's,
    e.g. ``cell=125``) use ``CELL_SIDES``. With ``cell`` the midpoint of the cell sides is
    returned; without, the midpoint between the largest small side and the smallest large side
    of both layouts, so that one detector serves both (falling back to the free layout's midpoint
    if the two layouts' sizes were ever to interleave).
    """
    small, large = SIZES[0], SIZES[-1]
    if cell:
        return (CELL_SIDES[small] + CELL_SIDES[large]) // 2
    small_max, large_min = SIZE_RANGE[small][1], SIZE_RANGE[large][0]
    both_small_max = max(small_max, CELL_SIDES[small])
    both_large_min = min(large_min, CELL_SIDES[large])
    if both_small_max < both_large_min:
        return (both_small_max + both_large_min) // 2
    return (small_max + large_min) // 2


def texture_rgb(color: str) -> tuple[int, int, int]:
    """The colour a texture is drawn in: the object's colour mixed half-way with white."""
    r, g, b = COLORS[color]
    return ((r + 255) // 2, (g + 255) // 2, (b + 255) // 2)


@dataclass(frozen=True)
class ShapeObject:
    """One object: a shape class, a colour, a size class, an optional texture and its box."""

    shape: str
    color: str
    size: str
    texture: str | None
    box: Box

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; use one of {', '.join(SHAPES)}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; use one of {', '.join(COLORS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; use one of {', '.join(SIZES)}")
        if self.texture is not None and self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}; use None or one of {TEXTURES}")
        b = self.box
        if not (0 <= b.x1 < b.x2 <= 1000 and 0 <= b.y1 < b.y2 <= 1000):
            raise ValueError(f"box {b} must lie inside 0–1000 with x1 < x2 and y1 < y2")

    @property
    def label(self) -> str:
        """The plan label: colour and shape, e.g. ``"red circle"``."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Relation:
    """``objects[subject]`` is ``relation`` (one of ``RELATIONS``) ``objects[reference]``."""

    subject: int
    relation: str
    reference: int


@dataclass(frozen=True)
class Scene:
    """A sampled scene: objects in plan order, its prompt and GenEval-style metadata."""

    category: str
    objects: tuple[ShapeObject, ...]
    prompt: str
    metadata: dict[str, Any] = field(compare=False, hash=False)
    relation: Relation | None = None

    @property
    def boxes(self) -> tuple[Box, ...]:
        """The objects' boxes, labelled, in plan order."""
        return tuple(o.box for o in self.objects)


def relation_holds(subject: Box, relation: str, reference: Box) -> bool:
    """Whether ``subject`` is ``relation`` ``reference`` in the world's strict sense."""
    (sx, sy), (rx, ry) = subject.center, reference.center
    if relation == "left of":
        return subject.x2 + MIN_GAP <= reference.x1 and abs(sy - ry) <= MAX_CROSS_OFFSET
    if relation == "right of":
        return reference.x2 + MIN_GAP <= subject.x1 and abs(sy - ry) <= MAX_CROSS_OFFSET
    if relation == "above":
        return subject.y2 + MIN_GAP <= reference.y1 and abs(sx - rx) <= MAX_CROSS_OFFSET
    if relation == "below":
        return reference.y2 + MIN_GAP <= subject.y1 and abs(sx - rx) <= MAX_CROSS_OFFSET
    raise ValueError(f"unknown relation {relation!r}; use one of {', '.join(RELATIONS)}")
