"""Spread a step's kept samples evenly over the processes before the update.

Each process draws its own slots, and dynamic sampling drops the groups without reward spread, so
after the rollouts one process may hold two groups to train on and the other one, or none (it
then runs a blank group only so that DDP sees a forward). The update is most of a step, and every
optimizer step all-reduces the gradients: the lighter process waits for the heavier one at each
of a step's ``ppo_epochs`` passes. Measured on two CPU processes of the shapes recipes, one process
waited for the other in about a fifth of the wall time.

``balance_groups`` gathers every process's kept groups (in rank order, so the same list on every
process), orders their samples as drawn, and cuts that sequence into ``world`` contiguous parts
of near-equal cost (tokens the forward runs). Each process keeps its part, as groups or pieces
of groups that carry their samples' advantages, validity and rewards. The GRPO loss is a sum
over tokens divided by global denominators and the gradients are summed over processes, so the
update is the same as without balancing, up to the order of floating-point reductions (tested
against one process in ``tests/training/test_grpo_distributed.py``).

Not used with per-micro-batch entropy controllers (``entropy_update: micro_batch``): there each
process's controllers move with its own micro-batches' entropies, which balancing would change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .rollouts import Group, blank_group


def balances(balance_ranks: bool, world: int, entropy_update: str) -> bool:
    """Whether a run spreads its work over the processes (redraws pooled, kept samples shared):
    with ``balance_ranks``, several processes, and entropy controllers that move once per step."""
    return balance_ranks and world > 1 and entropy_update != "micro_batch"


def sample_cost(group: Group, index: int) -> int:
    """Token positions the update's forward runs for sample ``index`` of ``group``: its CoT and
    image tokens, and the image tokens again for the unconditional row of a guided sample (the
    prompt is left out: it runs once per distinct prompt, see ``training.logprobs``)."""
    s = group.samples[index]
    guided = float(s.settings.guidance) != 1.0
    return len(s.cot_token_ids) + len(s.image_token_ids) * (2 if guided else 1)


def balanced_cuts(costs: Sequence[float], parts: int) -> list[int]:
    """Boundaries ``[0, b_1, …, b_{parts−1}, n]`` cutting ``costs`` (in order) into ``parts``
    contiguous runs of near-equal sum: each ``b_k`` is the index whose running total lies nearest
    ``k/parts`` of the whole. Every run holds at least one item when ``len(costs) >= parts``."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    n = len(costs)
    running = [0.0]
    for c in costs:
        running.append(running[-1] + float(c))
    total = running[-1]
    cuts = [0]
    for k in range(1, parts):
        target = total * k / parts
        lo = cuts[-1] + (1 if n - cuts[-1] > parts - k else 0)  # leave an item for every part left
        hi = max(lo, n - (parts - k))
        best = min(range(lo, hi + 1), key=lambda i: (abs(running[i] - target), i))
        cuts.append(best)
    cuts.append(n)
    return cuts


def _piece(group: Group, start: int, end: int) -> Group:
    """Samples ``start:end`` of ``group`` as a group of their own (advantages and validity kept)."""
    sl = slice(start, end)
    behaviour = None if group.behaviour is None else group.behaviour[sl]
    return replace(group, samples=group.samples[sl], rewards=group.rewards[sl],
                   advantages=group.advantages[sl], valid=group.valid[sl], behaviour=behaviour)  # fmt: skip


def _light(group: Group) -> Group:
    """``group`` without its images (not needed by the update; smaller to send)."""
    return replace(group, samples=[replace(s, image=None) for s in group.samples])


def balance_groups(
    groups: Sequence[Group],
    rank: int,
    world: int,
    gather: Callable[[list[Group]], list[Group]],
) -> list[Group]:
    """This process's share of every process's kept ``groups`` (dropped ones are not sent).

    ``gather(local)`` must return the concatenation of every process's ``local`` lists in rank
    order (``accelerate.utils.gather_object``). Returns this process's groups and pieces of
    groups, in drawn order. A process that gets no sample (fewer samples than processes; with
    pooled redraws it may also have drawn no group at all) gets a blank copy of the first group,
    advantages 0 and no valid sample, so that it still runs a forward for DDP and adds nothing.
    Call it only when some process kept a group.
    """
    everyone = gather([_light(g) for g in groups if not g.dropped])
    if not everyone:
        raise ValueError("balance_groups needs a kept group on some process")
    units = [(gi, si) for gi, g in enumerate(everyone) for si in range(len(g.samples))]
    cuts = balanced_cuts([sample_cost(everyone[gi], si) for gi, si in units], world)
    mine = units[cuts[rank] : cuts[rank + 1]]
    out: list[Group] = []
    for gi in dict.fromkeys(gi for gi, _ in mine):  # groups touched, in order
        idx = [si for g, si in mine if g == gi]
        out.append(_piece(everyone[gi], idx[0], idx[-1] + 1))
    return out or [blank_group(everyone[0])]
