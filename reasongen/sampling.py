"""Turning logits into the distribution we sample from, and sampling from it.

Pure tensor functions. The same ``sampling_logprobs`` is used when generating and when the trainer
recomputes log-probs, so the stored log-probs and the recomputed ones agree by construction.
"""

from __future__ import annotations

import torch


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: ``u + w · (c − u)``. Shapes ``[..., V]``; ``w = 1`` gives ``c``."""
    return uncond + weight * (cond - uncond)  # [..., V]


def sampling_logprobs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Log-probabilities of the distribution actually sampled from, in float32.

    ``logits``: ``[..., V]``. Temperature ``0`` means greedy decoding; its "distribution" is taken
    at temperature 1 (so greedy log-probs stay finite and comparable). Top-k keeps the ``k``
    largest logits, top-p the smallest set whose probability reaches ``p`` (always at least one
    token); filtered tokens get ``-inf``.
    """
    x = logits.float()
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature > 0 and temperature != 1:
        x = x / temperature
    if top_k is not None and 0 < top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]  # [..., 1]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)  # [..., V]
        cum = torch.softmax(sorted_x, dim=-1).cumsum(dim=-1)  # [..., V]
        drop_sorted = (cum - torch.softmax(sorted_x, dim=-1)) >= top_p  # mass before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        x = x.masked_fill(drop, float("-inf"))
    return torch.log_softmax(x, dim=-1)  # [..., V]


def draw(
    logprobs: torch.Tensor, greedy: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of ``logprobs`` ``[B, V]``; return ``(tokens [B], their logprobs [B])``."""
    if greedy:
        tokens = logprobs.argmax(dim=-1)  # [B]
    else:
        tokens = torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(-1)  # [B]
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)
