"""Reward–human agreement on constructed studies whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation.agreement import (
    CEILING,
    COLUMNS,
    agreement_by_basis,
    annotator_ceiling,
    human_ceiling,
    reward_accuracy,
    reward_agreement,
)


def frame(orders: dict[str, list[list[list[int]]]], controls: tuple[int, ...] = ()) -> pd.DataFrame:
    """A rankings frame: ``orders[annotator][task]`` is that annotator's tie groups, best first,
    over candidate ids; task ids are list positions, ranking ids are made up."""
    rows = []
    rid = 0
    for name, tasks in orders.items():
        for tid, groups in enumerate(tasks):
            rid += 1
            for rank, group in enumerate(groups, start=1):
                for cid in group:
                    rows.append((rid, tid, name, cid, rank, tid in controls))
    return pd.DataFrame(
        rows, columns=["ranking_id", "task_id", "annotator", "candidate_id", "rank", "is_control"]
    )


def careful_study(
    n_tasks: int = 40, k: int = 4, seed: int = 0
) -> tuple[dict[int, float], list[list[list[int]]]]:
    """True qualities (all different) and the careful ranking of each task (best first)."""
    rng = np.random.default_rng(seed)
    quality: dict[int, float] = {}
    tasks = []
    for t in range(n_tasks):
        ids = [t * k + j for j in range(k)]
        for cid in ids:
            quality[cid] = float(rng.normal())
        tasks.append([[cid] for cid in sorted(ids, key=lambda c: -quality[c])])
    return quality, tasks


def test_a_reward_equal_to_the_careful_ranking_is_perfect_and_a_random_one_is_chance() -> None:
    quality, tasks = careful_study(n_tasks=200)
    df = frame({"a": tasks, "b": tasks})
    perfect = reward_accuracy(df, pd.Series(quality), "truth", n_boot=200)
    assert perfect["accuracy"] == 1.0 and perfect["tau_b"] == pytest.approx(1.0)
    assert perfect["pairs"] == 2 * 200 * 6 and perfect["tasks"] == 200
    assert perfect["acc_low"] == perfect["acc_high"] == 1.0
    rng = np.random.default_rng(1)
    noise = pd.Series({c: float(rng.normal()) for c in quality})
    chance = reward_accuracy(df, noise, "random", n_boot=200)
    assert abs(chance["accuracy"] - 0.5) < 0.05 and abs(chance["tau_b"]) < 0.1
    assert chance["acc_low"] < 0.5 < chance["acc_high"]
    flipped = reward_accuracy(df, -pd.Series(quality), "upside down", n_boot=0)
    assert flipped["accuracy"] == 0.0 and flipped["tau_b"] == pytest.approx(-1.0)


def test_reward_ties_count_half_and_human_ties_are_left_apart() -> None:
    # One task, candidates 1 > 2 = 3 by the person: pairs (1,2), (1,3) strict, (2,3) a tie.
    df = frame({"p": [[[1], [2, 3]]]})
    row = reward_accuracy(df, pd.Series({1: 1.0, 2: 1.0, 3: 0.0}), n_boot=0)
    # (1,2): reward tie ½; (1,3): right 1 → 1.5 / 2
    assert row["pairs"] == 2 and row["accuracy"] == pytest.approx(0.75)
    assert row["human_tie_pairs"] == 1 and row["predictor_ties"] == pytest.approx(0.5)


def test_unscored_candidates_and_control_tasks_are_left_out() -> None:
    df = frame({"p": [[[1], [2], [3]], [[4], [5], [6]]]}, controls=(1,))
    row = reward_accuracy(df, pd.Series({1: 3.0, 2: None, 3: 1.0, 4: 0.0, 5: 1.0, 6: 2.0}), n_boot=0)
    assert row["pairs"] == 1 and row["accuracy"] == 1.0 and row["tasks"] == 1


def test_ceiling_is_each_annotator_against_the_others() -> None:
    _, tasks = careful_study(n_tasks=30)
    reverse = [t[::-1] for t in tasks]
    df = frame({"a": tasks, "b": tasks, "r": reverse})
    row = human_ceiling(df, n_boot=100)
    # a and b: one other agrees, one disagrees (½ each); r: both others disagree (0).
    assert row["accuracy"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    # τ over the three pairs of rankings in each task: +1, -1, -1.
    assert row["tau_b"] == pytest.approx(-1 / 3)
    assert row["predictor"] == CEILING and row["tasks"] == 30
    per = annotator_ceiling(df).set_index("annotator")
    assert per["accuracy"].to_dict() == {"a": 0.5, "b": 0.5, "r": 0.0}
    assert (per["pairs"] == 30 * 6).all()


def test_ceiling_counts_another_annotators_tie_as_half_and_needs_two_annotators() -> None:
    df = frame({"a": [[[1], [2]]], "b": [[[1, 2]]]})
    row = human_ceiling(df, n_boot=0)
    assert row["pairs"] == 1 and row["accuracy"] == 0.5 and row["human_tie_pairs"] == 1
    alone = human_ceiling(frame({"a": [[[1], [2]]]}), n_boot=0)
    assert alone["pairs"] == 0 and np.isnan(alone["accuracy"])


def test_reward_agreement_table_puts_the_ceiling_first_and_sorts_rewards() -> None:
    quality, tasks = careful_study(n_tasks=30)
    df = frame({"a": tasks, "b": tasks})
    rng = np.random.default_rng(2)
    scores = pd.DataFrame(
        [(c, "good", q) for c, q in quality.items()] + [(c, "noise", float(rng.normal())) for c in quality],
        columns=["candidate_id", "reward", "score"],
    )
    table = reward_agreement(df, scores, n_boot=50, seed=3)
    assert list(table.columns) == COLUMNS
    assert list(table["predictor"]) == [CEILING, "good", "noise"]
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[1, "accuracy"] == 1.0
    again = reward_agreement(df, scores, n_boot=50, seed=3)
    pd.testing.assert_frame_equal(table, again)  # seeded
    with pytest.raises(ValueError, match="reward scores need columns"):
        reward_agreement(df, scores.drop(columns="reward"))


def test_agreement_by_basis_shows_a_reward_blind_to_the_fine_component() -> None:
    """Candidates keyed (correct, iou): people rank by correctness, then IoU. A reward that sees
    only correctness orders every correctness pair and ties every IoU pair (½); one that sees
    both orders all; the ceiling on each basis is the two annotators' agreement there."""
    keys = {1: (1.0, 0.9), 2: (1.0, 0.5), 3: (0.0, 0.7), 4: (0.0, 0.2)}
    careful = [[[1], [2], [3], [4]]] * 3  # per task, best first
    rankings = frame({"ann": careful, "bob": careful})
    scores = pd.DataFrame(
        [(c, "correct_only", keys[c][0]) for c in keys]
        + [(c, "both", keys[c][0] * 10 + keys[c][1]) for c in keys],
        columns=["candidate_id", "reward", "score"],
    )
    out = agreement_by_basis(rankings, scores, keys, ("correctness", "iou")).set_index(["predictor", "basis"])
    # Per ranking: 4 correctness pairs (1|2 vs 3|4) and 2 IoU pairs (1-2, 3-4); 6 rankings.
    assert out.loc[("correct_only", "correctness"), "pairs"] == 24
    assert out.loc[("correct_only", "correctness"), "accuracy"] == 1.0
    assert out.loc[("correct_only", "iou"), "pairs"] == 12
    assert out.loc[("correct_only", "iou"), "accuracy"] == 0.5
    assert out.loc[("both", "iou"), "accuracy"] == 1.0
    assert out.loc[("both", "iou"), "ceiling"] == 1.0 and out.loc[("both", "iou"), "ceiling_pairs"] == 12
    # A candidate without a key makes its pairs "unknown"; mismatched key lengths are refused.
    partial = agreement_by_basis(
        rankings, scores, {k: v for k, v in keys.items() if k != 4}, ("correctness", "iou")
    )
    assert set(partial["basis"]) == {"correctness", "iou", "unknown"}
    with pytest.raises(ValueError, match="components"):
        agreement_by_basis(rankings, scores, keys, ("correctness",))
