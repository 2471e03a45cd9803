"""Ranking losses for a preference reward model: pure functions of scores and ranks.

Scores and ranks come as padded ``[R, N]`` matrices, one row per ranking: ``ranks`` holds 1 for the
best, equal numbers for a tie, and ``inf`` (or NaN) in padding slots, which never count.

- ``plackett_luce_loss``: the Plackett–Luce negative log-likelihood with ties treated as in
  Breslow's approximation (Cox regression's tied event times): a tie group at a level is placed
  all at once, each of its members drawn from everything not placed yet. Per ranking,
  ``Σ_i [−s_i + log Σ_{j: rank_j ≥ rank_i} exp s_j]``; without ties this is plain Plackett–Luce
  (whose last place adds nothing), and a tie of the last ``m`` adds ``m·log m`` at equal scores.
- ``bradley_terry_loss``: every pair within a ranking, ``BCE(σ(s_a − s_b), t)`` with ``t`` = 1
  (a better), ½ (tie) or 0, as PickScore and HPS v2 train on pairs with a ½/½ target for ties.

Both return the mean over rankings (Plackett–Luce) or pairs (Bradley–Terry) of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("plackett_luce", "bradley_terry")


def _valid(ranks: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(ranks)  # [R, N]


def _check(scores: torch.Tensor, ranks: torch.Tensor) -> None:
    if scores.shape != ranks.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and ranks {tuple(ranks.shape)} must both be [R, N]")


def plackett_luce_loss(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Mean Plackett–Luce NLL (Breslow ties) over the rankings that place at least two items."""
    _check(scores, ranks)
    valid = _valid(ranks)  # [R, N]
    r = torch.where(valid, ranks, torch.full_like(ranks, float("inf")))
    risk = (r[:, None, :] >= r[:, :, None]) & valid[:, None, :]  # [R, N(i), N(j)]: j still unplaced at i
    eye = torch.eye(ranks.shape[1], dtype=torch.bool, device=ranks.device)  # [N, N]
    risk = risk | eye  # a padding row keeps itself, so its (unused) log-sum-exp stays finite in backward
    masked = scores[:, None, :].masked_fill(~risk, float("-inf"))  # [R, N, N]
    lse = torch.logsumexp(masked, dim=-1)  # [R, N]
    terms = torch.where(valid, lse - scores, torch.zeros_like(scores))  # [R, N]
    used = valid.sum(-1) >= 2  # [R]
    if not bool(used.any()):
        raise ValueError("no ranking places two or more items")
    return terms.sum(-1)[used].mean()


def pair_targets(ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target, mask)`` ``[R, N, N]``: target 1 where row item a is ranked better than b, ½ tie,
    0 worse; mask keeps each unordered pair of real items once (a < b by slot)."""
    valid = _valid(ranks)  # [R, N]
    ra, rb = ranks[:, :, None], ranks[:, None, :]  # [R, N, 1], [R, 1, N]
    target = torch.where(ra < rb, 1.0, torch.where(ra > rb, 0.0, 0.5)).to(ranks.dtype)  # [R, N, N]
    n = ranks.shape[1]
    upper = torch.ones(n, n, dtype=torch.bool, device=ranks.device).triu(1)  # [N, N]
    mask = valid[:, :, None] & valid[:, None, :] & upper  # [R, N, N]
    return target, mask


def bradley_terry_loss(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Bradley–Terry cross-entropy (tie target ½) over every pair of every ranking."""
    _check(scores, ranks)
    target, mask = pair_targets(ranks)
    if not bool(mask.any()):
        raise ValueError("no ranking places two or more items")
    diff = scores[:, :, None] - scores[:, None, :]  # [R, N, N]: s_a − s_b
    bce = F.binary_cross_entropy_with_logits(diff, target.to(diff.dtype), reduction="none")  # [R, N, N]
    return bce[mask].mean()


def ranking_loss(name: str, scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """The loss ``name`` (one of ``LOSSES``)."""
    if name == "plackett_luce":
        return plackett_luce_loss(scores, ranks)
    if name == "bradley_terry":
        return bradley_terry_loss(scores, ranks)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
