"""The shapes reward on rendered scenes whose answers are known."""

from __future__ import annotations

import pickle
import re

import pytest
from PIL import Image

from reasongen.plans import parse_plan
from reasongen.rewards import get_reward
from reasongen.shapes import BACKGROUND, render_scene, sample_scenes, write_cot
from reasongen.types import Box, Plan


@pytest.fixture(scope="module")
def scenes():
    return sample_scenes(12, seed=3)


def _sample(sample_factory, scene, image, recipe="got-r1", plan="auto"):
    cot = write_cot(scene)
    p = parse_plan(cot) if plan == "auto" else plan
    return sample_factory(scene.prompt, image, metadata=scene.metadata, recipe=recipe, cot_text=cot, plan=p)


def test_correct_renders_and_plans_score_one(scenes, sample_factory):
    r = get_reward("shapes")
    out = r([_sample(sample_factory, sc, render_scene(sc)) for sc in scenes])
    for score, d in zip(out.scores, out.details):
        parts = d["parts"]
        assert parts["prompt"] == 1.0 and parts["plan"] == 1.0
        assert parts["iou"] > 0.9  # pixel-edge rounding only
        assert score == pytest.approx((1.0 + 0.5 + 0.5 * parts["iou"]) / 2.0)
        assert d["detections"]


def test_blank_image_fails_the_prompt_and_the_iou(scenes, sample_factory):
    blank = Image.new("RGB", render_scene(scenes[0]).size, BACKGROUND)
    out = get_reward("shapes")([_sample(sample_factory, scenes[0], blank)])
    assert out.details[0]["parts"] == {"prompt": 0.0, "plan": 1.0, "iou": 0.0, "cot": None, "places": None}
    assert out.scores[0] == pytest.approx((0 * 1 + 1 * 0.5 + 0 * 0.5) / 2)
    assert out.details[0]["prompt"]["reasons"]


def test_image_of_another_scene_is_wrong(scenes, sample_factory):
    a, b = (
        scenes[0],
        next(
            s
            for s in scenes
            if s.metadata["include"][0]["class"] != scenes[0].metadata["include"][0]["class"]
        ),
    )
    out = get_reward("shapes", weights={"prompt": 1.0})([_sample(sample_factory, a, render_scene(b))])
    assert out.scores == [0.0]


def test_plan_parts_apply_only_to_plan_recipes(scenes, sample_factory):
    sc = scenes[1]
    image = render_scene(sc)
    direct = _sample(sample_factory, sc, image, recipe="direct", plan=None)
    lost_plan = _sample(sample_factory, sc, image, recipe="got-r1", plan=None)
    out = get_reward("shapes")([direct, lost_plan])
    assert out.details[0]["parts"] == {"prompt": 1.0, "plan": None, "iou": None, "cot": None, "places": None}
    assert out.scores[0] == 1.0
    assert out.details[1]["parts"] == {"prompt": 1.0, "plan": 0.0, "iou": 0.0, "cot": None, "places": None}
    assert out.scores[1] == pytest.approx(0.5)


def test_a_shifted_plan_loses_iou(scenes, sample_factory):
    sc = scenes[2]
    shifted = Plan(boxes=tuple(Box(b.label, 0, 0, 40, 40) for b in sc.boxes))
    out = get_reward("shapes", weights={"iou": 1.0})(
        [_sample(sample_factory, sc, render_scene(sc), plan=shifted)]
    )
    assert out.scores[0] < 0.2


def test_no_metadata_or_image_gives_none(scenes, sample_factory):
    sc = scenes[0]
    out = get_reward("shapes")([sample_factory(sc.prompt, render_scene(sc)), sample_factory("x", None)])
    assert out.scores == [None, None]
    assert out.details[0]["detections"] and out.details[1] == {"skipped": "no image"}


def test_graded_mode_and_config_checks(scenes, sample_factory):
    r = get_reward("shapes", graded=True, weights={"prompt": 1.0})
    blank = Image.new("RGB", render_scene(scenes[0]).size, BACKGROUND)
    assert r([_sample(sample_factory, scenes[0], blank)]).scores == [0.0]
    assert pickle.loads(pickle.dumps(r)).config.graded
    with pytest.raises(ValueError, match="unknown shapes parts"):
        get_reward("shapes", weights={"aesthetics": 1.0})
    with pytest.raises(ValueError, match="not all zero"):
        get_reward("shapes", weights={"prompt": 0.0})


def test_cot_part_scores_whether_the_description_names_the_prompt(scenes, sample_factory):
    """Weighted in, the ``cot`` part is 1 for the world's own CoT and 0 for a description that
    names another shape (the plan and the image still right); weight 0 (default) leaves it out."""
    sc = scenes[2]
    image = render_scene(sc)
    right = _sample(sample_factory, sc, image)
    cls = sc.metadata["include"][0]["class"]
    other = next(s for s in ("circle", "square", "triangle", "star", "diamond", "cross") if s != cls)
    wrong_cot = right.cot_text.replace(cls, other)  # same plan and image, description says another shape
    wrong = sample_factory(sc.prompt, image, metadata=sc.metadata, recipe="got-r1", cot_text=wrong_cot,
                           plan=right.plan)  # fmt: skip
    direct = _sample(sample_factory, sc, image, recipe="direct", plan=None)
    out = get_reward("shapes", weights={"prompt": 1.0, "cot": 1.0})([right, wrong, direct])
    assert [d["parts"]["cot"] for d in out.details] == [1.0, 0.0, None]
    assert out.scores[:2] == [1.0, 0.5] and out.scores[2] == 1.0
    assert out.details[1]["cot"]["reasons"]
    assert get_reward("shapes")([wrong]).details[0]["parts"]["cot"] is None


def test_places_part_scores_whether_the_description_says_where_its_plan_puts_things(scenes, sample_factory):
    """Weighted in, ``places`` is 1 for the world's own CoT and 0 when the description names
    another place than its plan's box (plan, image and objects still right); it does not apply
    to a recipe without a plan, and weight 0 (default) leaves it out."""
    sc = next(s for s in scenes if len(s.objects) == 1)
    image = render_scene(sc)
    right = _sample(sample_factory, sc, image)
    desc, plan = right.cot_text.split("\n", 1)
    moved = (
        desc.replace("in the center", "at the top left")
        if "center" in desc
        else re.sub(r"at the [a-z ]+\.", "in the center.", desc)
    )
    assert moved != desc
    wrong = sample_factory(sc.prompt, image, metadata=sc.metadata, recipe="got-r1",
                           cot_text=moved + "\n" + plan, plan=right.plan)  # fmt: skip
    direct = _sample(sample_factory, sc, image, recipe="direct", plan=None)
    out = get_reward("shapes", weights={"prompt": 1.0, "places": 1.0})([right, wrong, direct])
    assert [d["parts"]["places"] for d in out.details] == [1.0, 0.0, None]
    assert out.scores == [1.0, 0.5, 1.0]
    assert "not its plan" in out.details[1]["places"]
    assert get_reward("shapes")([wrong]).details[0]["parts"]["places"] is None
