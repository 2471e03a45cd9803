"""reasongen.recipes: which samples carry a box plan; templates and CoT caps as released."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reasongen.layout import image_prefix, prompt_ids
from reasongen.recipes import RECIPES, get_recipe, released_cot_cap, sample_uses_plan
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


# ---------------------------------------------------------------- golden templates (issue 20)
# Each expected string below is what the upstream code builds for the same prompt, written out by
# hand from the upstream files named beside it (roles, separators, system prompt, stripping).

T2I_REASONING = (
    'You are asked to generate an image based on this prompt: "a red car and a blue bench"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
)


def test_t2i_r1_stage_one_is_the_trainers_conversation_with_plain_roles() -> None:
    # CaraJ7/T2I-R1 open_r1/grpo.py: roles "User"/"Assistant"; grpo_trainer.py: its system prompt.
    want = (
        "You are a helpful assistant that receives an image prompt and generate a visualization "
        "of the prompt.\n\nUser: " + T2I_REASONING + "\n\nAssistant:"
    )
    assert get_recipe("t2i-r1").format_prompt("a red car and a blue bench") == want


def test_t2i_r1_stage_two_is_a_fresh_conversation_with_plain_roles() -> None:
    # grpo_trainer.py: f"{raw_prompt}. {answer}", roles "User"/"Assistant", system prompt "".
    cot = "  A glossy red car parks beside a blue wooden bench.\n"
    want = (
        "User: a red car and a blue bench. A glossy red car parks beside a blue wooden bench.\n\nAssistant:"
    )
    assert get_recipe("t2i-r1").image_prompt("a red car and a blue bench", cot) == want
    assert "<|User|>" not in want


def test_got_r1_template() -> None:
    # gogoduan/GoT-R1 infer.py: roles "User"/"Assistant", no system prompt.
    want = (
        "User: Follow the caption to generate an image through a chain of thought process: "
        "two green stars above a red circle\n\nAssistant:"
    )
    assert get_recipe("got-r1").format_prompt("two green stars above a red circle") == want
    assert get_recipe("got-r1").image_prompt("x", "y") is None  # the same sequence continues


@pytest.mark.parametrize(
    ("prompt", "user"),
    [
        # GenEval prompts: "a photo of" is deleted (generate_inference_geneval.py get_prompt)
        ("a photo of a cat", "A photo of a cat. Output a richly detailed prompt:"),
        ("A photo of a bench.", "A photo of a bench.. Output a richly detailed prompt:"),
        # the final period stays (upstream keeps it), ordinary prompts are only stripped
        ("a diamond tiara and a round bracelet.", "A photo of a diamond tiara and a round bracelet.. "
         "Output a richly detailed prompt:"),
        ("  a butterfly ", "A photo of a butterfly. Output a richly detailed prompt:"),
    ],
)  # fmt: skip
def test_reasongen_r1_template(prompt: str, user: str) -> None:
    # examples/janus_rl.sh TEMPLATE (trailing space stripped by apply_sft_template), roles <|User|>.
    want = f"<|User|>: {user}\n\n<|Assistant|>:"
    assert get_recipe("reasongen-r1").format_prompt(prompt) == want


def test_direct_template_is_janus_pros() -> None:
    assert get_recipe("direct").format_prompt("a red circle.") == "<|User|>: a red circle.\n\n<|Assistant|>:"


def test_templates_token_for_token(tiny_loaded) -> None:
    """Step-1 and step-2 ids are BOS + the tokens of the upstream strings (as upstream's
    ``tokenizer(text, add_special_tokens=True)`` gives them), nothing more."""
    tok, ids = tiny_loaded.tokenizer, tiny_loaded.ids
    prompt = "a red car and a blue bench"
    step1 = prompt_ids(tok, ids, get_recipe("t2i-r1"), prompt)
    want1 = (
        "You are a helpful assistant that receives an image prompt and generate a visualization "
        "of the prompt.\n\nUser: " + T2I_REASONING + "\n\nAssistant:"
    )
    assert step1 == [ids.bos, *tok.encode(want1, add_special_tokens=False)]
    cot = "A red car."
    step2 = image_prefix(tok, ids, get_recipe("t2i-r1"), prompt, step1, [], cot)
    want2 = f"User: {prompt}. {cot}\n\nAssistant:"
    assert step2 == [ids.bos, *tok.encode(want2, add_special_tokens=False), ids.boi]
    got = prompt_ids(tok, ids, get_recipe("reasongen-r1"), "a photo of a cat")
    want3 = "<|User|>: A photo of a cat. Output a richly detailed prompt:\n\n<|Assistant|>:"
    assert got == [ids.bos, *tok.encode(want3, add_special_tokens=False)]


def test_released_cot_caps() -> None:
    assert get_recipe("got-r1").max_cot_tokens == 600  # GoT-R1 infer.py: i < 600
    assert get_recipe("reasongen-r1").max_cot_tokens == 1024 - 576  # janus_rl.sh, modeling_vlm.py
    assert get_recipe("t2i-r1").max_cot_tokens == 1024  # run_grpo.sh --max_completion_length
    assert get_recipe("direct").max_cot_tokens is None
    assert released_cot_cap("direct") == 256 and released_cot_cap("got-r1", default=1) == 600
    for r in ("t2i-r1", "got-r1", "reasongen-r1"):
        assert get_recipe(r).cot_cap_source


@pytest.mark.parametrize(
    ("yaml_name", "recipe"),
    [("t2i_r1.yaml", "t2i-r1"), ("got_r1.yaml", "got-r1"), ("reasongen_r1.yaml", "reasongen-r1")],
)
def test_paper_yamls_use_the_released_cot_cap(yaml_name: str, recipe: str) -> None:
    path = Path(__file__).resolve().parents[2] / "training" / "recipes" / yaml_name
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert cfg["recipe"] == recipe
    assert cfg["max_cot_tokens"] == get_recipe(recipe).max_cot_tokens


def test_shapes_recipe_keeps_its_own_cap() -> None:
    path = Path(__file__).resolve().parents[2] / "training" / "recipes" / "shapes.yaml"
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["max_cot_tokens"] == 160


def test_t2i_r1_yaml_scores_gdino_and_git_by_t2i_r1s_rules() -> None:
    from reasongen.config import parse_config
    from reasongen.rewards import make_reward
    from training.grpo import GRPOConfig

    path = Path(__file__).resolve().parents[2] / "training" / "recipes" / "t2i_r1.yaml"
    cfg = parse_config(GRPOConfig, ["--config", str(path)])
    reward = make_reward(cfg.rewards, cfg.reward_mode, cfg.reward_weights, cfg.reward_options)
    parts = {p.name: p for p in reward.parts}  # type: ignore[attr-defined]
    assert parts["gdino"].config.rules == "t2i-r1" and parts["gdino"].config.box_threshold == 0.3
    assert parts["git_vqa"].config.rules == "t2i-r1"
    assert parts["orm"].config.backend == "llava-onevision" and parts["orm"].config.temperature == 0.3
    assert reward.config.on_missing == "renormalise"  # type: ignore[attr-defined]
