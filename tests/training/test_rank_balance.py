"""Spreading a step's kept samples over processes: the cuts, and what each process gets."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from reasongen.types import Sample, SamplingSettings
from training.rank_balance import balance_groups, balanced_cuts, sample_cost
from training.rollouts import Group


def _sample(tag: str, cot: int, image: int = 4, guidance: float = 1.0) -> Sample:
    return Sample(prompt=tag, recipe="got-r1", model_id="m", seed=0,
                  settings=SamplingSettings(guidance=guidance), prompt_ids=[1, 2],
                  cot_text=tag, cot_token_ids=[5] * cot, cot_logprobs=[-1.0] * cot,
                  cot_end="boi", prefix_ids=[1, 2], image_token_ids=[7] * image,
                  image_logprobs=[-2.0] * image, image=Image.new("RGB", (4, 4)))  # fmt: skip


def _group(tag: str, cots: list[int], dropped: bool = False, slot: int = 0) -> Group:
    n = len(cots)
    return Group(samples=[_sample(f"{tag}{i}", c) for i, c in enumerate(cots)],
                 rewards=[float(i) for i in range(n)], families={},
                 advantages=[0.0] * n if dropped else [i - (n - 1) / 2 for i in range(n)],
                 valid=[not dropped] * n, slot=slot, attempts=1, dropped=dropped,
                 behaviour=[torch.full((4,), float(i)) for i in range(n)])  # fmt: skip


def _run_ranks(per_rank: list[list[Group]]) -> list[list[Group]]:
    """What each process keeps. ``gather`` returns what accelerate's ``gather_object`` would:
    every process's sent list, concatenated in rank order (checked to be kept groups only,
    images left out)."""
    world = len(per_rank)
    sent: list[list[Group]] = [[] for _ in range(world)]

    def gather_from(r: int):
        def gather(local: list[Group]) -> list[Group]:
            sent[r] = local
            assert all(not g.dropped for g in local)  # dropped groups are never sent
            assert all(s.image is None for g in local for s in g.samples)
            return [g for rank in range(world) for g in _sent_by(rank)]

        return gather

    def _sent_by(rank: int) -> list[Group]:
        # the list process ``rank`` sends (what its own call passed, or would pass)
        from training.rank_balance import _light

        return [_light(g) for g in per_rank[rank] if not g.dropped]

    return [balance_groups(per_rank[r], r, world, gather_from(r)) for r in range(world)]


def test_cuts_split_costs_into_near_equal_contiguous_runs() -> None:
    assert balanced_cuts([1, 1, 1, 1], 2) == [0, 2, 4]
    assert balanced_cuts([3, 1, 1, 1], 2) == [0, 1, 4]
    assert balanced_cuts([5, 1, 1, 1, 1, 1], 3) == [0, 1, 3, 6]  # totals 5, 7 nearest 10/3, 20/3
    assert balanced_cuts([10, 1], 2) == [0, 1, 2]  # each run keeps an item
    assert balanced_cuts([1], 2) == [0, 0, 1]  # fewer items than runs: one run is empty
    assert balanced_cuts([], 2) == [0, 0, 0]
    assert balanced_cuts([2, 2, 2], 1) == [0, 3]
    with pytest.raises(ValueError, match="at least 1"):
        balanced_cuts([1], 0)


def test_cost_counts_the_unconditional_image_row_of_guided_samples() -> None:
    g = Group(samples=[_sample("a", 5, 4, 1.0), _sample("b", 5, 4, 3.0)], rewards=[0, 1],
              families={}, advantages=[-1, 1], valid=[True, True], slot=0, attempts=1)  # fmt: skip
    assert [sample_cost(g, 0), sample_cost(g, 1)] == [9, 13]


def test_two_groups_against_none_are_shared_and_every_sample_trains_once() -> None:
    heavy = [_group("a", [3, 3, 3, 3], slot=0), _group("b", [3, 3, 3, 3], slot=2)]
    light = [_group("c", [3, 3, 3, 3], dropped=True, slot=1), _group("d", [3] * 4, dropped=True, slot=3)]
    shares = _run_ranks([heavy, light])
    names = [[s.prompt for g in share for s in g.samples] for share in shares]
    assert names == [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]]
    # each moved sample carries its own advantage, validity, reward and behaviour log-probs
    b = shares[1][0]
    assert b.advantages == heavy[1].advantages and b.valid == heavy[1].valid
    assert b.rewards == heavy[1].rewards and b.slot == 2
    assert [float(t[0]) for t in b.behaviour] == [0.0, 1.0, 2.0, 3.0]


def test_a_group_is_cut_where_the_costs_balance() -> None:
    # rank 0 kept one group of long CoTs, rank 1 one of short ones: the cut falls inside rank 0's
    long = _group("L", [40, 40, 40, 40])
    short = _group("S", [4, 4, 4, 4])
    shares = _run_ranks([[long], [short]])
    costs = [sum(sample_cost(g, i) for g in share for i in range(len(g.samples))) for share in shares]
    assert sum(costs) == 4 * 44 + 4 * 8
    assert abs(costs[0] - costs[1]) <= 44  # within one sample of even
    flat = [(s.prompt, g.advantages[i]) for share in shares for g in share for i, s in enumerate(g.samples)]
    expected = [(s.prompt, long.advantages[i]) for i, s in enumerate(long.samples)]
    expected += [(s.prompt, short.advantages[i]) for i, s in enumerate(short.samples)]
    assert flat == expected  # drawn order, nothing lost or repeated
    assert len(shares[0]) == 1 and len(shares[1]) == 2  # the long group was cut in two


def test_a_process_left_without_samples_gets_a_blank_group_that_counts_for_nothing() -> None:
    one = _group("x", [2])
    shares = _run_ranks([[one], [], []])  # processes 1 and 2 drew no group at all
    assert [[len(g.samples) for g in share] for share in shares] == [[1], [1], [1]]
    trained = [g for share in shares for g in share if any(g.valid)]
    assert len(trained) == 1 and trained[0].advantages == one.advantages
    for g in (shares[0][0], shares[1][0]):  # the blanks: no valid sample, advantage 0
        assert g.dropped and g.valid == [False] and g.advantages == [0.0]
    with pytest.raises(ValueError, match="needs a kept group"):
        balance_groups([_group("d", [2], dropped=True)], 0, 1, lambda local: local)
