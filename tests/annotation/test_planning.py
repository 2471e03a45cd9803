"""The study-planning helper against the textbook answer for one pair per ranking."""

from __future__ import annotations

import pytest

from annotation.cli import main as cli_main
from annotation.errors import AnnotationError
from annotation.planning import PlanConfig, interval_width, plan_rankings, simulated_rankings
from annotation.stats import recipe_comparison


def test_simulated_rankings_have_the_asked_win_rate() -> None:
    import numpy as np

    df = simulated_rankings(4000, 0.7, 4, np.random.default_rng(0))
    assert df["ranking_id"].nunique() == 4000 and sorted(df["rank"].unique()) == [1, 2, 3, 4]
    res = recipe_comparison(df, n_boot=0).iloc[0]
    assert (res["a"], res["b"]) == ("A", "B") and res["win_rate_a"] == pytest.approx(0.7, abs=0.015)


def test_one_pair_per_ranking_needs_the_binomial_number_of_rankings() -> None:
    # Width of a 95% interval on a proportion p from n pairs: 2 * 1.96 * sqrt(p (1 - p) / n).
    p, w = 0.6, 0.12
    expected = (2 * 1.96) ** 2 * p * (1 - p) / w**2  # ≈ 256
    res = plan_rankings(PlanConfig(effect=p, width=w, group_size=2, reps=8, n_boot=200))
    assert res.rankings == pytest.approx(expected, rel=0.2)
    assert res.width <= w and res.coverage >= 0.75
    assert res.tried["median_ci_width"].iloc[0] > res.tried["median_ci_width"].iloc[-1]
    # More candidates per task give more pairs per ranking: fewer rankings for the same width.
    four = plan_rankings(PlanConfig(effect=p, width=w, group_size=4, reps=8, n_boot=200))
    assert four.rankings < 0.75 * res.rankings
    assert interval_width(64, PlanConfig(group_size=2, reps=4, n_boot=100))[0] > w


def test_plan_refuses_bad_input_and_the_cli_labels_its_output_simulated(capsys) -> None:
    for kwargs, msg in [
        ({"effect": 1.0}, "--effect"),
        ({"width": 0.0}, "--width"),
        ({"group_size": 1}, "group-size"),
    ]:
        with pytest.raises(AnnotationError, match=msg):
            PlanConfig(**kwargs)
    with pytest.raises(AnnotationError, match="even 16 rankings"):
        plan_rankings(PlanConfig(width=0.01, max_rankings=16, reps=2, n_boot=50))
    assert cli_main(["plan", "--effect", "0.7", "--width", "0.3", "--reps", "4", "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMULATED study plan") and "rankings of 4 candidates give a 95% interval" in out
    assert cli_main(["plan", "--effect", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: --effect is a win rate")
