"""CoT writer of the shapes world: a short semantic description plus a GoT box plan.

The description names every object with its attributes and a coarse place ("a large striped red
circle at the top left"), alike objects together with their count; the plan is
``reasongen.plans.format_plan`` of the scene's boxes, so ``parse_plan(write_cot(scene)).boxes ==
scene.boxes`` exactly.
"""

from __future__ import annotations

from collections import Counter

from reasongen.plans import format_plan

from .prompts import NUMBER_WORDS, article
from .scene import PLURALS, Scene, ShapeObject

_COLS = ("left", "", "right")
_ROWS = ("top", "", "bottom")


def region(obj: ShapeObject) -> str:
    """A coarse place of the object on a 3×3 grid: "top left", "center", "bottom", ..."""
    cx, cy = obj.box.center
    col, row = min(2, int(cx * 3 // 1000)), min(2, int(cy * 3 // 1000))
    words = " ".join(w for w in (_ROWS[row], _COLS[col]) if w)
    return words or "center"


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
