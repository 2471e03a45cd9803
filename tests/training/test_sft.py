"""SFT: sample layout, loss masks and modality weights, and a tiny run that learns."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from reasongen.loading import load_model, wrap_loaded
from reasongen.tiny import build_tiny, save_tiny
from training.logprobs import cot_in_prefix
from training.sft import SFTConfig, SFTExample, example_to_sample, load_sft_jsonl, sft_loss, train


@pytest.fixture(scope="module")
def loaded():
    model, processor = build_tiny(seed=1)
    return wrap_loaded(model, processor, "tiny")


def _ex(recipe: str = "got-r1", seed: int = 0) -> SFTExample:
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, 64, (16,), generator=g).tolist()
    return SFTExample("a red circle", recipe, "a red circle on the left", toks)


def test_sample_layout_per_recipe(loaded) -> None:
    ids = loaded.ids
    s = example_to_sample(_ex("got-r1"), loaded)
    assert s.prompt_ids[0] == ids.bos and s.cot_token_ids[-1] == ids.boi
    assert s.prefix_ids == [*s.prompt_ids, *s.cot_token_ids[:-1], ids.boi]
    assert cot_in_prefix(s)
    t2i = example_to_sample(_ex("t2i-r1"), loaded)
    assert not cot_in_prefix(t2i) and t2i.prefix_ids[-1] == ids.boi
    direct = example_to_sample(_ex("direct"), loaded)
    assert direct.cot_token_ids == [] and direct.prefix_ids == [*direct.prompt_ids, ids.boi]
    u = example_to_sample(_ex("got-r1"), loaded, unconditional=True)
    assert len(u.prefix_ids) == len(s.prefix_ids) and u.cot_token_ids == []
    assert u.prefix_ids[0] == ids.bos and u.prefix_ids[-1] == ids.boi
    assert set(u.prefix_ids[1:-1]) == {ids.pad}


def _reference_nll(model, s) -> tuple[float, float]:
    """Independent path: HF's own forward for text; explicit embeddings for the image."""
    p, tc = len(s.prompt_ids), len(s.cot_token_ids)
    text_in = torch.tensor([s.prompt_ids + s.cot_token_ids[:-1]])
    logits = model(input_ids=text_in).logits[0]  # (L, V)
    text = F.cross_entropy(logits[p - 1 : p - 1 + tc], torch.tensor(s.cot_token_ids))
    emb = torch.cat(
        [
            model.get_input_embeddings()(torch.tensor([s.prefix_ids])),
            model.prepare_embeddings_for_image_generation(torch.tensor([s.image_token_ids[:-1]])),
        ],
        dim=1,
    )  # (1, L + N - 1, H)
    h = model.model.language_model(inputs_embeds=emb).last_hidden_state[0]  # (S, H)
    n_prefix = len(s.prefix_ids)
    img_logits = model.model.generation_head(h[n_prefix - 1 :])  # (N, K)
    image = F.cross_entropy(img_logits, torch.tensor(s.image_token_ids))
    return float(text.detach()), float(image.detach())


def test_loss_is_weighted_nll_of_cot_and_image_only(loaded) -> None:
    model, ids = loaded.model, loaded.ids
    s = example_to_sample(_ex("got-r1", 3), loaded)
    text_ref, image_ref = _reference_nll(model, s)
    with torch.no_grad():
        loss, m = sft_loss(model, [s], ids.bos, ids.pad, text_weight=0.3, image_weight=2.0)
    assert m["text_nll"] == pytest.approx(text_ref, rel=1e-4)
    assert m["image_nll"] == pytest.approx(image_ref, rel=1e-4)
    assert float(loss) == pytest.approx(0.3 * text_ref + 2.0 * image_ref, rel=1e-4)
    # Only the CoT (with its closing <begin_of_image>) is text loss, never the prompt.
    assert m["text_tokens"] == len(s.cot_token_ids)


@pytest.mark.parametrize(("tw", "iw"), [(0.0, 1.0), (1.0, 0.0)])
def test_zero_weight_gives_zero_gradient_to_that_head(loaded, tw: float, iw: float) -> None:
    model, ids = loaded.model, loaded.ids
    model.zero_grad()
    s = example_to_sample(_ex("got-r1", 4), loaded)
    loss, _ = sft_loss(model, [s], ids.bos, ids.pad, text_weight=tw, image_weight=iw)
    loss.backward()
    lm_grad = model.lm_head.weight.grad
    gen_grad = model.model.generation_head.vision_head.weight.grad
    # The LM head may be tied to the input embeddings: look only at rows of tokens that never
    # appear in the input, which the head's softmax alone can reach.
    unused = torch.ones(lm_grad.shape[0], dtype=torch.bool)
    unused[torch.tensor(s.prefix_ids + s.prompt_ids + s.cot_token_ids)] = False
    lm_norm = float(lm_grad[unused].abs().sum())
    gen_norm = 0.0 if gen_grad is None else float(gen_grad.abs().sum())
    assert (lm_norm > 0) == (tw > 0) and (gen_norm > 0) == (iw > 0)
    model.zero_grad()


def test_config_and_data_errors(tmp_path, loaded) -> None:
    with pytest.raises(ValueError, match="both 0"):
        SFTConfig(text_weight=0.0, image_weight=0.0)
    with pytest.raises(ValueError, match="cond_dropout"):
        SFTConfig(cond_dropout=1.0)
    with pytest.raises(ValueError, match="unknown recipe"):
        SFTConfig(recipe="nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "image_tokens": [1, 2]}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        load_sft_jsonl(bad, loaded, "got-r1")
    bad.write_text('{"prompt": "x", "image_tokens": [1, 2]}\n')
    with pytest.raises(ValueError, match="16"):
        load_sft_jsonl(bad, loaded, "got-r1")


def test_tiny_sft_run_lowers_loss_and_saves_loadable_model(tmp_path) -> None:
    model_dir = save_tiny(tmp_path / "tiny", seed=2)
    data = tmp_path / "sft.jsonl"
    with data.open("w") as f:
        for k in range(4):
            ex = _ex("got-r1" if k % 2 else "direct", k)
            f.write(json.dumps({"prompt": ex.prompt, "recipe": ex.recipe, "cot": ex.cot,
                                "image_tokens": ex.image_tokens}) + "\n")  # fmt: skip
    cfg = SFTConfig(model=str(model_dir), data=str(data), out_dir=str(tmp_path / "run"), max_steps=6,
                    batch_size=4, lr=3e-3, save_every=3, device="cpu", progress=False,
                    tensorboard=True)  # fmt: skip
    before = load_model(model_dir, device="cpu")
    examples = load_sft_jsonl(data, before, "got-r1")
    samples = [example_to_sample(e, before) for e in examples]
    with torch.no_grad():
        loss0, _ = sft_loss(before.model, samples, before.ids.bos, before.ids.pad, 1.0, 1.0)
    out = train(cfg)
    assert out.name == "checkpoint-6" and (tmp_path / "run" / "checkpoint-3").is_dir()
    after = load_model(out, device="cpu")
    with torch.no_grad():
        loss1, _ = sft_loss(after.model, samples, after.ids.bos, after.ids.pad, 1.0, 1.0)
    assert float(loss1) < float(loss0) - 0.1
    assert any((tmp_path / "run" / "tb").iterdir())


def test_images_are_vq_encoded_with_the_models_own_encoder(tmp_path, loaded) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    (tmp_path / "d.jsonl").write_text('{"prompt": "a red square", "cot": "red", "image": "red.png"}\n')
    (ex,) = load_sft_jsonl(tmp_path / "d.jsonl", loaded, "got-r1")
    assert len(ex.image_tokens) == loaded.num_image_tokens
    assert all(0 <= t < 64 for t in ex.image_tokens)
    # Same codes as encoding hand-normalised pixels ([-1, 1], Janus's convention) directly.
    px = torch.tensor([200 / 255, 30 / 255, 30 / 255]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    with torch.no_grad():
        direct = loaded.model.model.vqmodel.encode(px * 2 - 1).image_tokens.view(-1).tolist()
    assert ex.image_tokens == direct


def test_micro_batches_give_the_whole_batch_update(tmp_path) -> None:
    model_dir = save_tiny(tmp_path / "tiny", seed=3)
    data = tmp_path / "sft.jsonl"
    with data.open("w") as f:
        for k in range(3):  # CoT lengths differ: per-chunk token means would weigh them wrongly
            ex = _ex(["got-r1", "direct", "t2i-r1"][k], k)
            f.write(json.dumps({"prompt": ex.prompt, "recipe": ex.recipe, "cot": ex.cot * (k + 1),
                                "image_tokens": ex.image_tokens}) + "\n")  # fmt: skip
    outs = []
    for mb in (0, 1):
        cfg = SFTConfig(model=str(model_dir), data=str(data), out_dir=str(tmp_path / f"r{mb}"),
                        max_steps=1, batch_size=3, optimizer="sgd", lr=1.0, grad_clip=0.0,
                        micro_batch_size=mb, device="cpu", progress=False, tensorboard=False)  # fmt: skip
        outs.append(load_model(train(cfg), device="cpu").model.state_dict())
    start = load_model(model_dir, device="cpu").model.state_dict()
    moved = max(float((outs[0][k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3
    assert all(float((outs[0][k] - outs[1][k]).abs().max()) < 1e-4 * moved for k in start)
