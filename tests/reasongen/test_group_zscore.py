"""reasongen.group_zscore: the one group z-score, shared by GRPO advantages and group_norm."""

from __future__ import annotations

import math

import pytest
import torch

from reasongen.group_zscore import GROUP_EPS, group_zscores
from reasongen.rewards import group_normalise
from training.grpo_loss import group_advantages


def _shipped_advantages(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    """training/grpo_loss.py's advantage computation as it trained the shipped model (verbatim)."""
    r = rewards.to(torch.float64)
    present = ~torch.isnan(r)
    count = present.sum(dim=1)
    r0 = torch.where(present, r, torch.zeros_like(r))
    mean = r0.sum(dim=1) / count.clamp(min=1)
    dev = torch.where(present, r - mean[:, None], torch.zeros_like(r))
    std = (dev.pow(2).sum(dim=1) / (count - 1).clamp(min=1)).sqrt()
    spread = torch.where(present, r, torch.full_like(r, -math.inf)).amax(dim=1) - torch.where(
        present, r, torch.full_like(r, math.inf)
    ).amin(dim=1)
    valid = present & ((count >= 2) & (spread > 1e-8))[:, None]
    return torch.where(valid, dev / (std[:, None] + eps), torch.zeros_like(r)).to(torch.float32)


def _rewards(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(16, 8, generator=g, dtype=torch.float64)  # [G, n]
    r[torch.rand(16, 8, generator=g) < 0.2] = math.nan  # missing rewards
    r[0] = 0.5  # no spread
    r[1, 1:] = math.nan  # one valid reward
    r[2] = math.nan  # none
    r[3] = torch.tensor([1.0, 0.0] * 4)  # binary rewards, the shapes reward's usual case
    return r


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [GROUP_EPS, 1e-6, 0.0])
def test_grpo_advantages_are_bit_identical_to_the_shipped_formula(seed: int, eps: float) -> None:
    r = _rewards(seed)
    assert torch.equal(group_advantages(r, eps=eps).advantages, _shipped_advantages(r, eps))


def test_sample_std_and_eps_as_documented() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0, math.nan], [4.0, math.nan, math.nan, math.nan]])
    out = group_zscores(r)
    assert out.count.tolist() == [3, 1] and out.mean.tolist() == [2.0, 4.0]
    assert out.std.tolist() == [1.0, 0.0]  # sample std: sqrt(((-1)² + 0² + 1²) / (3 - 1))
    assert out.z[0].tolist() == [-1 / (1 + GROUP_EPS), 0.0, 1 / (1 + GROUP_EPS), 0.0]
    assert out.z[1].tolist() == [0.0] * 4  # one score: std 0, z 0; NaN: z 0
    assert GROUP_EPS == 1e-4
    with pytest.raises(ValueError, match="shape"):
        group_zscores(torch.zeros(3))


def test_group_norm_combination_uses_the_same_z_scores() -> None:
    scores = [0.3, 0.9, 0.1, 0.7, 0.2, 0.2, None, 1.0]
    z = group_normalise(scores, groups=[0] * 4 + [1] * 4)
    r = torch.tensor([math.nan if s is None else s for s in scores], dtype=torch.float64).view(2, 4)
    ref = group_zscores(r).z.flatten().tolist()
    assert z[:6] == ref[:6] and z[6] is None and z[7] == ref[7]
