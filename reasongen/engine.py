"""A lean decode engine for Janus's Llama language model: static KV cache, fused projections.

transformers' Llama forward is general (cache classes, mask builders, output capturing, hooks); at
one token per step that generality, not arithmetic, dominates the time of a small model, and its
``DynamicCache`` re-concatenates every layer's keys and values at every step. ``StaticDecoder``
runs the same arithmetic on the same parameters with:

- one pre-allocated cache ``[layers, rows, kv_heads, slots, head_dim]`` for all rows (conditional and
  unconditional rows alike), written in place;
- the q/k/v and the gate/up projections fused into one matmul each (built once, rebuilt when any
  parameter changes, e.g. after an optimizer step, by watching the parameters' version counters);
- rotary embeddings from the model's own ``rotary_emb`` (all of transformers' RoPE variants) and
  attention through ``scaled_dot_product_attention`` with a boolean slot mask.

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


@dataclass
class _Layer:
    wqkv: torch.Tensor  # [(H + 2·Hkv)·hd, D]
    bqkv: torch.Tensor | None
    wo: torch.Tensor  # [D, H·hd]
    bo: torch.Tensor | None
    w_gate_up: torch.Tensor  # [2·I, D]
    w_down: torch.Tensor  # [D, I]
    ln1: torch.Tensor  # [D]
    ln2: torch.Tensor  # [D]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: normalise in float32, scale in the input dtype. ``[..., D]``."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotate-half RoPE. ``x [B, H, T, hd]``, ``cos``/``sin`` ``[B, 1, T, hd]``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class StaticDecoder:
    """Runs a transformers ``LlamaModel`` (Janus's ``model.model.language_model``) with a static
    KV cache. Call ``reset(rows, slots)`` before each generation, then ``forward`` on chunks."""

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
                        wqkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                        bqkv=torch.cat(biases) if biases[0] is not None else None,
                        wo=a.o_proj.weight,
                        bo=a.o_proj.bias,
                        w_gate_up=torch.cat([m.gate_proj.weight, m.up_proj.weight]),
                        w_down=m.down_proj.weight,
                        ln1=layer.input_layernorm.weight,
                        ln2=layer.post_attention_layernorm.weight,
                    )
                )
        self._layers = layers
        self._versions = versions

    # ------------------------------------------------------------------ cache

    def reset(self, rows: int, slots: int) -> None:
        """Allocate (or reuse) a zeroed cache for ``rows`` sequences of up to ``slots`` tokens."""
        self._fuse()
        w = self._layers[0].wqkv
        shape = (len(self._layers), rows, self.n_kv, slots, self.head_dim)
        if self.k is None or self.k.shape != shape or self.k.dtype != w.dtype or self.k.device != w.device:
            self.k = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self.v = torch.zeros(shape, dtype=w.dtype, device=w.device)

    # ------------------------------------------------------------------ forward

    @torch.inference_mode()
    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, start: int
    ) -> torch.Tensor:
        """Process tokens in slots ``start .. start+T`` and return the final hidden states.

        ``x``: ``[B, T, D]`` input embeddings; ``positions``: ``[B, T]`` rotary positions;
        ``valid``: ``[B, S]`` bool, which slots hold real tokens (at least up to ``start+T``).
        """
        b, t, _ = x.shape
        end = start + t
        cos, sin = self.lm.rotary_emb(x, positions)  # [B, T, hd] each
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, hd]
        causal = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(start)  # [T, end]
        # A padding slot attends to itself only, so no query row is fully masked (which would give
        # NaN and poison the cache); real tokens never attend to padding.
        own = torch.zeros(t, end, dtype=torch.bool, device=x.device)
        own[torch.arange(t), torch.arange(start, end)] = True  # [T, end]
        mask = (valid[:, None, None, :end] & causal) | own  # [B, 1, T, end]
        h, hd, q_dim, kv_dim = self.n_heads, self.head_dim, self.n_heads * self.head_dim, self.n_kv * self.head_dim
        for i, w in enumerate(self._layers):
            a = _rms_norm(x, w.ln1, self.eps)  # [B, T, D]
            qkv = F.linear(a, w.wqkv, w.bqkv)  # [B, T, q_dim + 2·kv_dim]
            q = qkv[..., :q_dim].view(b, t, h, hd).transpose(1, 2)  # [B, H, T, hd]
            k = qkv[..., q_dim : q_dim + kv_dim].view(b, t, self.n_kv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
            v = qkv[..., q_dim + kv_dim :].view(b, t, self.n_kv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            self.k[i, :b, :, start:end] = k
            self.v[i, :b, :, start:end] = v
            attn = F.scaled_dot_product_attention(
                q, self.k[i, :b, :, :end], self.v[i, :b, :, :end], attn_mask=mask, scale=self.scale,
                enable_gqa=self.n_kv != h,
            )  # [B, H, T, hd]
            x = x + F.linear(attn.transpose(1, 2).reshape(b, t, q_dim), w.wo, w.bo)  # [B, T, D]
            gate, up = F.linear(_rms_norm(x, w.ln2, self.eps), w.w_gate_up).chunk(2, dim=-1)  # [B, T, I] x2
            x = x + F.linear(self.act(gate) * up, w.w_down)  # [B, T, D]
        return _rms_norm(x, self.lm.norm.weight, self.eps)  # [B, T, D]


def decoder_for(model: nn.Module) -> StaticDecoder:
    """The model's decoder, created once and kept on the model (fused weights follow updates)."""
    dec = getattr(model, "_reasongen_decoder", None)
    if dec is None:
        dec = StaticDecoder(model.model.language_model)
        model._reasongen_decoder = dec
    return dec
