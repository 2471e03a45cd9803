"""Pretraining the shapes model: tokenizer, batches, config checks, a tiny end-to-end run, and
the shipped checkpoint (loads offline, generates images the detector accepts)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from reasongen.plans import parse_plan
from reasongen.recipes import get_recipe
from reasongen.shapes import sample_scenes, write_cot
from reasongen.shapes.codes import CELL, EMBED_DIM, GRID_CELLS, NUM_CODES, code_of
from reasongen.tokenizer import BOI, GOT_BOX_TOKENS
from training.shapes.data import (
    COORD_TOKENS,
    CORNER_TOKENS,
    build_tokenizer,
    encode_texts,
    lm_codes,
    make_batch,
)
from training.shapes.lm import sft_losses, shapes_config
from training.shapes.pretrain import PretrainShapesConfig, parse_args, run

MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"
SHIPPED = MODELS / "shapes-janus"


@pytest.fixture(scope="module")
def scenes():
    return sample_scenes(60, seed=2, cell=CELL)


@pytest.fixture(scope="module")
def tok(scenes):
    return build_tokenizer(scenes, vocab_size=400)


def test_tokenizer_round_trips_plans_with_one_token_per_number(tok, scenes):
    for s in scenes[:12]:
        cot = write_cot(s)
        ids = tok.encode(cot, add_special_tokens=False)
        assert tok.decode(ids) == cot
        assert parse_plan(tok.decode(ids)).boxes == s.boxes
        for t in GOT_BOX_TOKENS:
            assert ids.count(tok.convert_tokens_to_ids(t)) == len(s.objects)
    for number in COORD_TOKENS:
        assert len(tok.encode(number, add_special_tokens=False)) == 1
    for corner in CORNER_TOKENS:
        assert len(tok.encode(corner, add_special_tokens=False)) == 1
    assert len(tok.encode("(125,750),(500,1000)", add_special_tokens=False)) == 3
    # Off-grid coordinates still tokenise (digit by digit) and round-trip.
    assert tok.decode(tok.encode("(120,755),(1000,0)", add_special_tokens=False)) == "(120,755),(1000,0)"


def test_anchors_pair_each_box_corner_token_with_its_objects_start_code(tok, scenes):
    texts = encode_texts(scenes[:10], tok, direct_fraction=0.0, seed=0)
    for t, s in zip(texts, scenes[:10]):
        # four anchors per box: its two corner tokens, the comma between them and <|box_end|>
        assert len(t.anchors) == 4 * len(s.objects)
        for i, obj in enumerate(s.objects):
            box = t.anchors[4 * i : 4 * i + 4]
            b = obj.box
            words = [tok.convert_ids_to_tokens(t.ids[p]) for p, _ in box]
            assert words == [f"({b.x1},{b.y1})", ",", f"({b.x2},{b.y2})", GOT_BOX_TOKENS[3]]
            assert tok.convert_ids_to_tokens(t.ids[box[0][0] - 1]) == GOT_BOX_TOKENS[2]
            assert {c for _, c in box} == {code_of(obj.shape, obj.color, obj.size, 0, 0)}
    codes = torch.zeros((10, GRID_CELLS**2), dtype=torch.long)
    batch = make_batch(texts, codes, tok.pad_token_id, drop_prob=0.0, rng=random.Random(0))
    for b, t in enumerate(texts):
        n = len(t.anchors)
        assert batch["anchor_code"][b, :n].tolist() == [c for _, c in t.anchors]
        assert (batch["anchor_code"][b, n:] == -100).all()
        picked = batch["ids"][b, batch["anchor_pos"][b, :n]].tolist()
        assert picked == [t.ids[p] for p, _ in t.anchors]
    direct = encode_texts(scenes[:4], tok, direct_fraction=0.999, seed=0)
    assert all(t.anchors == [] for t in direct)
    dropped = make_batch(texts, codes, tok.pad_token_id, drop_prob=0.999, rng=random.Random(0))
    assert (dropped["anchor_code"] == -100).all()


def test_batches_put_targets_on_cot_and_boi_only(tok, scenes):
    texts = encode_texts(scenes[:8], tok, direct_fraction=0.5, seed=0)
    boi = tok.convert_tokens_to_ids(BOI)
    codes = torch.zeros((8, GRID_CELLS**2), dtype=torch.long)
    batch = make_batch(texts, codes, tok.pad_token_id, drop_prob=0.0, rng=random.Random(0))
    ids, mask, target = batch["ids"], batch["mask"], batch["text_target"]
    width = ids.shape[1]
    assert (ids[:, -1] == boi).all()
    for b, t in enumerate(texts):
        assert mask[b].sum() == len(t.ids) and ids[b, width - len(t.ids)] == tok.bos_token_id
        predicted = ids[b, 1:][target[b, :-1]].tolist()
        assert predicted == t.ids[t.loss_from :]
        assert predicted[-1] == boi
    got = get_recipe("got-r1").format_prompt(scenes[0].prompt)
    assert tok.decode(texts[0].ids[1 : texts[0].loss_from]) in (
        got,
        get_recipe("direct").format_prompt(scenes[0].prompt),
    )
    dropped = make_batch(texts, codes, tok.pad_token_id, drop_prob=0.999, rng=random.Random(0))
    assert not dropped["text_target"].any()
    d_ids, d_mask = dropped["ids"], dropped["mask"]
    kept = d_ids[d_mask.bool()]
    assert set(kept.tolist()) == {tok.bos_token_id, tok.pad_token_id, boi}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of 32"):
        PretrainShapesConfig(vq_base_channels=16)
    with pytest.raises(ValueError, match="divisible by heads"):
        PretrainShapesConfig(hidden=100, heads=3)
    with pytest.raises(ValueError, match="image_size"):
        PretrainShapesConfig(image_size=96)
    cfg = parse_args(["--lm-steps", "7", "--out", "x"])
    assert cfg.lm_steps == 7 and cfg.out == "x" and cfg.downsample_levels == 3


@pytest.mark.slow
def test_tiny_pretraining_run_saves_a_loadable_janus_folder(tmp_path):
    from transformers import JanusForConditionalGeneration

    from reasongen.loading import load_model

    cfg = PretrainShapesConfig(out=str(tmp_path / "m"), vq_steps=2, vq_batch=2, text_scenes=40,
                               hidden=32, layers=1, heads=2, lm_scenes=30, lm_steps=3, lm_batch=4,
                               eval_images=4, vocab_size=320)  # fmt: skip
    stats = run(cfg)
    assert stats["lm"]["steps"] == 3 and stats["vq"]["steps"] == 2
    assert (tmp_path / "m" / "training_stats.json").is_file()
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.num_image_tokens == GRID_CELLS**2 and loaded.image_size == 64
    again = JanusForConditionalGeneration.from_pretrained(tmp_path / "m")
    for (k, a), b in zip(loaded.model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize(
    "name",
    ["shapes-janus", "shapes-janus-r1", "shapes-janus-full", "shapes-janus-full-r1", "shapes-janus-full-r2"],
)
def test_shipped_checkpoint_loads_offline_and_draws_easy_prompts(name):
    from reasongen.generation import generate
    from reasongen.loading import EMBEDDED_MODELS, default_model_path, load_model
    from reasongen.shapes.geneval import check_image

    if not (MODELS / name / "config.json").is_file():
        pytest.skip(f"{name} is not shipped")
    # The app and CLI default: the first embedded model that is present (GRPO's over SFT's).
    first = next(MODELS / n for n in EMBEDDED_MODELS if (MODELS / n / "config.json").is_file())
    assert default_model_path() == first
    loaded = load_model(MODELS / name, device="cpu")
    assert loaded.num_image_tokens == GRID_CELLS**2 and loaded.image_size == 64
    tok = loaded.tokenizer
    plan = "<|obj_start|>red circle<|obj_end|><|box_start|>(125,250),(500,625)<|box_end|>"
    assert tok.decode(tok.encode(plan, add_special_tokens=False)) == plan
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in GOT_BOX_TOKENS)
    for prompt, shape in EASY_PROMPTS:
        meta = {"tag": "single_object", "prompt": prompt, "include": [{"class": shape, "count": 1}]}
        samples = generate(loaded, prompt, recipe="got-r1", n=4, seed=0)
        assert all(s.image is not None and s.image.size == (64, 64) for s in samples)
        assert all(s.plan is not None and len(s.plan.boxes) >= 1 for s in samples)
        # The card measures 0.97 on single objects; seeded, at least three of four must pass.
        assert sum(check_image(s.image, meta)[0].correct for s in samples) >= 3, prompt


@pytest.mark.parametrize("prompt", ["two green stars", "a red circle, a blue star and a green cross"])
def test_shipped_default_model_composes(prompt):
    """The default model was trained on the whole language: the README's own example and a
    three-object prompt come out right, and the description names them (its card: 0.94 on the
    compositional suite, over 99% of descriptions right)."""
    from reasongen.generation import generate
    from reasongen.loading import default_model_path, load_model
    from reasongen.shapes.cot import description_faithfulness
    from reasongen.shapes.geneval import check_image
    from reasongen.shapes.parse import parse_prompt

    if not (MODELS / "shapes-janus-full-r2" / "config.json").is_file():
        pytest.skip("shapes-janus-full-r2 is not shipped")
    assert default_model_path() == MODELS / "shapes-janus-full-r2"
    loaded = load_model(default_model_path(), device="cpu")
    meta = parse_prompt(prompt)
    samples = generate(loaded, prompt, recipe="got-r1", n=4, seed=0)
    assert all(s.plan is not None for s in samples)
    # Seeded; at least three of four must be right (the plan's boxes and the image).
    assert sum(check_image(s.image, meta)[0].correct for s in samples) >= 3, [s.cot_text for s in samples]
    assert sum(description_faithfulness(s.cot_text, meta).correct for s in samples) >= 3, [
        s.cot_text for s in samples
    ]


EASY_PROMPTS = [("a photo of a square", "square"), ("a photo of a circle", "circle"),
                ("a photo of a triangle", "triangle")]  # fmt: skip


def test_sft_losses_anchor_term_is_the_generation_heads_cross_entropy_at_box_tokens(tok, scenes):
    from transformers import JanusForConditionalGeneration

    torch.manual_seed(0)
    config = shapes_config(len(tok), 32, 1, 2, 64, 3, NUM_CODES, EMBED_DIM, 32)
    model = JanusForConditionalGeneration(config).eval()
    texts = encode_texts(scenes[:3], tok, direct_fraction=0.0, seed=0)
    codes = lm_codes(scenes[:3])
    batch = make_batch(texts, codes, tok.pad_token_id, drop_prob=0.0, rng=random.Random(0))
    with torch.no_grad():
        _, _, anchor = sft_losses(model, batch)
        # Reference: each example alone, unpadded, through HF's own embedding path.
        nll = []
        for t in texts:
            ids = torch.tensor([t.ids])
            embeds = model.get_input_embeddings()(ids)
            hidden = model.model.language_model(inputs_embeds=embeds).last_hidden_state
            logits = model.model.generation_head(hidden[0])  # [T, K]
            nll += [-torch.log_softmax(logits[p], -1)[c] for p, c in t.anchors]
    assert anchor.item() == pytest.approx(torch.stack(nll).mean().item(), rel=1e-4)
    no_anchor = {k: v for k, v in batch.items() if not k.startswith("anchor")}
    assert sft_losses(model, no_anchor)[2].item() == 0.0
