"""benchmarks/grpo_profile.py: its phase table points at functions that exist (a rename would
otherwise report 0 s for a phase), and its cumulative-time lookup adds up what cProfile saw."""

from __future__ import annotations

import ast
import cProfile
import pstats
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_phase_names_a_function_defined_in_its_file(load_benchmark) -> None:
    import accelerate

    prof = load_benchmark("grpo_profile")
    for label, suffix, name, _top in prof.PHASES:
        root = Path(accelerate.__file__).parents[1] if suffix.startswith("accelerate/") else ROOT
        tree = ast.parse((root / suffix).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{label!r}: {suffix} defines no {name}()"


def _work(n: int) -> int:
    return sum(i * i for i in range(n))


def test_cumulative_sums_the_named_function_in_the_named_file(load_benchmark) -> None:
    prof = load_benchmark("grpo_profile")
    p = cProfile.Profile()
    p.enable()
    for _ in range(3):
        _work(20_000)
    p.disable()
    stats = pstats.Stats(p)
    here = "tests/benchmarks/test_grpo_profile.py"
    seen = [ct for (f, _l, fn), (_cc, nc, _tt, ct, _c) in stats.stats.items() if fn == "_work"]
    assert prof.cumulative(stats, here, "_work") == sum(seen) > 0
    assert prof.cumulative(stats, "elsewhere.py", "_work") == 0.0
