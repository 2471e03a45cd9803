"""Group z-scores, written once: GRPO's advantages and the ``group_norm`` reward combination.

For each group (a row of ``G`` groups of ``n`` scores), ``z = (r − mean_g) / (std_g + eps)`` with

- ``std_g`` the **sample** standard deviation of the group's present scores (denominator
  ``count − 1``, as ``torch.std`` by default; a group with one present score has std 0);
- ``eps`` added to the std, **1e-4** by default (:data:`GROUP_EPS`);
- NaN scores ("no reward") left out of mean and std and given ``z = 0``;
- everything in float64 (torch is imported on first use).

This is the formula the shipped GRPO model was trained with; keep it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

GROUP_EPS = 1e-4
"""Default epsilon added to the group standard deviation."""


@dataclass(frozen=True)
class GroupZScores:
    """Per-score z-scores and the per-group statistics they come from (all float64)."""

    z: torch.Tensor  # [G, n]; 0 where the score is NaN
    mean: torch.Tensor  # [G]; 0 for a group with no present score
    std: torch.Tensor  # [G]; sample std, 0 for a group with fewer than two present scores
    count: torch.Tensor  # [G] int; present scores per group


def group_zscores(scores: torch.Tensor, eps: float = GROUP_EPS) -> GroupZScores:
    """``(r − mean_g) / (std_g + eps)`` along the last axis of ``scores`` ``[G, n]`` (NaN = missing).

    ``eps`` must be positive for a group whose scores do not vary to get z 0 rather than NaN.
    """
    import torch

    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [groups, group_size], got {tuple(scores.shape)}")
    r = scores.to(torch.float64)  # [G, n]
    present = ~torch.isnan(r)  # [G, n]
    count = present.sum(dim=1)  # [G]
    r0 = torch.where(present, r, torch.zeros_like(r))  # [G, n]
    mean = r0.sum(dim=1) / count.clamp(min=1)  # [G]
    dev = torch.where(present, r - mean[:, None], torch.zeros_like(r))  # [G, n]
    std = (dev.pow(2).sum(dim=1) / (count - 1).clamp(min=1)).sqrt()  # [G]
    z = torch.where(present, dev / (std[:, None] + eps), torch.zeros_like(r))  # [G, n]
    return GroupZScores(z=z, mean=mean, std=std, count=count)
