"""Data for pretraining the shapes model: the text corpus, rendered images and token sequences.

Each training example is a scene of the shapes world written in one recipe's format:
``BOS + tokenize(recipe.format_prompt(prompt)) [+ tokenize(cot)] + <begin_of_image>`` followed by
the scene's image tokens (its semantic cell codes, ``reasongen.shapes.codes``). ``got-r1``
examples carry the CoT (description + box plan); ``direct`` examples go straight to the image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from reasongen.layout import unconditional_prefix
from reasongen.recipes import get_recipe
from reasongen.shapes import Scene, write_cot
from reasongen.shapes.codes import CELL, code_of, scene_codes
from reasongen.tiny import CHAT_ROLE_TOKENS
from reasongen.tokenizer import BOI, GOT_BOX_TOKENS, build_bpe_tokenizer

TRAIN_RECIPES = ("got-r1", "direct")
COORD_TOKENS = tuple(str(v) for v in range(0, 1001, CELL))
"""Every coordinate value of a cell-aligned plan, added as whole tokens: one token per number."""
CORNER_TOKENS = tuple(f"({x},{y})" for y in range(0, 1001, CELL) for x in range(0, 1001, CELL))
"""Every corner ``(x,y)`` of a cell-aligned plan as one token (81). A box's top-left corner is then
a single token naming the cell where the object starts, so an image position finds "does an
object start here?" with one attention lookup instead of combining two number tokens; the plan's
text is unchanged (it still parses as a GoT plan), only its tokenisation is coarser."""


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
        corpus(scenes), vocab_size=vocab_size, extra_tokens=(*CHAT_ROLE_TOKENS, *COORD_TOKENS, *CORNER_TOKENS)
    )


def lm_codes(scenes: Sequence[Scene]) -> torch.Tensor:
    """The image tokens of cell-aligned scenes: ``[n, GRID_CELLS ** 2]`` semantic codes."""
    return torch.from_numpy(np.stack([scene_codes(s) for s in scenes]))


@dataclass
class TextExample:
    """Token ids of one example's text part; ``loss_from`` is where the CoT + BOI targets start.

    ``anchors`` pairs the position (in ``ids``) of each plan box's top-left corner token with the
    image code of that object's top-left piece (see ``anchor_targets``).
    """

    ids: list[int]
    loss_from: int
    anchors: list[tuple[int, int]] = field(default_factory=list)


def anchor_targets(ids: Sequence[int], scene: Scene, tokenizer) -> list[tuple[int, int]]:
    """``(position, image code of the object's top-left piece)`` for every token of each plan box
    after ``<|box_start|>`` up to and including ``<|box_end|>`` (its corners and the comma).

    Why: the LM learns from the text loss to carry a box's position and *size* into its tokens
    (the next coordinate depends on them) but nothing makes it carry the object's shape and colour
    there, and the image positions find "an object starts here" by attending to those tokens (in
    the first model, mostly to the bottom-right corner and ``<|box_end|>``). So that model drew the
    right place and size in a random shape and colour (teacher-forced: shape and colour exactly at
    chance). Asking the generation head to name the object's starting code at its box tokens puts
    the identity where the image looks.
    """
    box_start = tokenizer.convert_tokens_to_ids(GOT_BOX_TOKENS[2])
    box_end = tokenizer.convert_tokens_to_ids(GOT_BOX_TOKENS[3])
    spans: list[tuple[int, int]] = []
    for i, t in enumerate(ids):
        if t == box_start:
            end = next((j for j in range(i + 1, len(ids)) if ids[j] == box_end), None)
            if end is None:
                return []
            spans.append((i + 1, end))
    if len(spans) != len(scene.objects):
        return []
    return [
        (pos, code_of(o.shape, o.color, o.size, 0, 0))
        for (lo, hi), o in zip(spans, scene.objects)
        for pos in range(lo, hi + 1)
    ]


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
            out.append(TextExample(ids, 1 + len(prompt), anchor_targets(ids, s, tokenizer)))
            continue
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
    it gets no text loss (what classifier-free guidance samples against) and no anchors.
    ``anchor_pos``/``anchor_code`` (``[B, A]``, code -100 = none) locate the plan corner tokens.
    """
    width = max(len(t.ids) for t in texts)
    ids = torch.full((len(texts), width), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(texts), width), dtype=torch.long)  # [B, T]
    text_target = torch.zeros((len(texts), width), dtype=torch.bool)  # [B, T] position predicts next
    n_anchor = max(1, max(len(t.anchors) for t in texts))
    anchor_pos = torch.zeros((len(texts), n_anchor), dtype=torch.long)  # [B, A]
    anchor_code = torch.full((len(texts), n_anchor), -100, dtype=torch.long)  # [B, A]
    for b, t in enumerate(texts):
        seq = list(t.ids)
        off = width - len(seq)
        uncond = rng.random() < drop_prob
        if uncond:
            seq = unconditional_prefix(seq, bos=seq[0], pad=pad_id)
        ids[b, off:] = torch.tensor(seq)
        mask[b, off:] = 1
        if not uncond:
            # position p predicts token p + 1; targets are CoT tokens and the final BOI
            text_target[b, off + t.loss_from - 1 : width - 1] = True
            for a, (pos, code) in enumerate(t.anchors):
                anchor_pos[b, a], anchor_code[b, a] = off + pos, code
    return {"ids": ids, "mask": mask, "text_target": text_target, "codes": codes,
            "anchor_pos": anchor_pos, "anchor_code": anchor_code}  # fmt: skip
