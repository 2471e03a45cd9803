"""The one config path: dataclass defaults < ``--config`` YAML < environment < flags."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reasongen.config import CommaList, load_yaml, parse_config


@dataclass
class Demo:
    """A config with one field of each kind the entry points use."""

    name: str = field(default="a", metadata={"help": "a string"})
    max_steps: int = field(default=3, metadata={"help": "an int with an underscore"})
    rate: float | None = field(default=None, metadata={"help": "an optional float"})
    tags: list[str] = field(default_factory=lambda: ["x"], metadata={"help": "a list"})
    names: CommaList = field(default=CommaList(["p"]), metadata={"help": "comma-separated names"})
    fast: bool = field(default=False, metadata={"help": "a switch that is off"})
    progress: bool = field(default=True, metadata={"help": "a switch that is on"})

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")


def test_defaults_and_flags_in_both_spellings() -> None:
    assert parse_config(Demo, []) == Demo()
    cfg = parse_config(Demo, ["--max-steps", "5", "--rate", "0.5", "--tags", "y", "z", "--fast",
                              "--no-progress", "--names", "q, r"])  # fmt: skip
    assert (cfg.max_steps, cfg.rate, cfg.tags, cfg.fast, cfg.progress) == (5, 0.5, ["y", "z"], True, False)
    assert cfg.names == ("q", "r")
    assert parse_config(Demo, ["--max_steps", "6", "--progress", "false"]).max_steps == 6
    assert parse_config(Demo, ["--progress", "false"]).progress is False


def test_yaml_fills_in_and_flags_win(tmp_path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("name: from-yaml\nmax_steps: 9\ntags: [u, v]\nfast: true\n")
    cfg = parse_config(Demo, ["--config", str(y), "--max-steps", "4"])
    assert (cfg.name, cfg.max_steps, cfg.tags, cfg.fast) == ("from-yaml", 4, ["u", "v"], True)
    assert load_yaml(y)["max_steps"] == 9


def test_yaml_errors_name_the_file_and_the_key(tmp_path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("max_step: 9\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) in .*c\.yaml: max_step; known: fast,"):
        parse_config(Demo, ["--config", str(y)])
    y.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        parse_config(Demo, ["--config", str(y)])
    y.write_text("a: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml(y)
    with pytest.raises(ValueError, match="does not exist"):
        parse_config(Demo, ["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(ValueError, match="unrecognised arguments: --bogus 1"):
        parse_config(Demo, ["--bogus", "1"])
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        parse_config(Demo, ["--max-steps", "0"])


def test_environment_sits_between_yaml_and_flags(tmp_path, monkeypatch) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("name: from-yaml\nmax_steps: 9\n")
    monkeypatch.setenv("DEMO_MAX_STEPS", "7")
    monkeypatch.setenv("DEMO_NAMES", "s,t")
    monkeypatch.setenv("DEMO_PROGRESS", "false")
    monkeypatch.setenv("OLD_RATE", "0.25")
    kw = dict(env_prefix="DEMO_", env_aliases={"rate": ("OLD_RATE",)})
    cfg = parse_config(Demo, ["--config", str(y)], **kw)
    assert (cfg.name, cfg.max_steps, cfg.names, cfg.progress, cfg.rate) == (
        "from-yaml",
        7,
        ("s", "t"),
        False,
        0.25,
    )
    cfg = parse_config(Demo, ["--config", str(y), "--max_steps", "2", "--progress"], **kw)
    assert (cfg.max_steps, cfg.progress) == (2, True)
    monkeypatch.setenv("DEMO_RATE", "0.75")  # the field's own variable wins over its alias
    assert parse_config(Demo, [], **kw).rate == 0.75
    assert parse_config(Demo, []).max_steps == 3  # no prefix: the environment is not read


def test_help_lists_every_field_and_the_config_flag(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_config(Demo, ["--help"], prog="demo", env_prefix="DEMO_")
    text = capsys.readouterr().out
    for flag in (
        "--config",
        "--name",
        "--max-steps",
        "--rate",
        "--tags",
        "--names",
        "--fast",
        "--no-progress",
    ):
        assert flag in text
    assert "DEMO_" in text
