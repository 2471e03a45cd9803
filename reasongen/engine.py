"""A lean decode engine for Janus's Llama language model: static KV cache, fused projections.

transformers' Llama forward is general (cache classes, mask builders, output capturing, hooks); at
one token per step that generality, not arithmetic, dominates the time of a small model, and its
``DynamicCache`` re-concatenates every layer's keys and values at every step. On a CPU every tensor
op costs several microseconds whatever its size, so a small model's step time is its op count.
``StaticDecoder`` runs the same arithmetic on the same parameters with fewer ops:

- one pre-allocated cache ``[layers, rows, kv_heads, slots, head_dim]`` for all rows (conditional and
  unconditional rows alike), written in place;
- the q/k/v and the gate/up projections fused into one matmul each, with the RMSNorm weight that
  precedes each folded into its rows (built once, rebuilt when any parameter changes, e.g. after an
  optimizer step, by watching the parameters' version counters);
- RMSNorm as ``x / hypot(‖x‖, √(D·eps))`` (the ``√D`` folded into the weights too): three ops
  instead of the seven of ``rms_norm``'s CPU decomposition;
- rotary position embedding as one complex multiplication: the q and k output columns of each head
  are permuted at fusion time so that rotate-half pairs ``(j, j + hd/2)`` sit side by side, and the
  model's own ``rotary_emb`` tables (all of transformers' RoPE variants) become ``cos + i·sin``.
  Queries and keys share the permutation, so their dot products (attention) are unchanged;
- attention through ``scaled_dot_product_attention`` with a boolean slot mask.

Rows may be left-padded: slot ``j`` of row ``b`` holds the token in column ``j`` and is attended to
only if ``valid[b, j]``; rotary positions come from the caller (``cumsum(mask) - 1``). With fp32
weights the results equal transformers' own forward to float32 rounding (greedy tokens equal
token for token; log-probs to 1e-4, tested), so stored log-probs stay exact for training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

SLOT_ROUNDING = 64
"""Cache lengths are rounded up to this, so prompts of similar length share one CUDA graph."""

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
}


def activation(name: str | None, module: Callable[[torch.Tensor], torch.Tensor]):
    """The function behind transformers' activation ``name`` (``ACT2FN``), called directly: its
    module wrappers (hub-kernel dispatch, ``nn.Module.__call__``) cost more than the kernel on a
    CPU. Names not listed fall back to ``module``, the model's own activation module."""
    return _ACTIVATIONS.get(name or "", module)


@dataclass
class _Layer:
    """One decoder layer's weights, projections stored input-major (``[in, out]``, contiguous) so
    that each is a single ``mm``/``addmm`` on ``[rows, in]`` activations (no transpose per call).
    ``wqkv`` and ``w_gate_up`` carry the preceding norm's weight (times ``√D``) in their rows, and
    ``wqkv``/``bqkv`` hold q and k in the interleaved rotary layout (see ``_interleave``)."""

    wqkv: torch.Tensor  # [D, (H + 2·Hkv)·hd]
    bqkv: torch.Tensor | None  # [(H + 2·Hkv)·hd]
    wo: torch.Tensor  # [H·hd, D]
    bo: torch.Tensor | None  # [D]
    w_gate_up: torch.Tensor  # [D, 2·I]
    w_down: torch.Tensor  # [I, D]


def _tensors(layers: list[_Layer]) -> list[torch.Tensor | None]:
    """Every fused tensor of ``layers`` (``None`` for absent biases), in a fixed order."""
    return [getattr(layer, f.name) for layer in layers for f in fields(_Layer)]


def _same_layout(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether ``b`` can be copied into ``a`` in place (both absent, or equal shape, dtype, device)."""
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device


def _proj(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w (+ b)`` for ``x [N, in]``, ``w [in, out]``: one kernel."""
    return torch.mm(x, w) if b is None else torch.addmm(b, x, w)


def _fold(weights: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` weights → one ``[in, Σout]`` matrix with input row ``j`` scaled by
    ``scale[j]`` (float32: a norm's weight times √D, folded into the projection that follows it);
    computed in float32 and returned in the weights' dtype (one rounding)."""
    w = torch.cat(weights).float() * scale  # [Σout, in]
    return w.t().contiguous().to(weights[0].dtype)


def _normalize(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """RMSNorm without its weight and without the ``√D``: ``x / hypot(‖x‖, c)`` with
    ``c = √(D·eps)``, i.e. ``x / √(mean(x²) + eps) / √D`` (the weights carry ``√D``). Computed in
    float32 (as LlamaRMSNorm), returned in the input dtype. ``[..., D]``; ``c`` a 0-dim tensor."""
    h = x if x.dtype == torch.float32 else x.float()  # (no-op calls cost µs on a CPU)
    h = h / torch.hypot(torch.linalg.vector_norm(h, dim=-1, keepdim=True), c)  # [..., D]
    return h if x.dtype == torch.float32 else h.to(x.dtype)


def _interleave(w: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Reorder each head's ``head_dim`` output rows of ``w`` (``[heads·hd, ...]``, or a bias
    ``[heads·hd]``) from rotate-half order ``(0..hd/2-1 | hd/2..hd-1)`` to pairs
    ``(0, hd/2, 1, hd/2+1, …)``, so that a view as complex numbers rotates with one multiply."""
    half = head_dim // 2
    order = torch.stack([torch.arange(half), torch.arange(half) + half], dim=-1).flatten()  # [hd]
    return w.unflatten(0, (heads, head_dim))[:, order.to(w.device)].flatten(0, 1)


def _rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Llama's rotate-half RoPE on the interleaved layout: ``(x₁ + i·x₂)·(cos + i·sin)`` per pair,
    computed in float32 (the complex view needs it) and returned in ``x``'s dtype.
    ``x``: ``[B, T, heads, hd]``; ``rot``: ``[B, T, 1, hd/2]`` complex."""
    fp32 = x.dtype == torch.float32
    pairs = torch.view_as_complex((x if fp32 else x.float()).unflatten(-1, (-1, 2)))  # [B, T, heads, hd/2]
    out = torch.view_as_real(pairs * rot).flatten(-2)  # [B, T, heads, hd]
    return out if fp32 else out.to(x.dtype)


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
        self.act = activation(cfg.hidden_act, lm.layers[0].mlp.act_fn)
        self.scale = lm.layers[0].self_attn.scaling
        self._layers: list[_Layer] = []
        self._versions: tuple[tuple[int, int, torch.dtype, torch.device], ...] | None = None
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self._layer_caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.valid = torch.zeros(0, dtype=torch.bool)
        self.rot = torch.zeros(0, dtype=torch.complex64)
        self._final_norm = self._norm_c = torch.zeros(0)
        self.graphs: dict[tuple[int, ...], CudaGraphStep] = {}
        self.use_cuda_graphs = True

    # ------------------------------------------------------------------ weights

    def _param_versions(self) -> tuple[tuple[int, int, torch.dtype, torch.device], ...]:
        # The version counter catches in-place updates (optimizer steps); the storage, dtype and
        # device catch ``model.to(...)``/``.half()``, which give parameters new tensors whose
        # counters can equal the old ones.
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.lm.parameters())

    def _fuse(self) -> None:
        """(Re)build the fused weights when a parameter changed (in place, or moved to another
        device or dtype) since the last build. Values changed in place (an optimizer step) are
        copied into the existing fused tensors, which keeps captured CUDA graphs valid; a new
        dtype or device gives new tensors and drops the graphs."""
        versions = self._param_versions()
        if versions == self._versions:
            return
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        root_d = self.lm.config.hidden_size**0.5
        layers = []
        with torch.no_grad():
            for layer in self.lm.layers:
                a, m = layer.self_attn, layer.mlp
                q, k = _interleave(a.q_proj.weight, h, hd), _interleave(a.k_proj.weight, kv, hd)
                bias = None
                if a.q_proj.bias is not None:
                    bias = torch.cat([_interleave(a.q_proj.bias, h, hd), _interleave(a.k_proj.bias, kv, hd),
                                      a.v_proj.bias])  # fmt: skip
                gate_up = [m.gate_proj.weight, m.up_proj.weight]
                layers.append(
                    _Layer(
                        wqkv=_fold([q, k, a.v_proj.weight], layer.input_layernorm.weight.float() * root_d),
                        bqkv=bias,
                        wo=a.o_proj.weight.t().contiguous(),
                        bo=a.o_proj.bias,
                        w_gate_up=_fold(gate_up, layer.post_attention_layernorm.weight.float() * root_d),
                        w_down=m.down_proj.weight.t().contiguous(),
                    )
                )
            norm = self.lm.norm.weight
            final_norm = (norm.float() * root_d).to(norm.dtype)  # [D]
            norm_c = torch.tensor((self.lm.config.hidden_size * self.eps) ** 0.5, device=norm.device)
        fresh = [*_tensors(layers), final_norm, norm_c]
        kept = [*_tensors(self._layers), self._final_norm, self._norm_c]
        if len(kept) == len(fresh) and all(map(_same_layout, kept, fresh)):
            # Same shapes, dtypes and devices (an optimizer step): refill the tensors in place, so
            # the CUDA graphs captured on them stay valid and are not captured again.
            with torch.inference_mode():
                for old_t, new_t in zip(kept, fresh):
                    if old_t is not None:
                        old_t.copy_(new_t)
        else:
            self._layers, self._final_norm, self._norm_c = layers, final_norm, norm_c
            self.graphs.clear()  # captured graphs point at the old fused weights
        self._versions = versions

    # ------------------------------------------------------------------ cache

    def reset(self, rows: int, slots: int) -> torch.Tensor:
        """Prepare the cache for ``rows`` sequences of up to ``slots`` tokens (buffers of the same
        shape are reused, so captured graphs stay valid) and return ``valid`` ``[rows, slots]``,
        all False: the caller marks the slots that hold, or will hold, real tokens (a query never
        reads past its own slot, so decode slots may be marked before they are written)."""
        self._fuse()
        w = self._layers[0].wqkv
        slots = -(-slots // SLOT_ROUNDING) * SLOT_ROUNDING  # fewer distinct shapes, fewer captures
        shape = (len(self._layers), rows, self.n_kv, slots, self.head_dim)
        if self.k is None or self.k.shape != shape or self.k.dtype != w.dtype or self.k.device != w.device:
            self.k = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self.v = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self._layer_caches = list(zip(self.k.unbind(0), self.v.unbind(0)))  # per-layer views
            self.valid = torch.zeros((rows, slots), dtype=torch.bool, device=w.device)
            self.graphs.clear()  # captured graphs point at the old cache
        self.valid.zero_()  # stale keys/values stay in the cache but are never attended to
        if self.rot.shape[0] < slots or self.rot.device != w.device:
            # rotary tables for every position a row can reach, from the model's own rotary module
            pos = torch.arange(slots, device=w.device)[None]  # [1, S]
            probe = torch.zeros(1, 1, 1, dtype=torch.float32, device=w.device)
            with torch.inference_mode():
                cos, sin = self.lm.rotary_emb(probe, pos)  # [1, S, hd] each, rotate-half layout
            half = cos.shape[-1] // 2
            if not all(torch.equal(t[..., :half], t[..., half:]) for t in (cos, sin)):
                raise ValueError("rotary tables are not in rotate-half layout (cat(freqs, freqs))")
            self.rot = torch.complex(cos[0, :, :half], sin[0, :, :half])  # [S, hd/2]
            self.graphs.clear()
        return self.valid

    def decode(self, x: torch.Tensor, positions: torch.Tensor, slot: int) -> torch.Tensor:
        """One token per row into ``slot`` (after ``reset`` and a prefill): a replayed CUDA graph on
        GPU when ``use_cuda_graphs``, else ``forward``. ``x``: ``[R, 1, D]`` → ``[R, 1, D]``."""
        if not (x.is_cuda and self.use_cuda_graphs):
            if torch.is_inference_mode_enabled():  # the decode loops: skip forward's re-entry (~30 µs)
                return self._forward(x, positions, self.valid, slot)
            return self.forward(x, positions, self.valid, slot)
        key = tuple(self.valid.shape)
        if key not in self.graphs:
            self.graphs[key] = CudaGraphStep(self, x, positions, slot)
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
        return self._forward(x, positions, valid, start)

    def _forward(
        self, x: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, start: int
    ) -> torch.Tensor:
        """``forward`` without entering inference mode (the caller is already in it)."""
        t = x.shape[1]
        end = start + t
        if t == 1:  # decode: the new slot is valid, so the mask is just the valid slots so far
            mask = valid[:, None, None, :end]  # [B, 1, 1, end]
        else:
            slots = torch.arange(end, device=x.device)  # [end]
            query_slots = torch.arange(start, end, device=x.device)[:, None]  # [T, 1]
            mask = _slot_mask(valid[:, :end], query_slots, slots)  # [B, 1, T, end]

        b = x.shape[0]
        caches = self._layer_caches  # [R, Hkv, S, hd] views; fewer rows than the cache use the first b
        if b != self.valid.shape[0]:
            caches = [(k[:b], v[:b]) for k, v in caches]

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            k_cache, v_cache = caches[i]  # [B, Hkv, S, hd] views
            k_cache.narrow(2, start, t).copy_(k)
            v_cache.narrow(2, start, t).copy_(v)
            return k_cache.narrow(2, 0, end), v_cache.narrow(2, 0, end)

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
            k_cache, v_cache = self._layer_caches[i]  # [R, Hkv, S, hd] views
            k_cache.index_copy_(2, slot, k)
            v_cache.index_copy_(2, slot, v)
            return k_cache, v_cache

        return self._run(x, positions, mask, write)

    def _run(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, write) -> torch.Tensor:
        """The decoder layers; ``write(i, k, v)`` stores layer ``i``'s new keys/values and returns
        the keys/values to attend to. The residual stream is kept flat, ``[B·T, D]``."""
        b, t, d = x.shape
        h, hd, kv = self.n_heads, self.head_dim, self.n_kv
        q_dim, kv_dim = h * hd, kv * hd
        rot = self.rot[positions][:, :, None]  # [B, T, 1, hd/2]
        x = x.reshape(b * t, d)  # [N, D], N = B·T
        for i, w in enumerate(self._layers):
            qkv = _proj(_normalize(x, self._norm_c), w.wqkv, w.bqkv)  # [N, q_dim + 2·kv_dim]
            qk = _rotate(qkv[:, : q_dim + kv_dim].view(b, t, h + kv, hd), rot)  # [B, T, H+Hkv, hd]
            q, k = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2)  # [B, H|Hkv, T, hd]
            v = qkv[:, q_dim + kv_dim :].view(b, t, kv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
            keys, values = write(i, k, v)  # [B, Hkv, S', hd] each
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale,
                                                  enable_gqa=kv != h)  # [B, H, T, hd]  # fmt: skip
            attn = attn.transpose(1, 2).reshape(b * t, q_dim)  # [N, q_dim]
            x = torch.addmm(x if w.bo is None else x + w.bo, attn, w.wo)  # [N, D]
            gate, up = _proj(_normalize(x, self._norm_c), w.w_gate_up).chunk(2, dim=-1)  # [N, I] x2
            x = torch.addmm(x, self.act(gate) * up, w.w_down)  # [N, D]
        return (_normalize(x, self._norm_c) * self._final_norm).view(b, t, d)  # [B, T, D]


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

    Capturing runs the step for real twice first (warm-up outside the graph), and each run writes
    its token's keys and values into the cache. So the capture is made with the first call's own
    ``x``, ``positions`` and ``slot``: the warm-up writes exactly what that call writes, and no
    other slot (a prompt's, say) is touched.
    """

    def __init__(self, dec: StaticDecoder, x: torch.Tensor, positions: torch.Tensor, slot: int) -> None:
        if not x.is_cuda:
            raise ValueError("CUDA graphs need CUDA tensors; use StaticDecoder.step on the CPU")
        self.x, self.pos, self.valid = x.clone(), positions.clone(), dec.valid
        self.slot = torch.full((1,), slot, dtype=torch.long, device=x.device)
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
