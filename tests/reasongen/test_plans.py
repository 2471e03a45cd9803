"""Plan parsing, formatting, geometry and drawing."""

from __future__ import annotations

import pytest

from reasongen.plans import (
    MAX_PLAN_BOXES,
    box_iou,
    format_plan,
    match_boxes,
    parse_plan,
    render_plan,
)
from reasongen.types import Box


def test_canonical_plan_round_trips():
    boxes = [Box("red circle", 10, 20, 300, 400), Box("blue square", 500, 500, 990, 1000)]
    text = "A scene. " + format_plan(boxes) + " Done."
    plan = parse_plan(text)
    assert list(plan.boxes) == boxes
    assert plan.errors == ()
    assert plan.text == text


def test_got_example_with_spaces_between_tags():
    text = (
        "A <|obj_start|>vibrant red tulip bouquet<|obj_end|> <|box_start|>(36,66),(907,694)<|box_end|>"
        " in a <|obj_start|>yellow vase<|obj_end|> <|box_start|>( 202 , 482 ),( 729 , 964 )<|box_end|>"
    )
    plan = parse_plan(text)
    assert [b.label for b in plan.boxes] == ["vibrant red tulip bouquet", "yellow vase"]
    assert plan.boxes[1] == Box("yellow vase", 202, 482, 729, 964)


def test_tolerant_variants_brackets_four_tuple_and_bare_labels():
    plan = parse_plan("a playful brown dog (100,200),(350,450)\nthe cat [1, 2, 30, 40]")
    assert plan.boxes == (Box("a playful brown dog", 100, 200, 350, 450), Box("the cat", 1, 2, 30, 40))


def test_clamps_huge_and_negative_coordinates_and_fixes_swapped_corners():
    plan = parse_plan("<|obj_start|>x<|obj_end|><|box_start|>(900,-50),(99999,700.6)<|box_end|>")
    assert plan.boxes == (Box("x", 900, 0, 1000, 701),)
    swapped = parse_plan("<|obj_start|>y<|obj_end|><|box_start|>(800,900),(100,200)<|box_end|>")
    assert swapped.boxes == (Box("y", 100, 200, 800, 900),)


def test_malformed_boxes_are_skipped_and_reported():
    text = (
        "<|obj_start|>ok<|obj_end|><|box_start|>(1,1),(9,9)<|box_end|>"
        "<|obj_start|>letters<|obj_end|><|box_start|>(a,b),(c,d)<|box_end|>"
        "<|obj_start|>flat<|obj_end|><|box_start|>(5,5),(5,90)<|box_end|>"
        "<|obj_start|>unterminated<|obj_end|><|box_start|>(1,2"
    )
    plan = parse_plan(text)
    assert plan.boxes == (Box("ok", 1, 1, 9, 9),)
    assert len(plan.errors) == 3
    assert any("letters" in e for e in plan.errors)
    assert any("zero area" in e for e in plan.errors)


def test_empty_and_plain_text_give_empty_plans():
    assert parse_plan("").boxes == ()
    assert parse_plan("just a description of a cat").boxes == ()
    with pytest.raises(ValueError, match="string"):
        parse_plan(None)  # type: ignore[arg-type]


def test_unicode_labels_survive():
    plan = parse_plan("<|obj_start|>猫 🐱 café<|obj_end|><|box_start|>(0,0),(500,500)<|box_end|>")
    assert plan.boxes[0].label == "猫 🐱 café"
    assert render_plan(plan, 128).size == (128, 128)


def test_runaway_plans_are_capped():
    text = format_plan([Box(f"o{i}", 0, 0, 10 + i, 10 + i) for i in range(MAX_PLAN_BOXES + 5)])
    plan = parse_plan(text)
    assert len(plan.boxes) == MAX_PLAN_BOXES
    assert "beyond the limit" in plan.errors[-1]


def test_iou_and_optimal_matching():
    a, b = Box("a", 0, 0, 100, 100), Box("b", 50, 0, 150, 100)
    assert box_iou(a, b) == pytest.approx(50 * 100 / (2 * 100 * 100 - 50 * 100))
    assert box_iou(a, Box("c", 200, 200, 300, 300)) == 0.0
    planned = [Box("x", 0, 0, 100, 100), Box("y", 500, 500, 600, 600)]
    found = [Box("y'", 510, 500, 600, 600), Box("x'", 0, 0, 90, 100)]
    pairs = match_boxes(planned, found)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert pairs[0][2] == pytest.approx(0.9)
    assert match_boxes([], found) == []


def test_render_plan_draws_boxes_where_planned():
    img = render_plan([Box("thing", 0, 0, 500, 500)], size=(200, 100))
    assert img.size == (200, 100)
    # the box outline is drawn at x=100 (half of 200) somewhere inside the top half
    column = [img.getpixel((99, y)) for y in range(20, 50)] + [img.getpixel((100, y)) for y in range(20, 50)]
    assert any(px != (255, 255, 255) for px in column)
    assert img.getpixel((190, 90)) == (255, 255, 255)
    with pytest.raises(ValueError):
        render_plan([], size=0)
