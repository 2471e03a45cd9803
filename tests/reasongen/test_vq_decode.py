"""The channels-last VQ decode equals transformers' ``decode_image_tokens``."""

from __future__ import annotations

import pytest
import torch

from reasongen.vq_decode import decode_tokens


def test_channels_last_decode_equals_transformers(tiny_loaded):
    model = tiny_loaded.model
    n = tiny_loaded.num_image_tokens
    tokens = torch.randint(
        0, model.config.vq_config.num_embeddings, (3, n), generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        ours = decode_tokens(model, tokens)
        ref = model.decode_image_tokens(tokens)
    assert ours.shape == ref.shape == (3, *ref.shape[1:3], 3)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    # the weights keep their layout: checkpoints and transformers' own path are unaffected
    assert all(p.is_contiguous() for p in model.model.vqmodel.parameters())


def test_wrong_token_count_is_an_error(tiny_loaded):
    with pytest.raises(ValueError, match="image tokens per row"):
        decode_tokens(tiny_loaded.model, torch.zeros(1, 5, dtype=torch.long))
