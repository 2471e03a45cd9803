"""Reading typed prompts back into GenEval metadata: the writer's prompts round-trip, the rest is
read only when every word is understood."""

from __future__ import annotations

import pytest

from reasongen.shapes import sample_scenes
from reasongen.shapes.geneval import check_image
from reasongen.shapes.parse import parse_prompt
from reasongen.shapes.render import render_objects
from reasongen.shapes.scene import ShapeObject
from reasongen.types import Box


@pytest.mark.parametrize("cell", [None, 125])
def test_every_written_prompt_reads_back_as_its_metadata(cell) -> None:
    for scene in sample_scenes(600, seed=11, cell=cell):
        assert parse_prompt(scene.prompt) == scene.metadata, scene.prompt


def test_typed_prompts() -> None:
    assert parse_prompt("Two green stars.") == {
        "tag": "counting",
        "prompt": "Two green stars.",
        "include": [{"class": "star", "count": 2, "color": "green"}],
        "exclude": [{"class": "star", "count": 3}],
    }
    assert parse_prompt("a red circle to the left of a blue square")["include"] == [
        {"class": "square", "count": 1, "color": "blue"},
        {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]},
    ]
    meta = parse_prompt("an image of a small dotted pink diamond, a square and 3 crosses")
    assert meta["tag"] == "color_attr"
    assert meta["include"] == [
        {"class": "diamond", "count": 1, "size": "small", "texture": "dotted", "color": "pink"},
        {"class": "square", "count": 1},
        {"class": "cross", "count": 3},
    ]
    assert meta["exclude"] == [{"class": "cross", "count": 4}]
    # A shape named twice: the total is not stated, so nothing is excluded.
    meta = parse_prompt("two red stars and a blue star")
    assert meta["tag"] == "color_attr" and "exclude" not in meta
    assert parse_prompt("a large star")["tag"] == "colors"
    assert parse_prompt("a star and a circle")["tag"] == "two_object"
    assert parse_prompt("photo of three circles above a star")["include"][1] == {
        "class": "circle",
        "count": 3,
        "position": ["above", 0],
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a big dog",  # unknown words
        "a stars",  # quantity and noun disagree
        "three star",
        "a red blue star",  # two colours for one object
        "seven circles",  # beyond the number words read
        "a star left of a circle left of a square",  # two relations
        "a star, a circle, a square, a cross and a diamond",  # more than four objects
        "a circle" + " and a circle" * 200,  # longer than any prompt of the language
        "x" * 100_000,
    ],
)
def test_text_outside_the_language_is_not_read(text) -> None:
    assert parse_prompt(text) is None


def test_a_read_prompt_scores_a_matching_render_and_rejects_a_wrong_count() -> None:
    meta = parse_prompt("two green stars")

    def star(x: int) -> ShapeObject:
        return ShapeObject("star", "green", "small", None, Box("green star", x, 400, x + 220, 620))

    two = render_objects([star(100), star(600)])
    three = render_objects([star(40), star(390), star(740)])
    assert check_image(two, meta)[0].correct
    verdict = check_image(three, meta)[0]
    assert not verdict.correct and any("star<3" in r for r in verdict.reasons)
