"""reasongen.recipes: which samples should carry a box plan."""

from __future__ import annotations

from reasongen.recipes import RECIPES, sample_uses_plan
from reasongen.types import Box, Plan, Sample, SamplingSettings


def _sample(recipe: str, plan: Plan | None) -> Sample:
    return Sample(
        prompt="a red circle", recipe=recipe, model_id="t", seed=0, settings=SamplingSettings(),
        prompt_ids=[1], cot_text="", cot_token_ids=[], cot_logprobs=[], cot_end="none", prefix_ids=[1],
        image_token_ids=[], image_logprobs=[], image=None, plan=plan,
    )  # fmt: skip


def test_a_known_recipe_decides_whatever_the_sample_holds() -> None:
    boxed = Plan(boxes=(Box("circle", 0, 0, 500, 500),))
    assert sample_uses_plan(_sample("got-r1", None)) and RECIPES["got-r1"].uses_plan
    assert not sample_uses_plan(_sample("t2i-r1", boxed))


def test_an_unknown_recipe_uses_a_plan_when_the_sample_has_boxes() -> None:
    assert sample_uses_plan(_sample("custom", Plan(boxes=(Box("circle", 0, 0, 500, 500),))))
    assert not sample_uses_plan(_sample("custom", Plan()))
    assert not sample_uses_plan(_sample("custom", None))
