"""A training run's logged scalars and how long it trained, read from its TensorBoard events."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from pathlib import Path


def run_scalars(run_dir: Path, tag: str, upto: int) -> list[tuple[int, float, float]]:
    """``(step, wall_time, value)`` of one TensorBoard scalar of a run, steps ``<= upto``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: list[tuple[int, float, float]] = []
    for path in sorted(run_dir.glob("tb/**/events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            out += [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag) if e.step <= upto]
    return sorted(out)


def step_wall_times(run_dir: Path, upto: int) -> list[float]:
    """Wall time of each logged step ``<= upto`` in step order (a resumed run's redone steps once)."""
    latest: dict[int, float] = {}  # a resumed run logs the steps after its checkpoint again: keep the redo
    for step, wall, _ in run_scalars(run_dir, "grpo/reward/mean", upto):
        latest[step] = max(wall, latest.get(step, wall))
    return [latest[k] for k in sorted(latest)]


def training_minutes(times: Sequence[float]) -> float:
    """Minutes spent training from the wall times of successive steps; a gap longer than ten
    median steps (a kill and ``--resume``) counts as one median step, and so does a negative one
    (steps out of order). NaN with fewer than 2 steps."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if not gaps:
        return float("nan")
    med = statistics.median(gaps)
    return sum(g if 0 <= g <= 10 * med else med for g in gaps) / 60
