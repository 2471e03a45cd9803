"""Reading MLLM judges' free text. Every parser returns ``None`` on anything it cannot read; none
raises on model output (empty, truncated, adversarial, or a prompt injection inside it)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

SEM_CRITERIA = ("completeness", "faithfulness", "consistency", "clarity")
"""GoT-R1's four 0–10 criteria for the semantic reward R_sem."""

_VALUE = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*10)?")
"""The whole of a judge's 0–10 rating: a plain decimal, optionally written out of 10 (``7/10``)."""

_TOKEN = r"(-?\.?\d[\w.%/+-]*(?:\s*/\s*[\w.%+-]+)?)"
"""Everything number-like after a label (``7``, ``7/100``, ``1e3``, ``8%``, ``7.5.3``), so that the
strict :data:`_VALUE` sees the whole token, not a readable prefix of it."""


def _last_rating(label: str, text: str) -> float | None:
    """The last ``label: N`` rating in ``text`` (label a regex, case-insensitive, ``**`` bold and
    ``=`` allowed); ``None`` when there is none or the last one is not a plain 0–10-style decimal
    (``7/100``, ``1e3``, ``8%``)."""
    hits = re.findall(label + r"\s*\**\s*[:=]\s*\**\s*" + _TOKEN, text, flags=re.I)
    if not hits:
        return None
    token = hits[-1].rstrip(".")  # a full stop ending the sentence
    if not _VALUE.fullmatch(token):
        return None
    value = float(token.split("/")[0])
    return value if math.isfinite(value) else None


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (nested braces matched), else ``None``."""
    if not isinstance(text, str):
        return None
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len("\\boxed{") : i - 1]
        start = text.rfind("\\boxed{", 0, start)  # unterminated: try an earlier complete one
    return None


def last_boxed_only(text: str) -> str | None:
    r"""Content of the LAST ``\boxed{`` only, stripped (``mathruler.grader.extract_boxed_content``,
    which ReasonGen-R1's judge uses): ``None`` when there is none or it is never closed; an
    earlier complete box does not stand in for an unterminated last one."""
    if not isinstance(text, str):
        return None
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    i, depth = start + len("\\boxed{"), 1
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + len("\\boxed{") : i].strip()
        i += 1
    return None


def parse_binary_verdict(text: str) -> float | None:
    r"""ReasonGen-R1's verdict: the last ``\boxed{`` (:func:`last_boxed_only`, as its
    ``extract_boxed_content``) must be closed and hold exactly ``0`` or ``1``."""
    content = last_boxed_only(text)
    if content is None:
        return None
    content = content.strip()
    return float(content) if content in ("0", "1") else None


def parse_score(text: str, low: float = 0.0, high: float = 10.0) -> float | None:
    """The number after the last ``Score:`` (case-insensitive), if it is a plain decimal (``7``,
    ``7.5``, ``7/10``; not ``7/100``, ``1e3`` or ``80%``) that lies in ``[low, high]``."""
    if not isinstance(text, str):
        return None
    value = _last_rating("score", text)
    return value if value is not None and low <= value <= high else None


def parse_criteria(text: str, names: tuple[str, ...] = SEM_CRITERIA) -> dict[str, float] | None:
    """``{criterion: score}`` from lines like ``Completeness: 8``; ``None`` unless all are present
    and each is a plain decimal within 0–10 (the last mention of a criterion wins)."""
    if not isinstance(text, str):
        return None
    out: dict[str, float] = {}
    for name in names:
        v = _last_rating(re.escape(name), text)
        if v is None or not 0.0 <= v <= 10.0:
            return None
        out[name] = v
    return out


def _json_candidates(text: str) -> list[str]:
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    out = [f.strip() for f in fenced] + [text.strip()]
    for left, right in (("[", "]"), ("{", "}")):
        i, j = text.find(left), text.rfind(right)
        if 0 <= i < j:
            out.append(text[i : j + 1])
    return out


def parse_grounding(text: str) -> list[tuple[str, tuple[float, float, float, float]]] | None:
    """Qwen2.5-VL grounding output ``[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}, ...]``.

    Returns ``(label, box)`` pairs (coordinates as written: the caller converts them); an empty
    list when the judge says it found nothing (``[]``); ``None`` when no valid JSON list is found.
    Every entry must be an object with a string ``label`` and a ``bbox_2d`` (or ``bbox``) of four
    finite numbers: one that is not makes the list unreadable (``None``), never a box not found.
    """
    if not isinstance(text, str):
        return None
    for cand in _json_candidates(text):
        try:
            data: Any = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            continue
        entries = [_grounded_entry(item) for item in data]
        if all(e is not None for e in entries):
            return [e for e in entries if e is not None]
    return None


def _grounded_entry(item: Any) -> tuple[str, tuple[float, float, float, float]] | None:
    """``(label, (x1, y1, x2, y2))`` of one grounding entry (corners sorted), or ``None``."""
    if not isinstance(item, dict) or not isinstance(item.get("label"), str):
        return None
    box = item.get("bbox_2d", item.get("bbox"))
    if not (isinstance(box, list) and len(box) == 4):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return None  # json reads NaN and Infinity
    x1, y1, x2, y2 = (float(v) for v in box)
    return item["label"], (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
