"""CoT writer of the shapes world: a short semantic description plus a GoT box plan.

The description names every object with its attributes and a coarse place ("a large striped red
circle at the top left"), alike objects together with their count; the plan is
``reasongen.plans.format_plan`` of the scene's boxes, so ``parse_plan(write_cot(scene)).boxes ==
scene.boxes`` exactly.

``read_description`` reads a description back into objects (shape, colour, size, texture; no
places) and ``description_faithfulness`` checks them against a prompt's metadata by GenEval's
rules, positions aside: does the reasoning name what the prompt asks for? (GRPO rewards the
plan and the image; a description nothing rewards drifts — see the ``cot`` part of the
``shapes`` reward.) ``read_places`` reads its places and ``places_agree`` checks them against
the CoT's own plan: does the description say where the plan puts things? GRPO lets that drift
when nothing rewards it (the benchmark reports it; the ``shapes`` reward's ``places`` part, off
by default, rewards it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasongen.plans import format_plan
from reasongen.types import Box

from .prompts import NUMBER_WORDS, article
from .scene import COLORS, PLURALS, SHAPES, SIZES, TEXTURES, Scene, ShapeObject

_COLS = ("left", "", "right")
_ROWS = ("top", "", "bottom")


def box_region(box: Box) -> str:
    """A coarse place of a box's centre on a 3×3 grid: "top left", "center", "bottom", ..."""
    cx, cy = box.center
    col, row = min(2, int(cx * 3 // 1000)), min(2, int(cy * 3 // 1000))
    words = " ".join(w for w in (_ROWS[row], _COLS[col]) if w)
    return words or "center"


def region(obj: ShapeObject) -> str:
    """The object's coarse place (``box_region`` of its box), as descriptions name it."""
    return box_region(obj.box)


def _phrase(obj: ShapeObject) -> str:
    texture = f" {obj.texture}" if obj.texture else ""
    words = f"{obj.size}{texture} {obj.color} {obj.shape}"
    where = "in the center" if region(obj) == "center" else f"at the {region(obj)}"
    return f"{article(words)} {words} {where}"


def _number(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _group_phrase(group: list[ShapeObject]) -> str:
    """A group of alike objects: ``_phrase`` for one, else "two small red squares at the top
    left and center" (count, attributes and each place)."""
    if len(group) == 1:
        return _phrase(group[0])
    o = group[0]
    texture = f" {o.texture}" if o.texture else ""
    places = [region(g) for g in group]
    where = ", ".join(places[:-1]) + " and " + places[-1]
    return f"{_number(len(group))} {o.size}{texture} {o.color} {PLURALS[o.shape]} at the {where}"


def describe(scene: Scene) -> str:
    """One sentence naming every object of the scene with its attributes and place.

    Alike objects (shape, colour, size and texture) are named together with their count, so the
    description states what a prompt counts ("Two small red squares at the top left and center
    and a large blue circle in the center."); a scene of one kind keeps the short form "Three
    small red stars: top left, center, bottom right."
    """
    objs = scene.objects
    kinds = Counter((o.shape, o.color, o.size) for o in objs)
    if len(objs) > 1 and len(kinds) == 1:
        shape, color, size = objs[0].shape, objs[0].color, objs[0].size
        head = f"{_number(len(objs)).capitalize()} {size} {color} {PLURALS[shape]}"
        places = ", ".join(region(o) for o in objs)
        return f"{head}: {places}."
    groups: dict[tuple[str, str, str, str | None], list[ShapeObject]] = {}
    for o in objs:
        groups.setdefault((o.shape, o.color, o.size, o.texture), []).append(o)
    parts = [_group_phrase(g) for g in groups.values()]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def write_cot(scene: Scene, with_plan: bool = True) -> str:
    """The CoT for ``scene``: the description, then (if asked) the box plan on a new line."""
    text = describe(scene)
    if with_plan:
        text += "\n" + format_plan(scene.boxes)
    return text


# --------------------------------------------------------------------------- reading it back

_SHAPE_WORDS = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_COUNT_WORDS = {**{w: i for i, w in enumerate(NUMBER_WORDS) if i}, "a": 1, "an": 1}
_ATTRIBUTE_WORDS = {*COLORS, *SIZES, *TEXTURES}


@dataclass(frozen=True)
class Mention:
    """One object a description names (a group of ``n`` alike objects gives ``n`` mentions)."""

    shape: str
    color: str | None
    size: str | None
    texture: str | None


def description_text(cot: str) -> str:
    """The description of a CoT: its text before the plan (the first line, or up to the first
    ``<|obj_start|>``)."""
    return cot.split("<|obj_start|>", 1)[0].split("\n", 1)[0].strip()


def read_description(text: str) -> list[Mention]:
    """The objects a description names, in order: each shape word with the attribute words right
    before it and, before those, a count word ("two small red squares" → two mentions; no count
    word → one). Places and anything else are ignored; words outside the world's are skipped."""
    words = re.findall(r"[a-z]+", text.lower())
    out: list[Mention] = []
    for i, word in enumerate(words):
        shape = _SHAPE_WORDS.get(word)
        if shape is None:
            continue
        j = i - 1
        while j >= 0 and words[j] in _ATTRIBUTE_WORDS:
            j -= 1
        attrs = words[j + 1 : i]
        count = _COUNT_WORDS.get(words[j], 1) if j >= 0 else 1
        mention = Mention(
            shape,
            next((w for w in attrs if w in COLORS), None),
            next((w for w in attrs if w in SIZES), None),
            next((w for w in attrs if w in TEXTURES), None),
        )
        out += [mention] * count
    return out


def description_faithfulness(cot: str, metadata: dict[str, Any]):  # -> geneval.CheckResult
    """Does the CoT's description name what the prompt asks for? GenEval's rules
    (``check_objects``: classes, counts, colours, sizes, textures, exclusions) on the objects
    ``read_description`` finds; positions are left to the plan (a description's places are a
    3 × 3 grid), so a relation's two objects need only be named."""
    from .geneval import check_objects

    include = [{k: v for k, v in req.items() if k != "position"} for req in metadata.get("include", [])]
    return check_objects({**metadata, "include": include}, read_description(description_text(cot)))


_PLACE_WORDS = re.compile(r"\b(?:top left|top right|bottom left|bottom right|top|bottom|left|right|center)\b")
_RELATION_WORDS = re.compile(r"\bto the (?:left|right) of\b|\babove\b|\bbelow\b")


def read_places(text: str) -> list[str]:
    """The places a description names, in order, in ``box_region``'s words ("in the center" →
    "center"); a relation ("to the left of") is not a place."""
    return _PLACE_WORDS.findall(_RELATION_WORDS.sub(" ", text.lower()))


def places_agree(cot: str, boxes: Sequence[Box]) -> bool:
    """Does the CoT's description name the place of every box of ``boxes`` (its plan), once each?
    Compared as multisets: a description names alike objects together, so its order is not the
    plan's. "Three small red stars: top left, center, bottom right." agrees with a plan of boxes
    in those three regions, in any order, and with no other plan. An empty plan (none could be
    read) agrees with no description."""
    if not boxes:
        return False
    return Counter(read_places(description_text(cot))) == Counter(box_region(b) for b in boxes)
