"""Prompt files: the one reader behind every ``--prompts FILE`` (GRPO, annotation, rewards CLI).

The format follows the file's suffix:

- ``.jsonl``: one JSON value per non-blank line;
- ``.json``: one JSON list of such values, or JSON lines (T2I-R1's released
  ``geneval_and_t2i_data_final.json`` is JSON lines under a ``.json`` name);
- anything else (``.txt``): one prompt per non-blank line, stripped; a line whose first
  non-blank character is ``#`` is a comment.

A JSON value is a prompt string or an object with a non-empty ``prompt`` string; an object's
other keys (``metadata``, GenEval fields beside ``prompt``, ``file_name``, ...) are kept for the
caller to read. Every prompt comes back as such an object (a string ``s`` as ``{"prompt": s}``),
in file order. A record in T2I-R1's training format (``nouns``, ``attr_nouns``, ``spatial_info``,
``numeracy_info``, ``task_type`` beside ``prompt``) and without a ``metadata`` key gets one
(:func:`reasongen.t2i_r1_data.metadata_from_record`). Bad input raises ``ValueError`` naming the
file and, for JSON lines, the line; a missing file that a paper's recipe names
(:data:`KNOWN_SOURCES`) says where to get it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .t2i_r1_data import metadata_from_record

KNOWN_SOURCES: dict[str, str] = {
    "geneval_and_t2i_data_final.json": (
        "T2I-R1's training prompts (7,223 records with nouns/attr_nouns/spatial_info/"
        "numeracy_info/task_type) are data/geneval_and_t2i_data_final.json in the CaraJ7/T2I-R1 "
        "repository (https://github.com/CaraJ7/T2I-R1); copy that file here"
    ),
    "reasongen_r1_train.txt": (
        "ReasonGen-R1's RL prompts are examples/rl_prompts/geneval_train.txt, dpg_train.txt and "
        "t2i_train.txt in the Franklin-Zhang0/ReasonGen-R1 repository (janus_rl.sh trains on all "
        "three); concatenate them into this file"
    ),
    "got_r1_train.jsonl": (
        "GoT-R1 released no training prompts (gogoduan/GoT-R1 has inference code only); the paper "
        "trains on GoT-style layout prompts: write them here, one JSON object per line"
    ),
}
"""File name → where a paper recipe's prompt file comes from (this repository ships none)."""


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSON-lines file (numbered from 1).

    A line that is not JSON raises ``ValueError("FILE:LINE: not JSON (why)")``.
    """
    path = Path(path)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not JSON ({err.msg})") from None


def _entry(value: Any) -> dict[str, Any] | None:
    """``value`` as a prompt object, or None when it is neither a string nor has a ``prompt``.

    A T2I-R1 record without ``metadata`` gets its fields as metadata (a malformed field raises
    ``ValueError``)."""
    if isinstance(value, str) and value.strip():
        return {"prompt": value}
    if isinstance(value, dict) and isinstance(value.get("prompt"), str) and value["prompt"].strip():
        if "metadata" not in value:
            meta = metadata_from_record(value)
            if meta is not None:
                value = {**value, "metadata": meta}
        return value
    return None


def missing_file_message(path: Path) -> str:
    """Why ``path`` cannot be read: it does not exist, and, for a file a paper recipe names,
    where it comes from."""
    where = KNOWN_SOURCES.get(path.name)
    return f"prompt file {path} does not exist" + (f": {where}" if where else "")


def _entries(p: Path, values: Iterator[tuple[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for where, value in values:
        try:
            entry = _entry(value)
        except ValueError as err:
            raise ValueError(f"{p}{where} {err}") from None
        if entry is None:
            raise ValueError(f"{p}{where} needs a 'prompt' string")
        out.append(entry)
    return out


def read_prompt_file(path: str | Path) -> list[dict[str, Any]]:
    """The prompts of a ``.txt``, ``.jsonl`` or ``.json`` file (see the module docstring).

    Raises ``ValueError`` when the file is missing, malformed, or holds no prompt.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(missing_file_message(p))
    out: list[dict[str, Any]] = []
    if p.suffix == ".jsonl":
        out = _entries(p, ((f":{n}:", v) for n, v in iter_json_lines(p)))
    elif p.suffix == ".json":
        try:
            items = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            if err.msg != "Extra data":
                raise ValueError(f"{p}: not JSON ({err.msg})") from None
            items = None  # several JSON values: JSON lines
        if items is None:
            out = _entries(p, ((f":{n}:", v) for n, v in iter_json_lines(p)))
        elif not isinstance(items, list):
            raise ValueError(f"{p} must hold a JSON list of prompts, got a {type(items).__name__}")
        else:
            out = _entries(p, ((f": item {i}", v) for i, v in enumerate(items)))
    else:
        lines = (ln.strip() for ln in p.read_text(encoding="utf-8").splitlines())
        out = [{"prompt": ln} for ln in lines if ln and not ln.startswith("#")]
    if not out:
        raise ValueError(f"prompt file {p} holds no prompts")
    return out
