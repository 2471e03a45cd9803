"""Combining several rewards into one score: weighted sum, product, per-group normalised sum.

- ``weighted_sum`` (T2I-R1: HPS + GroundingDINO + GIT-VQA + ORM, all weights 1 in the paper):
  ``Σ_k w_k · r_k``.
- ``product`` (GoT-R1: ``R_PI · R_PR · R_RI · R_HPS``): ``Π_k r_k^{w_k}``; weights act as
  exponents, so a weight of 1 is the plain product.
- ``group_norm`` (T2I-R1's "normalized reward" ablation): each reward is standardised inside its
  group (the samples of one prompt), ``(r − mean_g) / (std_g + eps)`` with the sample std and
  ``eps`` 1e-4 (GRPO's advantage formula, :mod:`reasongen.group_zscore`), then ``Σ_k w_k · z_k``.
  A group whose scores do not vary gives 0 for that reward.

Missing parts (a reward that returned ``None`` for a sample, e.g. ``gdino`` on a prompt without
metadata) follow ``on_missing``: ``"renormalise"`` (:class:`CombinedConfig`'s default) combines
the parts present with their weights rescaled to the same total, ``w_k · Σ_all w / Σ_present w``
(a sum of four rewards stays on the scale of four; in product mode the exponents are rescaled);
``"skip"`` leaves the part out; ``"none"`` makes the combined score ``None`` (the sample's group
then has a missing reward). A sample with no part present is ``None`` in every mode, and its
details say which parts were missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..group_zscore import GROUP_EPS, group_zscores
from ..types import Sample
from .base import Reward, RewardConfig, RewardOutput

MODES = ("weighted_sum", "product", "group_norm")
"""The combination modes, the one list every config and command line checks against."""

ON_MISSING = ("renormalise", "skip", "none")
"""What to do with a part that is ``None`` for a sample (see the module docstring)."""


def check_mode(mode: str, what: str = "mode") -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError`` naming ``what``."""
    if mode not in MODES:
        raise ValueError(f"{what} must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def check_weights(weights: dict[str, float], mode: str, what: str = "weights") -> dict[str, float]:
    """Return ``weights`` as floats if they suit ``mode``, else raise ``ValueError``.

    Every weight must be a finite number (a NaN weight makes every combined score NaN, so no
    group could be trained on); in ``product`` mode a weight is an exponent and must not be
    negative (``0 ** -1`` divides by zero for a reward that scores 0).
    """
    check_mode(mode)
    out: dict[str, float] = {}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"{what}: the weight of {name!r} must be a finite number, got {w!r}")
        if mode == "product" and w < 0:
            raise ValueError(
                f"{what}: the weight of {name!r} is {w}, but product mode uses weights as "
                "exponents and a negative one divides by zero on a score of 0; use a weight >= 0"
            )
        out[name] = float(w)
    return out


def check_eps(eps: float) -> float:
    """Return ``eps`` if it is a finite number > 0 (group_norm divides by ``std + eps``)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0 (group_norm divides by std + eps), got {eps!r}")
    return float(eps)


def _group_ids(n: int, groups: Sequence[Any] | None) -> list[Any]:
    if groups is None:
        return [0] * n
    if len(groups) != n:
        raise ValueError(f"got {len(groups)} group ids for {n} samples")
    return list(groups)


def group_normalise(
    scores: Sequence[float | None], groups: Sequence[Any] | None = None, eps: float = GROUP_EPS
) -> list[float | None]:
    """Standardise scores within each group; ``None`` and non-finite scores become ``None`` and
    leave the rest of their group's statistics alone.

    ``(r − mean_g) / (std_g + eps)`` by :func:`reasongen.group_zscore.group_zscores`, the
    formula of GRPO's advantages: the sample std (``n − 1`` denominator) and ``eps`` 1e-4 by
    default. A group whose scores do not vary (or that has one score) gives 0.
    """
    import torch

    gids = _group_ids(len(scores), groups)
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(gids):
        if scores[i] is not None and math.isfinite(scores[i]):  # type: ignore[arg-type]
            members.setdefault(g, []).append(i)
    out: list[float | None] = [None] * len(scores)
    for idx in members.values():
        vals = torch.tensor([[float(scores[i]) for i in idx]], dtype=torch.float64)  # type: ignore[arg-type]  # [1, m]
        stats = group_zscores(vals, eps)
        zs = stats.z[0].tolist() if float(stats.std[0]) != 0.0 else [0.0] * len(idx)
        for i, z in zip(idx, zs):
            out[i] = z
    return out


def _used_weights(w: dict[str, float], present: dict[str, Any], on_missing: str) -> dict[str, float] | None:
    """The weights applied to the parts present, or ``None`` when the combined score is ``None``
    (``on_missing="none"`` with a part missing; ``"renormalise"`` when the weights present sum
    to 0, so no rescaling exists)."""
    if len(present) == len(w) or on_missing == "skip":
        return {k: w[k] for k in present}
    if on_missing == "none":
        return None
    have, total = sum(w[k] for k in present), sum(w.values())
    if have == 0:
        return None
    return {k: w[k] * total / have for k in present}


def combine_outputs(
    outputs: Sequence[RewardOutput],
    mode: str = "weighted_sum",
    weights: dict[str, float] | None = None,
    groups: Sequence[Any] | None = None,
    on_missing: str = "none",
    eps: float = GROUP_EPS,
    name: str = "combined",
) -> RewardOutput:
    """Combine per-reward outputs sample by sample; details keep every part and its weight."""
    if mode not in MODES:
        raise ValueError(f"unknown combination mode {mode!r}; choose one of {', '.join(MODES)}")
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {', '.join(ON_MISSING)}; got {on_missing!r}")
    if not outputs:
        raise ValueError("nothing to combine: give at least one reward output")
    n = len(outputs[0])
    if any(len(o) != n for o in outputs):
        raise ValueError(f"reward outputs disagree on the number of samples: {[len(o) for o in outputs]}")
    weights = check_weights(dict(weights or {}), mode)
    if mode == "group_norm":
        check_eps(eps)
    unknown = set(weights) - {o.name for o in outputs}
    if unknown:
        raise ValueError(f"weights given for rewards not combined: {', '.join(sorted(unknown))}")
    w = {o.name: float(weights.get(o.name, 1.0)) for o in outputs}
    parts = {o.name: list(o.scores) for o in outputs}
    if mode == "group_norm":
        parts = {k: group_normalise(v, groups, eps) for k, v in parts.items()}
    scores: list[float | None] = []
    details: list[dict[str, Any]] = []
    for i in range(n):
        vals = {k: parts[k][i] for k in parts}
        present = {k: v for k, v in vals.items() if v is not None}
        used = _used_weights(w, present, on_missing)
        if not present or used is None:
            total = None
        elif mode == "product":
            total = 1.0
            for k, v in present.items():
                if float(v) < 0 and used[k] != int(used[k]):
                    raise ValueError(
                        f"product mode: {k}={v} is negative and its weight "
                        f"{used[k]} fractional; use weighted_sum or weight 1"
                    )
                total *= float(v) ** used[k]
        else:
            total = sum(used[k] * float(v) for k, v in present.items())
        scores.append(total)
        details.append(
            {
                "mode": mode,
                "weights": w,
                "used_weights": used,
                "missing": sorted(set(vals) - set(present)),
                "parts": {o.name: o.scores[i] for o in outputs},
                "normalised": vals if mode == "group_norm" else None,
                "part_details": {o.name: o.details[i] for o in outputs},
            }
        )
    return RewardOutput(name, scores, details)


@dataclass
class CombinedConfig(RewardConfig):
    """How to combine the parts of a :class:`CombinedReward`."""

    mode: str = field(default="weighted_sum", metadata={"help": f"One of {', '.join(MODES)}."})
    weights: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "Per-reward weight (exponent in product mode); default 1."},
    )
    on_missing: str = field(
        default="renormalise",
        metadata={
            "help": "A part that is None: 'renormalise' (rescale the present parts' weights to "
            "the same total), 'skip' (drop it), 'none' (the combined score is None)."
        },
    )
    group_by: str = field(
        default="prompt",
        metadata={"help": "group_norm groups samples by 'prompt' (same prompt text) or 'none'."},
    )
    eps: float = field(default=GROUP_EPS, metadata={"help": "Added to the group (sample) std in group_norm."})

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_weights(self.weights, self.mode)
        check_eps(self.eps)
        if self.on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {', '.join(ON_MISSING)}; got {self.on_missing!r}")
        if self.group_by not in ("prompt", "none"):
            raise ValueError(f"group_by must be 'prompt' or 'none'; got {self.group_by!r}")


class CombinedReward(Reward):
    """Several rewards scored on the same samples and combined into one number per sample."""

    name = "combined"
    config_class = CombinedConfig
    config: CombinedConfig

    def __init__(
        self, parts: Sequence[Reward], config: CombinedConfig | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        if not parts:
            raise ValueError("a combined reward needs at least one part")
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate reward names in combination: {names}")
        unknown = set(self.config.weights) - set(names)
        if unknown:
            raise ValueError(f"weights given for rewards not combined: {', '.join(sorted(unknown))}")
        self.parts = list(parts)

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        return self.combine([p(samples, metas) for p in self.parts], samples)

    def combine(self, outputs: Sequence[RewardOutput], samples: Sequence[Sample]) -> RewardOutput:
        """Combine part outputs already scored on ``samples`` as this reward's config says.

        For callers that need each part's own output or must survive a part that fails: they
        call the :attr:`parts` themselves, then this; ``self(samples)`` does both in one go.
        """
        groups = [s.prompt for s in samples] if self.config.group_by == "prompt" else None
        return combine_outputs(
            outputs,
            self.config.mode,
            self.config.weights,
            groups,
            self.config.on_missing,
            self.config.eps,
            self.name,
        )
