"""A lean decode engine for Janus's Llama language model: static KV cache, fused projections.

transformers' Llama forward is general (cache classes, mask builders, output capturing, hooks); at
one token per step that generality, not arithmetic, dominates the time of a small model, and its
``DynamicCache`` re-concatenates every layer's keys and values at every step. ``StaticDecoder``
runs the same arithmetic on the same parameters with:

- one pre-allocated cache ``[layers, rows, kv_heads, slots, head_dim]`` for all rows (conditional and
  unconditional rows alike), written in place;
- the q/k/v and the gate/up projections fused into one matmul each (built once, rebuilt when any
  parameter changes, e.g. after an optimizer step, by watching the parameters' version counters);
- rotary tables computed once per cache by the model's own ``rotary_emb`` (all of transformers'
  RoPE variants), q and k rotated together, ``F.rms_norm`` in float32, and attention through
  ``scaled_dot_product_attention`` with a boolean slot mask.

Rows may be left-padded: slot ``j`` of row ``b`` holds the token in column ``j`` and is attended to
only if ``valid[b, j]``; rotary positions come from the caller (``cumsum(mask) - 1``). With fp32
weights the results equal transformers' own forward to rounding (tested token for token on greedy
decoding), so stored log-probs stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SLOT_ROUNDING = 64
"""Cache lengths are rounded up to this, so prompts of similar length share one CUDA graph."""


@dataclass
class _Layer:
    """One decoder layer's weights, projections stored input-major (``[in, out]``, contiguous) so
    that each is a single ``mm``/``addmm`` on ``[rows, in]`` activations (no transpose per call)."""

    wqkv: torch.Tensor  # [D, (H + 2·Hkv)·hd]
    bqkv: torch.Tensor | None  # [(H + 2·Hkv)·hd]
    wo: torch.Tensor  # [H·hd, D]
    bo: torch.Tensor | None  # [D]
    w_gate_up: torch.Tensor  # [D, 2·I]
    w_down: torch.Tensor  # [I, D]
    ln1: torch.Tensor  # [D]
    ln2: torch.Tensor  # [D]


def _proj(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w (+ b)`` for ``x [N, in]``, ``w [in, out]``: one kernel."""
    return torch.mm(x, w) if b is None else torch.addmm(b, x, w)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: normalise in float32, scale in the input dtype. ``[..., D]``.

    In float32 that is exactly ``F.rms_norm`` (one fused kernel instead of six small ones)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotate-half RoPE, ``x·cos + rotate_half(x)·sin``, in four kernels.

    ``rotate_half(x) = cat(−x₂, x₁)`` equals ``roll(x, half)·(−1 | +1)``, so the sign lives in
    ``signed_sin = cat(−sin₁, sin₂)`` (exact: a sign flip does not round). ``x [B, H, T, hd]``,
    ``cos``/``signed_sin`` ``[B, 1, T, hd]``.
    """
    return x * cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * signed_sin


class StaticDecoder:
    """Runs a transformers ``LlamaModel`` (Janus's ``model.model.language_model``) with a static
    KV cache. Call ``reset(rows, slots)`` before each generation, then ``forward`` on chunks
    (prefill and CPU decode) or ``step`` per token (static shapes; CUDA-graph capturable)."""

    def __init__(self, lm: nn.Module) -> None:
        cfg = lm.config
        self.lm = lm
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.act = lm.layers[0].mlp.act_fn
        self.scale = lm.layers[0].self_attn.scaling
        self._layers: list[_Layer] = []
        self._versions: tuple[int, ...] | None = None
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.valid = torch.zeros(0, dtype=torch.bool)
        self.cos = self.sin = torch.zeros(0)
        self.graphs: dict[tuple[int, ...], CudaGraphStep] = {}
        self.use_cuda_graphs = True

    # ------------------------------------------------------------------ weights

    def _param_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.lm.parameters())

    def _fuse(self) -> None:
        """(Re)build the fused weights when a parameter changed since the last build."""
        versions = self._param_versions()
        if versions == self._versions:
            return
        layers = []
        with torch.no_grad():
            for layer in self.lm.layers:
                a, m = layer.self_attn, layer.mlp
                biases = [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]
                layers.append(
                    _Layer(
                        wqkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).t().contiguous(),
                        bqkv=torch.cat(biases) if biases[0] is not None else None,
                        wo=a.o_proj.weight.t().contiguous(),
                        bo=a.o_proj.bias,
                        w_gate_up=torch.cat([m.gate_proj.weight, m.up_proj.weight]).t().contiguous(),
                        w_down=m.down_proj.weight.t().contiguous(),
                        ln1=layer.input_layernorm.weight,
                        ln2=layer.post_attention_layernorm.weight,
                    )
                )
        self._layers = layers
        self._versions = versions
        self.graphs.clear()  # captured graphs point at the old fused weights

    # ------------------------------------------------------------------ cache

    def reset(self, rows: int, slots: int) -> torch.Tensor:
        """Prepare the cache for ``rows`` sequences of up to ``slots`` tokens (buffers of the same
        shape are reused, so captured graphs stay valid) and return ``valid`` ``[rows, slots]``,
        all False: the caller marks the slots it fills."""
        self._fuse()
        w = self._layers[0].wqkv
        slots = -(-slots // SLOT_ROUNDING) * SLOT_ROUNDING  # fewer distinct shapes, fewer captures
        shape = (len(self._layers), rows, self.n_kv, slots, self.head_dim)
        if self.k is None or self.k.shape != shape or self.k.dtype != w.dtype or self.k.device != w.device:
            self.k = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self.v = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self.valid = torch.zeros((rows, slots), dtype=torch.bool, device=w.device)
            self.graphs.clear()  # captured graphs point at the old cache
        self.valid.zero_()  # stale keys/values stay in the cache but are never attended to
        if self.cos.shape[0] < slots or self.cos.dtype != w.dtype or self.cos.device != w.device:
            # rotary tables for every position a row can reach, from the model's own rotary module
            pos = torch.arange(slots, device=w.device)[None]  # [1, S]
            probe = torch.zeros(1, 1, 1, dtype=w.dtype, device=w.device)
            with torch.inference_mode():
                cos, sin = self.lm.rotary_emb(probe, pos)  # [1, S, hd] each
            half = cos.shape[-1] // 2
            self.cos = cos[0]  # [S, hd]
            self.sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)  # [S, hd], signed
            self.graphs.clear()
        return self.valid

    def decode(self, x: torch.Tensor, positions: torch.Tensor, slot: int) -> torch.Tensor:
        """One token per row into ``slot`` (after ``reset`` and a prefill): a replayed CUDA graph on
        GPU when ``use_cuda_graphs``, else ``forward``. ``x``: ``[R, 1, D]`` → ``[R, 1, D]``."""
        if not (x.is_cuda and self.use_cuda_graphs):
            return self.forward(x, positions, self.valid, slot)
        key = tuple(self.valid.shape)
        if key not in self.graphs:
            self.graphs[key] = CudaGraphStep(self, x, positions)
        return self.graphs[key](x, positions, slot)

    # ------------------------------------------------------------------ forward

    @torch.inference_mode()
    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, start: int
    ) -> torch.Tensor:
        """Process tokens in slots ``start .. start+T`` and return the final hidden states.

        ``x``: ``[B, T, D]`` input embeddings; ``positions``: ``[B, T]`` rotary positions;
        ``valid``: ``[B, S]`` bool, which slots hold real tokens (at least up to ``start+T``).
        Attention reads only slots ``< start+T`` (the cheapest form for prefill and CPU decode).
        """
        t = x.shape[1]
        end = start + t
        if t == 1:  # decode: the new slot is valid, so the mask is just the valid slots so far
            mask = valid[:, None, None, :end]  # [B, 1, 1, end]
        else:
            slots = torch.arange(end, device=x.device)  # [end]
            query_slots = torch.arange(start, end, device=x.device)[:, None]  # [T, 1]
            mask = _slot_mask(valid[:, :end], query_slots, slots)  # [B, 1, T, end]

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.k[i, : k.shape[0], :, start:end] = k
            self.v[i, : v.shape[0], :, start:end] = v
            return self.k[i, : k.shape[0], :, :end], self.v[i, : v.shape[0], :, :end]

        return self._run(x, positions, mask, write)

    @torch.inference_mode()
    def step(
        self, x: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor
    ) -> torch.Tensor:
        """One decode token per row with every shape static, so it can be captured as a CUDA graph.

        ``x``: ``[R, 1, D]``; ``positions``: ``[R, 1]``; ``valid``: ``[R, S]`` (the whole cache);
        ``slot``: ``[1]`` long tensor, the slot to write. Attention reads all ``S`` slots, masked.
        Same result as ``forward(x, positions, valid, int(slot))``.
        """
        slots = torch.arange(valid.shape[1], device=x.device)  # [S]
        mask = _slot_mask(valid, slot[:, None], slots)  # [R, 1, 1, S]

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.k[i].index_copy_(2, slot, k)
            self.v[i].index_copy_(2, slot, v)
            return self.k[i], self.v[i]

        return self._run(x, positions, mask, write)

    def _run(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, write) -> torch.Tensor:
        """The decoder layers; ``write(i, k, v)`` stores layer ``i``'s new keys/values and returns
        the keys/values to attend to. The residual stream is kept flat, ``[B·T, D]``."""
        b, t, d = x.shape
        h, hd, kv = self.n_heads, self.head_dim, self.n_kv
        q_dim, kv_dim = h * hd, kv * hd
        cos = self.cos[positions][:, None]  # [B, 1, T, hd]
        sin = self.sin[positions][:, None]  # [B, 1, T, hd]
        x = x.reshape(b * t, d)  # [N, D], N = B·T
        for i, w in enumerate(self._layers):
            qkv = _proj(_rms_norm(x, w.ln1, self.eps), w.wqkv, w.bqkv)  # [N, q_dim + 2·kv_dim]
            qk = qkv[:, : q_dim + kv_dim].view(b, t, h + kv, hd).transpose(1, 2)  # [B, H+Hkv, T, hd]
            qk = _rotate(qk, cos, sin)  # q and k rotated in one go
            q, k = qk[:, :h], qk[:, h:]  # [B, H, T, hd], [B, Hkv, T, hd]
            v = qkv[:, q_dim + kv_dim :].view(b, t, kv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
            keys, values = write(i, k, v)  # [B, Hkv, S', hd] each
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale,
                                                  enable_gqa=kv != h)  # [B, H, T, hd]  # fmt: skip
            attn = attn.transpose(1, 2).reshape(b * t, q_dim)  # [N, q_dim]
            x = torch.addmm(x if w.bo is None else x + w.bo, attn, w.wo)  # [N, D]
            gate, up = _proj(_rms_norm(x, w.ln2, self.eps), w.w_gate_up).chunk(2, dim=-1)  # [N, I] x2
            x = torch.addmm(x, self.act(gate) * up, w.w_down)  # [N, D]
        return _rms_norm(x, self.lm.norm.weight, self.eps).view(b, t, d)  # [B, T, D]


def _slot_mask(valid: torch.Tensor, query_slots: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Attention mask ``[B, 1, T, S']``: a query sees valid slots up to its own; a padding slot sees
    only itself, so no row is fully masked (that would give NaN and poison the cache).

    ``valid``: ``[B, S']``; ``query_slots``: ``[T, 1]``; ``slots``: ``[S']``.
    """
    causal = slots[None, :] <= query_slots  # [T, S']
    own = slots[None, :] == query_slots  # [T, S']
    return (valid[:, None, None, :] & causal) | own  # [B, 1, T, S']


class CudaGraphStep:
    """``StaticDecoder.step`` captured once as a CUDA graph for fixed rows and cache slots, then
    replayed per token: the whole per-token LM step costs one launch.

    Inputs are copied into static buffers; the returned hidden state ``[R, 1, D]`` is a static
    buffer too (read or copy it before the next ``__call__``). The graph refers to the decoder's
    cache and fused weights, so ``StaticDecoder`` drops its graphs whenever those are rebuilt.
    """

    def __init__(self, dec: StaticDecoder, x: torch.Tensor, positions: torch.Tensor) -> None:
        if not x.is_cuda:
            raise ValueError("CUDA graphs need CUDA tensors; use StaticDecoder.step on the CPU")
        self.x, self.pos, self.valid = x.clone(), positions.clone(), dec.valid
        self.slot = torch.zeros(1, dtype=torch.long, device=x.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the graph (allocator, kernels)
            for _ in range(2):
                self.out = dec.step(self.x, self.pos, self.valid, self.slot)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = dec.step(self.x, self.pos, self.valid, self.slot)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor, slot: int) -> torch.Tensor:
        self.x.copy_(x)
        self.pos.copy_(positions)
        self.slot.fill_(slot)
        self.graph.replay()
        return self.out


def decoder_for(model: nn.Module) -> StaticDecoder:
    """The model's decoder, created once and kept on the model (fused weights follow updates)."""
    dec = getattr(model, "_reasongen_decoder", None)
    if dec is None:
        dec = StaticDecoder(model.model.language_model)
        model._reasongen_decoder = dec
    return dec
