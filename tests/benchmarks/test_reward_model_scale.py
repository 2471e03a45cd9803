"""benchmarks/reward_model_scale.py: per-step timings of the real pre-training, and its table."""

from __future__ import annotations

import re

import pytest


def test_step_times_and_the_ratio_table(load_benchmark, tmp_path, capsys) -> None:
    bench = load_benchmark("reward_model_scale")
    times = bench.step_times("tiny", 3, "cpu", 1, str(tmp_path / "t"))
    assert len(times) == 3 and all(t > 0 for t in times)
    bench.main(["--archs", "tiny,tiny", "--steps", "3", "--skip", "1", "--threads", "1", "--project", "100"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 2 and rows[0].count("|") == 7
    assert re.search(r"\| 1\.0× \|", rows[0])  # the reference against itself
    with pytest.raises(SystemExit):
        bench.main(["--steps", "2", "--skip", "1"])
