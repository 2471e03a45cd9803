"""Training pools on the whole shapes language: opt-in by a named option, weighted per
construction, today's pools unchanged by default; compositional examples carry a box (and an
identity anchor) per object."""

from __future__ import annotations

import pytest

from reasongen.config import parse_config
from reasongen.shapes import sample_scenes, write_cot
from reasongen.shapes.codes import CELL
from reasongen.shapes.compose import COMPOSITIONAL, FULL_LANGUAGE
from reasongen.shapes.parse import parse_prompt
from reasongen.tokenizer import GOT_BOX_TOKENS
from reasongen.types import CATEGORIES
from training.grpo import GRPOConfig, load_prompts
from training.shapes.data import build_tokenizer, encode_texts
from training.shapes.pretrain import PretrainShapesConfig, parse_args


def test_pretraining_language_is_opt_in_and_weighted() -> None:
    assert PretrainShapesConfig().scene_categories == CATEGORIES  # the shipped models' pool
    full = parse_args(["--language", "full"])
    assert full.scene_categories == FULL_LANGUAGE
    assert set(FULL_LANGUAGE) == set(CATEGORIES) | (set(COMPOSITIONAL) - {"textured"})
    weighted = parse_args(["--language", "full", "--categories", "counting", "count_color", "count_color"])
    scenes = sample_scenes(30, 0, weighted.scene_categories, CELL)
    assert sum(s.category == "count_color" for s in scenes) == 20
    with pytest.raises(ValueError, match="language"):
        PretrainShapesConfig(language="klingon")
    with pytest.raises(ValueError, match="unknown category"):
        PretrainShapesConfig(categories=["count_colour"])
    with pytest.raises(ValueError, match="free layouts"):
        PretrainShapesConfig(categories=["textured"])  # the model's cell layout draws no texture


def test_compositional_examples_have_a_box_and_anchor_per_object() -> None:
    scenes = sample_scenes(2 * len(FULL_LANGUAGE), seed=3, categories=FULL_LANGUAGE, cell=CELL)
    tok = build_tokenizer(scenes, vocab_size=400)
    texts = encode_texts(scenes, tok, direct_fraction=0.0, seed=0)
    box_start = tok.convert_tokens_to_ids(GOT_BOX_TOKENS[2])
    for s, t in zip(scenes, texts):
        assert t.ids.count(box_start) == len(s.objects)
        assert {c for _, c in t.anchors} and len(t.anchors) >= 3 * len(s.objects)
        assert tok.decode(t.ids[t.loss_from : -1]) == write_cot(s)  # the targets: CoT and plan


def test_grpo_pool_unchanged_by_default_and_full_on_request() -> None:
    base = ["--num_shapes_prompts", "380", "--holdout_benchmark", "0"]
    default = load_prompts(parse_config(GRPOConfig, base))
    assert [p for p, _ in default] == [s.prompt for s in sample_scenes(380, 7, CATEGORIES, 125)]
    full = load_prompts(parse_config(GRPOConfig, [*base, "--shapes_categories", *FULL_LANGUAGE]))
    tags = {m["tag"] for _, m in full}
    assert tags == set(CATEGORIES)  # compositional prompts read as GenEval's tags
    assert all(parse_prompt(p) == m for p, m in full)
    many = [m for _, m in full if len(m["include"]) >= 3]  # three/four objects, three counted kinds
    assert len(many) == 380 // len(FULL_LANGUAGE) * 6
    with pytest.raises(ValueError, match="shapes_categories"):
        GRPOConfig(shapes_categories=["count_color", "juggling"])
