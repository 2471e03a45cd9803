"""The embedded model's image tokens: one semantic code per cell of a cell-aligned scene.

In a cell-aligned layout (``sample_scene(..., cell=CELL)``, ``reasongen.shapes.scene_sampler``)
every object covers whole cells of a ``GRID_CELLS × GRID_CELLS`` grid, so each cell shows either
background or one known piece of one object: the piece ``(dr, dc)`` (row and column inside the
object) of a ``(shape, size)`` in a colour. The code of a cell names exactly that, which makes
the world's "VQ encoder" exact; the VQ *decoder* (transformers' ``JanusVQVAE``) is trained to
draw each code (``training/``).

Background has one code per cell: code ``k`` is "background at cell k" (raster order), so the
token sequence itself tells the LM where it is drawing; all background codes share one codebook
vector, so the decoder draws them alike. Object codes are
``NUM_BACKGROUND + geometry_index * len(COLORS) + colour_index``; their codebook vector is the
normalised sum of a colour direction and a geometry direction (``codebook_vectors``).
"""

from __future__ import annotations

import numpy as np

from .scene import CELL_SIDES, COLORS, SHAPES, SIZES, Scene, ShapeObject

CELL = 125
"""Cell side in GoT units: an 8 × 8 grid."""
GRID_CELLS = 1000 // CELL
SIZE_CELLS = {s: CELL_SIDES[s] // CELL for s in SIZES}
GEOMETRIES: tuple[tuple[str, str, int, int], ...] = tuple(
    (shape, size, dr, dc)
    for shape in SHAPES
    for size in SIZES
    for dr in range(SIZE_CELLS[size])
    for dc in range(SIZE_CELLS[size])
)
"""Every object piece: (shape, size, row in object, column in object)."""
_GEOM_INDEX = {g: i for i, g in enumerate(GEOMETRIES)}
_COLOR_INDEX = {c: i for i, c in enumerate(COLORS)}
COLOR_NAMES = tuple(COLORS)
NUM_BACKGROUND = GRID_CELLS * GRID_CELLS
NUM_CODES = NUM_BACKGROUND + len(GEOMETRIES) * len(COLORS)
EMBED_DIM = 1 + len(COLORS) + len(GEOMETRIES)
"""Codebook vector size: background flag, colour one-hot, geometry one-hot."""


def code_of(shape: str, color: str, size: str, dr: int, dc: int) -> int:
    """The code of piece ``(dr, dc)`` of a ``size`` ``color`` ``shape``."""
    return NUM_BACKGROUND + _GEOM_INDEX[(shape, size, dr, dc)] * len(COLORS) + _COLOR_INDEX[color]


def describe_code(code: int) -> tuple[str, str, str, int, int] | None:
    """``(shape, color, size, dr, dc)`` of a code, or None for background."""
    if not 0 <= code < NUM_CODES:
        raise ValueError(f"code {code} outside 0..{NUM_CODES - 1}")
    if code < NUM_BACKGROUND:
        return None
    g, c = divmod(code - NUM_BACKGROUND, len(COLORS))
    shape, size, dr, dc = GEOMETRIES[g]
    return shape, COLOR_NAMES[c], size, dr, dc


def _cells(obj: ShapeObject) -> tuple[int, int, int]:
    b = obj.box
    n = SIZE_CELLS[obj.size]
    if b.x1 % CELL or b.y1 % CELL or b.x2 - b.x1 != n * CELL or b.y2 - b.y1 != n * CELL:
        raise ValueError(f"box {b} of a {obj.size} object is not aligned to {CELL}-unit cells")
    return b.y1 // CELL, b.x1 // CELL, n


def scene_codes(scene: Scene | tuple[ShapeObject, ...]) -> np.ndarray:
    """The ``[GRID_CELLS * GRID_CELLS]`` codes (raster order) of a cell-aligned scene."""
    objects = scene.objects if isinstance(scene, Scene) else scene
    grid = np.arange(NUM_BACKGROUND, dtype=np.int64).reshape(GRID_CELLS, GRID_CELLS)
    for obj in objects:
        r0, c0, n = _cells(obj)
        for dr in range(n):
            for dc in range(n):
                grid[r0 + dr, c0 + dc] = code_of(obj.shape, obj.color, obj.size, dr, dc)
    return grid.reshape(-1)


def codebook_vectors() -> np.ndarray:
    """``[NUM_CODES, EMBED_DIM]`` unit vectors: background, or (colour + geometry) / sqrt(2)."""
    vec = np.zeros((NUM_CODES, EMBED_DIM), dtype=np.float32)
    vec[:NUM_BACKGROUND, 0] = 1.0
    for code in range(NUM_BACKGROUND, NUM_CODES):
        g, c = divmod(code - NUM_BACKGROUND, len(COLORS))
        vec[code, 1 + c] = vec[code, 1 + len(COLORS) + g] = 2**-0.5
    return vec


def corner_mask() -> np.ndarray:
    """``[NUM_CODES]`` booleans: the code is an object's top-left piece (where it starts)."""
    return np.array([(d is not None and d[3:] == (0, 0)) for d in map(describe_code, range(NUM_CODES))])
