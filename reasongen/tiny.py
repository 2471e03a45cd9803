"""Janus configs built from scratch: tiny ones for tests, and the real Janus-Pro sizes (random
weights) for benchmarks. Nothing here downloads anything.

Constraints transformers 5.23 puts on a Janus config (checked on this project's machines):
``num_image_tokens == (image_size / patch_size) ** 2``; the VQ's ``projection_dim`` and
``image_token_embed_dim`` and the vision ``projection_dim`` all equal the text hidden size;
VQ ``base_channels >= 32`` (GroupNorm(32)); the VQ downsamples by ``2 ** (len(channel_multiplier) - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusImageProcessor,
    JanusProcessor,
    JanusVisionConfig,
    JanusVQVAEConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from .tokenizer import BOI, build_bpe_tokenizer

CHAT_ROLE_TOKENS = ("<|User|>", "<|Assistant|>")

_TINY_CORPUS = [
    "a photo of a red circle to the left of a blue square",
    "two green triangles above a yellow star, three purple hexagons below an orange diamond",
    "The image shows a cyan heart and a pink cross on a white background.",
    "<|obj_start|>red circle<|obj_end|><|box_start|>(120,480),(300,900)<|box_end|>",
    "You are asked to generate an image based on this prompt: describe every object",
    "<|User|>: <|Assistant|>: image layout plan objects boxes 0123456789",
]


def janus_config(
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    image_size: int = 32,
    vq_downsample: int = 8,
    codebook_size: int = 64,
    vq_embed_dim: int = 8,
    vq_base_channels: int = 32,
    max_position_embeddings: int = 2048,
    channel_multiplier: Sequence[int] | None = None,
    latent_channels: int | None = None,
    num_res_blocks: int = 1,
) -> JanusConfig:
    """A Janus config whose LM, VQ and heads agree; the vision tower is kept minimal.

    ``image_size / vq_downsample`` squared is the number of image tokens. ``channel_multiplier``
    (one entry per VQ level, default all 1), ``latent_channels`` (default transformers') and
    ``num_res_blocks`` shape the VQ.
    """
    if image_size % vq_downsample:
        raise ValueError(f"image_size {image_size} must be a multiple of vq_downsample {vq_downsample}")
    levels = vq_downsample.bit_length() - 1
    if 2**levels != vq_downsample:
        raise ValueError(f"vq_downsample must be a power of two, got {vq_downsample}")
    mults = list(channel_multiplier) if channel_multiplier is not None else [1] * (levels + 1)
    if len(mults) != levels + 1:
        raise ValueError(f"channel_multiplier needs {levels + 1} entries for vq_downsample {vq_downsample}")
    vq_extra = {} if latent_channels is None else {"latent_channels": latent_channels}
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
    )
    vision = JanusVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=vq_downsample,
        projection_dim=hidden_size,
        depth=1,
        num_image_tokens=(image_size // vq_downsample) ** 2,
    )
    vq = JanusVQVAEConfig(
        embed_dim=vq_embed_dim,
        num_embeddings=codebook_size,
        base_channels=vq_base_channels,
        channel_multiplier=mults,
        num_res_blocks=num_res_blocks,
        projection_dim=hidden_size,
        image_token_embed_dim=hidden_size,
        num_patches=image_size // vq_downsample,
        resolution=image_size,
        **vq_extra,
    )
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq)


def make_processor(tokenizer: PreTrainedTokenizerFast, image_size: int, num_image_tokens: int):
    """A JanusProcessor for our own models (Janus's [-1, 1] pixel normalisation)."""
    image_processor = JanusImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return JanusProcessor(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=num_image_tokens
    )


def set_generation_defaults(model: JanusForConditionalGeneration, tokenizer, guidance: float = 5.0) -> None:
    """Fill the ids a fresh Janus generation config lacks (bos/pad/eos and ``boi_token_id``) and
    set the model's default CFG weight ``guidance``."""
    boi = tokenizer.convert_tokens_to_ids(BOI)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        guidance_scale=guidance,
        generation_kwargs={"boi_token_id": boi},
    )


def build_random(
    seed: int = 0,
    image_size: int = 32,
    vq_downsample: int = 8,
    vocab_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    **kwargs,
) -> tuple[JanusForConditionalGeneration, JanusProcessor]:
    """A randomly initialised Janus model and its processor, built on ``device``.

    The tokenizer is a tiny BPE; ``vocab_size`` (default: the tokenizer's) sets the embedding
    rows, e.g. 102400 for the real Janus-Pro sizes in benchmarks. ``kwargs`` go to ``janus_config``.
    """
    tokenizer = build_bpe_tokenizer(_TINY_CORPUS * 4, vocab_size=400, extra_tokens=CHAT_ROLE_TOKENS)
    torch.manual_seed(seed)
    cfg = janus_config(vocab_size=vocab_size or len(tokenizer), image_size=image_size,
                       vq_downsample=vq_downsample, **kwargs)  # fmt: skip
    cfg.image_token_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    with torch.device(device):
        model = JanusForConditionalGeneration(cfg).to(dtype).eval()
    set_generation_defaults(model, tokenizer)
    n_tokens = (image_size // vq_downsample) ** 2
    return model, make_processor(tokenizer, image_size, n_tokens)


def build_tiny(seed: int = 0, **kwargs) -> tuple[JanusForConditionalGeneration, JanusProcessor]:
    """A randomly initialised tiny Janus model and its processor (for tests; about 2 MB)."""
    return build_random(seed=seed, **kwargs)


def save_tiny(path: str | Path, seed: int = 0, **kwargs) -> Path:
    """Build a tiny model and save it in HF format under ``path``."""
    model, processor = build_tiny(seed=seed, **kwargs)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
