"""Input checks shared by the store's services (pure functions, no database)."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from annotation.errors import AnnotationError

MAX_GROUP_SIZE = 64
"""Most candidates one task may hold (and so most items a ranking payload may carry)."""

MAX_TIME_TAKEN_S = 24 * 3600.0
MAX_TEXT_CHARS = 20_000
# \Z, not $: "$" also matches before a trailing newline, which let "ann\n" in beside "ann".
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_. -]{0,127}\Z")
INT64 = (-(2**63), 2**63 - 1)
"""Range of a ``BigInteger`` column (seeds)."""
INT32 = (-(2**31), 2**31 - 1)
"""Range of an ``Integer`` column (sample indices)."""


def check_id(value: Any, what: str) -> int:
    """A positive integer id; bools, strings and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(f"{what} must be an integer id, got {type(value).__name__} {_short(value)}")
    if value < 1 or value > 2**62:
        raise AnnotationError(f"{what} must be a positive integer id, got {value}")
    return value


def check_username(name: Any) -> str:
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise AnnotationError(
            f"username must be 1-64 characters of letters, digits, '_', '.', '@' or '-'; got {_short(name)}"
        )
    return name


def check_study_name(name: Any) -> str:
    if not isinstance(name, str) or not STUDY_NAME_RE.match(name) or name != name.strip():
        raise AnnotationError(
            "study name must be 1-128 characters of letters, digits, spaces, '_', '.' or '-' "
            f"(not starting or ending with a space); got {_short(name)}"
        )
    return name


def check_text(text: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise AnnotationError(f"{what} must be a string, got {type(text).__name__}")
    if not allow_empty and not text.strip():
        raise AnnotationError(f"{what} must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise AnnotationError(f"{what} is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise AnnotationError(f"{what} contains a NUL character; remove it")
    return text


def check_int(value: Any, what: str, lo: int = INT64[0], hi: int = INT64[1]) -> int:
    """An integer in ``[lo, hi]`` (numpy integer scalars are accepted); bools, floats, strings and
    arrays are refused, so every backend sees the same error instead of its own overflow."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AnnotationError(f"{what} must be an integer, got {type(value).__name__} {_short(value)}")
    out = int(value)
    if not lo <= out <= hi:
        raise AnnotationError(f"{what} must be between {lo} and {hi}, got {out}")
    return out


def check_label(value: Any, what: str, max_chars: int) -> str:
    """A short label stored in a bounded column (model id, recipe, reward name): a non-empty
    string of at most ``max_chars`` characters without control characters."""
    if not isinstance(value, str) or not value:
        raise AnnotationError(f"{what} must be a non-empty string, got {_short(value)}")
    if len(value) > max_chars:
        raise AnnotationError(f"{what} is {len(value)} characters; the limit is {max_chars}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise AnnotationError(f"{what} contains a control character: {_short(value)}")
    return value


def check_json(value: Any, what: str) -> Any:
    """``value`` if it is plain JSON (dicts, lists, str, int, finite float, bool, None), the form
    every backend stores alike; numpy scalars, NaN and other objects are refused."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise AnnotationError(f"{what} must be plain JSON (no numpy values, NaN or objects): {exc}") from None
    return value


def check_score(value: Any, what: str) -> float | None:
    """A reward score: a real number (non-finite ones are stored as missing) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AnnotationError(f"{what} must be a number or None, got {type(value).__name__} {_short(value)}")
    out = float(value)
    return out if math.isfinite(out) else None


def check_time_taken(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"time_taken_s must be a number of seconds, got {_short(value)}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or v > MAX_TIME_TAKEN_S:
        raise AnnotationError(f"time_taken_s must be between 0 and {MAX_TIME_TAKEN_S:.0f}, got {v}")
    return v


def normalize_ranking(ranking: Any) -> dict[int, int]:
    """Turn a ranking payload into ``{candidate_id: dense rank}`` (1 = best, equal = tie).

    Accepted shapes: a sequence of tie groups, best first (``[[7], [3, 9], [4]]``; a bare id may
    stand for a group of one: ``[7, [3, 9], 4]``), or a mapping ``{candidate_id: rank}`` with
    integer ranks >= 1 (renumbered densely). Repeated candidates, non-integer ids, empty groups and
    payloads larger than ``MAX_GROUP_SIZE`` raise ``AnnotationError``.
    """
    if isinstance(ranking, Mapping):
        if len(ranking) > MAX_GROUP_SIZE:
            raise AnnotationError(f"ranking has {len(ranking)} entries; at most {MAX_GROUP_SIZE}")
        raw: dict[int, int] = {}
        for cid, rank in ranking.items():
            cid = check_id(cid, "candidate id")
            if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_GROUP_SIZE:
                raise AnnotationError(f"rank of candidate {cid} must be an integer 1..{MAX_GROUP_SIZE}")
            raw[cid] = rank
        levels = {r: i + 1 for i, r in enumerate(sorted(set(raw.values())))}
        return {cid: levels[r] for cid, r in raw.items()}
    if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
        raise AnnotationError(
            "ranking must be a list of tie groups, best first (e.g. [[7], [3, 9], [4]]), or a "
            f"mapping candidate id -> rank; got {type(ranking).__name__}"
        )
    if len(ranking) > MAX_GROUP_SIZE:
        raise AnnotationError(f"ranking has {len(ranking)} groups; at most {MAX_GROUP_SIZE}")
    out: dict[int, int] = {}
    total = 0
    for level, group in enumerate(ranking, start=1):
        members = [group] if isinstance(group, int) else group
        if isinstance(members, (str, bytes, Mapping)) or not isinstance(members, Sequence):
            raise AnnotationError(f"ranking group {level} must be a list of candidate ids")
        if not members:
            raise AnnotationError(f"ranking group {level} is empty")
        total += len(members)
        if total > MAX_GROUP_SIZE:
            raise AnnotationError(f"ranking names more than {MAX_GROUP_SIZE} candidates")
        for cid in members:
            cid = check_id(cid, "candidate id")
            if cid in out:
                raise AnnotationError(f"candidate {cid} appears more than once in the ranking")
            out[cid] = level
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
