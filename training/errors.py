"""Why a training run stops instead of saving or reporting something it must not.

Every trainer raises a :class:`TrainingError` (never exits 0) when continuing would train on
nothing or write weights that are not numbers; the message says what happened and what to check.
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A run that must stop: it would report success for nothing or save garbage."""


class NonFiniteWeightsError(TrainingError):
    """The model holds NaN or ±inf values; no checkpoint or final model is written from it."""


class NoSignalError(TrainingError):
    """Step after step no group could be trained on (no reward spread or no reward at all)."""
