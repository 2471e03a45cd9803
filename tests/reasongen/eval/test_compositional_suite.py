"""The compositional suite of the shapes benchmark: its own prompts and seeds, the same rules
and report, and the GenEval suite left as it was."""

from __future__ import annotations

import json

import pytest

from reasongen.eval import benchmark_prompts, blank_generator, evaluate_shapes, format_table, summarize
from reasongen.eval.cli import main
from reasongen.shapes.compose import suite_categories
from reasongen.shapes.parse import parse_prompt
from reasongen.types import CATEGORIES


def test_compositional_prompts_are_balanced_parseable_and_not_genevals() -> None:
    cats = suite_categories(125)
    prompts = benchmark_prompts(3 * len(cats), seed=0, cell=125, suite="compositional")
    assert [p.category for p in prompts] == list(cats) * 3
    assert [p.index for p in prompts] == list(range(len(prompts)))
    assert all(parse_prompt(p.prompt) == p.metadata for p in prompts)
    geneval = benchmark_prompts(600, seed=0, cell=125)
    assert not {p.prompt for p in prompts} & {p.prompt for p in geneval}
    # The default suite is GenEval's, unchanged by the new argument.
    assert [p.prompt for p in benchmark_prompts(12, 0, 125)] == [
        p.prompt for p in benchmark_prompts(12, 0, 125, suite="geneval")
    ]
    with pytest.raises(ValueError, match="unknown suite"):
        benchmark_prompts(6, suite="dreams")


def test_summary_keeps_the_suites_category_order_and_table_width() -> None:
    cats = suite_categories(None)
    prompts = benchmark_prompts(2 * len(cats), seed=1, suite="compositional")
    s = summarize(evaluate_shapes(blank_generator(), prompts))
    assert list(s["categories"]) == list(cats) and s["overall"] == 0.0
    lines = format_table(s).splitlines()
    assert lines[0].startswith("category") and {len(x) for x in lines[: 2 + len(cats)]} == {len(lines[0])}
    assert any(line.startswith("count_color_size ") for line in lines)


@pytest.mark.parametrize("cell", ["125", "0"])
def test_cli_runs_the_compositional_suite(tmp_path, capsys, cell) -> None:
    out = tmp_path / "comp"
    argv = ["shapes", "--suite", "compositional", "--oracle", "--n", "16", "--cell", cell,
            "--no-images", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    cats = suite_categories(int(cell) or None)
    assert report["suite"] == "compositional" and list(report["categories"]) == list(cats)
    assert report["overall"] == 1.0 and report["n_prompts"] == 16
    assert not set(report["categories"]) & set(CATEGORIES)
    printed = capsys.readouterr().out
    assert "(compositional)" in printed and "relation_attr" in printed
    assert main(["shapes", "--suite", "nope", "--oracle", "--out", str(tmp_path / "x")]) == 2
    assert "unknown --suite" in capsys.readouterr().err
