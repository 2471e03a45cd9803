"""Why a training run stops instead of saving or reporting something it must not.

Every trainer raises a :class:`TrainingError` (never exits 0) when continuing would train on
nothing or write weights that are not numbers; the message says what happened and what to check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class TrainingError(RuntimeError):
    """A run that must stop: it would report success for nothing or save garbage."""


class NonFiniteWeightsError(TrainingError):
    """The model holds NaN or ±inf values; no checkpoint or final model is written from it."""


class NoSignalError(TrainingError):
    """Step after step no group could be trained on (no reward spread or no reward at all)."""


def cli_main(body: Callable[[], str], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command-line entry point's ``body`` (it returns the line to print on success): a bad
    setting, a missing file or a run that must stop (``ValueError``, ``OSError``,
    :class:`TrainingError`, a model that cannot load, and ``errors``) prints ``error: <message>`` on
    stderr and exits 2 instead of a traceback; any other exception is a bug and propagates."""
    from reasongen.loading import ModelLoadError

    try:
        line = body()
    except (ValueError, OSError, TrainingError, ModelLoadError, *errors) as err:
        print(f"error: {str(err).strip() or type(err).__name__}", file=sys.stderr)
        return 2
    print(line)
    return 0
