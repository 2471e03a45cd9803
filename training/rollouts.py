"""Rollouts of online GRPO: groups of samples for a step's slots, scored, with their advantages.

A slot's prompt and seed depend only on ``(seed, step, slot, attempt)`` (``slot_rng``), so a
step's groups are the same for any number of processes, any batching and after a resume.
``rollout_slots`` samples a process's slots in one multi-prompt ``generate`` call and redraws the
slots whose group has no reward spread (``dynamic_sampling_mode: slot``);
``training.batch_sampling`` regenerates whole batches instead (``batch``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from reasongen.types import Sample

from .grpo_loss import group_advantages, rewards_tensor

if TYPE_CHECKING:
    from .grpo import GRPOConfig


def finite_rewards(rewards: Sequence[float | None]) -> tuple[list[float | None], int]:
    """``rewards`` with NaN and ±inf turned into ``None`` (missing), and how many were."""
    out = [None if r is None or not math.isfinite(r) else float(r) for r in rewards]
    return out, sum(r is not None and o is None for r, o in zip(rewards, out))


@dataclass
class Group:
    samples: list[Sample]
    rewards: list[float | None]
    families: dict[str, float]
    advantages: list[float]
    valid: list[bool]
    slot: int
    attempts: int
    dropped: bool = False
    non_finite: int = 0  # rewards that came back NaN or ±inf (treated as missing)
    # Per sample [N_k]: image log-probs under the trained distribution and the policy that drew
    # the step, where the stored ones are of another distribution (see needs_behaviour).
    behaviour: list[torch.Tensor] | None = None


def blank_group(group: Group) -> Group:
    """A copy of ``group`` that counts for nothing (advantages 0, no valid sample, no behaviour
    log-probs): what a process runs when it has nothing to train on, so that DDP sees a forward."""
    n = len(group.samples)
    return replace(group, advantages=[0.0] * n, valid=[False] * n, dropped=True, behaviour=None)


def slot_rng(seed: int, step: int, slot: int, attempt: int) -> random.Random:
    return random.Random(f"{seed}:{step}:{slot}:{attempt}")


Share = Callable[[list[tuple[int, int]]], tuple[list[tuple[int, int]], bool]]
"""Spreads a redraw round's slots over the processes: given this process's pending ``(slot,
non-finite rewards so far)`` pairs, returns the pairs this process draws in the round and whether
any process has a slot pending (the same answer everywhere, so every process stops together)."""


def rollout_slots(
    cfg: GRPOConfig,
    loaded: Any,
    prompts: list,
    score: Callable,
    step: int,
    slots: Sequence[int],
    share: Share | None = None,
) -> list[Group]:
    """Generate and score one group per slot of ``slots``, redrawing zero-spread groups.

    Every slot of a round is sampled in one multi-prompt ``generate`` call (each slot's prompt and
    seed come from ``slot_rng(seed, step, slot, attempt)`` and each prompt has its own random
    stream, so a group is the same however the slots are batched or split over processes); the
    slots whose group had no reward spread are redrawn together in the next round. A group still
    without spread after ``max_resample`` redraws comes back with ``dropped=True`` (its advantages
    are 0 and no token of it takes part in the loss). NaN and ±inf rewards count as missing
    (``Group.non_finite`` counts them over every attempt).

    With ``share`` (several processes) each redraw round's slots are pooled over the processes
    and spread evenly (``pooled_redraws``), so no process redraws two groups while another
    waits; a slot's group then comes back from the process that drew it last. Groups come back
    in slot order.
    """
    from reasongen.generation import generate

    settings = cfg.sampling(loaded)
    tries = 1 + (cfg.max_resample if cfg.dynamic_sampling else 0)
    done: dict[int, Group] = {}
    non_finite = dict.fromkeys(slots, 0)
    pending = list(slots)
    for attempt in range(tries):
        if attempt and share is not None:
            mine, anywhere = share([(slot, non_finite[slot]) for slot in pending])
            if not anywhere:
                break
            non_finite.update(mine)
            pending = [slot for slot, _ in mine]
        if not pending:
            if share is None:
                break
            continue  # nothing of this round here; the next round's share may still need us
        picks = []
        for slot in pending:
            rng = slot_rng(cfg.seed, step, slot, attempt)
            prompt, meta = prompts[rng.randrange(len(prompts))]
            picks.append((prompt, meta, rng.randrange(2**31)))
        samples = generate(loaded, [p for p, _, _ in picks], cfg.recipe, n=cfg.group_size,
                           seed=[sd for _, _, sd in picks], settings=settings,
                           metadata=[m for _, m, _ in picks])  # fmt: skip
        redraw = []
        for k, slot in enumerate(pending):
            group = samples[k * cfg.group_size : (k + 1) * cfg.group_size]
            rewards, families = score(group)
            rewards, bad = finite_rewards(rewards)
            non_finite[slot] += bad
            adv = group_advantages(rewards_tensor(rewards, cfg.group_size), eps=cfg.adv_eps)
            keep = bool(adv.keep_group[0])
            if keep or attempt == tries - 1:
                advantages, valid = adv.advantages[0].tolist(), adv.valid[0].tolist()
                done[slot] = Group(group, rewards, families, advantages, valid, slot, attempt + 1,
                                   dropped=not keep, non_finite=non_finite[slot])  # fmt: skip
            else:
                redraw.append(slot)
        pending = redraw
    return [done[slot] for slot in (slots if share is None else sorted(done))]


def pooled_redraws(rank: int, world: int, gather: Callable[[list], list]) -> Share:
    """A ``Share`` over ``world`` processes: every process's pending slots are gathered
    (``gather`` as accelerate's ``gather_object``: the concatenation in rank order), sorted, and
    dealt out in turn (slot ``i`` of the sorted list to process ``i mod world``)."""

    def share(pending: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], bool]:
        everyone = sorted(gather(list(pending)))
        return everyone[rank::world], bool(everyone)

    return share
