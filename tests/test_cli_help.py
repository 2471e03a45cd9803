"""Every command-line entry point prints its --help (a help text argparse cannot format crashes
``--help``: ``training.reward_model`` did, on "95%")."""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass, field

import pytest

from reasongen.config import parse_config

ENTRY_POINTS = [
    ["annotation"], ["annotation", "simulate"], ["annotation", "score"], ["annotation", "stats"],
    ["annotation", "export"], ["annotation", "plan"], ["annotation", "study"],
    ["reasongen.eval", "shapes"], ["reasongen.rewards"],
    ["training.grpo"], ["training.sft"], ["training.human"], ["training.reward_model"],
    ["training.reward_model.pretrain"], ["training.shapes.pretrain"], ["training.grpo_card"],
    ["training.shapes.card"], ["training.recipe_runs"],
]  # fmt: skip


@pytest.mark.parametrize("argv", ENTRY_POINTS, ids=" ".join)
def test_help_prints_and_exits_0(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m " + argv[0], *argv[1:], "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out


@dataclass
class _Pct:
    share: float = field(default=0.5, metadata={"help": "share of the 95% interval, 100% at most"})


def test_a_percent_sign_in_a_settings_help_is_printed_as_written(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_config(_Pct, ["--help"])
    assert "95% interval, 100% at most" in capsys.readouterr().out
    assert parse_config(_Pct, ["--share", "0.25"]).share == 0.25
