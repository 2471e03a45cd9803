"""Reward models for reasoning text-to-image generation (see DESIGN.md, "Rewards").

``get_reward(name, **config)`` builds one reward; ``list_rewards()`` names them; a reward is a
picklable callable ``reward(samples, metadata=None) -> RewardOutput``. ``CombinedReward`` and
``combine_outputs`` mix several (weighted sum, product, per-group normalised sum). No model is
loaded at import or construction: each loads on its first call.
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
