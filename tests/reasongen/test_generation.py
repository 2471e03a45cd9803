"""Two-step generation on a tiny random Janus: log-probs, CFG rows, seeds, streaming, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reasongen.decode import decode_image, decode_text
from reasongen.generation import MAX_PROMPT_CHARS, generate, generate_stream
from reasongen.layout import left_pad, unconditional_rows
from reasongen.recipes import RECIPES, get_recipe
from reasongen.sampling import guided_logits, sampling_logprobs
from reasongen.types import CotDelta, Done, ImageProgress, PlanReady, SamplingSettings

SETTINGS = SamplingSettings(
    guidance=3.0, temperature=0.9, top_k=40, top_p=0.95,
    cot_temperature=1.1, cot_top_k=200, cot_top_p=0.9, max_cot_tokens=12,
)  # fmt: skip


def _teacher_forced(loaded, sample):
    """Recompute both log-prob sequences with plain forward passes over the stored tokens."""
    model, s = loaded.model, sample.settings
    with torch.no_grad():
        seq = torch.tensor([sample.prompt_ids + sample.cot_token_ids])
        logits = model(input_ids=seq).logits[0]  # [T, V]
        n = len(sample.prompt_ids)
        cot_lp = sampling_logprobs(logits[n - 1 : n - 1 + len(sample.cot_token_ids)],
                                   s.cot_temperature, s.cot_top_k, s.cot_top_p)  # fmt: skip
        cot = cot_lp.gather(-1, torch.tensor(sample.cot_token_ids)[:, None]).squeeze(-1)

        prefix = torch.tensor([sample.prefix_ids])  # [1, P]
        uncond = unconditional_rows(prefix, torch.ones_like(prefix), loaded.ids.bos, loaded.ids.pad)  # [1, P]
        img = torch.tensor([sample.image_token_ids[:-1]])  # [1, N-1]
        heads = []
        for row in (prefix, uncond):
            emb = torch.cat([model.get_input_embeddings()(row),
                             model.prepare_embeddings_for_image_generation(img)], dim=1)  # fmt: skip
            h = model.model.language_model(inputs_embeds=emb).last_hidden_state[0]  # [P+N-1, D]
            heads.append(model.model.generation_head(h[prefix.shape[1] - 1 :]))  # [N, K]
        lp = sampling_logprobs(guided_logits(heads[0], heads[1], s.guidance), s.temperature, s.top_k, s.top_p)
        image = lp.gather(-1, torch.tensor(sample.image_token_ids)[:, None]).squeeze(-1)
    return cot, image


@pytest.mark.parametrize("recipe", ["got-r1", "reasongen-r1", "t2i-r1", "direct"])
def test_stored_logprobs_equal_teacher_forced_pass(tiny_loaded, recipe):
    samples = generate(tiny_loaded, "a red circle left of a blue square", recipe, n=3, seed=7,
                       settings=SETTINGS)  # fmt: skip
    assert len({len(s.prefix_ids) for s in samples}) >= 1
    for sample in samples:
        cot, image = _teacher_forced(tiny_loaded, sample)
        assert len(sample.image_token_ids) == tiny_loaded.num_image_tokens == len(sample.image_logprobs)
        torch.testing.assert_close(image, torch.tensor(sample.image_logprobs), atol=1e-4, rtol=0)
        torch.testing.assert_close(cot, torch.tensor(sample.cot_logprobs), atol=1e-4, rtol=0)
        assert torch.isfinite(image).all()
        if recipe == "direct":
            assert sample.cot_token_ids == [] and sample.cot_end == "none" and sample.plan is None


def test_prefix_layout_follows_the_recipe(tiny_loaded):
    for recipe in ("got-r1", "reasongen-r1"):
        s = generate(tiny_loaded, "two stars", recipe, n=1, seed=3, settings=SETTINGS)[0]
        assert s.same_sequence
        text_ids = s.cot_token_ids[:-1] if s.cot_end in ("boi", "eos") else s.cot_token_ids
        assert s.prefix_ids == s.prompt_ids + text_ids + [tiny_loaded.ids.boi]
    t2i = generate(tiny_loaded, "two stars", "t2i-r1", n=1, seed=3, settings=SETTINGS)[0]
    assert not t2i.same_sequence and t2i.prefix_ids[-1] == tiny_loaded.ids.boi
    rewrap = get_recipe("t2i-r1").image_prompt("two stars", t2i.cot_text)
    assert t2i.prefix_ids[1:-1] == tiny_loaded.tokenizer.encode(rewrap, add_special_tokens=False)


def test_same_seed_same_samples_different_seed_different(tiny_loaded):
    a = generate(tiny_loaded, "a green star", "got-r1", n=2, seed=11, settings=SETTINGS)
    b = generate(tiny_loaded, "a green star", "got-r1", n=2, seed=11, settings=SETTINGS)
    c = generate(tiny_loaded, "a green star", "got-r1", n=2, seed=12, settings=SETTINGS)
    assert [s.image_token_ids for s in a] == [s.image_token_ids for s in b]
    assert [s.cot_token_ids for s in a] == [s.cot_token_ids for s in b]
    assert [s.image_token_ids for s in a] != [s.image_token_ids for s in c]
    assert a[0].image.tobytes() == b[0].image.tobytes()
    # samples within one group differ from each other
    assert a[0].image_token_ids != a[1].image_token_ids


def test_stream_order_and_deltas_rebuild_the_cot(tiny_loaded):
    events = list(generate_stream(tiny_loaded, "a yellow hexagon", "got-r1", n=2, seed=5,
                                  settings=SETTINGS, preview_every_rows=1))  # fmt: skip
    kinds = [type(e) for e in events]
    first_plan = kinds.index(PlanReady)
    first_image = kinds.index(ImageProgress)
    first_done = kinds.index(Done)
    assert kinds[0] is CotDelta
    assert first_plan < first_image < first_done
    assert all(k is not CotDelta for k in kinds[first_image:])
    assert all(k is Done for k in kinds[first_done:])
    samples = {e.sample.index: e.sample for e in events if isinstance(e, Done)}
    assert sorted(samples) == [0, 1]
    for i, s in samples.items():
        deltas = "".join(e.text for e in events if isinstance(e, CotDelta) and e.index == i)
        assert deltas == s.cot_text
        plans = [e.plan for e in events if isinstance(e, PlanReady) and e.index == i]
        assert len(plans) == 1 and plans[0] == s.plan
        # no CotDelta of row i after its PlanReady
        plan_pos = next(k for k, e in enumerate(events) if isinstance(e, PlanReady) and e.index == i)
        assert not any(isinstance(e, CotDelta) and e.index == i for e in events[plan_pos:])
    progress = [e for e in events if isinstance(e, ImageProgress)]
    assert [p.rows_done for p in progress] == list(range(1, tiny_loaded.grid + 1))
    assert all(len(p.previews) == 2 and p.previews[0].size == samples[0].image.size for p in progress)
    assert progress[-1].previews[0].tobytes() == samples[0].image.tobytes()


def _biased(loaded, token_ids, delta):
    """Add ``delta`` to the LM-head logits of ``token_ids`` (a removable forward hook)."""

    def hook(_module, _inputs, out):
        out = out.clone()
        out[..., token_ids] += delta
        return out

    return loaded.model.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("case", ["boi", "eos", "length"])
def test_cot_ends_at_boi_eos_or_the_cap(tiny_loaded, case):
    ids = tiny_loaded.ids
    bias = {"boi": ([ids.boi], 100.0), "eos": ([ids.eos], 100.0), "length": ([ids.boi, ids.eos], -1e4)}
    handle = _biased(tiny_loaded, *bias[case])
    try:
        s = generate(tiny_loaded, "a circle", "got-r1", n=2, seed=0,
                     settings=dataclasses.replace(SETTINGS, max_cot_tokens=6))[0]  # fmt: skip
    finally:
        handle.remove()
    assert s.cot_end == case
    assert s.prefix_ids[-1] == ids.boi
    if case == "length":
        assert len(s.cot_token_ids) == 6 and ids.boi not in s.cot_token_ids
        assert s.prefix_ids == s.prompt_ids + s.cot_token_ids + [ids.boi]
    else:  # the terminator was sampled (log-prob kept) and sits at the BOI position of the prefix
        stop = ids.boi if case == "boi" else ids.eos
        assert s.cot_token_ids == [stop] and s.cot_text == ""
        assert s.prefix_ids == [*s.prompt_ids, ids.boi]
        assert s.cot_logprobs[0] == pytest.approx(0.0, abs=1e-3)


def test_bad_prompts_and_settings_raise_clear_errors(tiny_loaded):
    for bad in ("", "   \n\t "):
        with pytest.raises(ValueError, match="empty"):
            generate(tiny_loaded, bad, "got-r1")
    with pytest.raises(ValueError, match="limit"):
        generate(tiny_loaded, "x" * (MAX_PROMPT_CHARS + 1), "got-r1")
    with pytest.raises(ValueError, match="direct, t2i-r1, got-r1, reasongen-r1"):
        generate(tiny_loaded, "a cat", "nonsense")
    with pytest.raises(ValueError, match=r"1\.\.64"):
        generate(tiny_loaded, "a cat", "direct", n=0)
    with pytest.raises(ValueError, match="top_p"):
        generate(tiny_loaded, "a cat", "direct", settings=SamplingSettings(top_p=1.5))
    with pytest.raises(ValueError, match="num_image_tokens=576"):  # not silently replaced by 16
        generate(tiny_loaded, "a cat", "direct", settings=SamplingSettings(num_image_tokens=576))
    assert set(RECIPES) == {"direct", "t2i-r1", "got-r1", "reasongen-r1"}


def test_greedy_image_tokens_match_transformers_generate(tiny_loaded):
    """The reference loop (transformers' Janus image generate) and ours agree token for token."""
    model = tiny_loaded.model
    greedy = SamplingSettings(guidance=5.0, temperature=0.0)
    ours = generate(tiny_loaded, "a purple diamond", "direct", n=1, seed=0, settings=greedy)[0]
    prefix = torch.tensor([ours.prefix_ids])
    ref = model.generate(prefix, attention_mask=torch.ones_like(prefix), generation_mode="image",
                         do_sample=False, guidance_scale=5.0)  # fmt: skip
    assert ref[0].tolist() == ours.image_token_ids


def test_decode_loops_take_the_settings_object(tiny_loaded):
    model, ids, dev = tiny_loaded.model, tiny_loaded.ids, tiny_loaded.device
    x, m = left_pad([[ids.bos, 74, 377, 322]], ids.pad, dev)  # [1, 4] prompt
    text = list(decode_text(model, x, m, SamplingSettings(max_cot_tokens=3, cot_temperature=0.0), ids, None))
    assert 1 <= len(text) <= 3  # capped by settings.max_cot_tokens
    x, m = left_pad([[ids.bos, 74, 377, 322, ids.boi]], ids.pad, dev)  # [1, 5] image prefix
    greedy = SamplingSettings(guidance=2.0, temperature=0.0, num_image_tokens=5)
    assert len(list(decode_image(model, x, m, greedy, ids, None))) == 5  # settings.num_image_tokens steps
    with pytest.raises(ValueError, match="num_image_tokens is unset"):
        next(decode_image(model, x, m, SamplingSettings(), ids, None))


# --------------------------------------------------------------------------- several prompts


PROMPTS = ["a red circle", "two blue stars and a green square above a yellow cross", "a star"]


@pytest.mark.parametrize("recipe", ["got-r1", "t2i-r1", "direct"])
def test_prompt_batch_equals_each_prompt_alone(tiny_loaded, recipe):
    # Prompts of different lengths whose CoTs stop at different steps share one batch; each
    # prompt draws from its own stream, so its samples are the ones it gets alone.
    batched = generate(tiny_loaded, PROMPTS, recipe, n=2, seed=[5, 9, 13], settings=SETTINGS,
                       metadata=[{"k": 0}, None, {"k": 2}])  # fmt: skip
    assert [(s.prompt, s.index, s.seed) for s in batched] == [
        (p, i, sd) for p, sd in zip(PROMPTS, [5, 9, 13]) for i in range(2)
    ]
    assert [s.metadata for s in batched[::2]] == [{"k": 0}, None, {"k": 2}]
    alone = [s for p, sd in zip(PROMPTS, [5, 9, 13]) for s in generate(tiny_loaded, p, recipe, n=2, seed=sd,
                                                                       settings=SETTINGS)]  # fmt: skip
    if recipe != "direct":
        assert len({len(s.cot_token_ids) for s in alone}) > 1  # rows really stop at different steps
    for b, a in zip(batched, alone):
        assert b.cot_token_ids == a.cot_token_ids and b.cot_end == a.cot_end
        assert b.prefix_ids == a.prefix_ids
        assert b.image_token_ids == a.image_token_ids
        assert b.cot_logprobs == pytest.approx(a.cot_logprobs, abs=1e-4)
        assert b.image_logprobs == pytest.approx(a.image_logprobs, abs=1e-4)


def test_prompt_batch_does_not_depend_on_max_batch_and_seed_base(tiny_loaded):
    whole = generate(tiny_loaded, PROMPTS, "got-r1", n=2, seed=40, settings=SETTINGS)
    chunked = generate(tiny_loaded, PROMPTS, "got-r1", n=2, seed=40, settings=SETTINGS, max_batch=2)
    assert [s.seed for s in whole] == [40, 40, 41, 41, 42, 42]
    assert [s.image_token_ids for s in whole] == [s.image_token_ids for s in chunked]


def test_prompt_batch_errors(tiny_loaded):
    with pytest.raises(ValueError, match="as many seeds"):
        generate(tiny_loaded, PROMPTS, "got-r1", n=1, seed=[1, 2], settings=SETTINGS)
    with pytest.raises(ValueError, match="as many seeds"):
        generate(tiny_loaded, PROMPTS, "got-r1", n=1, metadata=[None], settings=SETTINGS)
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_loaded, [], "got-r1", settings=SETTINGS)
    with pytest.raises(ValueError, match="max_batch"):
        generate(tiny_loaded, PROMPTS, "got-r1", n=4, max_batch=3, settings=SETTINGS)
    with pytest.raises(ValueError, match="empty"):
        generate(tiny_loaded, ["a star", "  "], "got-r1", settings=SETTINGS)
    with pytest.raises(ValueError, match="integers"):
        generate(tiny_loaded, PROMPTS, "got-r1", seed=[1, 2.5, 3], settings=SETTINGS)
