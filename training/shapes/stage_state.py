"""Checkpoints of one pre-training stage (the LM or the VQ decoder), so a run outlasts a session.

A stage saves ``<folder>/checkpoint-<step>/trainer_state/`` every ``every`` steps, when it stops
early and when it ends, in the layout of ``training/checkpoints.py`` (whose ``checkpoint_dirs``
lists them): ``state.pt`` holds the weights, optimizer, scheduler, RNG states (Python's batch
sampler and torch's) and the stage's own record (loss curve), and ``extra.pt`` — written last
and renamed into place, so a process killed mid-save leaves no complete-looking checkpoint — the
step, the stage's training seconds so far, why it stopped and the fingerprint of the settings
that shape the weights. ``latest()`` refuses a checkpoint written under other settings.

``StageClock`` counts a stage's training time across sessions; the learning-rate schedule of a
time-limited stage (``--max-minutes``) follows it, so a resumed stage continues the same schedule.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoints import checkpoint_dirs, non_finite_tensors

STOP_STEPS = "steps"
"""The stage did all its steps."""
STOP_BUDGET = "max_minutes"
"""The stage's time budget (``--max-minutes``, counted over every session) ran out."""
STOP_SESSION = "session_minutes"
"""This session's limit (``--session-minutes``) ran out; the schedule did not see it."""


class StageClock:
    """Seconds a stage has trained, over all sessions: ``before`` plus the time since it started."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = float(before)
        self.started = time.time()

    def elapsed(self) -> float:
        return self.before + time.time() - self.started


def rng_state(rng: random.Random) -> dict[str, Any]:
    """The Python sampler's and torch's RNG states (CUDA's too, when present)."""
    state: dict[str, Any] = {"python": rng.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(rng: random.Random, state: Mapping[str, Any]) -> None:
    """Put back what ``rng_state`` captured (CUDA's only where CUDA is present now)."""
    rng.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(model: Any, opt: Any, sched: Any, rng: random.Random, record: list) -> dict[str, Any]:
    """What a stage checkpoint holds besides its step: weights, optimizer, scheduler, RNG, record."""
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": rng_state(rng), "record": record}  # fmt: skip


def restore_training_state(
    saved: Mapping[str, Any], model: Any, opt: Any, sched: Any, rng: random.Random
) -> None:
    """Load what ``training_state`` saved back into the stage's live objects."""
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    restore_rng(rng, saved["rng"])


@dataclass
class StageCheckpoints:
    """Where one stage keeps its checkpoints and how often it writes them.

    ``every`` is in optimizer steps (0: only when the stage stops); ``keep`` is how many of the
    newest checkpoints stay (older ones are deleted after each save); ``fingerprint`` is the
    settings the weights depend on, stored with each checkpoint and compared on resume.
    """

    folder: Path
    every: int
    fingerprint: dict[str, Any]
    keep: int = 2

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if self.every < 0 or self.keep < 1:
            raise ValueError(f"save_every must be >= 0 and keep >= 1; got {self.every}, {self.keep}")

    def due(self, steps_done: int) -> bool:
        """Whether the periodic schedule saves after ``steps_done`` steps."""
        return self.every > 0 and steps_done % self.every == 0

    def existing(self) -> list[Path]:
        """This stage's complete checkpoints, oldest first."""
        return checkpoint_dirs(self.folder)

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint's ``state.pt`` merged with its ``extra.pt``, or None if none.

        Raises ``ValueError`` naming the differing settings when it was written under others.
        """
        found = self.existing()
        if not found:
            return None
        extra = torch.load(found[-1] / "trainer_state" / "extra.pt", weights_only=False)
        diff = sorted(
            k for k in {*extra["fingerprint"], *self.fingerprint}
            if extra["fingerprint"].get(k) != self.fingerprint.get(k)
        )  # fmt: skip
        if diff:
            pairs = ", ".join(f"{k}: {extra['fingerprint'].get(k)!r} there, {self.fingerprint.get(k)!r} now"
                              for k in diff)  # fmt: skip
            raise ValueError(
                f"{found[-1]} was written by a run with other settings ({pairs}); resume with "
                f"the same settings, or delete {self.folder} to start afresh"
            )
        state = torch.load(found[-1] / "trainer_state" / "state.pt", map_location="cpu", weights_only=False)
        return {**state, **extra, "path": found[-1]}

    def save(self, step: int, stop: str | None, seconds: float, state: dict[str, Any]) -> Path:
        """Write ``checkpoint-<step>/`` (``state`` holds tensors and records); return its path.

        ``stop`` is why the stage stopped (``STOP_*``), None mid-run. Weights (``state["model"]``)
        holding NaN or ±inf raise ``ValueError`` before anything is written.
        """
        bad = non_finite_tensors(state["model"])
        if bad:
            raise ValueError(f"step {step}: {len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); "
                             "the stage diverged and no checkpoint was written")  # fmt: skip
        path = self.folder / f"checkpoint-{step}"
        trainer = path / "trainer_state"
        if path.exists():
            shutil.rmtree(path)
        trainer.mkdir(parents=True)
        torch.save(state, trainer / "state.pt")
        extra = {"step": step, "stop": stop, "seconds": seconds, "fingerprint": self.fingerprint}
        torch.save(extra, trainer / "extra.pt.tmp")
        os.replace(trainer / "extra.pt.tmp", trainer / "extra.pt")  # complete only from here on
        for old in self.existing()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path


@dataclass
class StageRun:
    """What a stage's loop did: its per-step record (losses) over all sessions, the steps done,
    its training seconds over all sessions, why it stopped (``STOP_*``) and the step it resumed
    from (0: it started afresh)."""

    record: list[Any]
    steps: int
    seconds: float
    stop: str
    resumed_from: int = 0


def stop_reason(
    done: int, steps: int, clock: StageClock, max_seconds: float | None, stop_at: float | None
) -> str | None:
    """Why a stage that has done ``done`` of ``steps`` steps stops now, or None to go on.

    ``max_seconds`` is the stage's budget over all sessions (its ``clock``), ``stop_at`` the
    wall-clock time (``time.time()``) this session ends at.
    """
    if done >= steps:
        return STOP_STEPS
    if max_seconds is not None and clock.elapsed() > max_seconds:
        return STOP_BUDGET
    if stop_at is not None and time.time() > stop_at:
        return STOP_SESSION
    return None
