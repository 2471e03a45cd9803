"""Prompt files: the one reader behind every ``--prompts FILE`` (GRPO, annotation, rewards CLI).

The format follows the file's suffix:

- ``.jsonl``: one JSON value per non-blank line;
- ``.json``: one JSON list of such values;
- anything else (``.txt``): one prompt per non-blank line, stripped; a line whose first
  non-blank character is ``#`` is a comment.

A JSON value is a prompt string or an object with a non-empty ``prompt`` string; an object's
other keys (``metadata``, GenEval fields beside ``prompt``, ``file_name``, ...) are kept for the
caller to read. Every prompt comes back as such an object (a string ``s`` as ``{"prompt": s}``),
in file order. Bad input raises ``ValueError`` naming the file and, for JSON lines, the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
    """``value`` as a prompt object, or None when it is neither a string nor has a ``prompt``."""
    if isinstance(value, str) and value.strip():
        return {"prompt": value}
    if isinstance(value, dict) and isinstance(value.get("prompt"), str) and value["prompt"].strip():
        return value
    return None


def read_prompt_file(path: str | Path) -> list[dict[str, Any]]:
    """The prompts of a ``.txt``, ``.jsonl`` or ``.json`` file (see the module docstring).

    Raises ``ValueError`` when the file is missing, malformed, or holds no prompt.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"prompt file {p} does not exist")
    out: list[dict[str, Any]] = []
    if p.suffix == ".jsonl":
        for n, value in iter_json_lines(p):
            entry = _entry(value)
            if entry is None:
                raise ValueError(f"{p}:{n}: needs a 'prompt' string")
            out.append(entry)
    elif p.suffix == ".json":
        try:
            items = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{p}: not JSON ({err.msg})") from None
        if not isinstance(items, list):
            raise ValueError(f"{p} must hold a JSON list of prompts, got a {type(items).__name__}")
        for i, value in enumerate(items):
            entry = _entry(value)
            if entry is None:
                raise ValueError(f"{p}: item {i} needs a 'prompt' string")
            out.append(entry)
    else:
        lines = (ln.strip() for ln in p.read_text(encoding="utf-8").splitlines())
        out = [{"prompt": ln} for ln in lines if ln and not ln.startswith("#")]
    if not out:
        raise ValueError(f"prompt file {p} holds no prompts")
    return out
