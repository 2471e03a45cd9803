"""Reward models for reasoning text-to-image generation (T2I-R1, GoT-R1, the exact shapes reward).

``make_reward(names, combine, weights, options)`` is how callers build a reward: one, or several
combined into a ``CombinedReward`` (weighted sum, product, per-group normalised sum; the modes are
``MODES``); ``get_reward(name, **config)`` is the one-name registry step beneath it and
``list_rewards()`` names them. A reward is a picklable callable
``reward(samples, metadata=None) -> RewardOutput``; ``combine_outputs`` mixes outputs already
scored. No model is loaded at import or construction: each loads on its first call.
"""

from .base import (
    ModelReward,
    ModelRewardConfig,
    Reward,
    RewardConfig,
    RewardModelUnavailable,
    RewardOutput,
)
from .combine import MODES, CombinedConfig, CombinedReward, check_mode, combine_outputs, group_normalise
from .registry import get_reward, list_rewards, make_reward, register_reward, reward_class

__all__ = [
    "MODES",
    "CombinedConfig",
    "CombinedReward",
    "ModelReward",
    "ModelRewardConfig",
    "Reward",
    "RewardConfig",
    "RewardModelUnavailable",
    "RewardOutput",
    "check_mode",
    "combine_outputs",
    "get_reward",
    "group_normalise",
    "list_rewards",
    "make_reward",
    "register_reward",
    "reward_class",
]
