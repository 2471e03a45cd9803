"""Recompute a batch of samples' CoT and image log-probs with one batched pass of a Janus model.

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

Shared heads: the samples of one prompt begin with the same tokens, and every unconditional row
begins with ``BOS`` and pads. Those heads run once, their keys and values are indexed out to the
rows through the KV cache, and each row runs only its own tokens — the whole rows' arithmetic with
fewer positions (a test compares values and gradients with whole-row forwards). Under activation
checkpointing, which turns the cache off, whole rows run.

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
from transformers import DynamicCache

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
    # When every CoT is in its prefix: len(prompt_ids), and the distinct prompts (but their last
    # token) as right-padded heads with the head of each sample (see _cond_hidden).
    prompt_lengths: torch.Tensor | None = None  # [B] long
    prompt_heads: torch.Tensor | None = None  # [U, P] long
    prompt_head_of: torch.Tensor | None = None  # [B] long

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
    if all(cot_in_prefix(s) for s in samples):
        batch.prompt_lengths = torch.tensor([len(s.prompt_ids) for s in samples], dtype=torch.long)  # [B]
        keys = [tuple(s.prefix_ids[: len(s.prompt_ids) - 1]) for s in samples]  # the rows' own heads
        distinct = list(dict.fromkeys(keys))
        batch.prompt_heads = torch.zeros(len(distinct), max(map(len, distinct)), dtype=torch.long)  # [U, P]
        for u, key in enumerate(distinct):
            batch.prompt_heads[u, : len(key)] = torch.tensor(key, dtype=torch.long)
        batch.prompt_head_of = torch.tensor([distinct.index(k) for k in keys], dtype=torch.long)  # [B]
    else:
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


def _hidden_after_heads(
    model: Any,
    heads: torch.Tensor,
    head_of: torch.Tensor,
    seen: torch.Tensor,
    own: torch.Tensor,
    own_is_image: torch.Tensor,
    own_mask: torch.Tensor,
) -> torch.Tensor:
    """Hidden states of rows that begin with a text head shared with other rows.

    Row ``k`` is ``heads[head_of[k], : seen[k]]`` followed by ``own[k]``. Each head is run once
    (right-padded heads need no mask: a causal model's real positions never see the padding after
    them); its keys and values are indexed out to the rows that use it, so the gradients of every
    row add up in the one head forward; then every row's own tokens run at positions
    ``seen[k]`` onwards, attending to the first ``seen[k]`` positions of its head. Same tokens,
    positions and causal context as the whole row, so the same arithmetic, with each shared head
    computed once instead of once per row.

    Shapes: ``heads [U, P]`` text ids, ``head_of [B]``, ``seen [B]`` (≤ P), ``own [B, C]`` ids with
    ``own_is_image [B, C]`` and ``own_mask [B, C]`` (right padding 0). Returns ``[B, C, H]``.
    """
    c = own.shape[1]
    device = own.device
    positions = seen[:, None] + torch.arange(c, device=device)  # [B, C]
    embeds = _embed(model, own, own_is_image)  # [B, C, H]
    lm = model.model.language_model
    if heads.shape[1] == 0:  # nothing shared: positions start at 0
        return lm(inputs_embeds=embeds, attention_mask=own_mask, use_cache=False).last_hidden_state
    cache = DynamicCache()
    lm(inputs_embeds=model.get_input_embeddings()(heads), cache=cache, use_cache=True)
    if cache.get_seq_length() != heads.shape[1]:  # e.g. checkpointing turned the cache off
        raise RuntimeError("the language model did not fill the KV cache of the shared heads")
    cache.batch_select_indices(head_of)  # keys/values [B, heads, P, d]
    head_mask = (torch.arange(heads.shape[1], device=device)[None, :] < seen[:, None]).long()  # [B, P]
    out = lm(
        inputs_embeds=embeds,
        attention_mask=torch.cat([head_mask, own_mask], dim=1),  # [B, P + C]
        position_ids=positions,  # [B, C]
        cache=cache,
        use_cache=True,
    )
    return out.last_hidden_state  # [B, C, H]


def _shares_heads(model: Any) -> bool:
    """Whether shared heads can run through the KV cache: transformers turns the cache off while
    activation checkpointing recomputes a training model's layers, so whole rows run then."""
    lm = model.model.language_model
    return not (lm.training and getattr(lm, "gradient_checkpointing", False))


def _tails(
    tokens: torch.Tensor, is_image: torch.Tensor, start: torch.Tensor, length: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row ``k``'s ``tokens[k, start[k] : start[k] + length[k]]``, right-padded: ids, image flags, mask."""
    width = int(length.max())
    cols = start[:, None] + torch.arange(width, device=tokens.device)  # [B, C]
    mask = cols < (start + length)[:, None]  # [B, C]
    cols = cols.clamp(max=tokens.shape[1] - 1)
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]  # [B, 1]
    ids = torch.where(mask, tokens[rows, cols], 0)  # [B, C]
    return ids, is_image[rows, cols] & mask, mask.long()


def _cond_hidden(model: Any, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of the conditional rows from position ``P − 1`` on (``P`` = prompt length),
    with each distinct prompt (but its last token) run once for all of its samples — a GRPO
    group's samples share their prompt. Every CoT and image prediction comes from position
    ``P − 1`` or later. Returns ``(hidden [B, C, H], offset [B])``: the state of position ``t`` of
    row ``k`` is ``hidden[k, t − offset[k]]``.
    """
    p = batch.prompt_lengths  # [B]
    if p is None or not _shares_heads(model):  # re-wrapped recipes (the prefix is not prompt + CoT)
        zero = torch.zeros(batch.tokens.shape[0], dtype=torch.long, device=batch.tokens.device)
        return _hidden(model, batch.tokens, batch.is_image, batch.attention_mask), zero
    offset = p - 1  # [B]
    own, own_is_image, own_mask = _tails(
        batch.tokens, batch.is_image, offset, batch.attention_mask.sum(1) - offset
    )
    heads, head_of = batch.prompt_heads, batch.prompt_head_of
    return _hidden_after_heads(model, heads, head_of, offset, own, own_is_image, own_mask), offset


def _uncond_image_hidden(model: Any, batch: PackedBatch) -> torch.Tensor:
    """Hidden states of the unconditional rows at their image positions.

    Every unconditional row is ``[BOS, pad × (L − 2), <begin_of_image>, image ids]`` (``L`` = the
    prefix length), so its first ``L − 1`` positions are the same tokens in every sample: they run
    once, as the head ``[BOS, pad × (L_max − 2)]`` of :func:`_hidden_after_heads`, and each sample
    runs only ``<begin_of_image>`` and its image ids — for a shapes-world sample half the row.

    Returns ``[B, N, H]``: row ``k``'s state predicting image token ``j`` (0 where ``j`` is padding).
    """
    if not _shares_heads(model):
        whole = _hidden(model, batch.uncond_tokens, batch.is_image, batch.attention_mask)  # [B, S, H]
        return _gather(whole, batch.image_positions)
    b = batch.image_targets.shape[0]
    lengths = batch.image_positions[:, 0] + 1  # [B] prefix length L of each sample
    head = batch.uncond_tokens[lengths.argmax(), : int(lengths.max()) - 1][None]  # [1, P]: BOS, pads
    own, own_is_image, _ = _tails(batch.uncond_tokens, batch.is_image, lengths - 1, batch.image_mask.sum(1))
    head_of = torch.zeros(b, dtype=torch.long, device=own.device)  # [B]
    own_mask = batch.image_mask.long()  # [B, N]
    return _hidden_after_heads(model, head, head_of, lengths - 1, own, own_is_image, own_mask)


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    idx = positions[..., None].expand(-1, -1, hidden.shape[-1])  # [B, T, H]
    return hidden.gather(1, idx)  # [B, T, H]


def _pick(logprobs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lp = logprobs.gather(-1, targets[..., None])[..., 0]  # [B, T]
    return torch.where(mask, lp, torch.zeros_like(lp))  # [B, T]


Filters = tuple[float, int | None, float | None]  # (temperature, top_k, top_p)


def _sampling_by_settings(logits: torch.Tensor, keys: Sequence[Filters]) -> torch.Tensor:
    """``sampling_logprobs`` of each row under its own ``(temperature, top_k, top_p)``, one call per
    distinct setting (a GRPO batch has one): per-row calls would make autograd add a zero-filled
    copy of the whole ``[B, T, V]`` gradient per row. ``logits [B, T, V]`` → ``[B, T, V]``."""
    rows_of: dict[Filters, list[int]] = {}
    for k, key in enumerate(keys):
        rows_of.setdefault(key, []).append(k)
    if len(rows_of) == 1:
        return sampling_logprobs(logits, *keys[0])
    device = logits.device
    parts, order = [], []
    for key, rows in rows_of.items():
        parts.append(sampling_logprobs(logits.index_select(0, torch.tensor(rows, device=device)), *key))
        order += rows
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))  # row k of the result is row back[k] of cat
    return torch.cat(parts).index_select(0, back.to(device))  # [B, T, V]


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
    hidden, offset = _cond_hidden(model, batch)  # [B, C, H], [B]
    image_at = (batch.image_positions - offset[:, None]).clamp(min=0)  # [B, N]
    if batch.text_tokens is not None:  # re-wrapped recipes: the CoT has its own context
        no_image = torch.zeros_like(batch.text_tokens, dtype=torch.bool)  # [B, St]
        text_hidden = _hidden(model, batch.text_tokens, no_image, batch.text_attention)
        cot_at = batch.cot_positions  # [B, Tc]
    else:
        text_hidden, cot_at = hidden, (batch.cot_positions - offset[:, None]).clamp(min=0)
    cot_logits = model.lm_head(_gather(text_hidden, cot_at))  # [B, Tc, V]
    img_logits = model.model.generation_head(_gather(hidden, image_at))  # [B, N, K]
    if mode in ("sampling", "conditional"):
        weights = [float(s.settings.guidance) if mode == "sampling" else 1.0 for s in samples]
        if any(w != 1.0 for w in weights):  # one unconditional pass serves every guided row
            uncond_hidden = _uncond_image_hidden(model, batch)  # [B, N, H]
            if detach_uncond:
                uncond_hidden = uncond_hidden.detach()
            u = model.model.generation_head(uncond_hidden)  # [B, N, K]
            w = torch.tensor(weights, device=device, dtype=u.dtype)[:, None, None]  # [B, 1, 1]
            guided = guided_logits(img_logits, u, w)  # [B, N, K]
            plain = torch.tensor([x == 1.0 for x in weights], device=device)[:, None, None]  # [B, 1, 1]
            img_logits = torch.where(plain, img_logits, guided)  # w = 1 rows stay exactly c
        cot_keys = [(s.settings.cot_temperature, s.settings.cot_top_k, s.settings.cot_top_p) for s in samples]
        img_keys = [(s.settings.temperature, s.settings.top_k, s.settings.top_p) for s in samples]
        cot_lp = _sampling_by_settings(cot_logits, cot_keys)  # [B, Tc, V]
        img_lp = _sampling_by_settings(img_logits, img_keys)  # [B, N, K]
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
