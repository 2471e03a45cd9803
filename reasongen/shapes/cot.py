"""CoT writer of the shapes world: a short semantic description plus a GoT box plan.

The description names every object with its attributes and a coarse place ("a large striped red
circle at the top left"); the plan is ``reasongen.plans.format_plan`` of the scene's boxes, so
``parse_plan(write_cot(scene)).boxes == scene.boxes`` exactly.
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


def describe(scene: Scene) -> str:
    """One sentence naming every object of the scene with its attributes and place."""
    objs = scene.objects
    kinds = Counter((o.shape, o.color, o.size) for o in objs)
    if len(objs) > 1 and len(kinds) == 1:
        shape, color, size = objs[0].shape, objs[0].color, objs[0].size
        head = f"{NUMBER_WORDS[len(objs)].capitalize()} {size} {color} {PLURALS[shape]}"
        places = ", ".join(region(o) for o in objs)
        return f"{head}: {places}."
    parts = [_phrase(o) for o in objs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def write_cot(scene: Scene, with_plan: bool = True) -> str:
    """The CoT for ``scene``: the description, then (if asked) the box plan on a new line."""
    text = describe(scene)
    if with_plan:
        text += "\n" + format_plan(scene.boxes)
    return text
