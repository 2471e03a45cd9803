"""training.recipe_runs: the distribution over runs, the choice by validation, caching, run info."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from training import recipe_runs as rr
from training.run_logs import training_minutes


def _fake_run(
    root: Path, name: str, seed: int, threads: int, procs: int, walls: list[float] | None = None
) -> Path:
    run = root / name
    state = run / "checkpoint-8" / "trainer_state"
    state.mkdir(parents=True)
    torch.save(
        {"step": 8, "config": {"seed": seed, "torch_threads": threads}, "controllers": {}}, state / "extra.pt"
    )
    for p in range(procs):
        (state / f"random_states_{p}.pkl").write_bytes(b"x")
    (run / "final").mkdir()
    (run / "final" / "config.json").write_text("{}")
    if walls:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(run / "tb"))
        for step, wall in enumerate(walls, start=1):
            w.add_scalar("grpo/reward/mean", 0.5, step, walltime=wall)
        w.close()
    return run


# benchmark / validation overall of each model, per suite (geneval has a counting category)
SCORES = {
    "baseline": {"benchmark": 0.80, "validation": 0.81},
    "a": {"benchmark": 0.95, "validation": 0.90},  # best on the benchmark, not on validation
    "b": {"benchmark": 0.90, "validation": 0.93},
    "c": {"benchmark": 0.86, "validation": 0.85},
    "ctl": {"benchmark": 0.88, "validation": 0.99},  # a control: best on validation, never chosen
}


class FakeEval:
    """Stands in for reasongen.eval: writes report.json as the real one does, counts calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, model: str, suite: str, split: str, out_dir: Path) -> dict[str, Any]:
        self.calls.append((model, suite, split))
        key = "baseline" if "base" in model else Path(model).parent.name
        v = SCORES[key][split] - (0.1 if suite == "compositional" else 0.0)
        report = {"suite": suite, "model": model, "overall": v, "categories": {"counting": v - 0.05},
                  "n_prompts": rr.N_PROMPTS[suite][split], **rr.SPLITS[split]}  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report))
        return report


def test_distribution_values_and_refuses_non_finite() -> None:
    d = rr.distribution([0.1, 0.2, 0.3])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.2) and d["std"] == pytest.approx(0.1)
    assert (d["min"], d["max"]) == (0.1, 0.3)
    assert rr.distribution([0.5])["std"] == 0.0
    with pytest.raises(ValueError, match="finite"):
        rr.distribution([0.1, float("nan")])
    with pytest.raises(ValueError):
        rr.distribution([])


def test_training_minutes_leaves_out_a_resume_pause() -> None:
    steps = [0.0, 60.0, 120.0, 180.0]
    assert training_minutes(steps) == pytest.approx(3.0)
    paused = [0.0, 60.0, 120.0, 120.0 + 3600.0, 3780.0]  # killed after step 3, resumed an hour later
    assert training_minutes(paused) == pytest.approx(4.0)
    assert math.isnan(training_minutes([5.0]))


def test_report_distribution_and_choice_by_validation_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [_fake_run(tmp_path, "a", 1, 1, 2, walls=[0, 30, 60, 90]), _fake_run(tmp_path, "b", 2, 2, 2),
            _fake_run(tmp_path, "c", 3, 1, 1)]  # fmt: skip
    base = tmp_path / "base-model"
    ev = FakeEval()
    args = [
        "--baseline",
        str(base),
        "--out",
        str(tmp_path / "out"),
        *[a for r in runs for a in ("--run", str(r))],
    ]
    assert rr.main(args, evaluate=ev) == 0
    assert len(ev.calls) == 4 * 4  # 4 models x 2 suites x 2 splits
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    g = summary["distribution"]["geneval"]
    assert g["gain"]["mean"] == pytest.approx((0.15 + 0.10 + 0.06) / 3)
    assert g["gain"]["min"] == pytest.approx(0.06) and g["gain"]["max"] == pytest.approx(0.15)
    assert g["counting"]["mean"] == pytest.approx((0.90 + 0.85 + 0.81) / 3)
    assert summary["distribution"]["compositional"]["gain"]["mean"] == pytest.approx(g["gain"]["mean"])
    assert summary["chosen"] == "b"  # a is best on the benchmark; the choice reads validation only
    info = {r["info"]["run"]: r["info"] for r in summary["runs"][1:]}
    assert (
        info["a"]["seed"] == 1 and info["a"]["processes"] == 2 and info["a"]["minutes"] == pytest.approx(1.5)
    )
    assert info["b"]["torch_threads"] == 2 and info["c"]["processes"] == 1
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "**b** (chosen)" in md and "worst +0.060" in md and "over 3 runs" in md
    assert md.strip() in capsys.readouterr().out
    # a second call reads the cached reports; a new run is the only thing evaluated
    ev2 = FakeEval()
    assert rr.main(args, evaluate=ev2) == 0 and ev2.calls == []


def test_gains_over_a_control_beside_gains_over_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [_fake_run(tmp_path, "a", 1, 1, 2), _fake_run(tmp_path, "b", 2, 1, 2)]
    ctl = tmp_path / "ctl"  # a training.sft run: final/ but no GRPO trainer state
    (ctl / "final").mkdir(parents=True)
    (ctl / "final" / "config.json").write_text("{}")
    ev = FakeEval()
    args = ["--baseline", str(tmp_path / "base-model"), "--out", str(tmp_path / "out"),
            "--run", str(runs[0]), "--run", str(runs[1]), "--control", str(ctl)]  # fmt: skip
    assert rr.main(args, evaluate=ev) == 0
    assert len(ev.calls) == 4 * 4 and (str(ctl / "final"), "geneval", "benchmark") in ev.calls
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    g = summary["distribution"]["geneval"]
    assert g["control"] == pytest.approx(0.88) and summary["control"] == "ctl"
    assert g["gain_over_control"]["mean"] == pytest.approx((0.07 + 0.02) / 2)
    assert g["gain_over_control"]["min"] == pytest.approx(0.02)
    assert g["gain"]["mean"] == pytest.approx((0.15 + 0.10) / 2)  # unchanged by the control
    assert summary["chosen"] == "b"  # the control's better validation does not make it a candidate
    assert [r["info"]["run"] for r in summary["runs"]] == ["baseline", "a", "b"]
    assert summary["control_reports"]["benchmark"]["geneval"]["overall"] == pytest.approx(0.88)
    md = (tmp_path / "out" / "summary.md").read_text()
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    # the control's row: its own gain over the baseline (+0.080) and no gain over itself
    assert "| 0.880 | +0.080 |  |" in rows["| control (ctl)"]
    assert "| 0.950 | +0.150 | +0.070 |" in rows["| a"]
    assert "over the control (ctl, 0.880): gain mean +0.045" in md
    # a model folder works as the control too (no run around it); a run cannot be its own control
    out2 = tmp_path / "out2"
    args2 = [*args[:3], str(out2), *args[4:-1], str(ctl / "final")]
    assert rr.main(args2, evaluate=FakeEval()) == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["control"] == "final" and s2["distribution"]["geneval"]["control"] == pytest.approx(0.88)
    assert rr.main([*args[:-1], str(runs[0])], evaluate=FakeEval()) == 2
    assert "also given as a --run" in capsys.readouterr().err
    assert rr.main([*args[:-1], str(tmp_path / "nowhere")], evaluate=FakeEval()) == 2
    assert "neither a run folder" in capsys.readouterr().err


def test_cached_report_is_not_reused_for_another_model_or_split(tmp_path: Path) -> None:
    ev = FakeEval()
    out = tmp_path / "r"
    rr.cached_report(str(tmp_path / "a" / "final"), "geneval", "benchmark", out, ev)
    rr.cached_report(str(tmp_path / "a" / "final"), "geneval", "benchmark", out, ev)
    assert len(ev.calls) == 1
    rr.cached_report(str(tmp_path / "b" / "final"), "geneval", "benchmark", out, ev)
    rr.cached_report(str(tmp_path / "b" / "final"), "geneval", "validation", out, ev)
    assert len(ev.calls) == 3


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unfinished = tmp_path / "u"
    (unfinished / "checkpoint-8").mkdir(parents=True)
    base = ["--baseline", "m", "--out", str(tmp_path / "o")]
    assert rr.main([*base, "--run", str(unfinished)], evaluate=FakeEval()) == 2
    assert "no config.json" in capsys.readouterr().err
    assert rr.main([*base, "--run", "x", "--run", "x"], evaluate=FakeEval()) == 2
    assert "twice" in capsys.readouterr().err
    assert rr.main([*base, "--run", "x", "--suites", "geneval,nope"], evaluate=FakeEval()) == 2
    assert "unknown suite" in capsys.readouterr().err
    not_a_run = tmp_path / "plain"
    (not_a_run / "final").mkdir(parents=True)
    (not_a_run / "final" / "config.json").write_text("{}")
    assert rr.main([*base, "--run", str(not_a_run)], evaluate=FakeEval()) == 2
    assert "not a training.grpo run folder" in capsys.readouterr().err


def test_a_killed_and_resumed_run_counts_its_redone_steps_once(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = _fake_run(tmp_path, "r", 1, 1, 2)
    first = SummaryWriter(str(run / "tb" / "first"))
    for step in range(1, 5):  # steps 1-4 a minute apart, then killed; checkpoint at step 2
        first.add_scalar("grpo/reward/mean", 0.5, step, walltime=60.0 * step)
    first.close()
    again = SummaryWriter(str(run / "tb" / "again"))
    for step in range(3, 9):  # resumed an hour later from step 2: steps 3-8 again
        again.add_scalar("grpo/reward/mean", 0.5, step, walltime=3600.0 + 60.0 * step)
    again.close()
    assert rr.run_info(run)["minutes"] == pytest.approx(7.0)  # 7 steps after the first, one minute each
