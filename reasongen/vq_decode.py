"""Image tokens to pixels through the model's VQ decoder, with its activations in channels-last.

``JanusForConditionalGeneration.decode_image_tokens`` runs the VQ decoder (codebook lookup,
``post_quant_conv``, the convolutional decoder) on NCHW tensors. oneDNN's CPU convolutions run
faster in channels-last (NHWC) layout: handing the decoder a channels-last latent makes every
convolution after it keep that layout (PyTorch follows the input's memory format), with the same
weights and arithmetic (results equal to float32 rounding, tested). On a CUDA device cuDNN
prefers the same layout. At batch 16 on the embedded model the decode took about a third of
transformers' image time; channels-last cuts it by about a third (``benchmarks/generation.py``,
the ``vq-decode`` rows).

The weights are left as they are (no module conversion), so checkpoints, training and
transformers' own ``decode_image_tokens`` are unaffected.
"""

from __future__ import annotations

from typing import Any

import torch


def decode_tokens(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Pixels of image tokens ``[B, N]`` as ``[B, H, W, 3]`` in the processor's normalised range,
    like ``model.decode_image_tokens`` (which checks ``N`` the same way)."""
    vq = model.model.vqmodel
    side_h, side_w = vq.quantize.quant_state_dims
    if tokens.shape[1] != side_h * side_w:
        raise ValueError(f"expected {side_h * side_w} image tokens per row, got {tokens.shape[1]}")
    latent = vq.quantize.get_codebook_entry(tokens)  # [B, C, h, w]
    latent = latent.contiguous(memory_format=torch.channels_last)
    pixels = vq.decoder(vq.post_quant_conv(latent))  # [B, 3, H, W], channels-last
    return pixels.permute(0, 2, 3, 1)  # [B, H, W, 3]
