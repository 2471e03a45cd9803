"""Scenes for the whole shapes language: the compositional categories.

GenEval's six templates (``reasongen.shapes.scene_sampler``) are a small part of what
``parse_prompt`` reads and what the app invites. The compositional categories cover the rest:

- ``count_color``: one counted group with its colour ("three blue triangles");
- ``count_color_size``: the same with its size ("two large red circles");
- ``two_counts`` / ``three_counts``: two or three counted kinds, each colour named half the time
  ("two squares and three red circles");
- ``three_objects`` / ``four_objects``: single objects with their colour, size named 30% of the
  time ("a red circle, a small blue star and a green cross");
- ``relation_attr``: a relation between objects with attributes ("a red star to the left of a
  blue square");
- ``textured``: one or two objects with their texture and colour ("a striped red circle and a
  dotted blue star"): free layouts only, since the embedded model's cell layout draws no texture.

Each scene's objects are listed group by group (the plan order); a group shares shape, colour
and size, and distinct groups have distinct shapes when counted (so "two squares" excludes a
third square) and distinct colours (so every object can be told apart). The prompt and its
metadata come from ``write_mentions``.

``sample_scene`` / ``sample_scenes`` of ``reasongen.shapes`` accept these names beside the six
GenEval ones. ``reasongen.shapes.pools`` draws the benchmark's compositional suite (held-out
prompt seeds: seed ``s`` draws from ``SUITE_SEED_BASE + s``) and the training pools. Boxes are
placed by ``reasongen.shapes.placement``, shared with the GenEval sampler.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from reasongen.types import CATEGORIES, RELATIONS

from .placement import place_boxes
from .prompts import Mention, write_mentions
from .scene import COLORS, SHAPES, SIZES, TEXTURES, Relation, Scene, ShapeObject

COMPOSITIONAL: tuple[str, ...] = (
    "count_color", "count_color_size", "two_counts", "three_counts", "three_objects",
    "four_objects", "relation_attr", "textured",
)  # fmt: skip
"""Every compositional category (``textured`` needs free layouts)."""
POOL_CATEGORIES: tuple[str, ...] = (*CATEGORIES, *COMPOSITIONAL)
"""Every category a scene (and a training pool) can be drawn from."""
RELATION_CATEGORIES: tuple[str, ...] = ("position", "relation_attr")
"""The categories whose prompts state a relation between two objects ("A left of B")."""
SUITE_SEED_BASE = 100_000
"""The compositional suite's prompt seed ``s`` seeds its sampler with ``SUITE_SEED_BASE + s``,
far from every training pool's seed (pre-training uses its seed + 1…6, GRPO ``shapes_seed`` 7)."""
SIZE_MENTION_PROB = 0.3
COLOR_MENTION_PROB = 0.5
FULL_LANGUAGE: tuple[str, ...] = (
    *CATEGORIES, "count_color", "count_color", "count_color_size", "two_counts", "two_counts",
    "three_counts", "three_counts", "three_objects", "three_objects", "four_objects",
    "four_objects", "relation_attr", "relation_attr",
)  # fmt: skip
"""The full-language pool of the retraining command (cell layout): each GenEval template once,
each compositional category twice (``count_color_size`` once: ``count_color`` scenes already
carry sizes in their CoT), so that about two thirds of the pool composes."""


def suite_categories(cell: int | None) -> tuple[str, ...]:
    """The compositional suite's categories for a layout: ``textured`` only where textures are
    drawn (free layouts, ``cell`` None)."""
    return COMPOSITIONAL if not cell else tuple(c for c in COMPOSITIONAL if c != "textured")


def check_categories(names: Iterable[str], cell: int | None = None) -> None:
    """Raise ``ValueError`` unless every name is a pool category drawable in the layout."""
    names = list(names)
    unknown = sorted(set(names) - set(POOL_CATEGORIES))
    if not names:
        raise ValueError(f"name at least one category of {', '.join(POOL_CATEGORIES)}")
    if unknown:
        raise ValueError(f"unknown category {', '.join(unknown)}: categories must name some of "
                         f"{', '.join(POOL_CATEGORIES)}")  # fmt: skip
    if cell and "textured" in names:
        raise ValueError("'textured' scenes need free layouts (cell 0): cell-aligned scenes draw no texture")


def _sizes(counts: Sequence[int], rng: random.Random) -> list[str]:
    """One size per group: anything for up to two objects in all, at most one large group of a
    single object for three, all small beyond (so the layout fits on the canvas)."""
    total = sum(counts)
    if total <= 2:
        return [rng.choice(SIZES) for _ in counts]
    sizes = [SIZES[0]] * len(counts)
    singles = [i for i, n in enumerate(counts) if n == 1]
    if total == 3 and singles and rng.random() < 0.5:
        sizes[rng.choice(singles)] = SIZES[-1]
    return sizes


def _groups(
    shapes: Sequence[str],
    counts: Sequence[int],
    rng: random.Random,
    cell: int | None,
    textured: bool = False,
    relation: str | None = None,
) -> tuple[tuple[ShapeObject, ...], list[tuple[int, ...]], Relation | None]:
    """Objects for groups of ``counts`` of ``shapes`` (a colour and size per group), laid out
    apart (and, with ``relation``, group 0 ``relation`` group 1, single objects), and each
    group's object indices."""
    colors = rng.sample(list(COLORS), len(shapes))
    sizes = _sizes(counts, rng)
    textures = [rng.choice(TEXTURES) if textured else None for _ in shapes]
    specs, kinds, spans = [], [], []
    for s, c, z, t, n in zip(shapes, colors, sizes, textures, counts):
        spans.append(tuple(range(len(kinds), len(kinds) + n)))
        kinds += [(s, c, z, t)] * n
        specs += [(f"{c} {s}", z, "")] * n
    rel = Relation(0, relation, 1) if relation is not None else None
    boxes = place_boxes(specs, rng, rel, cell)
    objects = tuple(ShapeObject(s, c, z, t, b) for (s, c, z, t), b in zip(kinds, boxes))
    return objects, spans, rel


def _attributes(rng: random.Random, color: float = 1.0, size: float = 0.0) -> tuple[str, ...]:
    out = []
    if rng.random() < size:
        out.append("size")
    if rng.random() < color:
        out.append("color")
    return tuple(out)


def sample_composed(category: str, rng: random.Random, cell: int | None = None) -> Scene:
    """A scene of a compositional ``category`` with its prompt and metadata (deterministic given
    ``rng``); ``cell`` as in ``sample_scene``."""
    check_categories([category], cell)
    if category not in COMPOSITIONAL:
        raise ValueError(f"{category!r} is a GenEval category: use reasongen.shapes.sample_scene")
    relation = None
    if category in ("count_color", "count_color_size"):
        counts = [rng.randint(1, 4)]
        shapes = [rng.choice(SHAPES)]
        attrs = [("size", "color") if category == "count_color_size" else ("color",)]
        exact = [True]
    elif category in ("two_counts", "three_counts"):
        k = 2 if category == "two_counts" else 3
        shapes = rng.sample(SHAPES, k)
        counts = [rng.randint(1, 3) for _ in shapes] if k == 2 else [rng.randint(1, 2) for _ in shapes]
        while sum(counts) > 5:
            counts[counts.index(max(counts))] -= 1
        attrs = [_attributes(rng, COLOR_MENTION_PROB) for _ in shapes]
        exact = [True] * k
    elif category in ("three_objects", "four_objects"):
        k = 3 if category == "three_objects" else 4
        shapes = [rng.choice(SHAPES) for _ in range(k)]
        counts = [1] * k
        attrs = [_attributes(rng, 1.0, SIZE_MENTION_PROB) for _ in shapes]
        exact = [False] * k
    elif category == "relation_attr":
        shapes = rng.sample(SHAPES, 2)
        counts = [1, 1]
        attrs = [_attributes(rng, 1.0, SIZE_MENTION_PROB) for _ in shapes]
        exact = [False, False]
        relation = rng.choice(RELATIONS)
    else:  # textured
        k = rng.randint(1, 2)
        shapes = rng.sample(SHAPES, k)
        counts = [1] * k
        attrs = [("size", "texture", "color") if rng.random() < SIZE_MENTION_PROB else ("texture", "color")
                 for _ in shapes]  # fmt: skip
        exact = [False] * k
    objects, spans, rel = _groups(shapes, counts, rng, cell, category == "textured", relation)
    mentions = [Mention(span, ex, a) for span, ex, a in zip(spans, exact, attrs)]
    prompt, metadata = write_mentions(objects, mentions, rng, relation)
    return Scene(category, objects, prompt, metadata, rel)
