"""Rewards by name. Families are imported only when asked for, so listing names is free."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Reward

_REGISTRY: dict[str, str] = {
    "hps": "reasongen.rewards.hps:HPSReward",
    "gdino": "reasongen.rewards.gdino:GroundingDinoReward",
    "git_vqa": "reasongen.rewards.git_vqa:GitVqaReward",
    "orm": "reasongen.rewards.judges:OrmReward",
    "got_judge": "reasongen.rewards.judges:GotJudgeReward",
    "binary_judge": "reasongen.rewards.judges:BinaryJudgeReward",
    "shapes": "reasongen.rewards.shapes:ShapesReward",
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
