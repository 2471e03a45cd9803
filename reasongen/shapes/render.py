"""Anti-aliased renderer of shapes-world scenes (supersampled with PIL, then downscaled).

Each shape fills its square box exactly (its polygon is scaled to the box's bounds), so the
bounding box of the drawn pixels is the planned box up to a pixel. See ``reasongen.shapes.scene``
for the colour and texture conventions a detector may rely on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw

from .scene import BACKGROUND, COLORS, Scene, ShapeObject, texture_rgb

IMAGE_SIZE = 128
SUPERSAMPLE = 4


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """The shape's outline in unit coordinates (scaled to its box afterwards)."""
    if shape == "square":
        return [(0, 0), (1, 0), (1, 1), (0, 1)]
    if shape == "triangle":
        return [(0.5, 0), (1, 1), (0, 1)]
    if shape == "diamond":
        return [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)]
    if shape == "cross":
        a, b = 0.32, 0.68
        return [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b),
                (0, a), (a, a)]  # fmt: skip
    if shape == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(ang), r * math.sin(ang)))
        return pts
    raise ValueError(f"shape {shape!r} has no polygon")


def _fit(
    points: list[tuple[float, float]], box: tuple[float, float, float, float]
) -> list[tuple[float, float]]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    bx1, by1, bx2, by2 = box
    return [(bx1 + (x - x0) / w * (bx2 - bx1), by1 + (y - y0) / h * (by2 - by1)) for x, y in points]


def _draw_mask(obj: ShapeObject, canvas: int) -> Image.Image:
    """A binary mask (mode "L") of the object's shape on a canvas of ``canvas`` pixels."""
    s = canvas / 1000.0
    b = obj.box
    # Pixel-edge convention: box [x1, x2) covers pixels x1*s .. x2*s - 1.
    box = (b.x1 * s, b.y1 * s, b.x2 * s - 1, b.y2 * s - 1)
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    if obj.shape == "circle":
        draw.ellipse(box, fill=255)
    else:
        draw.polygon(_fit(_unit_polygon(obj.shape), box), fill=255)
    return mask


def _texture_mask(obj: ShapeObject, canvas: int) -> Image.Image:
    """Where the texture is drawn (before clipping to the shape)."""
    s = canvas / 1000.0
    b = obj.box
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    side = (b.x2 - b.x1) * s
    if obj.texture == "striped":
        period, width = side / 3.5, max(1.0, side / 20.0)
        x = b.x1 * s - side
        while x < b.x2 * s + side:
            draw.line([(x, b.y2 * s), (x + side, b.y1 * s)], fill=255, width=round(width))
            x += period
    elif obj.texture == "dotted":
        period, r = side / 4.0, side / 14.0
        for i in range(4):
            for j in range(4):
                cx, cy = b.x1 * s + (i + 0.5) * period, b.y1 * s + (j + 0.5) * period
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    return mask


def render_objects(
    objects: Iterable[ShapeObject], size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE
) -> Image.Image:
    """Draw objects on the background; returns an RGB image of ``size`` × ``size`` pixels."""
    if size < 16 or supersample < 1:
        raise ValueError(f"size must be >= 16 and supersample >= 1; got {size}, {supersample}")
    canvas = size * supersample
    img = Image.new("RGB", (canvas, canvas), BACKGROUND)
    for obj in objects:
        shape_mask = _draw_mask(obj, canvas)
        img.paste(COLORS[obj.color], mask=shape_mask)
        if obj.texture:
            tex = _texture_mask(obj, canvas)
            tex = Image.fromarray(np.minimum(np.asarray(tex), np.asarray(shape_mask)))
            img.paste(texture_rgb(obj.color), mask=tex)
    if supersample > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    return img


def render_scene(scene: Scene, size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Render a scene (see ``render_objects``)."""
    return render_objects(scene.objects, size, supersample)
