"""The static-cache engine against transformers' own Llama forward, and its capturable step."""

from __future__ import annotations

import pytest
import torch

from reasongen.engine import StaticDecoder, decoder_for
from reasongen.generation import generate
from reasongen.layout import left_pad, positions
from reasongen.types import SamplingSettings


def _embedded_batch(loaded):
    ids, mask = left_pad([[0, 11, 12, 13, 14, 4], [0, 21, 4]], loaded.ids.pad, torch.device("cpu"))
    return loaded.model.get_input_embeddings()(ids).detach(), mask


def test_prefill_equals_transformers_forward_on_left_padded_rows(tiny_loaded):
    lm = tiny_loaded.model.model.language_model
    x, mask = _embedded_batch(tiny_loaded)
    pos = positions(mask)
    with torch.no_grad():
        ref = lm(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state
    dec = StaticDecoder(lm)
    valid = dec.reset(2, 16)
    valid[:, :6] = mask.bool()
    ours = dec.forward(x, pos, valid, 0)
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ours).all()  # padding slots do not produce NaN


def _llama():
    """A Llama with 2 key/value heads for 4 query heads, q/k/v biases, random norm weights and
    biases (the defaults, ones and zeros, would hide a folding bug), llama3 RoPE scaling, and
    weights large enough that attention depends on positions."""
    from transformers import LlamaConfig, LlamaModel

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32}  # fmt: skip
    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, attention_bias=True, vocab_size=50, max_position_embeddings=256,
                      rope_scaling=rope, initializer_range=0.2)  # fmt: skip
    torch.manual_seed(0)
    lm = LlamaModel(cfg).eval()
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    return lm


def _prefill_then_decode(lm, x, mask, dec=None):
    """Our decoder (``dec``, or a new one) over ``x [2, 7, D]``: prefill 5 columns, then one
    decode step at a time."""
    pos = positions(mask)
    dec = dec or StaticDecoder(lm)
    valid = dec.reset(2, 16)
    valid[:, :7] = mask.bool()
    outs = [dec.forward(x[:, :5], pos[:, :5], valid, 0)]
    outs += [dec.forward(x[:, t : t + 1], pos[:, t : t + 1], valid, t) for t in (5, 6)]
    return torch.cat(outs, dim=1)


MASK = torch.tensor([[1] * 7, [0, 0] + [1] * 5])


def test_grouped_heads_biases_and_scaled_rope_equal_transformers():
    """The folded norms and the interleaved rotary layout against transformers' forward over the
    whole sequence (prefill plus two decode steps, one row left-padded)."""
    lm = _llama()
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        ref = lm(inputs_embeds=x, attention_mask=MASK, position_ids=positions(MASK)).last_hidden_state
        still = lm(inputs_embeds=x, attention_mask=MASK, position_ids=0 * MASK).last_hidden_state
    real = MASK.bool()
    assert (ref[real] - still[real]).abs().max() > 0.1  # positions matter in this model
    torch.testing.assert_close(_prefill_then_decode(lm, x, MASK)[real], ref[real], atol=1e-5, rtol=1e-5)


def test_bfloat16_path_follows_transformers_in_bfloat16():
    """The GPU's dtype (the non-float32 branches of the norm and the rotation), run on the CPU."""
    lm = _llama().to(torch.bfloat16)
    x = torch.randn(2, 7, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = lm(inputs_embeds=x, attention_mask=MASK, position_ids=positions(MASK)).last_hidden_state
    ours = _prefill_then_decode(lm, x, MASK)
    assert ours.dtype == torch.bfloat16
    real = MASK.bool()
    # bf16 rounding differs (fp32 rotation, folded weights): ~0.08 here; a missing rotation gives ~4
    torch.testing.assert_close(ours[real].float(), ref[real].float(), atol=0.15, rtol=0.05)


def test_fused_weights_follow_a_dtype_move():
    """``model.to(...)`` gives parameters new tensors whose version counters can equal the old
    ones; a decoder built before the move must re-fuse instead of keeping float32 weights."""
    lm = _llama()
    dec = StaticDecoder(lm)
    x = torch.randn(2, 7, 64)
    real = MASK.bool()
    with torch.no_grad():
        _prefill_then_decode(lm, x, MASK, dec)  # fuses the float32 weights
        lm.to(torch.bfloat16)
        x = x.bfloat16()
        ref = lm(inputs_embeds=x, attention_mask=MASK, position_ids=positions(MASK)).last_hidden_state
        ours = _prefill_then_decode(lm, x, MASK, dec)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours[real].float(), ref[real].float(), atol=0.15, rtol=0.05)


def test_static_step_equals_sliced_forward(tiny_loaded):
    lm = tiny_loaded.model.model.language_model
    x, mask = _embedded_batch(tiny_loaded)
    pos = positions(mask)
    nxt = torch.randn(2, 1, x.shape[-1])
    outs = []
    for use_step in (False, True):
        dec = StaticDecoder(lm)
        valid = dec.reset(2, 16)
        valid[:, :6] = mask.bool()
        dec.forward(x, pos, valid, 0)
        valid[:, 6] = True
        if use_step:
            outs.append(dec.step(nxt, pos[:, -1:] + 1, valid, torch.tensor([6])))
        else:
            outs.append(dec.forward(nxt, pos[:, -1:] + 1, valid, 6))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_fused_weights_follow_parameter_updates(tiny_loaded):
    dec = decoder_for(tiny_loaded.model)
    assert decoder_for(tiny_loaded.model) is dec
    settings = SamplingSettings(temperature=0.0, guidance=2.0)
    before = generate(tiny_loaded, "a red circle", "direct", settings=settings)[0].image_token_ids
    q = tiny_loaded.model.model.language_model.layers[0].self_attn.q_proj.weight
    saved = q.detach().clone()
    with torch.no_grad():
        q.mul_(-3.0)  # an in-place update, like an optimizer step
    try:
        changed = generate(tiny_loaded, "a red circle", "direct", settings=settings)[0].image_token_ids
    finally:
        with torch.no_grad():
            q.copy_(saved)
    again = generate(tiny_loaded, "a red circle", "direct", settings=settings)[0].image_token_ids
    assert changed != before and again == before


def test_weights_changed_in_place_are_fused_again_in_place_and_keep_captured_graphs(tiny_loaded):
    """An optimizer step changes parameters in place: the decoder refills its fused tensors (same
    storage, so CUDA graphs captured on them stay valid and are kept) with the values a fresh
    decoder would fuse. A dtype change builds new tensors and drops the graphs."""
    import copy

    lm = copy.deepcopy(tiny_loaded.model.model.language_model)
    dec = StaticDecoder(lm)
    dec.reset(1, 8)
    wqkv, norm = dec._layers[0].wqkv, dec._final_norm
    dec.graphs[(1, 8)] = "captured"  # stands in for a CudaGraphStep (the CPU never captures)
    with torch.no_grad():
        lm.layers[0].self_attn.q_proj.weight.add_(0.1)
        lm.norm.weight.mul_(1.5)
    dec.reset(1, 8)
    assert dec._layers[0].wqkv is wqkv and dec._final_norm is norm and dec.graphs == {(1, 8): "captured"}
    fresh = StaticDecoder(lm)
    fresh.reset(1, 8)
    for ours, theirs in zip(dec._layers, fresh._layers, strict=True):
        torch.testing.assert_close(ours.wqkv, theirs.wqkv, atol=0, rtol=0)
        torch.testing.assert_close(ours.w_gate_up, theirs.w_gate_up, atol=0, rtol=0)
    torch.testing.assert_close(dec._final_norm, fresh._final_norm, atol=0, rtol=0)
    lm.double()
    dec.reset(1, 8)
    assert dec._layers[0].wqkv.dtype == torch.float64 and dec.graphs == {}


def test_cuda_graph_step_refuses_cpu_tensors(tiny_loaded):
    from reasongen.engine import CudaGraphStep

    dec = StaticDecoder(tiny_loaded.model.model.language_model)
    dec.reset(1, 8)
    with pytest.raises(ValueError, match="CUDA"):
        CudaGraphStep(dec, torch.zeros(1, 1, 64), torch.zeros(1, 1, dtype=torch.long), slot=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_steps_equal_eager_steps_and_leave_the_prompt_cache_alone(tiny_model_dir):
    """Two decoders, each with its own cache, fed the same prompt and tokens: one replays a
    captured graph per token, the other runs eagerly. Their hidden states agree at every step and
    their caches hold the same keys, so capturing (which runs the step for real to warm up) wrote
    nothing into the prompt's slots. It once wrote the first token's keys into slot 0."""
    from reasongen.loading import load_model

    loaded = load_model(tiny_model_dir, device="cuda", dtype="float32")
    lm = loaded.model.model.language_model
    graphed, eager = StaticDecoder(lm), StaticDecoder(lm)
    eager.use_cuda_graphs = False
    rows, prompt, steps, d = 3, 5, 6, lm.config.hidden_size
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rows, prompt, d, device="cuda", generator=gen)  # [R, P, D]
    pos = torch.arange(prompt, device="cuda").expand(rows, -1)  # [R, P]
    for dec in (graphed, eager):
        valid = dec.reset(rows, prompt + steps)
        valid[:, : prompt + steps] = True
        dec.forward(x, pos, valid, 0)
    for slot in range(prompt, prompt + steps):
        token = torch.randn(rows, 1, d, device="cuda", generator=gen)  # [R, 1, D]
        at = torch.full((rows, 1), slot, device="cuda")  # [R, 1]
        out_graphed = graphed.decode(token, at, slot).clone()
        out_eager = eager.decode(token, at, slot)
        torch.testing.assert_close(out_graphed, out_eager, atol=1e-4, rtol=1e-4)
    assert graphed.graphs and not eager.graphs  # the first really replayed a graph
    torch.testing.assert_close(graphed.k, eager.k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(graphed.v, eager.v, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_matches_eager(tiny_model_dir):
    from reasongen.loading import load_model

    loaded = load_model(tiny_model_dir, device="cuda", dtype="float32")
    settings = SamplingSettings(temperature=0.0, cot_temperature=0.0, max_cot_tokens=8)
    graphed = generate(loaded, "two stars", "got-r1", n=3, settings=settings)
    decoder_for(loaded.model).use_cuda_graphs = False
    eager = generate(loaded, "two stars", "got-r1", n=3, settings=settings)
    assert [s.image_token_ids for s in graphed] == [s.image_token_ids for s in eager]
    assert [s.cot_token_ids for s in graphed] == [s.cot_token_ids for s in eager]


def test_image_head_equals_the_generation_head_module(tiny_loaded):
    from reasongen.decode import image_head

    hidden = torch.randn(3, tiny_loaded.model.config.text_config.hidden_size)
    with torch.no_grad():
        ref = tiny_loaded.model.model.generation_head(hidden)
    torch.testing.assert_close(image_head(tiny_loaded.model)(hidden), ref, atol=0, rtol=0)
