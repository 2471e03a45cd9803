"""T2I-R1's training-data format, read as prompt metadata.

T2I-R1 trains on ``data/geneval_and_t2i_data_final.json`` (CaraJ7/T2I-R1; JSON lines despite the
suffix, 7,223 records): each record holds ``prompt`` and ``task_type`` (``spatial``,
``numeracy``, ``color``, ``texture``, ``shape``, ``object``, ``complex`` or ``non``), ``nouns``
(the detector's phrases), and, depending on the task, ``attr_nouns`` (``"purple elephant"``, the
GIT-VQA questions), ``spatial_info`` (``{"obj1", "obj2", "locality"}``) and ``numeracy_info``
(``[{"obj_name", "num"}]``). Its rewards read those fields (``src/t2i-r1/src/open_r1/grpo.py``
make_conversation, ``utils/reward_gdino.py``, ``utils/reward_git.py``).

:func:`metadata_from_record` turns such a record into our metadata: GenEval's shape (so every
reward and the metadata check understand it) with the original fields kept whole under
``"t2i_r1"`` for the rewards' ``rules="t2i-r1"`` option.
"""

from __future__ import annotations

from typing import Any

from .types import RELATIONS

T2I_R1_FIELDS = ("nouns", "attr_nouns", "spatial_info", "numeracy_info", "task_type")
"""The per-prompt fields of T2I-R1's training data."""

T2I_R1_DATA = "data/geneval_and_t2i_data_final.json"
"""The training-data file's path in the CaraJ7/T2I-R1 repository."""

LOCALITY_TO_RELATION = {
    "left of": "left of", "on the left of": "left of",
    "right of": "right of", "on the right of": "right of",
    "above": "above", "on the top of": "above", "on top of": "above", "top of": "above",
    "below": "below", "on the bottom of": "below",
}  # fmt: skip
"""T2I-R1's localities that name one of GenEval's four relations (``near``, ``next to`` and ``on
side of`` do not: such prompts become GenEval ``two_object`` prompts)."""

_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"T2I-R1 field {what!r} must be a list of non-empty strings, got {value!r}")
    return [v.strip() for v in value]


def t2i_r1_fields(record: dict[str, Any]) -> dict[str, Any] | None:
    """The T2I-R1 fields of ``record`` (those present and not null), checked; ``None`` when it
    has none. A malformed field raises ``ValueError`` naming it."""
    out: dict[str, Any] = {}
    for key in T2I_R1_FIELDS:
        value = record.get(key)
        if value is None:
            continue
        if key in ("nouns", "attr_nouns"):
            out[key] = _strings(value, key)
        elif key == "task_type":
            if not isinstance(value, str) or not value:
                raise ValueError(f"T2I-R1 field 'task_type' must be a non-empty string, got {value!r}")
            out[key] = value
        elif key == "spatial_info":
            ok = isinstance(value, dict) and all(
                isinstance(value.get(k), str) for k in ("obj1", "obj2", "locality")
            )
            if not ok:
                raise ValueError(
                    f"T2I-R1 field 'spatial_info' needs string obj1, obj2, locality; got {value!r}"
                )
            out[key] = {k: value[k] for k in ("obj1", "obj2", "locality")}
        else:
            ok = isinstance(value, list) and all(
                isinstance(v, dict) and isinstance(v.get("obj_name"), str)
                and isinstance(v.get("num"), int) and not isinstance(v.get("num"), bool) and v["num"] >= 0
                for v in value
            )  # fmt: skip
            if not ok or not value:
                raise ValueError(
                    f"T2I-R1 field 'numeracy_info' must be [{{obj_name, num}}, ...]; got {value!r}"
                )
            out[key] = [{"obj_name": v["obj_name"], "num": v["num"]} for v in value]
    return out or None


def _colored(noun: str, attr_nouns: list[str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"class": noun, "count": 1}
    for phrase in attr_nouns:
        words = phrase.split()
        if (
            len(words) >= 2
            and words[0].lower() in _COLORS
            and " ".join(words[1:]).lower() in (noun, noun + "s")
        ):
            obj["color"] = words[0].lower()
    return obj


def geneval_shape(fields: dict[str, Any], prompt: str) -> dict[str, Any] | None:
    """GenEval-shaped metadata equivalent to T2I-R1's ``fields`` (best effort), with ``fields``
    under ``"t2i_r1"``; ``None`` when the record names no object (GenEval needs one).

    ``spatial`` with a GenEval relation → ``position``; ``numeracy`` → ``counting`` (exact
    counts); colour words of ``attr_nouns`` → ``colors``/``color_attr``; anything else →
    ``single_object``/``two_object`` over the nouns."""
    nouns = list(dict.fromkeys(fields.get("nouns") or []))
    spatial, numeracy = fields.get("spatial_info"), fields.get("numeracy_info")
    if spatial and spatial["locality"] in LOCALITY_TO_RELATION and spatial["obj1"] != spatial["obj2"]:
        rel = LOCALITY_TO_RELATION[spatial["locality"]]
        assert rel in RELATIONS
        include = [
            {"class": spatial["obj1"], "count": 1, "position": [rel, 1]},
            {"class": spatial["obj2"], "count": 1},
        ]
        tag = "position"
    elif numeracy and all(v["num"] >= 1 for v in numeracy):
        include = [{"class": v["obj_name"], "count": v["num"]} for v in numeracy]
        tag = "counting"
    elif nouns:
        include = [_colored(n, fields.get("attr_nouns") or []) for n in nouns]
        colored = sum("color" in o for o in include)
        if colored and colored == len(include):
            tag = "colors" if len(include) == 1 else "color_attr"
        else:
            tag = "single_object" if len(include) == 1 else "two_object"
    else:
        return None
    return {"tag": tag, "prompt": prompt, "include": include, "t2i_r1": fields}


def metadata_from_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """Our metadata for a T2I-R1 data record, or ``None`` when it has no T2I-R1 fields."""
    fields = t2i_r1_fields(record)
    return None if fields is None else geneval_shape(fields, str(record.get("prompt", "")))


def t2i_r1_of(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The T2I-R1 fields carried by ``meta`` (under ``"t2i_r1"``), or ``None``."""
    if not isinstance(meta, dict):
        return None
    fields = meta.get("t2i_r1")
    return fields if isinstance(fields, dict) else None
