"""The token layout of a two-step sample, written once: generation, decoding, SFT and the trainer's
log-prob recompute all build their ids here.

- Step 1 (``prompt_ids``): BOS, then the recipe's formatted prompt. The CoT is sampled after it and
  ends with ``<begin_of_image>`` or EOS (``COT_STOP``), or at the length cap.
- Step 2 (``image_prefix``): the conditional sequence before the first image token, ending with
  ``<begin_of_image>``. Recipes that continue one sequence use ``prompt_ids`` + CoT text tokens
  (the stop token dropped, see ``cot_text_ids``) + BOI; re-wrapping recipes (T2I-R1) use BOS + a new
  conversation holding prompt and CoT + BOI.
- Classifier-free guidance (``unconditional_prefix``, ``unconditional_rows``): the unconditional
  row has the prefix's length and keeps only its BOS and its last token (``<begin_of_image>``);
  every token between them is pad.
- Batches (``left_pad``, ``positions``): rows are left-padded with pad and mask 0; position ids
  start at 0 on each row's first real token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .loading import SpecialIds
    from .recipes import Recipe
    from .types import CotEnd


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` alone: no BOS or other special token is added."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def prompt_ids(tokenizer: Any, special: SpecialIds, recipe: Recipe, prompt: str) -> list[int]:
    """The step-1 ids: ``[BOS, *recipe.format_prompt(prompt)]``."""
    return [special.bos, *encode_text(tokenizer, recipe.format_prompt(prompt))]


def cot_stop_ids(special: SpecialIds) -> tuple[int, int]:
    """The tokens that end a CoT: ``<begin_of_image>`` and EOS."""
    return (special.boi, special.eos)


def cot_text_ids(cot_ids: list[int], end: CotEnd) -> list[int]:
    """The sampled CoT without the stop token that ended it (``end`` "boi" or "eos")."""
    return list(cot_ids[:-1]) if end in ("boi", "eos") else list(cot_ids)


def image_prefix(
    tokenizer: Any,
    special: SpecialIds,
    recipe: Recipe,
    prompt: str,
    prompt_ids: list[int],
    cot_ids: list[int],
    cot_text: str,
) -> list[int]:
    """The step-2 conditional ids, ending with ``<begin_of_image>``.

    ``prompt_ids`` + ``cot_ids`` (the CoT text tokens, no stop token) + BOI, or, for a recipe that
    re-wraps prompt and CoT in a new conversation, ``[BOS, *recipe.image_prompt(prompt, cot_text),
    BOI]``.
    """
    rewrap = recipe.image_prompt(prompt, cot_text) if recipe.has_cot else None
    if rewrap is None:
        return [*prompt_ids, *cot_ids, special.boi]
    return [special.bos, *encode_text(tokenizer, rewrap), special.boi]


def unconditional_prefix(prefix: list[int], bos: int, pad: int) -> list[int]:
    """The CFG unconditional row of one prefix: ``[BOS, pad × (len − 2), prefix[-1]]``."""
    return [bos, *[pad] * (len(prefix) - 2), prefix[-1]]


def left_pad(rows: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``ids [B, L]`` (pad on the left) and ``attention_mask [B, L]``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)  # [B, L]
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)  # [B, L]
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long, device=device)
            mask[i, width - len(r) :] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token. ``[B, L]`` → ``[B, L]``."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def unconditional_rows(ids: torch.Tensor, mask: torch.Tensor, bos: int, pad: int) -> torch.Tensor:
    """``unconditional_prefix`` of every row of a left-padded batch, as one tensor.

    ``ids``/``mask``: ``[B, L]`` left-padded prefixes (each ending in ``<begin_of_image>``).
    Returns ``[B, L]``: each row's first real token BOS, its last token kept, pad everywhere else
    (left padding included), so it shares ``mask`` with ``ids``.
    """
    uncond = torch.full_like(ids, pad)  # [B, L]
    first = (mask == 0).sum(-1)  # [B] index of the first real token
    uncond[torch.arange(ids.shape[0], device=ids.device), first] = bos
    uncond[:, -1] = ids[:, -1]
    return uncond
