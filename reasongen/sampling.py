"""Turning logits into the distribution we sample from, and sampling from it.

Pure tensor functions. The same ``sampling_logprobs`` is used when generating and when the trainer
recomputes log-probs, so the stored log-probs and the recomputed ones agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# float32 exp(x) is a normal number (≥ 1.18e-38) for x ≥ this; below it the result is denormal
# or 0, and the CPU's exp takes a slow path there (20-60x per element).
EXP_NORMAL_MIN = -87.336


def probs_from_logprobs(logprobs: torch.Tensor) -> torch.Tensor:
    """``exp(logprobs)`` with every probability below 1.18e-38 set to exactly 0.

    Guided image log-probs put most of a row below -87 (their tails reach -700), where the CPU's
    ``exp`` runs 20-60x slower than on the rest; clamping first keeps every ``exp`` on the fast
    path. Values above 1.18e-38 are ``exp``'s own, bit for bit. Same shape as ``logprobs``.
    """
    tail = logprobs < EXP_NORMAL_MIN  # [..., V]
    return logprobs.clamp(min=EXP_NORMAL_MIN).exp().masked_fill(tail, 0.0)  # [..., V]


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: ``u + w · (c − u)``. Shapes ``[..., V]``; ``w = 1`` gives ``c``.

    One ``lerp`` kernel (``w`` may exceed 1: it extrapolates) instead of three."""
    return torch.lerp(uncond, cond, weight)  # [..., V]


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
        probs = torch.softmax(sorted_x, dim=-1)  # [..., V]
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p  # mass before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        x = x.masked_fill(drop, float("-inf"))
    return torch.log_softmax(x, dim=-1)  # [..., V]


def draw(
    logprobs: torch.Tensor,
    greedy: bool,
    generator: torch.Generator | Sequence[torch.Generator | None] | None,
    active: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of ``logprobs`` ``[B, V]``; return ``(tokens [B], their logprobs [B])``.

    Sampling is an exponential race, ``argmax(p / E)`` with ``E ~ Exp(1)`` i.i.d. per token: the
    Gumbel-max trick in another form, an exact draw from ``p``, in a few element-wise kernels and no
    host sync (``torch.multinomial`` builds a CDF per row and costs ~2× as much per step on a CPU).
    Filtered tokens have ``p = 0`` and never win (``E`` is kept above 0, so no ``0 / 0``).

    ``generator`` may be a sequence of ``S`` generators, one random stream per block of ``B / S``
    consecutive rows (the rows of one prompt in a multi-prompt batch): block ``k`` draws exactly
    what a batch of its rows alone would draw from ``generator[k]``, so results do not depend on
    which prompts share a batch. ``active[k] = False`` skips block ``k``'s draw (its stream is not
    advanced; its rows get the argmax, for callers that discard them).
    """
    if greedy:
        tokens = logprobs.argmax(dim=-1)  # [B]
    else:
        race = torch.empty_like(logprobs)  # [B, V]
        if generator is None or isinstance(generator, torch.Generator):
            race.exponential_(generator=generator)
        else:
            blocks = race.split(row_block(race.shape[0], len(generator)))  # S × [B/S, V], views
            for k, (block, gen) in enumerate(zip(blocks, generator)):
                if active is None or active[k]:
                    block.exponential_(generator=gen)
                else:
                    block.fill_(1.0)
        race.clamp_min_(torch.finfo(race.dtype).tiny)
        # A token of p < 1.18e-38 (set to 0 here) could only win with an Exp(1) draw below
        # ~1e-33 against a p ≥ 1/V in the same row: the draws are those of the exact exp.
        tokens = probs_from_logprobs(logprobs).div_(race).argmax(dim=-1)  # [B]
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def row_block(rows: int, streams: int) -> int:
    """Rows per random stream; ``ValueError`` unless ``streams`` divides ``rows``."""
    if streams < 1 or rows % streams:
        raise ValueError(f"{rows} rows cannot be split into {streams} equal random streams")
    return rows // streams
