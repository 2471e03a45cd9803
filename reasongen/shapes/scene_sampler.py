"""Seeded sampling of shapes-world scenes: layouts of non-overlapping square boxes, the objects
that fill them, and the prompt and metadata of each scene.

``sample_scene`` draws one scene of a GenEval category (or, through
``reasongen.shapes.compose``, of a compositional one) from a ``random.Random``; ``sample_scenes``
draws a category-balanced list from a seed. The world's facts (vocabularies, sizes, gaps, the
relation test) live in ``reasongen.shapes.scene``, the prompt wording in
``reasongen.shapes.prompts``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from reasongen.types import CATEGORIES, RELATIONS

from .compose import sample_composed
from .placement import place_boxes
from .prompts import write_prompt
from .scene import (
    CELL_SIDES,
    COLORS,
    MAX_COUNT,
    SHAPES,
    SIZES,
    TEXTURE_PROB,
    TEXTURES,
    Relation,
    Scene,
    ShapeObject,
)


def _texture(rng: random.Random) -> str | None:
    return rng.choice(TEXTURES) if rng.random() < TEXTURE_PROB else None


def _objects(
    shapes: list[str], colors: list[str], sizes: list[str], rng: random.Random,
    relation: Relation | None = None, textured: bool = True, cell: int | None = None,
) -> tuple[ShapeObject, ...]:  # fmt: skip
    textures = [_texture(rng) if textured and not cell else None for _ in shapes]
    specs = [(f"{c} {s}", z, "") for s, c, z in zip(shapes, colors, sizes)]
    boxes = place_boxes(specs, rng, relation, cell)
    return tuple(ShapeObject(s, c, z, t, b) for s, c, z, t, b in zip(shapes, colors, sizes, textures, boxes))


def _sample_objects(
    category: str, rng: random.Random, cell: int | None = None
) -> tuple[tuple[ShapeObject, ...], Relation | None]:
    color_names = list(COLORS)
    if category in ("single_object", "colors"):
        shape, color, size = rng.choice(SHAPES), rng.choice(color_names), rng.choice(SIZES)
        return _objects([shape], [color], [size], rng, cell=cell), None
    if category in ("two_object", "color_attr"):
        shapes = rng.sample(SHAPES, 2)
        colors = rng.sample(color_names, 2)
        return _objects(shapes, colors, [rng.choice(SIZES) for _ in shapes], rng, cell=cell), None
    if category == "counting":
        n = rng.randint(1, MAX_COUNT)
        size = rng.choice(SIZES) if n <= 2 else "small"
        color = rng.choice(color_names)
        shapes = [rng.choice(SHAPES)] * n
        return _objects(shapes, [color] * n, [size] * n, rng, textured=False, cell=cell), None
    if category == "position":
        shapes = rng.sample(SHAPES, 2)
        colors = rng.sample(color_names, 2)
        relation = Relation(0, rng.choice(RELATIONS), 1)
        sizes = [rng.choice(SIZES) for _ in shapes]
        return _objects(shapes, colors, sizes, rng, relation, cell=cell), relation
    raise ValueError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")


def sample_scene(category: str, rng: random.Random, cell: int | None = None) -> Scene:
    """Sample a scene of ``category`` with its prompt and metadata: one of GenEval's
    ``CATEGORIES`` or of the compositional ones (``reasongen.shapes.compose.COMPOSITIONAL``).

    Deterministic given the state of ``rng``. The metadata passes
    ``reasongen.types.validate_metadata``. With ``cell`` (e.g. 125: an 8 × 8 grid) the layout is
    cell-aligned: boxes on the grid with sides ``CELL_SIDES``, at least one cell apart, no
    textures (the embedded model's token grid, see ``reasongen.shapes.codes``).
    """
    if cell is not None and (cell <= 0 or any(v % cell for v in (1000, *CELL_SIDES.values()))):
        raise ValueError(f"cell must divide 1000 and the sides {CELL_SIDES}; e.g. 125")
    if category not in CATEGORIES:
        return sample_composed(category, rng, cell)
    objects, relation = _sample_objects(category, rng, cell)
    prompt, metadata = write_prompt(category, objects, relation, rng)
    return Scene(category, objects, prompt, metadata, relation)


def sample_scenes(
    n: int, seed: int = 0, categories: tuple[str, ...] = CATEGORIES, cell: int | None = None
) -> list[Scene]:
    """``n`` scenes cycling through ``categories`` (balanced), from one seeded generator."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [sample_scene(categories[i % len(categories)], rng, cell) for i in range(n)]


def distinct_scenes(
    rng: random.Random,
    categories: Sequence[str],
    size: int,
    held: set[str],
    cell_of: Callable[[random.Random], int | None],
) -> list[tuple[Scene, int | None]]:
    """``size`` scenes from ``rng``, each with its layout cell: per scene a category drawn from
    ``categories``, then its cell (``cell_of(rng)``), then the scene; a scene whose text is in
    ``held`` or already drawn is skipped. Raises ``ValueError`` after ``1000 × size`` draws (the
    categories cannot give that many new texts). Training batches of the reward model's
    pre-training and GRPO's supervised mix are drawn with it."""
    drawn: list[tuple[Scene, int | None]] = []
    prompts: set[str] = set()
    tries = 0
    while len(drawn) < size:
        tries += 1
        if tries > 1000 * size:
            raise ValueError(f"cannot draw {size} distinct scenes of {sorted(set(categories))} outside "
                             "the held texts: widen the categories or draw fewer")  # fmt: skip
        category = rng.choice(categories)
        cell = cell_of(rng)
        scene = sample_scene(category, rng, cell)
        if scene.prompt in held or scene.prompt in prompts:
            continue
        drawn.append((scene, cell))
        prompts.add(scene.prompt)
    return drawn
