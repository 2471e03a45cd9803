"""Rewards by name. Families are imported only when asked for, so listing names is free."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Reward

_REGISTRY: dict[str, str] = {
    "hps": "reasongen.rewards.hps:HPSReward",
    "gdino": "reasongen.rewards.gdino:GroundingDinoReward",
    "git_vqa": "reasongen.rewards.git_vqa:GitVqaReward",
    "orm": "reasongen.rewards.orm:OrmReward",
    "got_judge": "reasongen.rewards.judges:GotJudgeReward",
    "binary_judge": "reasongen.rewards.judges:BinaryJudgeReward",
    "shapes": "reasongen.rewards.shapes:ShapesReward",
    "learned": "reasongen.rewards.learned:LearnedReward",
}


def list_rewards() -> list[str]:
    """Names accepted by :func:`get_reward`."""
    return sorted(_REGISTRY)


def register_reward(name: str, target: str | type[Reward]) -> None:
    """Add a reward class (or ``"module:Class"`` path) under ``name``."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"reward names are letters, digits and '_'; got {name!r}")
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[name] = target


def reward_class(name: str) -> type[Reward]:
    """The class registered under ``name`` (imports its module)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(list_rewards())}")
    module, _, attr = _REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls


def get_reward(name: str, **config: Any) -> Reward:
    """Build the reward ``name`` with its config options (no model is loaded yet)."""
    return reward_class(name)(**config)


def make_reward(
    names: str | list[str],
    combine: str | None = None,
    weights: dict[str, float] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    on_missing: str = "renormalise",
) -> Reward:
    """One reward, or several combined: ``make_reward("hps,gdino,git_vqa", "weighted_sum")``
    (T2I-R1's ensemble) or ``make_reward(["got_judge", "hps"], "product")`` (GoT-R1's total).

    ``options`` maps a reward name to its config options. Several names without ``combine``
    combine by weighted sum; ``on_missing`` says what a part that is ``None`` for a sample does
    (:class:`~reasongen.rewards.combine.CombinedConfig`; by default the weights are renormalised
    over the parts present).
    """
    from .combine import CombinedReward

    parts = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    parts = [n for n in parts if n]
    if not parts:
        raise ValueError("name at least one reward")
    options = dict(options or {})
    unused = set(options) - set(parts)
    if unused:
        raise ValueError(f"options given for rewards not requested: {', '.join(sorted(unused))}")
    rewards = [get_reward(n, **options.get(n, {})) for n in parts]
    if len(rewards) == 1 and combine is None and not weights:
        return rewards[0]
    return CombinedReward(
        rewards, mode=combine or "weighted_sum", weights=dict(weights or {}), on_missing=on_missing
    )
