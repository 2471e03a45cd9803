"""Reading a CoT's description back: every description the world writes names its prompt."""

from __future__ import annotations

import pytest

from reasongen.shapes import sample_scenes, write_cot
from reasongen.shapes.cot import (
    Mention,
    description_faithfulness,
    description_text,
    places_agree,
    read_description,
    read_places,
)
from reasongen.shapes.pools import suite_scenes
from reasongen.types import CATEGORIES, Box


@pytest.mark.parametrize("cell", [125, None])
def test_the_worlds_own_descriptions_name_their_prompts(cell) -> None:
    scenes = sample_scenes(120, seed=11, categories=CATEGORIES, cell=cell) + suite_scenes(
        140, seed=5, cell=cell
    )
    for sc in scenes:
        said = description_faithfulness(write_cot(sc), sc.metadata)
        assert said.correct, (sc.prompt, write_cot(sc), said.reasons)
        # one mention per object of the scene, with its attributes
        got = sorted(read_description(description_text(write_cot(sc))), key=repr)
        want = sorted((Mention(o.shape, o.color, o.size, o.texture) for o in sc.objects), key=repr)
        assert got == want, sc.prompt
        # and its places are its plan's boxes' places
        assert places_agree(write_cot(sc), sc.boxes), write_cot(sc)


def test_reading_counts_groups_and_ignores_places() -> None:
    text = "Two small red squares at the top left and center and a large blue circle in the center."
    assert read_description(text) == [Mention("square", "red", "small", None)] * 2 + [
        Mention("circle", "blue", "large", None)
    ]
    assert (
        read_description("Three small green stars: top left, center, bottom.")
        == [Mention("star", "green", "small", None)] * 3
    )
    assert read_description("Nothing here but words.") == []
    assert description_text("A red star.\n<|obj_start|>red star<|obj_end|>") == "A red star."


def test_a_description_that_names_another_shape_colour_or_count_fails() -> None:
    meta = {"tag": "counting", "prompt": "two green stars",
            "include": [{"class": "star", "count": 2, "color": "green"}],
            "exclude": [{"class": "star", "count": 3}]}  # fmt: skip
    assert description_faithfulness("Two small green stars: bottom right, bottom left.", meta).correct
    for wrong in ("Two small green triangles: bottom right, bottom left.",  # the screenshot's drift
                  "Two small red stars: bottom right, bottom left.",
                  "A small green star at the top.",
                  "Three small green stars: top, center, bottom."):  # fmt: skip
        assert not description_faithfulness(wrong, meta).correct, wrong
    # a relation needs both objects named; the places are the plan's to get right
    rel = {"tag": "position", "prompt": "a red star to the left of a blue square",
           "include": [{"class": "square", "count": 1, "color": "blue"},
                       {"class": "star", "count": 1, "color": "red",
                        "position": ["left of", 0]}]}  # fmt: skip
    assert description_faithfulness(
        "A small red star at the right and a small blue square at the left.", rel
    ).correct
    assert not description_faithfulness("A small red star at the left.", rel).correct


def test_reading_places_and_checking_them_against_a_plan() -> None:
    text = "Two small red squares at the top left and center and a large blue circle in the center."
    assert read_places(text) == ["top left", "center", "center"]
    # a relation is not a place
    assert read_places("A red star to the left of a blue square, a cross above a circle.") == []
    top_left, centre, bottom = (
        Box("a", 0, 0, 250, 250),
        Box("b", 375, 375, 625, 625),
        Box("c", 375, 750, 625, 1000),
    )
    assert places_agree(text, [centre, top_left, centre])  # order aside
    assert not places_agree(text, [top_left, centre])  # a place too many
    assert not places_agree(text, [top_left, centre, bottom])  # one place wrong
    # the drift GRPO shows: three places named for a plan of two boxes
    cot = "Two small green stars: center, center, center. <|obj_start|>green star<|obj_end|>"
    assert not places_agree(cot, [centre, bottom])
    assert places_agree("Two small green stars: center, bottom.", [bottom, centre])
    # a plan that could not be read agrees with nothing, not even a description without places
    assert not places_agree("A red star.", []) and not places_agree(text, [])
