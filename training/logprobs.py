"""Recompute a batch of samples' CoT and image log-probs in one forward pass of a Janus model.

Token layout (``reasongen.types.Sample``): ``prefix_ids`` = formatted prompt + CoT +
``<begin_of_image>``; ``cot_token_ids[i]`` is predicted from ``prefix_ids[: P + i]`` (``P =
len(prompt_ids)``), i.e. by the hidden state at position ``P + i − 1``, through the LM head;
``image_token_ids[j]`` is predicted from ``prefix_ids + image_token_ids[:j]``, i.e. by the hidden
state at position ``L − 1 + j`` (``L = len(prefix_ids)``), through the generation head. The input
sequence is therefore ``prefix_ids`` (text embeddings) followed by ``image_token_ids[:-1]``
(generation embeddings + aligner); samples of different lengths are right-padded, which leaves
every real position's causal context unchanged. Recipes that re-wrap the CoT into a new step-2
conversation (T2I-R1) have a prefix that does not contain ``prompt_ids + cot_token_ids``; their
CoT log-probs come from a second, text-only forward over ``prompt_ids + cot_token_ids[:-1]``
(same positions formula).

Three distributions can be asked for:

- ``"sampling"``: exactly the one the sample was drawn from (``reasongen.sampling``: temperature,
  top-k/top-p, and for images classifier-free guidance ``u + w·(c − u)`` with an unconditional row
  that keeps only BOS and ``<begin_of_image>`` of the prefix and pads the rest). The stored
  behaviour log-probs are under this distribution, so PPO ratios are exact at the first step.
  Tokens removed by top-k/top-p after the policy moved get ``-inf``; train with filters off.
- ``"conditional"``: the same, but the image tokens' distribution is the conditional row's alone
  (``c``, no guidance, no unconditional forward): what T2I-R1 trains on although it samples at
  w = 5 (``open_r1/trainer/grpo_trainer.py``, ``_get_per_token_logps``). CoT log-probs are the
  sampling ones (guidance never touches the CoT). For a sample drawn at w = 1 it equals
  ``"sampling"``; otherwise the stored log-probs are not of this distribution, and the trainer
  computes behaviour log-probs itself (``training/grpo.py``).
- ``"plain"``: the model's own conditional distribution (temperature 1, no filter, no guidance),
  as used by SFT.

GRPO's KL term compares the policy with the reference under the distribution being trained
(``"sampling"`` or ``"conditional"``, see ``training/grpo.py``), not ``"plain"``; at temperature 1
without filters ``"conditional"`` is ``"plain"``, which is T2I-R1's KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from reasongen.layout import unconditional_prefix
from reasongen.sampling import guided_logits, sampling_logprobs
from reasongen.types import Sample

from .grpo_loss import entropy_from_logits

Mode = Literal["sampling", "conditional", "plain"]
MODES = ("sampling", "conditional", "plain")


@dataclass
class PackedBatch:
    """Samples as right-padded tensors (see the module docstring for positions)."""

    tokens: torch.Tensor  # [B, S] long: prefix ids then image ids[:-1]; 0 at padding
    is_image: torch.Tensor  # [B, S] bool: position holds an image token
    attention_mask: torch.Tensor  # [B, S] long
    uncond_tokens: torch.Tensor  # [B, S] long: BOS, pads, BOI, then the same image ids
    cot_positions: torch.Tensor  # [B, Tc] long: hidden-state position predicting each CoT token
    cot_targets: torch.Tensor  # [B, Tc] long
    cot_mask: torch.Tensor  # [B, Tc] bool
    image_positions: torch.Tensor  # [B, N] long
    image_targets: torch.Tensor  # [B, N] long
    image_mask: torch.Tensor  # [B, N] bool
    text_tokens: torch.Tensor | None = None  # [B, St] prompt + CoT[:-1], only if not in prefix
    text_attention: torch.Tensor | None = None  # [B, St]

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(**{k: None if v is None else v.to(device) for k, v in self.__dict__.items()})


def cot_in_prefix(sample: Sample) -> bool:
    """Whether the CoT's inputs sit in ``prefix_ids`` right after the prompt (no re-wrapping)."""
    p, tc = len(sample.prompt_ids), len(sample.cot_token_ids)
    if tc == 0:
        return True
    head = list(sample.prompt_ids) + list(sample.cot_token_ids[:-1])
    return list(sample.prefix_ids[: p + tc - 1]) == head


def _check(sample: Sample, k: int) -> None:
    p, n_prefix = len(sample.prompt_ids), len(sample.prefix_ids)
    if p < 1:
        raise ValueError(f"sample {k}: prompt_ids is empty (it must hold at least BOS)")
    if n_prefix < 2:
        raise ValueError(f"sample {k}: prefix_ids must hold at least BOS and <begin_of_image>")
    if p + len(sample.cot_token_ids) > n_prefix and cot_in_prefix(sample):
        raise ValueError(
            f"sample {k}: {p} prompt + {len(sample.cot_token_ids)} CoT tokens do not fit in "
            f"{n_prefix} prefix tokens; prefix_ids must be prompt + CoT + <begin_of_image>"
        )
    if not sample.image_token_ids:
        raise ValueError(f"sample {k} has no image tokens")


def pack_samples(samples: Sequence[Sample], bos_id: int, pad_id: int) -> PackedBatch:
    """Lay ``samples`` out as right-padded tensors for one forward pass.

    The unconditional row of a sample has the same length as its prefix: ``BOS``, pads, then the
    prefix's last token (``<begin_of_image>``), followed by the same image tokens.
    """
    if not samples:
        raise ValueError("no samples to pack")
    for k, s in enumerate(samples):
        _check(s, k)
    seqs = [list(s.prefix_ids) + list(s.image_token_ids[:-1]) for s in samples]
    b, width = len(samples), max(len(x) for x in seqs)
    t_cot = max(1, max(len(s.cot_token_ids) for s in samples))
    n_img = max(len(s.image_token_ids) for s in samples)
    tokens = torch.zeros(b, width, dtype=torch.long)  # [B, S]
    uncond = torch.zeros(b, width, dtype=torch.long)  # [B, S]
    is_image = torch.zeros(b, width, dtype=torch.bool)  # [B, S]
    attn = torch.zeros(b, width, dtype=torch.long)  # [B, S]
    cot_pos = torch.zeros(b, t_cot, dtype=torch.long)  # [B, Tc]
    cot_tgt = torch.zeros(b, t_cot, dtype=torch.long)  # [B, Tc]
    cot_mask = torch.zeros(b, t_cot, dtype=torch.bool)  # [B, Tc]
    img_pos = torch.zeros(b, n_img, dtype=torch.long)  # [B, N]
    img_tgt = torch.zeros(b, n_img, dtype=torch.long)  # [B, N]
    img_mask = torch.zeros(b, n_img, dtype=torch.bool)  # [B, N]
    for k, (s, seq) in enumerate(zip(samples, seqs)):
        n_prefix, p, tc, ni = (
            len(s.prefix_ids),
            len(s.prompt_ids),
            len(s.cot_token_ids),
            len(s.image_token_ids),
        )
        tokens[k, : len(seq)] = torch.tensor(seq)
        attn[k, : len(seq)] = 1
        is_image[k, n_prefix : len(seq)] = True
        u = unconditional_prefix(list(s.prefix_ids), bos_id, pad_id)
        uncond[k, : len(seq)] = torch.tensor(u + list(s.image_token_ids[:-1]))
        if tc:
            cot_pos[k, :tc] = torch.arange(p - 1, p - 1 + tc)
            cot_tgt[k, :tc] = torch.tensor(s.cot_token_ids)
            cot_mask[k, :tc] = True
        img_pos[k, :ni] = torch.arange(n_prefix - 1, n_prefix - 1 + ni)
        img_tgt[k, :ni] = torch.tensor(s.image_token_ids)
        img_mask[k, :ni] = True
    batch = PackedBatch(
        tokens, is_image, attn, uncond, cot_pos, cot_tgt, cot_mask, img_pos, img_tgt, img_mask
    )
    if not all(cot_in_prefix(s) for s in samples):
        texts = [list(s.prompt_ids) + list(s.cot_token_ids[:-1]) for s in samples]
        w = max(len(t) for t in texts)
        batch.text_tokens = torch.zeros(b, w, dtype=torch.long)  # [B, St]
        batch.text_attention = torch.zeros(b, w, dtype=torch.long)  # [B, St]
        for k, t in enumerate(texts):
            batch.text_tokens[k, : len(t)] = torch.tensor(t)
            batch.text_attention[k, : len(t)] = 1
    return batch


def stored_logprobs(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """The behaviour log-probs stored in ``samples``, padded like :func:`pack_samples`.

    Returns ``(cot [B, Tc], image [B, N])`` float32, 0 at padding. Raises ``ValueError`` when a
    sample's log-probs and token ids differ in length.
    """
    for k, s in enumerate(samples):
        if len(s.cot_logprobs) != len(s.cot_token_ids) or len(s.image_logprobs) != len(s.image_token_ids):
            raise ValueError(
                f"sample {k}: log-probs and token ids differ in length "
                f"(CoT {len(s.cot_logprobs)} vs {len(s.cot_token_ids)}, "
                f"image {len(s.image_logprobs)} vs {len(s.image_token_ids)})"
            )
    t_cot = max(1, max(len(s.cot_logprobs) for s in samples))
    n_img = max(len(s.image_logprobs) for s in samples)
    cot = torch.zeros(len(samples), t_cot)  # [B, Tc]
    img = torch.zeros(len(samples), n_img)  # [B, N]
    for k, s in enumerate(samples):
        cot[k, : len(s.cot_logprobs)] = torch.tensor(s.cot_logprobs, dtype=torch.float32)
        img[k, : len(s.image_logprobs)] = torch.tensor(s.image_logprobs, dtype=torch.float32)
    return cot, img


def _check_vocab(model: Any, batch: PackedBatch) -> None:
    """Token ids out of the model's ranges mean samples of another model: say so clearly."""
    n_text = model.get_input_embeddings().num_embeddings
    n_img = model.model.generation_embeddings.num_embeddings
    text_ids = torch.where(batch.is_image, 0, batch.tokens)
    img_ids = torch.cat([torch.where(batch.is_image, batch.tokens, 0), batch.image_targets], dim=1)
    if int(text_ids.max()) >= n_text or int(batch.cot_targets.max()) >= n_text:
        raise ValueError(
            f"text token ids exceed this model's vocabulary ({n_text}): samples of another model?"
        )
    if int(img_ids.max()) >= n_img:
        raise ValueError(f"image token ids exceed this model's codebook ({n_img}): samples of another model?")


def _embed(model: Any, tokens: torch.Tensor, is_image: torch.Tensor) -> torch.Tensor:
    """Text embeddings at text positions, generation embeddings + aligner at image positions."""
    text = model.get_input_embeddings()(torch.where(is_image, 0, tokens))  # [B, S, H]
    image = model.prepare_embeddings_for_image_generation(torch.where(is_image, tokens, 0))  # [B, S, H]
    return torch.where(is_image[..., None], image.to(text.dtype), text)  # [B, S, H]


def _hidden(model: Any, tokens: torch.Tensor, is_image: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    embeds = _embed(model, tokens, is_image)  # [B, S, H]
    out = model.model.language_model(inputs_embeds=embeds, attention_mask=attn, use_cache=False)
    return out.last_hidden_state  # [B, S, H]


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    idx = positions[..., None].expand(-1, -1, hidden.shape[-1])  # [B, T, H]
    return hidden.gather(1, idx)  # [B, T, H]


def _pick(logprobs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lp = logprobs.gather(-1, targets[..., None])[..., 0]  # [B, T]
    return torch.where(mask, lp, torch.zeros_like(lp))  # [B, T]


@dataclass
class PolicyLogprobs:
    """Per-token log-probs (and optionally entropies) of a packed batch; 0 at padding."""

    cot: torch.Tensor  # [B, Tc]
    cot_mask: torch.Tensor  # [B, Tc] bool
    image: torch.Tensor  # [B, N]
    image_mask: torch.Tensor  # [B, N] bool
    cot_entropy: torch.Tensor | None = None  # [B, Tc]
    image_entropy: torch.Tensor | None = None  # [B, N]


def policy_logprobs(
    model: Any,
    samples: Sequence[Sample],
    bos_id: int,
    pad_id: int,
    mode: Mode = "sampling",
    with_entropy: bool = False,
    detach_uncond: bool = False,
) -> PolicyLogprobs:
    """Log-probs of each sample's CoT and image tokens under ``model`` (grad flows if enabled).

    ``mode="sampling"`` reproduces each sample's own ``settings`` (see the module docstring;
    samples of one batch may differ in any setting, guidance included); ``"conditional"`` the
    same without guidance (no unconditional forward). ``detach_uncond`` stops gradients through
    the unconditional branch of the guidance. ``with_entropy`` also returns per-token entropies
    of the same distributions.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    device = next(model.parameters()).device
    batch = pack_samples(samples, bos_id, pad_id).to(device)
    _check_vocab(model, batch)
    hidden = _hidden(model, batch.tokens, batch.is_image, batch.attention_mask)  # [B, S, H]

    text_hidden = hidden
    if batch.text_tokens is not None:  # re-wrapped recipes: the CoT has its own context
        no_image = torch.zeros_like(batch.text_tokens, dtype=torch.bool)  # [B, St]
        text_hidden = _hidden(model, batch.text_tokens, no_image, batch.text_attention)
    cot_logits = model.lm_head(_gather(text_hidden, batch.cot_positions))  # [B, Tc, V]
    img_logits = model.model.generation_head(_gather(hidden, batch.image_positions))  # [B, N, K]
    if mode in ("sampling", "conditional"):
        weights = [float(s.settings.guidance) if mode == "sampling" else 1.0 for s in samples]
        if any(w != 1.0 for w in weights):  # one unconditional pass serves every guided row
            uncond_hidden = _hidden(model, batch.uncond_tokens, batch.is_image, batch.attention_mask)
            if detach_uncond:
                uncond_hidden = uncond_hidden.detach()
            u = model.model.generation_head(_gather(uncond_hidden, batch.image_positions))  # [B, N, K]
            w = torch.tensor(weights, device=device, dtype=u.dtype)[:, None, None]  # [B, 1, 1]
            guided = guided_logits(img_logits, u, w)  # [B, N, K]
            plain = torch.tensor([x == 1.0 for x in weights], device=device)[:, None, None]  # [B, 1, 1]
            img_logits = torch.where(plain, img_logits, guided)  # w = 1 rows stay exactly c
        cot_lp = torch.stack(
            [
                sampling_logprobs(
                    cot_logits[k],
                    s.settings.cot_temperature,
                    s.settings.cot_top_k,
                    s.settings.cot_top_p,
                )
                for k, s in enumerate(samples)
            ]
        )  # [B, Tc, V]
        img_lp = torch.stack(
            [
                sampling_logprobs(img_logits[k], s.settings.temperature, s.settings.top_k, s.settings.top_p)
                for k, s in enumerate(samples)
            ]
        )  # [B, N, K]
    else:
        cot_lp = torch.log_softmax(cot_logits.float(), dim=-1)  # [B, Tc, V]
        img_lp = torch.log_softmax(img_logits.float(), dim=-1)  # [B, N, K]
    out = PolicyLogprobs(
        cot=_pick(cot_lp, batch.cot_targets, batch.cot_mask),
        cot_mask=batch.cot_mask,
        image=_pick(img_lp, batch.image_targets, batch.image_mask),
        image_mask=batch.image_mask,
    )
    if with_entropy:
        out.cot_entropy = torch.where(batch.cot_mask, entropy_from_logits(cot_lp), 0.0)  # [B, Tc]
        out.image_entropy = torch.where(batch.image_mask, entropy_from_logits(img_lp), 0.0)  # [B, N]
    return out


def base_janus(model: Any) -> Any:
    """The ``JanusForConditionalGeneration`` inside a peft wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class JanusPolicy(torch.nn.Module):
    """A module whose ``forward`` is :func:`policy_logprobs`, so DDP/FSDP wrappers see the call.

    Holds the (possibly peft-wrapped) Janus model as ``inner``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model

    @property
    def janus(self) -> Any:
        return base_janus(self.inner)

    def forward(
        self,
        samples: Sequence[Sample],
        bos_id: int,
        pad_id: int,
        mode: Mode = "sampling",
        with_entropy: bool = False,
        detach_uncond: bool = False,
    ) -> PolicyLogprobs:
        return policy_logprobs(self.janus, samples, bos_id, pad_id, mode, with_entropy, detach_uncond)


def run_policy(
    model: Any, samples: Sequence[Sample], bos_id: int, pad_id: int, **kwargs: Any
) -> PolicyLogprobs:
    """Call a (possibly DDP-wrapped) :class:`JanusPolicy` through its forward, or a bare model."""
    if isinstance(getattr(model, "module", model), JanusPolicy):
        return model(samples, bos_id, pad_id, **kwargs)
    return policy_logprobs(model, samples, bos_id, pad_id, **kwargs)
