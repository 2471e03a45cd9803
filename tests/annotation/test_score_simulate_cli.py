"""``python -m annotation score``, ``simulate`` and the agreement table of ``stats``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from annotation.agreement import reward_accuracy, reward_agreement
from annotation.cli import main as cli_main
from annotation.store import Store
from annotation.tables import rankings_frame, reward_scores_frame


@pytest.fixture
def db(tmp_path: Path, make_shapes_study):
    base = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path / "data", password_cost=16)
    sid, kinds = make_shapes_study(store, n_prompts=4, rankings_per_task=3)
    yield base, store, sid, kinds
    store.close()


def test_score_stores_each_rewards_scores_once(db, capsys) -> None:
    base, store, sid, kinds = db
    assert cli_main([*base, "score", "--study", "shapes", "--rewards", "shapes", "--batch-size", "5"]) == 0
    assert "shapes: scored 16 candidate(s)" in capsys.readouterr().out
    scores = reward_scores_frame(store, sid).set_index("candidate_id")["score"]
    assert len(scores) == 16
    by_kind = {k: [scores[c] for c, kk in kinds.items() if kk == k] for k in set(kinds.values())}
    assert all(x > 0.95 for x in by_kind["right"]) and all(x == 0.0 for x in by_kind["blank"])
    assert min(by_kind["right"]) > max(by_kind["loose_plan"])
    assert min(by_kind["loose_plan"]) > max(by_kind["wrong_image"])
    assert cli_main([*base, "score", "--study", "shapes", "--rewards", "shapes"]) == 0
    assert "scored 0 candidate(s) (all had scores" in capsys.readouterr().out
    assert cli_main([*base, "score", "--study", "shapes", "--rewards", "shapes", "--rescore"]) == 0
    assert "shapes: scored 16" in capsys.readouterr().out
    assert len(reward_scores_frame(store, sid)) == 16  # replaced, not added


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rewards", "shapes,nope"], "unknown reward 'nope'"),
        (["--rewards", "shapes,shapes"], "named twice"),
        (["--rewards", "shapes", "--set", "hps.model=x"], "options given for rewards not requested: hps"),
        (["--rewards", "shapes", "--set", "shapes.graded=maybe"], "ShapesConfig.graded expects bool"),
    ],
)
def test_score_refuses_bad_rewards_in_one_line_and_stores_nothing(db, capsys, args, message) -> None:
    base, store, sid, _ = db
    assert cli_main([*base, "score", "--study", "shapes", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert reward_scores_frame(store, sid).empty


def test_simulate_then_stats_shows_agreement_only_with_simulated_included(db, capsys) -> None:
    base, store, sid, kinds = db
    sim = [
        "simulate",
        "--study",
        "shapes",
        "--panel",
        "careful:2,spammer:1",
        "--seed",
        "3",
        "--add-controls",
        "2",
    ]
    assert cli_main([*base, *sim]) == 0
    out, err = capsys.readouterr()
    assert "added 2 verified control task(s)" in out
    assert "control rate is 0, so no control task is served" in err  # the fixture's study
    assert "sim-careful-1\tcareful\tsimulated\t4 ranking(s)" in out
    assert "12 ranking(s) submitted by 3 simulated annotators" in out
    assert cli_main([*base, "score", "--study", "shapes", "--rewards", "shapes"]) == 0
    rng_scores = [float(x) for x in (0.3, 0.9, 0.1, 0.5) * 4]
    store.add_reward_scores(sorted(kinds), "coin", SimpleNamespace(scores=rng_scores, details=[{}] * 16))
    capsys.readouterr()
    assert cli_main([*base, "stats", "--study", "shapes", "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "left out (--include-simulated counts them)" in out and "no rankings yet" in out
    assert "reward agreement" not in out
    assert cli_main([*base, "stats", "--study", "shapes", "--n-boot", "20", "--include-simulated"]) == 0
    out = capsys.readouterr().out
    assert "simulated annotators, included: sim-careful-1, sim-careful-2, sim-spammer-1" in out
    per = out.split("== each annotator against the others")[1].split("==")[0]
    assert "sim-careful-1" in per and "sim-spammer-1" in per
    block = out.split("== reward agreement")[1]
    assert "rankings of simulated" in block.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in block.splitlines()[2:] if line.strip()}
    assert set(rows) == {"human–human", "shapes", "coin"}
    # The shapes reward orders every pair as the careful annotators do; the spammer does not.
    scores = reward_scores_frame(store, sid)
    table = reward_agreement(rankings_frame(store, sid), scores, n_boot=0)
    careful_only = rankings_frame(store, sid).query("annotator != 'sim-spammer-1'")
    strict = reward_accuracy(
        careful_only, scores.query("reward == 'shapes'").set_index("candidate_id")["score"]
    )
    assert strict["accuracy"] == 1.0 and table.loc[table["predictor"] == "shapes", "accuracy"].item() < 1.0

    # Split by what separates each pair (the shapes detector's correct / plan / IoU).
    assert (
        cli_main(
            [*base, "stats", "--study", "shapes", "--n-boot", "0", "--include-simulated", "--by-shapes-basis"]
        )
        == 0
    )
    split = capsys.readouterr().out.split("== reward agreement by what separates the pair")[1]
    lines = [line.split() for line in split.splitlines()[2:] if line.strip()]
    assert {row[0] for row in lines} == {"shapes", "coin"}
    assert {row[1] for row in lines} <= {"correctness", "plan", "iou", "equal", "unknown"}
    assert sum(int(row[2]) for row in lines if row[0] == "shapes") > 0


def test_simulate_refuses_bad_input_in_one_line(db, capsys) -> None:
    base, store, sid, _ = db
    for args, message in [
        (["--study", "nope", "--panel", "careful:1"], "nope"),
        (["--study", "shapes", "--panel", "careful:one"], "whole number >= 1"),
        (["--study", "shapes", "--panel", "lazy:2"], "unknown annotator profile 'lazy'"),
        (["--study", "shapes", "--panel", "noisy:2", "--flip", "2", "--add-controls", "2"], "--flip must be"),
        (["--study", "shapes", "--panel", "noisy:2", "--max-rankings", "0"], "max_rankings"),
    ]:
        assert cli_main([*base, "simulate", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert rankings_frame(store, sid).empty and store.list_users() == []
    from annotation.models import Task

    with store.session() as s:
        assert s.query(Task).filter(Task.is_control).count() == 0  # no control was added either
