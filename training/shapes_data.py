"""Data for pretraining the shapes model: the text corpus, rendered images and token sequences.

Each training example is a scene of the shapes world written in one recipe's format:
``BOS + tokenize(recipe.format_prompt(prompt)) [+ tokenize(cot)] + <begin_of_image>`` followed by
the scene's image tokens (its semantic cell codes, ``reasongen.shapes.codes``). ``got-r1``
examples carry the CoT (description + box plan); ``direct`` examples go straight to the image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reasongen.recipes import get_recipe
from reasongen.shapes import Scene, write_cot
from reasongen.shapes.codes import CELL, scene_codes
from reasongen.tiny import CHAT_ROLE_TOKENS
from reasongen.tokenizer import BOI, build_bpe_tokenizer

TRAIN_RECIPES = ("got-r1", "direct")
COORD_TOKENS = tuple(str(v) for v in range(0, 1001, CELL))
"""Every coordinate value of a cell-aligned plan, added as whole tokens: one token per number."""


def corpus(scenes: Sequence[Scene]) -> list[str]:
    """The world's text: every recipe's formatted prompt and every CoT (with and without plan)."""
    texts: list[str] = []
    for i, s in enumerate(scenes):
        texts.append(write_cot(s))
        texts.append(write_cot(s, with_plan=False))
        for name in ("got-r1", "direct", "t2i-r1", "reasongen-r1") if i < 50 else TRAIN_RECIPES:
            texts.append(get_recipe(name).format_prompt(s.prompt))
    return texts


def build_tokenizer(scenes: Sequence[Scene], vocab_size: int):
    """A byte-level BPE over the world's text with Janus/GoT special tokens and number tokens."""
    return build_bpe_tokenizer(
        corpus(scenes), vocab_size=vocab_size, extra_tokens=(*CHAT_ROLE_TOKENS, *COORD_TOKENS)
    )


def lm_codes(scenes: Sequence[Scene]) -> torch.Tensor:
    """The image tokens of cell-aligned scenes: ``[n, GRID_CELLS ** 2]`` semantic codes."""
    return torch.from_numpy(np.stack([scene_codes(s) for s in scenes]))


@dataclass
class TextExample:
    """Token ids of one example's text part; ``loss_from`` is where the CoT + BOI targets start."""

    ids: list[int]
    loss_from: int


def encode_texts(scenes: Sequence[Scene], tokenizer, direct_fraction: float, seed: int) -> list[TextExample]:
    """Write each scene in ``got-r1`` or (with probability ``direct_fraction``) ``direct`` form."""
    rng = random.Random(seed)
    bos, boi = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(BOI)
    got, direct = get_recipe("got-r1"), get_recipe("direct")
    out: list[TextExample] = []
    for s in scenes:
        if rng.random() < direct_fraction:
            prompt = tokenizer.encode(direct.format_prompt(s.prompt), add_special_tokens=False)
            ids = [bos, *prompt, boi]
        else:
            prompt = tokenizer.encode(got.format_prompt(s.prompt), add_special_tokens=False)
            cot = tokenizer.encode(write_cot(s), add_special_tokens=False)
            ids = [bos, *prompt, *cot, boi]
        out.append(TextExample(ids, 1 + len(prompt)))
    return out


def make_batch(
    texts: Sequence[TextExample],
    codes: torch.Tensor,
    pad_id: int,
    drop_prob: float,
    rng: random.Random,
) -> dict[str, torch.Tensor]:
    """Left-pad the text parts of a batch and mark the text targets.

    ``codes`` is ``[B, N]`` (image tokens). With probability ``drop_prob`` an example becomes
    unconditional: everything between BOS and the final ``<begin_of_image>`` is replaced by pad and
    it gets no text loss (what classifier-free guidance samples against).
    """
    width = max(len(t.ids) for t in texts)
    ids = torch.full((len(texts), width), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(texts), width), dtype=torch.long)  # [B, T]
    text_target = torch.zeros((len(texts), width), dtype=torch.bool)  # [B, T] position predicts next
    for b, t in enumerate(texts):
        seq = list(t.ids)
        off = width - len(seq)
        uncond = rng.random() < drop_prob
        if uncond:
            seq = [seq[0]] + [pad_id] * (len(seq) - 2) + [seq[-1]]
        ids[b, off:] = torch.tensor(seq)
        mask[b, off:] = 1
        if not uncond:
            # position p predicts token p + 1; targets are CoT tokens and the final BOI
            text_target[b, off + t.loss_from - 1 : width - 1] = True
    return {"ids": ids, "mask": mask, "text_target": text_target, "codes": codes}
