"""One-pass log-prob recompute against a step-by-step reference sampler on a tiny Janus model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from reasongen.sampling import draw, guided_logits, sampling_logprobs
from reasongen.tiny import build_tiny
from reasongen.types import Sample, SamplingSettings
from training.logprobs import pack_samples, policy_logprobs, stored_logprobs


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, processor = build_tiny(seed=0)
    return model, processor.tokenizer


def _ids(tok):
    return tok.bos_token_id, tok.pad_token_id, tok.convert_tokens_to_ids("<begin_of_image>")


def _embed_seq(model, text_ids: list[int], img_ids: list[int]) -> torch.Tensor:
    t = model.get_input_embeddings()(torch.tensor([text_ids]))  # (1, L, H)
    if not img_ids:
        return t
    i = model.prepare_embeddings_for_image_generation(torch.tensor([img_ids]))  # (1, J, H)
    return torch.cat([t, i], dim=1)


def _last_hidden(model, embeds: torch.Tensor) -> torch.Tensor:
    return model.model.language_model(inputs_embeds=embeds).last_hidden_state[:, -1]  # (1, H)


@torch.no_grad()
def reference_sample(model, tok, prompt: str, settings: SamplingSettings, seed: int) -> Sample:
    """Token by token, full forward each step (no cache): obviously right, slow, tiny only."""
    bos, pad, boi = _ids(tok)
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = [bos, *tok(prompt).input_ids]
    seq, cot, cot_lp = list(prompt_ids), [], []
    for _ in range(settings.max_cot_tokens):
        logits = model.lm_head(_last_hidden(model, _embed_seq(model, seq, [])))  # (1, V)
        lp = sampling_logprobs(logits, settings.cot_temperature, settings.cot_top_k, settings.cot_top_p)
        t, lt = draw(lp, False, gen)
        cot.append(int(t)), cot_lp.append(float(lt))
        if int(t) == boi:
            break
        seq.append(int(t))
    prefix = [*seq, boi]
    uncond = [bos] + [pad] * (len(prefix) - 2) + [boi]
    img, img_lp = [], []
    for _ in range(settings.num_image_tokens):
        c = model.model.generation_head(_last_hidden(model, _embed_seq(model, prefix, img)))  # (1, K)
        u = model.model.generation_head(_last_hidden(model, _embed_seq(model, uncond, img)))  # (1, K)
        lp = sampling_logprobs(guided_logits(c, u, settings.guidance), settings.temperature,
                               settings.top_k, settings.top_p)  # fmt: skip
        t, lt = draw(lp, False, gen)
        img.append(int(t)), img_lp.append(float(lt))
    return Sample(prompt=prompt, recipe="t2i-r1", model_id="tiny", seed=seed, settings=settings,
                  prompt_ids=prompt_ids, cot_text="", cot_token_ids=cot, cot_logprobs=cot_lp,
                  cot_end="boi" if cot[-1] == boi else "length", prefix_ids=prefix,
                  image_token_ids=img, image_logprobs=img_lp)  # fmt: skip


SETTINGS = [
    SamplingSettings(guidance=3.0, temperature=1.0, cot_temperature=0.8, max_cot_tokens=5,
                     num_image_tokens=16),
    SamplingSettings(guidance=3.0, temperature=0.7, top_k=20, cot_top_p=0.9, max_cot_tokens=7,
                     num_image_tokens=16),
]  # fmt: skip


def test_recompute_matches_stored_sampling_logprobs(tiny) -> None:
    model, tok = tiny
    samples = [
        reference_sample(model, tok, "a red circle", SETTINGS[0], seed=1),
        reference_sample(model, tok, "two green triangles above a yellow star", SETTINGS[1], 2),
        reference_sample(model, tok, "a cyan heart", SETTINGS[1], seed=3),
    ]
    assert len({len(s.prefix_ids) for s in samples}) > 1  # padding is exercised
    bos, pad, _ = _ids(tok)
    with torch.no_grad():
        out = policy_logprobs(model, samples, bos, pad, mode="sampling", with_entropy=True)
    cot_old, img_old = stored_logprobs(samples)
    assert out.cot.shape == cot_old.shape and out.image.shape == img_old.shape == (3, 16)
    assert torch.allclose(out.cot, cot_old, atol=1e-4)
    assert torch.allclose(out.image, img_old, atol=1e-4)
    assert out.cot_mask.sum(1).tolist() == [len(s.cot_token_ids) for s in samples]
    # Entropies are those of the sampling distributions: positive, ≤ log(vocab), 0 at padding.
    assert bool((out.image_entropy[out.image_mask] > 0).all())
    assert float(out.image_entropy.max()) <= float(torch.log(torch.tensor(64.0))) + 1e-4
    assert bool((out.cot_entropy[~out.cot_mask] == 0).all())


def test_plain_mode_differs_from_guided_and_equals_conditional(tiny) -> None:
    model, tok = tiny
    bos, pad, _ = _ids(tok)
    s = reference_sample(model, tok, "a red circle", SETTINGS[0], seed=4)
    plain_settings = SamplingSettings(guidance=1.0, max_cot_tokens=5, num_image_tokens=16)
    same = Sample(**{**s.__dict__, "settings": plain_settings})
    with torch.no_grad():
        plain = policy_logprobs(model, [s], bos, pad, mode="plain")
        guided = policy_logprobs(model, [s], bos, pad, mode="sampling")
        unguided = policy_logprobs(model, [same], bos, pad, mode="sampling")
    assert torch.allclose(plain.image, unguided.image, atol=1e-5)
    assert torch.allclose(plain.cot, unguided.cot, atol=1e-5)
    assert not torch.allclose(plain.image, guided.image, atol=1e-3)


def test_gradients_reach_both_heads_and_uncond_detach(tiny) -> None:
    model, tok = tiny
    bos, pad, _ = _ids(tok)
    s = reference_sample(model, tok, "a red circle", SETTINGS[0], seed=5)
    model.zero_grad()
    out = policy_logprobs(model, [s], bos, pad, mode="sampling")
    (out.cot.sum() + out.image.sum()).backward()
    assert model.lm_head.weight.grad.abs().sum() > 0
    assert model.model.generation_head.vision_head.weight.grad.abs().sum() > 0
    assert model.model.generation_embeddings.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_bad_samples_raise_clear_errors(tiny) -> None:
    model, tok = tiny
    s = reference_sample(model, tok, "a red circle", SETTINGS[0], seed=6)
    broken = Sample(**{**s.__dict__, "prefix_ids": s.prompt_ids[:1]})
    with pytest.raises(ValueError, match="at least BOS and <begin_of_image>"):
        pack_samples([broken], 0, 2)
    empty = Sample(**{**s.__dict__, "image_token_ids": [], "image_logprobs": []})
    with pytest.raises(ValueError, match="no image tokens"):
        pack_samples([empty], 0, 2)
    short = Sample(**{**s.__dict__, "image_logprobs": s.image_logprobs[:-1]})
    with pytest.raises(ValueError, match="differ in length"):
        stored_logprobs([short])
    with pytest.raises(ValueError, match="no samples"):
        pack_samples([], 0, 2)


@pytest.mark.parametrize("recipe", ["got-r1", "t2i-r1"])
def test_recompute_matches_reasongen_generate(tiny, recipe: str) -> None:
    from reasongen.generation import generate
    from reasongen.loading import wrap_loaded
    from training.logprobs import cot_in_prefix

    model, _ = tiny
    _, processor = build_tiny(seed=0)
    loaded = wrap_loaded(model, processor, "tiny")
    settings = SamplingSettings(guidance=4.0, temperature=0.9, top_k=40, cot_temperature=1.0,
                                cot_top_p=0.95, max_cot_tokens=6, num_image_tokens=16)  # fmt: skip
    samples = generate(loaded, "a red circle left of a blue square", recipe, n=3, seed=7,
                       settings=settings)  # fmt: skip
    if recipe == "t2i-r1":
        assert not any(cot_in_prefix(s) for s in samples)  # exercised the re-wrapped path
    with torch.no_grad():
        out = policy_logprobs(model, samples, loaded.ids.bos, loaded.ids.pad, mode="sampling")
    cot_old, img_old = stored_logprobs(samples)
    assert torch.allclose(out.image, img_old, atol=1e-4)
    assert torch.allclose(out.cot, cot_old, atol=1e-4)
    assert out.cot_mask.sum(1).tolist() == [len(s.cot_token_ids) for s in samples]


def test_mixed_guidance_batch_equals_separate_batches(tiny) -> None:
    model, tok = tiny
    bos, pad, _ = _ids(tok)
    a = reference_sample(model, tok, "a red circle", SETTINGS[0], seed=8)  # guidance 3
    b = reference_sample(model, tok, "a cyan heart", SamplingSettings(guidance=1.0, max_cot_tokens=4,
                         num_image_tokens=16), seed=9)  # fmt: skip
    with torch.no_grad():
        both = policy_logprobs(model, [a, b], bos, pad)
        alone = [policy_logprobs(model, [x], bos, pad) for x in (a, b)]
    for k, one in enumerate(alone):
        n = len([a, b][k].image_token_ids)
        assert torch.allclose(both.image[k, :n], one.image[0], atol=1e-5)
    _, img_old = stored_logprobs([a, b])
    assert torch.allclose(both.image, img_old, atol=1e-4)


def test_foreign_token_ids_are_refused(tiny) -> None:
    model, tok = tiny
    s = reference_sample(model, tok, "a red circle", SETTINGS[0], seed=10)
    foreign = Sample(**{**s.__dict__, "image_token_ids": [16383] * 16})
    with pytest.raises(ValueError, match="codebook"):
        policy_logprobs(model, [foreign], 0, 2)


def test_conditional_mode_is_the_unguided_sampling_distribution_in_one_forward(tiny, monkeypatch) -> None:
    """'conditional' = each sample's own temperature and filters without guidance: the sampling
    distribution of the same sample at w = 1, one language-model forward instead of two."""
    import training.logprobs as lpmod

    model, tok = tiny
    bos, pad, _ = _ids(tok)
    s = reference_sample(model, tok, "two green triangles", SETTINGS[1], seed=6)  # w = 3, T 0.7, top-k
    at_one = Sample(**{**s.__dict__, "settings": replace(s.settings, guidance=1.0)})
    calls = []
    real = lpmod._uncond_image_hidden
    monkeypatch.setattr(lpmod, "_uncond_image_hidden", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        cond = policy_logprobs(model, [s], bos, pad, mode="conditional", with_entropy=True)
        n_cond = len(calls)
        guided = policy_logprobs(model, [s], bos, pad, mode="sampling")
        n_guided = len(calls) - n_cond
        unguided = policy_logprobs(model, [at_one], bos, pad, mode="sampling", with_entropy=True)
    assert (n_cond, n_guided) == (0, 1)  # the unconditional rows are not run
    assert torch.allclose(cond.image, unguided.image, atol=1e-6)
    assert torch.allclose(cond.image_entropy, unguided.image_entropy, atol=1e-6)
    assert torch.equal(cond.cot, guided.cot)  # guidance never touches the CoT
    assert not torch.allclose(cond.image, guided.image, atol=1e-3)
    cot_old, _ = stored_logprobs([s])
    assert torch.allclose(cond.cot, cot_old, atol=1e-4)
    with pytest.raises(ValueError, match="mode must be one of"):
        policy_logprobs(model, [s], bos, pad, mode="cfg")  # type: ignore[arg-type]


def _whole_row_logprob_sum(model, tok, s: Sample) -> torch.Tensor:
    """Σ log-probs of one sample from one forward over its whole conditional row and one over its
    whole unconditional row: the computation the shared-head forward must reproduce."""
    bos, pad, _ = _ids(tok)
    st = s.settings
    lm = model.model.language_model
    cond = lm(inputs_embeds=_embed_seq(model, s.prefix_ids, s.image_token_ids[:-1])).last_hidden_state[0]
    uncond_prefix = [bos] + [pad] * (len(s.prefix_ids) - 2) + [s.prefix_ids[-1]]
    uncond = lm(inputs_embeds=_embed_seq(model, uncond_prefix, s.image_token_ids[:-1])).last_hidden_state[0]
    p, n_prefix = len(s.prompt_ids), len(s.prefix_ids)
    cot_logits = model.lm_head(cond[p - 1 : p - 1 + len(s.cot_token_ids)])  # (Tc, V)
    at = slice(n_prefix - 1, n_prefix - 1 + len(s.image_token_ids))
    head = model.model.generation_head
    img = guided_logits(head(cond[at]), head(uncond[at]), st.guidance)
    cot_lp = sampling_logprobs(cot_logits, st.cot_temperature, st.cot_top_k, st.cot_top_p)
    img_lp = sampling_logprobs(img, st.temperature, st.top_k, st.top_p)
    return (
        cot_lp.gather(-1, torch.tensor(s.cot_token_ids)[:, None]).sum()
        + img_lp.gather(-1, torch.tensor(s.image_token_ids)[:, None]).sum()
    )


def test_shared_prompt_and_pad_heads_equal_whole_rows_in_values_and_gradients(tiny) -> None:
    """Samples of one prompt run its head once, the unconditional rows share one pad head: the
    log-probs and every parameter's gradient are those of whole-row forwards."""
    model, tok = tiny
    bos, pad, _ = _ids(tok)
    samples = [
        reference_sample(model, tok, "two green triangles", SETTINGS[0], seed=s) for s in (1, 2, 3)
    ] + [reference_sample(model, tok, "a cyan heart above a red star", SETTINGS[0], seed=4)]
    assert len({len(s.prefix_ids) for s in samples}) > 1  # rows of one prompt differ in length
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    out = policy_logprobs(model, samples, bos, pad, mode="sampling")
    (out.cot.sum() + out.image.sum()).backward()
    shared = [None if p.grad is None else p.grad.clone() for p in params]
    model.zero_grad()
    whole = sum(_whole_row_logprob_sum(model, tok, s) for s in samples)
    whole.backward()
    assert torch.allclose(out.cot.sum() + out.image.sum(), whole.detach(), rtol=1e-5, atol=1e-4)
    compared = 0
    for p, g in zip(params, shared):
        if p.grad is None:
            assert g is None or not g.any()
            continue
        assert g is not None
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6), "a gradient differs from the whole-row one"
        compared += 1
    assert compared > 10  # the language model, both heads and the embeddings were compared
    model.zero_grad()
