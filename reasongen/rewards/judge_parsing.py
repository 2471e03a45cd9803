"""Reading MLLM judges' free text. Every parser returns ``None`` on anything it cannot read; none
raises on model output (empty, truncated, adversarial, or a prompt injection inside it)."""

from __future__ import annotations

import json
import re
from typing import Any

SEM_CRITERIA = ("completeness", "faithfulness", "consistency", "clarity")
"""GoT-R1's four 0–10 criteria for the semantic reward R_sem."""

_NUM = r"(-?\d+(?:\.\d+)?)"


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


def parse_binary_verdict(text: str) -> float | None:
    r"""ReasonGen-R1's verdict: the last ``\boxed{}`` must hold exactly ``0`` or ``1``."""
    content = last_boxed(text)
    if content is None:
        return None
    content = content.strip()
    return float(content) if content in ("0", "1") else None


def parse_score(text: str, low: float = 0.0, high: float = 10.0) -> float | None:
    """The number after the last ``Score:`` (case-insensitive), if it lies in ``[low, high]``."""
    if not isinstance(text, str):
        return None
    hits = re.findall(r"score\s*[:=]\s*\**\s*" + _NUM + r"(?:\s*/\s*10)?", text, flags=re.I)
    if not hits:
        return None
    value = float(hits[-1])
    return value if low <= value <= high else None


def parse_criteria(text: str, names: tuple[str, ...] = SEM_CRITERIA) -> dict[str, float] | None:
    """``{criterion: score}`` from lines like ``Completeness: 8``; ``None`` unless all are present
    and each is within 0–10 (the last mention of a criterion wins)."""
    if not isinstance(text, str):
        return None
    out: dict[str, float] = {}
    for name in names:
        hits = re.findall(rf"{name}\s*\**\s*[:=]\s*\**\s*" + _NUM, text, flags=re.I)
        if not hits:
            return None
        v = float(hits[-1])
        if not 0.0 <= v <= 10.0:
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
    Entries without a 4-number box are skipped.
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
        if not isinstance(data, list) or (data and not any(isinstance(d, dict) for d in data)):
            continue
        out = []
        for item in data:
            if not isinstance(item, dict):
                continue
            box = item.get("bbox_2d", item.get("bbox"))
            if (
                isinstance(box, list)
                and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            ):
                x1, y1, x2, y2 = (float(v) for v in box)
                out.append((str(item.get("label", "")), (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))))
        return out
    return None
