"""Dataclass configs as command lines: one YAML loader and one flag parser for every entry point.

A config is a dataclass whose fields carry their help text in ``metadata={"help": ...}``.
``parse_config(Config, argv)`` builds it with transformers' ``HfArgumentParser``: every field is a
flag, spelled with underscores or dashes (``--max_cot_tokens`` or ``--max-cot-tokens``); a ``bool``
field is ``--flag`` / ``--flag false`` (``--no_flag`` when it defaults to true); a ``list`` field
takes several values. Values come from, lowest first:

1. the dataclass defaults,
2. ``--config FILE.yaml``, a flat mapping of field names to values (an unknown name is an error),
3. environment variables ``<env_prefix><NAME>`` (and ``env_aliases``), when ``env_prefix`` is set,
4. the flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class CommaList(tuple):
    """A tuple of names that a flag or an environment variable spells ``a,b,c`` (blanks dropped)."""

    def __new__(cls, value: str | Iterable[str] = ()) -> CommaList:
        items = value.split(",") if isinstance(value, str) else value
        return super().__new__(cls, (s.strip() for s in items if s.strip()))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a flat mapping, as a dict; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option: value")
    return data


def env_values(cls: type, prefix: str, aliases: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """The fields of ``cls`` set in the environment: ``<prefix><FIELD>`` first, then its aliases."""
    found: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        for name in (f"{prefix}{f.name.upper()}", *(aliases or {}).get(f.name, ())):
            if name in os.environ:
                found[f.name] = os.environ[name]
                break
    return found


def _mapping(text: str) -> dict[str, Any]:
    """A mapping given on the command line, in YAML (JSON is YAML); anything else is refused."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a YAML mapping: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{name: value}}', got {text!r}")
    return value


def config_parser(
    cls: type,
    *,
    prog: str | None = None,
    description: str | None = None,
    env_prefix: str | None = None,
) -> Any:
    """The ``HfArgumentParser`` of ``cls`` plus ``--config FILE.yaml`` (for ``--help`` and parsing)."""
    from transformers import HfArgumentParser

    epilog = None
    if env_prefix:
        epilog = (f"Every --flag is also read from the environment variable {env_prefix}<FLAG> "
                  f"(e.g. --max-cot-tokens from {env_prefix}MAX_COT_TOKENS); flags win.")  # fmt: skip
    parser = HfArgumentParser(cls, prog=prog, description=description, epilog=epilog)
    for action in parser._actions:  # help text is %-formatted by argparse: "95%" must print as written
        if action.help and "%" in action.help and "%(" not in action.help:
            action.help = action.help.replace("%", "%%")
        if typing.get_origin(action.type) is dict or action.type is dict:
            # a mapping setting (reward_options, ...) is read on the command line as YAML / JSON,
            # e.g. --reward_options '{learned: {model: runs/rm}}'; HfArgumentParser would call dict()
            action.type = _mapping
            action.metavar = "YAML_MAPPING"
    parser.add_argument(
        "--config", default=None, help="YAML file of these settings (flat keys); flags override it"
    )
    return parser


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    env_prefix: str | None = None,
    env_aliases: Mapping[str, Sequence[str]] | None = None,
) -> T:
    """Build ``cls`` from defaults < ``--config FILE.yaml`` < environment < flags (see the module doc).

    ``argv`` defaults to ``sys.argv[1:]``. Raises ``ValueError`` for a missing or malformed YAML
    file, a YAML key that is not a field (listing the accepted ones) and unrecognised arguments;
    the dataclass's own checks raise what they raise. ``--help`` prints and exits.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(cls, prog=prog, description=description, env_prefix=env_prefix)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        data = load_yaml(pre.config)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) in {pre.config}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        parser.set_defaults(**data)
    if env_prefix:
        # Strings, converted by each flag's type exactly as a value given on the command line.
        parser.set_defaults(**env_values(cls, env_prefix, env_aliases))
    # Outputs: the config, a namespace holding --config, and the strings nobody claimed.
    outs = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    if outs[-1]:
        raise ValueError(f"unrecognised arguments: {' '.join(outs[-1])}")
    return outs[0]
