"""``python -m training.reward_model``: train a preference reward model; errors are one line
``error: ...`` on stderr with exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reasongen.config import parse_config


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from annotation.errors import AnnotationError
    from reasongen.rewards.base import RewardModelUnavailable
    from training.errors import TrainingError

    from .train import RewardModelConfig, train_reward_model

    try:
        cfg = parse_config(RewardModelConfig, argv)
        result = train_reward_model(cfg)
    except (
        ValueError,
        OSError,
        AnnotationError,
        RewardModelUnavailable,
        SQLAlchemyError,
        TrainingError,
    ) as err:
        lines = str(err).strip().splitlines()
        print(f"error: {lines[0] if lines else type(err).__name__}", file=sys.stderr)
        return 2
    acc = result.metrics["held_out_accuracy"]
    print(f"reward model written to {result.out}: held-out pairwise accuracy {acc['value']:.3f} "
          f"[{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]")  # fmt: skip
    return 0
