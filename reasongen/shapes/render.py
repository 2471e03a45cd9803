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

from reasongen.types import Box

from .scene import BACKGROUND, COLORS, SHAPES, Scene, ShapeObject, texture_rgb

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


def _paste(img: Image.Image, rgb: tuple[int, int, int], mask: Image.Image) -> None:
    """``img.paste(rgb, mask=mask)`` over the mask's non-zero bounding box only: the same pixels
    (a zero mask leaves a pixel as it is) at a fraction of the cost, since an object covers a small
    part of the supersampled canvas (blending the whole canvas was most of a scene's render time)."""
    bbox = mask.getbbox()
    if bbox is not None:
        img.paste(rgb, bbox, mask=mask.crop(bbox))


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
        _paste(img, COLORS[obj.color], shape_mask)
        if obj.texture:
            tex = _texture_mask(obj, canvas)
            tex = Image.fromarray(np.minimum(np.asarray(tex), np.asarray(shape_mask)))
            _paste(img, texture_rgb(obj.color), tex)
    if supersample > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    return img


def render_scene(scene: Scene, size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Render a scene (see ``render_objects``)."""
    return render_objects(scene.objects, size, supersample)


PLAN_UNKNOWN_RGB = (128, 128, 128)
"""What a plan box draws in when its label names no colour of the world (grey, no world colour)."""


def render_plan(boxes: Iterable[Box], size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Draw a plan as the scene it asks for: each box's label read as an object
    (``geneval.object_from_label``: shape, colour and texture words) and drawn to fill its box, as
    the renderer draws scenes. A label without a known colour is drawn grey; a label without a
    known shape becomes the box's grey outline, so an unreadable box still shows where it is.
    Boxes are clipped to the canvas; empty ones draw nothing. Used by reward models that see an
    image beside its plan (``reasongen.rewards.learned``, image mode ``image_plan``)."""
    from .geneval import object_from_label

    if size < 16 or supersample < 1:
        raise ValueError(f"size must be >= 16 and supersample >= 1; got {size}, {supersample}")
    canvas = size * supersample
    s = canvas / 1000.0
    img = Image.new("RGB", (canvas, canvas), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for raw in boxes:
        x1, y1 = min(max(raw.x1, 0), 1000), min(max(raw.y1, 0), 1000)
        x2, y2 = min(max(raw.x2, 0), 1000), min(max(raw.y2, 0), 1000)
        if x2 <= x1 or y2 <= y1:
            continue
        obj = object_from_label(Box(raw.label, x1, y1, x2, y2))
        rgb = COLORS.get(obj.color, PLAN_UNKNOWN_RGB)
        if obj.shape not in SHAPES:
            draw.rectangle((x1 * s, y1 * s, x2 * s - 1, y2 * s - 1), outline=PLAN_UNKNOWN_RGB,
                           width=max(1, supersample * 2))  # fmt: skip
            continue
        shape_mask = _draw_mask(obj, canvas)
        _paste(img, rgb, shape_mask)
        if obj.texture:
            tex = np.minimum(np.asarray(_texture_mask(obj, canvas)), np.asarray(shape_mask))
            tex_rgb = texture_rgb(obj.color) if obj.color in COLORS else (192, 192, 192)
            _paste(img, tex_rgb, Image.fromarray(tex))
    if supersample > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    return img
