"""Janus special tokens and an offline BPE tokenizer builder for our own small models.

Janus-Pro's tokenizer (DeepSeek's LLaMA-style BPE) spells its special tokens with full-width
bars; GoT-R1 adds four box tokens. Our own models use the same spellings so one code path serves
both; ``build_bpe_tokenizer`` trains a small byte-level BPE with the ``tokenizers`` library.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE_PLACEHOLDER = "<image_placeholder>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
GOT_BOX_TOKENS = ("<|obj_start|>", "<|obj_end|>", "<|box_start|>", "<|box_end|>")
"""GoT-R1's four extra tokens, in the order our own tokenizers hold them (the shapes model's ids
depend on it). GoT-R1 itself adds them in :data:`GOT_R1_TOKEN_ORDER`."""

GOT_R1_TOKEN_ORDER = ("<|box_start|>", "<|box_end|>", "<|obj_start|>", "<|obj_end|>")
"""The order GoT-R1 appends its box tokens to Janus-Pro's tokenizer, as plain (non-special) added
tokens: ``processor.tokenizer.add_tokens([...])`` in gogoduan/GoT-R1 src/processor/processor.py
(get_processor), so their ids follow the base vocabulary in this order."""

SPECIAL_TOKENS = (BOS, EOS, PAD, IMAGE_PLACEHOLDER, BOI, EOI, *GOT_BOX_TOKENS)

# What JanusProcessor reads off the tokenizer (tokenizer.image_token, .boi_token, .eoi_token).
EXTRA_SPECIAL = {"image_token": IMAGE_PLACEHOLDER, "boi_token": BOI, "eoi_token": EOI}


def build_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1024,
    extra_tokens: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` with Janus's special tokens and GoT's box tokens.

    Digits are split one per token, so box coordinates like ``(120,480)`` cost a bounded number
    of tokens and every number is representable. ``extra_tokens`` (e.g. chat role tags) are
    added as whole, non-special tokens so they survive decoding.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size {vocab_size} is too small for byte-level BPE; use >= 300")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    extra = [t for t in extra_tokens if t]
    if extra:
        tok.add_tokens(extra)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` with Janus's special-token attributes."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IMAGE_PLACEHOLDER, BOI, EOI, *GOT_BOX_TOKENS],
        extra_special_tokens=dict(EXTRA_SPECIAL),
        padding_side="left",
        add_bos_token=False,
        clean_up_tokenization_spaces=False,
    )
