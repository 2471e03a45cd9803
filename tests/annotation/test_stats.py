"""Statistics: pairwise outcomes, Bradley–Terry with bootstrap CIs, win rates, Krippendorff's α,
agreement, controls and the recipe comparison (pure functions on simulated tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation import stats

NAN = np.nan


def _frame(rankings: list[tuple[int, str, int, dict[int, int]]], items: dict[int, str]) -> pd.DataFrame:
    """(ranking_id, annotator, task_id, {candidate: rank}) -> the long table the stats expect."""
    rows = [
        {
            "ranking_id": rid,
            "annotator": ann,
            "task_id": tid,
            "candidate_id": c,
            "rank": r,
            "system": items[c],
            "recipe": items[c].split(":")[1],
            "is_control": False,
            "control_best_id": pd.NA,
        }
        for rid, ann, tid, ranks in rankings
        for c, r in ranks.items()
    ]
    return pd.DataFrame(rows)


def _simulate_plackett_luce(theta: np.ndarray, n: int, seed: int, group: int = 4) -> pd.DataFrame:
    """Rankings of groups holding one candidate per item, drawn from Plackett–Luce with
    log-strengths ``theta`` (its pairwise marginals are exactly Bradley–Terry)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n):
        left, w, order = list(range(group)), np.exp(theta), []
        while left:
            p = w[left] / w[left].sum()
            order.append(left.pop(rng.choice(len(left), p=p)))
        rows += [
            {
                "ranking_id": r,
                "task_id": r,
                "annotator": f"a{r % 7}",
                "candidate_id": 10 * r + it,
                "rank": k,
                "system": f"m{it}:direct",
                "recipe": "direct",
                "is_control": False,
                "control_best_id": pd.NA,
            }
            for k, it in enumerate(order, 1)
        ]
    return pd.DataFrame(rows)


def test_krippendorff_alpha_matches_krippendorffs_worked_example() -> None:
    # Reliability data of Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011),
    # section C: 4 observers, 12 units, values 1-5, missing data. Published results:
    # α_nominal = 0.743, α_ordinal = 0.815, α_interval = 0.849, α_ratio = 0.797.
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    for level, value in published.items():
        assert stats.krippendorff_alpha(data, level) == pytest.approx(value, abs=5e-4)
    # perfect agreement is 1; no variation at all is undefined
    assert stats.krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "ordinal") == pytest.approx(1.0)
    assert np.isnan(stats.krippendorff_alpha([[2, 2], [2, 2]]))
    with pytest.raises(ValueError, match="level"):
        stats.krippendorff_alpha(data, "cardinal")


def test_pairwise_outcomes_score_ties_as_half() -> None:
    items = {1: "A:cot", 2: "B:direct", 3: "C:direct"}
    df = _frame([(1, "x", 1, {1: 1, 2: 2, 3: 2})], items)
    pairs = stats.pairwise_outcomes(df)
    got = {(a, b): s for a, b, s in pairs[["candidate_a", "candidate_b", "score_a"]].itertuples(index=False)}
    assert got == {(1, 2): 1.0, (1, 3): 1.0, (2, 3): 0.5}
    # skipped rankings (no rank) and control tasks produce no pairs
    skipped = pd.concat([df, df.assign(ranking_id=2, rank=pd.NA)])
    ctl = df.assign(ranking_id=3, is_control=True)
    assert len(stats.pairwise_outcomes(pd.concat([skipped, ctl]))) == 3


def test_bradley_terry_recovers_simulated_strengths_within_cis() -> None:
    theta = np.array([-1.0, -0.3, 0.4, 0.9])
    theta -= theta.mean()
    # One fixed simulated study; each 95% interval misses with ~5% chance on any one draw, so the
    # calibration itself is checked over many draws in the coverage test below.
    df = _simulate_plackett_luce(theta, n=300, seed=1)
    bt = stats.bradley_terry(stats.pairwise_outcomes(df), n_boot=200, seed=0).set_index("item")
    for i, true in enumerate(theta):
        row = bt.loc[f"m{i}:direct"]
        assert row.ci_low <= true <= row.ci_high
        assert row.ci_low < row.theta < row.ci_high
        assert row.ci_high - row.ci_low < 0.5
    assert list(bt.index) == ["m3:direct", "m2:direct", "m1:direct", "m0:direct"]
    assert bt["theta"].sum() == pytest.approx(0.0, abs=1e-6)
    assert (bt["comparisons"] == 900).all()


def test_bradley_terry_interval_coverage_over_many_simulations() -> None:
    theta = np.array([-0.6, 0.0, 0.6])
    hits = total = 0
    for seed in range(12):
        df = _simulate_plackett_luce(theta, n=80, seed=100 + seed, group=3)
        bt = stats.bradley_terry(stats.pairwise_outcomes(df), n_boot=100, seed=seed).set_index("item")
        for i, true in enumerate(theta):
            hits += bt.loc[f"m{i}:direct", "ci_low"] <= true <= bt.loc[f"m{i}:direct", "ci_high"]
            total += 1
    assert hits / total >= 0.8  # nominal 95%; the bootstrap must not be wildly overconfident


def test_bradley_terry_is_seeded_and_handles_ties_and_separation() -> None:
    items = {1: "A:x", 2: "B:x", 3: "C:x"}
    df = _frame([(r, "u", r, {1: 1, 2: 1, 3: 2}) for r in range(20)], items)
    pairs = stats.pairwise_outcomes(df)
    a = stats.bradley_terry(pairs, n_boot=50, seed=3)
    b = stats.bradley_terry(pairs, n_boot=50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    t = a.set_index("item")["theta"]
    assert t["A:x"] == pytest.approx(t["B:x"], abs=1e-6)  # always tied -> equal strength
    assert np.isfinite(t["C:x"]) and t["C:x"] < t["A:x"] - 2  # always last, finite thanks to the prior
    with pytest.raises(ValueError, match="at least two items"):
        stats.bradley_terry(pairs[pairs["item_a"] == "Z"], n_boot=0)


def test_win_rate_matrix() -> None:
    items = {1: "A:x", 2: "B:x", 3: "C:x"}
    df = _frame([(1, "u", 1, {1: 1, 2: 2, 3: 3}), (2, "u", 2, {1: 2, 2: 1, 3: 2})], items)
    m = stats.win_rate_matrix(stats.pairwise_outcomes(df))
    assert m.loc["A:x", "B:x"] == 0.5 and m.loc["B:x", "A:x"] == 0.5
    assert m.loc["A:x", "C:x"] == 0.75 and m.loc["C:x", "A:x"] == 0.25
    assert m.loc["B:x", "C:x"] == 1.0 and np.isnan(m.loc["A:x", "A:x"])


def test_ranking_alpha_and_annotator_agreement() -> None:
    items = {c: f"m{c % 4}:direct" for c in range(40)}
    rows = []
    rid = 0
    for task in range(10):
        cands = list(range(4 * task, 4 * task + 4))
        truth = {c: k for k, c in enumerate(cands, 1)}
        for ann in ("good1", "good2", "good3"):
            rid += 1
            rows.append((rid, ann, task, truth))
        rid += 1
        rows.append((rid, "contrarian", task, {c: 5 - k for c, k in truth.items()}))
    df = _frame(rows, items)
    agree = stats.annotator_agreement(df).set_index("annotator")
    assert (agree["tasks"] == 10).all()
    assert agree.loc["contrarian", "mean_tau"] == pytest.approx(-1.0)
    assert (agree.loc[["good1", "good2", "good3"], "mean_tau"] > 0.7).all()
    without = df[df["annotator"] != "contrarian"]
    assert stats.ranking_alpha(without) == pytest.approx(1.0)
    assert stats.ranking_alpha(df) < 0.3


def test_controls_pass_rate_and_exclusion() -> None:
    items = {1: "A:x", 2: "B:x", 3: "C:x"}
    rows = []
    for r, (ann, ranks) in enumerate(
        [
            ("careful", {1: 1, 2: 2, 3: 3}),
            ("careful", {1: 1, 2: 3, 3: 2}),
            ("sloppy", {1: 2, 2: 1, 3: 3}),
            ("sloppy", {1: 1, 2: 1, 3: 2}),  # a tie at the top fails
        ]
    ):
        rows.append((r, ann, 100 + r, ranks))
    df = _frame(rows, items).assign(is_control=True, control_best_id=1)
    regular = _frame(
        [
            (10, "careful", 1, {1: 1, 2: 2, 3: 3}),
            (11, "sloppy", 1, {1: 3, 2: 2, 3: 1}),
            (12, "newbie", 1, {1: 1, 2: 2, 3: 3}),
        ],
        items,
    )
    all_rows = pd.concat([df, regular], ignore_index=True)
    res = stats.control_results(all_rows, min_pass_rate=0.75).set_index("annotator")
    assert res.loc["careful", ["controls", "passed"]].tolist() == [2, 2]
    assert res.loc["sloppy", ["controls", "passed"]].tolist() == [2, 0]
    assert res.loc["sloppy", "excluded"] and not res.loc["careful", "excluded"]
    assert res.loc["newbie", "controls"] == 0 and not res.loc["newbie", "excluded"]
    kept = stats.exclude_annotators(all_rows, res.reset_index())
    assert set(kept["annotator"]) == {"careful", "newbie"}
    summary = stats.study_summary(all_rows, n_boot=20)
    assert summary["excluded"] == ["sloppy"]
    assert set(summary["pairs"]["annotator"]) == {"careful", "newbie"}


def test_recipe_comparison_detects_the_better_recipe() -> None:
    # group of 4: two CoT and two direct candidates; CoT wins 80% of cross-recipe pairs in truth
    theta = np.log(np.array([4.0, 4.0, 1.0, 1.0]))
    df = _simulate_plackett_luce(theta, n=150, seed=5)
    df["recipe"] = np.where(df["system"].isin(["m0:direct", "m1:direct"]), "cot", "direct")
    out = stats.recipe_comparison(df, n_boot=300, seed=0)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row.a, row.b) == ("cot", "direct")
    assert row.ci_low <= 0.8 <= row.ci_high and row.win_rate_a > 0.7
    assert row.p_value < 1e-6 and row.rankings == 150 and row.pairs == 600
    pd.testing.assert_frame_equal(out, stats.recipe_comparison(df, n_boot=300, seed=0))
