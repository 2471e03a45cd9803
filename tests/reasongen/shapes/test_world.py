"""The shapes world: sampler, prompts, metadata, CoT plans and renderer agree."""

from __future__ import annotations

import random

import numpy as np
import pytest

from reasongen.plans import parse_plan
from reasongen.shapes import (
    BACKGROUND,
    COLORS,
    SHAPES,
    ShapeObject,
    relation_holds,
    render_objects,
    render_scene,
    sample_scene,
    sample_scenes,
    write_cot,
)
from reasongen.shapes.scene import MARGIN, MIN_GAP
from reasongen.types import CATEGORIES, Box, validate_metadata


@pytest.fixture(scope="module")
def scenes():
    return sample_scenes(240, seed=3)


def test_sampler_is_seeded_and_balanced(scenes):
    again = sample_scenes(240, seed=3)
    assert [s.prompt for s in again] == [s.prompt for s in scenes]
    assert [s.boxes for s in again] == [s.boxes for s in scenes]
    other = sample_scenes(240, seed=4)
    assert [s.prompt for s in other] != [s.prompt for s in scenes]
    counts = {c: sum(s.category == c for s in scenes) for c in CATEGORIES}
    assert set(counts.values()) == {40}


def test_objects_inside_canvas_and_apart(scenes):
    for s in scenes:
        for i, a in enumerate(s.boxes):
            assert MARGIN <= a.x1 < a.x2 <= 1000 - MARGIN + 10
            assert MARGIN <= a.y1 < a.y2 <= 1000 - MARGIN + 10
            for b in s.boxes[i + 1 :]:
                gap_x = max(b.x1 - a.x2, a.x1 - b.x2)
                gap_y = max(b.y1 - a.y2, a.y1 - b.y2)
                assert max(gap_x, gap_y) >= MIN_GAP


def test_metadata_matches_scene(scenes):
    for s in scenes:
        meta = validate_metadata(s.metadata)
        assert meta["tag"] == s.category and meta["prompt"] == s.prompt
        shapes_in_scene = sorted(o.shape for o in s.objects)
        required = sorted(e["class"] for e in meta["include"] for _ in range(e["count"]))
        assert required == shapes_in_scene
        for e in meta["include"]:
            assert e["class"] in s.prompt or e["class"] + "s" in s.prompt or "crosses" in s.prompt
            if "color" in e:
                assert any(o.shape == e["class"] and o.color == e["color"] for o in s.objects)
                assert e["color"] in s.prompt


def test_counting_excludes_more(scenes):
    for s in (s for s in scenes if s.category == "counting"):
        n = len(s.objects)
        assert 1 <= n <= 4
        assert s.metadata["exclude"] == [{"class": s.objects[0].shape, "count": n + 1}]


def test_position_relation_holds_and_is_in_metadata(scenes):
    pos = [s for s in scenes if s.category == "position"]
    assert {s.relation.relation for s in pos} == {"left of", "right of", "above", "below"}
    for s in pos:
        r = s.relation
        subj, ref = s.objects[r.subject], s.objects[r.reference]
        assert relation_holds(subj.box, r.relation, ref.box)
        assert s.metadata["include"][1]["position"] == [r.relation, 0]
        assert s.metadata["include"][0]["class"] == ref.shape
        assert f"{subj.shape} {r.relation} a" in s.prompt


def test_plan_boxes_are_scene_boxes(scenes):
    for s in scenes:
        cot = write_cot(s)
        plan = parse_plan(cot)
        assert plan.errors == ()
        assert plan.boxes == s.boxes
        assert [b.label for b in plan.boxes] == [f"{o.color} {o.shape}" for o in s.objects]
        assert parse_plan(write_cot(s, with_plan=False)).boxes == ()
        for o in s.objects:
            assert o.shape in cot or o.shape + "s" in cot or "crosses" in cot


def test_render_draws_each_object_in_its_box():
    obj = ShapeObject("square", "blue", "large", None, Box("blue square", 250, 500, 500, 750))
    img = np.asarray(render_objects([obj], size=128)).astype(int)  # [128, 128, 3]
    assert img.shape == (128, 128, 3)
    blue = np.all(img == COLORS["blue"], axis=-1)
    ys, xs = np.nonzero(blue)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (32, 63, 64, 95)
    assert np.all(img[0, 0] == BACKGROUND)


def test_render_is_antialiased_and_textured():
    rng = random.Random(0)
    s = sample_scene("colors", rng)
    img = np.asarray(render_scene(s, size=160)).astype(int)
    assert img.shape == (160, 160, 3)
    palette = [*COLORS.values(), BACKGROUND]
    exact = np.zeros(img.shape[:2], bool)
    for c in palette:
        exact |= np.all(img == c, axis=-1)
    assert (~exact).sum() > 0  # blended edge pixels exist
    box = Box("red circle", 100, 100, 500, 500)
    striped = ShapeObject("circle", "red", "large", "striped", box)
    plain = ShapeObject("circle", "red", "large", None, box)
    a = np.asarray(render_objects([striped])).astype(int)
    b = np.asarray(render_objects([plain])).astype(int)
    diff = np.any(a != b, axis=-1).sum()
    red = np.all(b == COLORS["red"], axis=-1).sum()
    assert 0.1 * red < diff < 0.5 * red


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown category"):
        sample_scene("nonsense", random.Random(0))
    with pytest.raises(ValueError, match="unknown shape"):
        ShapeObject("blob", "red", "small", None, Box("x", 0, 0, 10, 10))
    with pytest.raises(ValueError, match="inside 0–1000"):
        ShapeObject("circle", "red", "small", None, Box("x", 10, 0, 10, 10))
    assert len(SHAPES) >= 6 and len(COLORS) == 8


# --------------------------------------------------------------------------- cell-aligned layouts


def test_cell_aligned_scenes_sit_on_the_grid_and_code_exactly():
    from reasongen.shapes.codes import (
        CELL,
        GRID_CELLS,
        NUM_BACKGROUND,
        NUM_CODES,
        SIZE_CELLS,
        code_of,
        codebook_vectors,
        corner_mask,
        describe_code,
        scene_codes,
    )
    from reasongen.shapes.scene import CELL_SIDES

    scenes = sample_scenes(120, seed=5, cell=CELL)
    for s in scenes:
        validate_metadata(s.metadata)
        assert all(o.texture is None for o in s.objects)
        for o in s.objects:
            b = o.box
            assert b.x1 % CELL == 0 and b.y1 % CELL == 0
            assert b.x2 - b.x1 == b.y2 - b.y1 == CELL_SIDES[o.size]
        if s.relation is not None:
            r = s.relation
            assert relation_holds(s.objects[r.subject].box, r.relation, s.objects[r.reference].box)
        codes = scene_codes(s).reshape(GRID_CELLS, GRID_CELLS)
        assert (codes >= NUM_BACKGROUND).sum() == sum(SIZE_CELLS[o.size] ** 2 for o in s.objects)
        background = codes < NUM_BACKGROUND  # background codes name their own cell
        assert (codes[background] == np.arange(NUM_BACKGROUND).reshape(8, 8)[background]).all()
        assert corner_mask()[codes].sum() == len(s.objects)
        for o in s.objects:
            r0, c0 = o.box.y1 // CELL, o.box.x1 // CELL
            assert describe_code(int(codes[r0, c0])) == (o.shape, o.color, o.size, 0, 0)
        assert parse_plan(write_cot(s)).boxes == s.boxes
    assert describe_code(0) is None and describe_code(NUM_BACKGROUND - 1) is None
    assert describe_code(code_of("star", "pink", "large", 2, 1)) == ("star", "pink", "large", 2, 1)
    book = codebook_vectors()
    assert book.shape[0] == NUM_CODES
    assert np.allclose(np.linalg.norm(book, axis=1), 1.0)
    assert len({tuple(v) for v in book}) == NUM_CODES - NUM_BACKGROUND + 1
    with pytest.raises(ValueError, match="outside"):
        describe_code(NUM_CODES)
    with pytest.raises(ValueError, match="cell must divide"):
        sample_scene("colors", random.Random(0), cell=100)
    with pytest.raises(ValueError, match="not aligned"):
        scene_codes(sample_scenes(6, seed=1)[0])


def test_render_plan_draws_each_box_as_the_object_its_label_names() -> None:
    from reasongen.shapes.render import PLAN_UNKNOWN_RGB, render_objects, render_plan
    from reasongen.shapes.scene import BACKGROUND, COLORS
    from reasongen.types import Box

    assert render_plan([]).tobytes() == render_objects([]).tobytes()  # no plan: an empty canvas
    boxes = [
        Box("red circle", 0, 0, 250, 250),
        Box("square", 500, 0, 750, 250),  # no colour: grey
        Box("blue kite", 0, 500, 250, 750),  # no shape of the world: an outline
        Box("large green square", 600, 600, 1200, 1200),  # clipped to the canvas
        Box("red circle", 300, 300, 300, 400),  # empty: nothing
    ]
    im = render_plan(boxes, size=128)
    at = lambda x, y: im.getpixel((round(x * 128 / 1000), round(y * 128 / 1000)))  # noqa: E731
    assert at(125, 125) == COLORS["red"] and at(625, 125) == PLAN_UNKNOWN_RGB
    assert at(125, 625) == BACKGROUND and at(2, 625) != BACKGROUND  # the outline, not a fill
    assert at(800, 800) == COLORS["green"] and at(300, 350) == BACKGROUND


def test_paste_within_the_masks_bounds_draws_what_a_full_canvas_paste_draws() -> None:
    """The renderer blends each object over its mask's bounding box only; pixel for pixel that is
    PIL's whole-canvas paste (anti-aliased edges, a mask touching the border, an empty mask)."""
    from PIL import Image, ImageDraw

    from reasongen.shapes.render import _paste

    rng = random.Random(3)
    for k in range(20):
        base = Image.new("RGB", (64, 64), (10, 20, 30))
        ImageDraw.Draw(base).rectangle((0, 0, 31, 63), fill=(200, 100, 50))
        mask = Image.new("L", (64, 64), 0)
        if k:
            x, y = rng.randrange(-10, 60), rng.randrange(-10, 60)
            ImageDraw.Draw(mask).ellipse((x, y, x + rng.randrange(3, 40), y + rng.randrange(3, 40)), fill=255)
            mask = mask.resize((16, 16), Image.Resampling.BOX).resize((64, 64))  # soft edges
        want, got = base.copy(), base.copy()
        want.paste((0, 128, 255), mask=mask)
        _paste(got, (0, 128, 255), mask)
        assert got.tobytes() == want.tobytes()
