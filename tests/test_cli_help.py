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
    ["training.reward_model.pretrain"], ["training.reward_model.probe"],
    ["training.reward_model.candidate_probe"], ["training.shapes.pretrain"],
    ["training.grpo_card"],
    ["training.shapes.card"], ["training.recipe_runs"], ["training.ptx_dump"],
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


def test_mapping_settings_are_read_as_yaml_on_the_command_line(tmp_path, capsys) -> None:
    from training.grpo import GRPOConfig

    cfg = parse_config(GRPOConfig, ["--rewards", "learned", "--reward_options", "{learned: {model: runs/rm}}",
                                    "--reward_weights", '{"learned": 2}'])  # fmt: skip
    assert cfg.reward_options == {"learned": {"model": "runs/rm"}} and cfg.reward_weights == {"learned": 2}
    # a flag wins over the recipe's mapping, so a recipe's reward_options can be emptied
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rewards: [shapes]\nreward_options: {shapes: {weights: {prompt: 1.0}}}\n")
    cfg = parse_config(
        GRPOConfig, ["--config", str(recipe), "--rewards", "learned", "--reward_options", "{}"]
    )
    assert cfg.reward_options == {} and cfg.rewards == ["learned"]
    for bad in ("[1, 2]", "{unclosed: "):
        with pytest.raises(SystemExit):
            parse_config(GRPOConfig, ["--reward_options", bad])
        assert "--reward_options" in capsys.readouterr().err
