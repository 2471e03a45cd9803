"""``python -m training.reward_model``: train a preference reward model; errors are one line
``error: ...`` on stderr with exit status 2."""

from __future__ import annotations

from collections.abc import Sequence

from reasongen.config import parse_config


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from annotation.errors import AnnotationError
    from reasongen.rewards.base import RewardModelUnavailable
    from training.errors import cli_main

    from .train import RewardModelConfig, train_reward_model

    def body() -> str:
        result = train_reward_model(parse_config(RewardModelConfig, argv))
        acc = result.metrics["held_out_accuracy"]
        return (f"reward model written to {result.out}: held-out pairwise accuracy {acc['value']:.3f} "
                f"[{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]")  # fmt: skip

    return cli_main(body, (AnnotationError, RewardModelUnavailable, SQLAlchemyError))
