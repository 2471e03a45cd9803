"""Dynamic sampling by whole batches, as ReasonGen-R1 releases it.

Upstream (Franklin-Zhang0/ReasonGen-R1 ``verl/trainer/ppo/ray_trainer.py``, ``filter_groups``
with ``max_num_gen_batches=8`` in ``examples/janus_rl.sh``) keeps the groups of a generation batch
whose rewards spread, and while the step has fewer than its ``train_batch_size`` kept groups
generates another batch: ``1 << (left.bit_length() + 1)`` prompts for ``left`` missing groups,
at least one per process and at most a full batch. At most ``max_num_gen_batches`` batches are
generated; the kept groups are then cut to exactly ``train_batch_size``, in order.

Here a step's generation batches are numbered slots: the first batch is slots
``0..prompts_per_step−1``, the next ones continue the numbering, and slot ``k`` of a batch goes
to process ``k mod world`` with its prompt and seed from ``slot_rng(seed, step, slot, 0)``, so the
groups and the cut are the same for any number of processes and after a resume. Where upstream
stops the run with an error once its batches are spent, this trains on the groups kept so far
(the step's ``groups/kept`` shows it; ``max_empty_steps`` stops a run that keeps none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from .rollouts import Group, rollout_slots

if TYPE_CHECKING:
    from .grpo import GRPOConfig


def next_batch_size(left: int, world: int, full: int) -> int:
    """Prompts of the next generation batch when ``left`` kept groups are missing (upstream's
    rule: the power of two above ``2·left``, at least ``world``, at most ``full``)."""
    return min(max(world, 1 << (left.bit_length() + 1)), full)


def rollout_batches(
    cfg: GRPOConfig,
    loaded: Any,
    prompts: list,
    score: Callable,
    step: int,
    rank: int,
    world: int,
    total: Callable[[torch.Tensor], torch.Tensor],
) -> list[Group]:
    """This process's groups of ``step``: its kept groups among the first ``prompts_per_step``
    kept ones (in slot order, over every process), then its groups without spread (flagged
    ``dropped``, for the statistics). ``total(t)`` sums a tensor over the processes (identity on
    one process); every process calls it once per generation batch.
    """
    once = replace(cfg, dynamic_sampling=False)  # one attempt per slot: batches replace redraws
    wanted, first = cfg.prompts_per_step, 0
    size, kept_slots = wanted, []
    mine: dict[int, Group] = {}
    for _ in range(cfg.max_gen_batches):
        slots = list(range(first, first + size))
        groups = rollout_slots(once, loaded, prompts, score, step, slots[rank::world])
        flags = torch.zeros(size)  # [size]: 1 where this process's slot kept its group
        for g in groups:
            mine[g.slot] = g
            flags[g.slot - first] = float(not g.dropped)
        flags = total(flags)  # every process's verdicts
        kept_slots += [s for s, f in zip(slots, flags.tolist()) if f > 0]
        first += size
        if len(kept_slots) >= wanted:
            break
        size = next_batch_size(wanted - len(kept_slots), world, wanted)
    chosen = set(kept_slots[:wanted])
    return [g for s, g in sorted(mine.items()) if s in chosen or g.dropped]
