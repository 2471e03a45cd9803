"""The token layout (reasongen.layout) on the tiny test tokenizer: step-1 ids, the step-2 prefix,
the CFG unconditional row, and left-padded batches."""

from __future__ import annotations

import pytest
import torch

from reasongen.layout import (
    cot_stop_ids,
    cot_text_ids,
    encode_text,
    image_prefix,
    left_pad,
    positions,
    prompt_ids,
    unconditional_prefix,
    unconditional_rows,
)
from reasongen.recipes import get_recipe

CPU = torch.device("cpu")


def test_special_ids_of_the_tiny_tokenizer(tiny_loaded):
    ids = tiny_loaded.ids
    assert (ids.bos, ids.eos, ids.pad, ids.boi) == (0, 1, 2, 4)
    assert cot_stop_ids(ids) == (4, 1)  # <begin_of_image>, EOS


def test_prompt_ids_are_bos_then_the_formatted_prompt(tiny_loaded):
    tok = tiny_loaded.tokenizer
    ids = prompt_ids(tok, tiny_loaded.ids, get_recipe("direct"), "a red circle")
    # BOS, "<|User|>", ":", " a", " red", " circle", "\n", "\n", "<|Assistant|>", ":"
    assert ids == [0, 400, 35, 266, 377, 322, 208, 208, 401, 35]
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["<|User|>", ":"]
    assert encode_text(tok, "a red circle") == [74, 377, 322]  # no BOS added


def test_image_prefix_continues_the_sequence_or_rewraps(tiny_loaded):
    tok, ids = tiny_loaded.tokenizer, tiny_loaded.ids
    got, t2i, direct = get_recipe("got-r1"), get_recipe("t2i-r1"), get_recipe("direct")
    p = prompt_ids(tok, ids, got, "a red circle")
    cot = encode_text(tok, "round.")
    assert image_prefix(tok, ids, got, "a red circle", p, cot, "round.") == [*p, *cot, 4]
    # T2I-R1 starts a new conversation holding prompt and CoT: BOS + that text + BOI.
    rewrap = "User: a red circle. round.\n\nAssistant:"  # the roles as T2I-R1 passes them
    p2 = prompt_ids(tok, ids, t2i, "a red circle")
    assert image_prefix(tok, ids, t2i, "a red circle", p2, cot, "round.") == [0, *encode_text(tok, rewrap), 4]
    # A recipe without CoT goes straight from the prompt to <begin_of_image>.
    p3 = prompt_ids(tok, ids, direct, "a red circle")
    assert image_prefix(tok, ids, direct, "a red circle", p3, [], "") == [*p3, 4]


@pytest.mark.parametrize(
    ("end", "expected"), [("boi", [7, 8]), ("eos", [7, 8]), ("length", [7, 8, 9]), ("none", [7, 8, 9])]
)
def test_cot_text_ids_drop_only_the_stop_token(end, expected):
    assert cot_text_ids([7, 8, 9], end) == expected


def test_unconditional_prefix_keeps_bos_and_the_last_token():
    assert unconditional_prefix([0, 11, 12, 13, 4], bos=0, pad=2) == [0, 2, 2, 2, 4]
    assert unconditional_prefix([0, 4], bos=0, pad=2) == [0, 4]


def test_left_pad_and_positions():
    ids, mask = left_pad([[5, 6, 7], [8], []], pad=2, device=CPU)  # [3, 3]
    assert ids.tolist() == [[5, 6, 7], [2, 2, 8], [2, 2, 2]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    assert positions(mask).tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0]]


def test_unconditional_rows_of_a_left_padded_batch():
    bos, boi, pad = 0, 4, 2
    rows = [[bos, 11, 12, 13, boi], [bos, 21, boi]]
    ids, mask = left_pad(rows, pad, CPU)  # [2, 5]
    uncond = unconditional_rows(ids, mask, bos, pad)  # [2, 5], shares mask with ids
    assert uncond.tolist() == [[bos, pad, pad, pad, boi], [pad, pad, bos, pad, boi]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    # The batched form is the one-row rule, left-padded.
    expected, expected_mask = left_pad([unconditional_prefix(r, bos, pad) for r in rows], pad, CPU)
    assert torch.equal(uncond, expected) and torch.equal(mask, expected_mask)
