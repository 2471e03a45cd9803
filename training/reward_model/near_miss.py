"""Near-miss scenes: a scene edited once so that it no longer satisfies its own prompt.

A preference reward model ranks a prompt's candidates, most of which are *almost* right: one
object of the wrong colour, one too few, the relation mirrored. CLIP's in-batch negatives are
other prompts' scenes, which differ in everything, so contrastive pre-training alone teaches
little of that (on the human-loop ceiling study the plain pre-trained scorer ordered 0.832 of the
pairs the panel decided by correctness, not near 1). Pre-training with near-miss images as extra negatives for
their caption (``pretrain --hard_negatives``) asks exactly the question the ranking asks — which
image is this prompt — as NegCLIP does with perturbed captions (Yuksekgonul et al., 2023), on the
image side, where this world can render the perturbation.

Each edit changes one thing (an object's colour, shape or size; one object removed or one copy
added; the layout mirrored; with a plan, also one object moved). An edited scene is kept only
when the world's GenEval rules (``reasongen.shapes.geneval.check_objects`` on the true objects,
no detector) judge it wrong for the prompt — or, for captions that carry the plan (``pretrain
--text prompt_plan``), when it no longer draws the plan's boxes — so a "negative" is never
secretly right. For scorers that see an image beside its plan (``pretrain --image image_plan`` or
``outlined_plan``),
``drift`` shifts one object part-way off its box: not a prompt edit, but an image the careful
annotator ranks below one drawn on its boxes.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence

from reasongen.plans import box_iou
from reasongen.shapes.detect import matches_objects
from reasongen.shapes.geneval import check_objects
from reasongen.shapes.placement import box_side, free_box
from reasongen.shapes.scene import COLORS, GRID, SHAPES, SIZES, Scene, ShapeObject
from reasongen.types import Box

Objects = tuple[ShapeObject, ...]
Edit = Callable[[Objects, random.Random, "int | None"], "Objects | None"]


def _swap(objects: Objects, i: int, obj: ShapeObject) -> Objects:
    return (*objects[:i], obj, *objects[i + 1 :])


def _restyle(objects: Objects, rng: random.Random, attr: str, values: Sequence[str]) -> Objects | None:
    """One object with another of ``values`` for ``attr`` (``color`` or ``shape``), its label to match."""
    if not objects:
        return None
    i = rng.randrange(len(objects))
    o = objects[i]
    new = dataclasses.replace(o, **{attr: rng.choice([v for v in values if v != getattr(o, attr)])})
    return _swap(objects, i, dataclasses.replace(new, box=dataclasses.replace(o.box, label=new.label)))


def recolour(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object in another colour."""
    return _restyle(objects, rng, "color", tuple(COLORS))


def reshape(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object as another shape."""
    return _restyle(objects, rng, "shape", SHAPES)


def resize(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object in the other size class, placed afresh apart from the rest (None if it fits nowhere)."""
    if not objects:
        return None
    i = rng.randrange(len(objects))
    o = objects[i]
    size = next(s for s in SIZES if s != o.size)
    rest = [x.box for j, x in enumerate(objects) if j != i]
    box = free_box(box_side(size, rng, cell), o.box.label, rest, rng, cell)
    return None if box is None else _swap(objects, i, dataclasses.replace(o, size=size, box=box))


def drop(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object fewer (a one-object scene becomes empty)."""
    if not objects:
        return None
    i = rng.randrange(len(objects))
    return objects[:i] + objects[i + 1 :]


def add_copy(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One more object like one of the scene's, placed apart from the rest (None if it fits nowhere)."""
    if not objects:
        return None
    o = rng.choice(objects)
    box = free_box(box_side(o.size, rng, cell), o.box.label, [x.box for x in objects], rng, cell)
    return None if box is None else (*objects, dataclasses.replace(o, box=box))


def move(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object moved to another free place (None if it fits nowhere else)."""
    if not objects:
        return None
    i = rng.randrange(len(objects))
    o = objects[i]
    rest = [x.box for j, x in enumerate(objects) if j != i]
    box = free_box(o.box.x2 - o.box.x1, o.box.label, rest, rng, cell)
    if box is None or box_iou(box, o.box) >= 0.5:
        return None
    return _swap(objects, i, dataclasses.replace(o, box=box))


def _fits(box: Box, rest: Sequence[Box]) -> bool:
    """Whether ``box`` lies inside the canvas and clear of every box of ``rest``."""
    inside = min(box.x1, box.y1) >= 0 and max(box.x2, box.y2) <= 1000
    return inside and all(box_iou(box, r) == 0 for r in rest)


def drift(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object shifted part-way off its box (IoU with it between 0.25 and 0.75), inside the
    canvas and clear of the others: still the same object, drawn less where it was planned (None
    if no such shift is found). Not a prompt edit: for image–plan pairs, where the careful
    annotator ranks such an image below one drawn on its boxes."""
    if not objects:
        return None
    i = rng.randrange(len(objects))
    o = objects[i]
    b, side = o.box, o.box.x2 - o.box.x1
    rest = [x.box for j, x in enumerate(objects) if j != i]
    for _ in range(16):
        dx = round(rng.uniform(-0.6, 0.6) * side / GRID) * GRID
        dy = round(rng.uniform(-0.6, 0.6) * side / GRID) * GRID
        box = dataclasses.replace(b, x1=b.x1 + dx, x2=b.x2 + dx, y1=b.y1 + dy, y2=b.y2 + dy)
        if 0.25 <= box_iou(box, b) <= 0.75 and _fits(box, rest):
            return _swap(objects, i, dataclasses.replace(o, box=box))
    return None


def overlap(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """One object moved so that its box overlaps another's, inside the canvas: a plan no image of
    the world can draw (its objects would occlude or merge; ``geneval.plan_faithfulness`` counts it
    unfaithful), the commonest way the shapes models' plans fail (None for fewer than two objects,
    or if no such place is found)."""
    if len(objects) < 2:
        return None
    i, j = rng.sample(range(len(objects)), 2)
    o, target = objects[i], objects[j].box
    w, h = o.box.x2 - o.box.x1, o.box.y2 - o.box.y1
    for _ in range(16):
        x1 = round(rng.uniform(target.x1 - w + GRID, target.x2 - GRID) / GRID) * GRID
        y1 = round(rng.uniform(target.y1 - h + GRID, target.y2 - GRID) / GRID) * GRID
        x1, y1 = min(max(x1, 0), 1000 - w), min(max(y1, 0), 1000 - h)
        box = dataclasses.replace(o.box, x1=x1, y1=y1, x2=x1 + w, y2=y1 + h)
        if box_iou(box, target) > 0 and box != o.box:
            return _swap(objects, i, dataclasses.replace(o, box=box))
    return None


WORSE_PLANS = ("unfaithful", "overlap", "drift")
"""The kinds of worse plan for a scene drawn as it is (:func:`worse_plan`); not
``pretrain.PLAN_MISSES``, the kinds of image–plan near miss, where the drawing may change too."""


def worse_plan(kind: str, scene: Scene, rng: random.Random, cell: int | None = None) -> Objects | None:
    """``scene``'s objects with the plan made worse in one way of ``WORSE_PLANS``, for the same
    image: ``unfaithful`` — a near miss (:func:`near_miss`: wrong for the prompt); ``overlap`` — one
    box moved onto another (:func:`overlap`); ``drift`` — one box part-way off its object
    (:func:`drift`). None when the edit could not be made."""
    if kind == "unfaithful":
        return near_miss(scene, rng, cell)
    return {"overlap": overlap, "drift": drift}[kind](scene.objects, rng, cell)


def _nudged(box: Box, rng: random.Random, grow: float, shift: float) -> Box:
    """``box`` grown by up to ``grow`` of its side and moved by up to ``shift`` of it each way (in
    whole units; the growth drawn first, then the x and y moves)."""
    side = box.x2 - box.x1
    g = round(rng.uniform(-grow, grow) * side)
    dx, dy = (round(rng.uniform(-shift, shift) * side) for _ in range(2))
    return dataclasses.replace(box, x1=box.x1 + dx, y1=box.y1 + dy, x2=box.x2 + dx + g, y2=box.y2 + dy + g)


def jitter(objects: Objects, rng: random.Random, min_iou: float = 0.8) -> Objects:
    """Every object nudged and rescaled a little (each box's IoU with its own at least ``min_iou``),
    where it stays inside the canvas and clear of the others; an object that cannot be nudged so
    stays put. Not an edit against the prompt or the plan: how a model draws a plan it follows —
    never pixel for pixel — so an image beside its plan is never a copy of it."""
    out = list(objects)
    for i, o in enumerate(objects):
        b = o.box
        for _ in range(4):
            box = _nudged(b, rng, grow=0.06, shift=0.08)
            rest = [x.box for j, x in enumerate(out) if j != i]
            if box_iou(box, b) >= min_iou and _fits(box, rest):
                out[i] = dataclasses.replace(o, box=box)
                break
    return tuple(out)


ALIGN_IOU = (0.6, 0.92)
"""The band of plan–image IoU :func:`loosen` draws in: what the careful annotator, who rounds IoU
to 0.1, ranks below a drawing on its boxes (1.0) — the panel's IoU pairs are mostly 1.0 against
0.9, 0.8 or 0.7, a pixel or two at 64 px, inside :func:`jitter`'s band (IoU >= 0.8)."""


def loosen(
    objects: Objects, rng: random.Random, band: tuple[float, float] = ALIGN_IOU, tries: int = 12
) -> Objects | None:
    """Every object nudged and rescaled so that its box's IoU with its own falls inside ``band``,
    where it stays inside the canvas and clear of the others (one that cannot be stays put): the
    scene drawn *loosely* on its plan, each object a pixel or two off its box. None when the mean
    IoU is still above ``band`` (nothing could move). The objects and their labels are unchanged,
    so a prompt the planned scene satisfies may still hold: a near miss of alignment alone."""
    lo, hi = band
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"band must satisfy 0 < lo < hi < 1, got {band}")
    out, ious = list(objects), []
    for i, o in enumerate(objects):
        b, iou = o.box, 1.0
        for _ in range(tries):
            reach = rng.uniform(0.03, 0.14)  # a spread of offsets, so the band is filled evenly
            box = _nudged(b, rng, grow=reach, shift=reach)
            rest = [x.box for j, x in enumerate(out) if j != i]
            if lo <= (moved := box_iou(box, b)) <= hi and _fits(box, rest):
                out[i], iou = dataclasses.replace(o, box=box), moved
                break
        ious.append(iou)
    if not ious or sum(ious) / len(ious) > hi:
        return None
    return tuple(out)


def mirror(objects: Objects, rng: random.Random, cell: int | None = None) -> Objects | None:
    """The layout mirrored left–right or top–bottom (relations and positions flip; the grid is kept)."""
    if not objects:
        return None
    return _mirrored(objects, horizontal=rng.random() < 0.5)


def _mirrored(objects: Objects, horizontal: bool) -> Objects:
    """``objects`` with their boxes mirrored left–right (``horizontal``) or top–bottom."""

    def flip(b: Box) -> Box:
        if horizontal:
            return dataclasses.replace(b, x1=1000 - b.x2, x2=1000 - b.x1)
        return dataclasses.replace(b, y1=1000 - b.y2, y2=1000 - b.y1)

    return tuple(dataclasses.replace(o, box=flip(o.box)) for o in objects)


RELATION_AXIS = {"left of": "x", "right of": "x", "above": "y", "below": "y"}
"""The axis along which each of the language's relations is decided."""


def mirror_relation(scene: Scene) -> Objects | None:
    """``scene``'s objects mirrored across the axis of its prompt's relation — left–right for "left
    of" / "right of", top–bottom for "above" / "below" — so the relation reverses while every
    object keeps its colour, shape and size; None when the prompt has no relation or the mirror
    still satisfies it.

    An image–text scorer reads "a red circle left of a blue square" and "a blue square right of a
    red circle" as the same bag of words, and the prompts of a language come in both orders, so
    the words alone do not say which way the scene goes: on the human-loop studies every learned
    scorer preferred a correct left/right candidate over its mirror about half the time. Random
    near misses are rarely mirrors of relation prompts (``pretrain --relation_mirror`` asks for
    them)."""
    axes = {
        RELATION_AXIS.get(req["position"][0])
        for req in scene.metadata.get("include", ())
        if "position" in req
    }
    axes.discard(None)
    if len(axes) != 1:
        return None
    mirrored = _mirrored(scene.objects, horizontal=axes.pop() == "x")
    return None if satisfies(scene.metadata, mirrored) else mirrored


_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
_RELATION_WORD = re.compile(r"\b(?:(left|right)(?= of\b)|above|below)\b")


def swap_relation(caption: str) -> str | None:
    """``caption`` with its one relation reversed ("left of" <-> "right of", "above" <-> "below",
    "to the left of" <-> "to the right of"), so it is false of the scene it captions while its
    words are the same bag but one; None without exactly one relation. Anything after the prompt (a
    plan in words) is left as it is."""
    found = list(_RELATION_WORD.finditer(caption))
    if len(found) != 1:
        return None
    m = found[0]
    return caption[: m.start()] + _OPPOSITE[m.group(0)] + caption[m.end() :]


EDITS: dict[str, Edit] = {
    "recolour": recolour,
    "reshape": reshape,
    "resize": resize,
    "drop": drop,
    "add_copy": add_copy,
    "mirror": mirror,
}
"""The edits against the prompt, each drawn with equal chance."""
PLAN_EDITS: dict[str, Edit] = {**EDITS, "move": move}
"""With a plan in the caption, also: one object moved off its planned box."""


def satisfies(metadata: dict, objects: Sequence[ShapeObject]) -> bool:
    """Whether ``objects`` satisfy the prompt ``metadata`` by the world's GenEval rules (size and
    texture checked when the prompt says them)."""
    return check_objects(metadata, objects).correct


def follows_plan(plan: Sequence[ShapeObject], objects: Sequence[ShapeObject], min_iou: float = 0.5) -> bool:
    """Whether ``objects`` draw the ``plan``: one-to-one, each planned box matched (IoU at least
    ``min_iou``) by an object of its colour, shape and size (``detect.matches_objects``' rule)."""
    return matches_objects(objects, plan, min_iou, attrs=("shape", "color", "size"))


def near_miss(
    scene: Scene, rng: random.Random, cell: int | None = None, tries: int = 8, plan: bool = False
) -> Objects | None:
    """``scene``'s objects after one random edit that makes them wrong for ``scene.prompt`` (with
    ``plan``: wrong for the prompt, or no longer drawing the scene's own boxes — the caption's plan);
    None when ``tries`` edits in a row were still right (or could not be placed).

    ``cell`` is the scene's layout grid (None for free layouts), so added, moved or resized objects
    stay on it. Deterministic given the state of ``rng``.
    """
    edits = PLAN_EDITS if plan else EDITS
    names = sorted(edits)
    for _ in range(tries):
        edited = edits[rng.choice(names)](scene.objects, rng, cell)
        if edited is None:
            continue
        if not satisfies(scene.metadata, edited) or (plan and not follows_plan(scene.objects, edited)):
            return edited
    return None
