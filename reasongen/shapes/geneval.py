"""GenEval-style correctness of shapes-world images and plans against prompt metadata.

The rules follow GenEval's evaluation (Ghosh et al., 2023), applied to the classical detector's
output instead of an open-vocabulary segmenter's:

- every ``include`` entry needs at least ``count`` objects of its ``class``; of those, the first
  ``count`` are taken (candidates that carry all the asked attributes first, then by confidence
  and area: the detector has no class score to sort by);
- ``color`` (and, in this world, ``size`` and ``texture`` when the prompt says them): at least
  ``count`` of the taken objects must have it;
- ``position: [relation, j]``: every taken object must stand in ``relation`` to every object taken
  for entry ``j`` (which must itself have matched), comparing box centres after discounting
  ``position_threshold`` times the two boxes' sizes (GenEval's margin), with y growing downwards:
  ``above`` means a smaller y;
- ``exclude: {class, count}``: fewer than ``count`` objects of that class (counting prompts
  forbid extra objects this way).

The same rules check a *plan* (its boxes read as objects from their labels, ``"red circle"``),
which gives plan faithfulness; ``plan_image_iou`` compares a plan with the detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from reasongen.plans import box_iou
from reasongen.types import Box, Plan, validate_metadata

from .detect import detect
from .scene import COLORS, PLURALS, SHAPES, SIZES, TEXTURES, size_threshold_for

POSITION_THRESHOLD = 0.1
"""GenEval's margin: centre offsets shrink by this fraction of the two boxes' summed sizes."""

_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}


class ObjectLike(Protocol):
    """What the rules read from a detection or a plan object."""

    shape: str
    color: str
    size: str
    box: Box
    texture: str | None


@dataclass(frozen=True)
class PlanObject:
    """A plan box read as an object: attribute words of its label, size from its box side."""

    shape: str
    color: str
    size: str
    box: Box
    texture: str | None = None
    score: float = 1.0
    area: float = 0.0


@dataclass(frozen=True)
class CheckResult:
    """Verdict of one image (or plan) against one prompt's metadata."""

    correct: bool
    reasons: tuple[str, ...]
    satisfied: int
    """How many requirements (``include`` and ``exclude`` entries) hold."""
    total: int
    matched: tuple[tuple[int, ...] | None, ...]
    """Per ``include`` entry: indices of the objects taken for it, or None if it failed."""

    @property
    def fraction(self) -> float:
        """Share of requirements that hold (a graded signal for rewards)."""
        return self.satisfied / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "correct": self.correct,
            "reasons": list(self.reasons),
            "satisfied": self.satisfied,
            "total": self.total,
            "matched": [list(m) if m is not None else None for m in self.matched],
        }


def normalize_class(name: str) -> str:
    """Lower-case, trimmed, singular class name (``"Crosses "`` → ``"cross"``)."""
    n = " ".join(str(name).lower().split())
    return _SINGULAR.get(n, n)


def relative_position(a: Box, b: Box, threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of box ``a`` to box ``b`` by GenEval's rule (a set; empty when too close).

    The centre offset on each axis shrinks by ``threshold`` times the two boxes' summed extents on
    that axis; a relation holds when its axis carries more than half of the (unshrunk) offset's
    length. Coordinates grow rightwards and downwards.
    """
    (ax, ay), (bx, by) = a.center, b.center
    off = np.array([ax - bx, ay - by], dtype=np.float64)
    dims = np.array([(a.x2 - a.x1) + (b.x2 - b.x1), (a.y2 - a.y1) + (b.y2 - b.y1)], dtype=np.float64)
    revised = np.maximum(np.abs(off) - threshold * dims, 0.0) * np.sign(off)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(off)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def _has(obj: ObjectLike, req: dict[str, Any], attrs: Sequence[str]) -> bool:
    return all(getattr(obj, a, None) == req[a] for a in attrs if a in req)


def _take(req: dict[str, Any], objects: Sequence[ObjectLike], attrs: Sequence[str]) -> list[int]:
    """Indices of the objects taken for an include entry (at most ``count``)."""
    cls = normalize_class(req["class"])
    cands = [i for i, o in enumerate(objects) if o.shape == cls]
    cands.sort(
        key=lambda i: (
            not _has(objects[i], req, attrs),
            -float(getattr(objects[i], "score", 1.0)),
            -float(getattr(objects[i], "area", 0.0)),
        )
    )
    return cands[: int(req.get("count", 1))]


def check_objects(
    metadata: dict[str, Any],
    objects: Sequence[ObjectLike],
    *,
    check_size: bool = True,
    check_texture: bool = True,
    position_threshold: float = POSITION_THRESHOLD,
) -> CheckResult:
    """Check detected (or planned) objects against GenEval-shaped ``metadata``.

    ``check_size`` / ``check_texture`` decide whether ``size`` / ``texture`` in an include entry
    are checked (GenEval itself has neither; this world's prompts may mention them).
    Raises ``ValueError`` for malformed metadata.
    """
    validate_metadata(metadata)
    attrs = ["color"] + (["size"] if check_size else []) + (["texture"] if check_texture else [])
    reasons: list[str] = []
    matched: list[tuple[int, ...] | None] = []
    satisfied = 0
    for req in metadata["include"]:
        cls, count = normalize_class(req["class"]), int(req.get("count", 1))
        taken = _take(req, objects, attrs)
        ok = len(taken) >= count
        if not ok:
            reasons.append(f"expected {cls}>={count}, found {len(taken)}")
        for attr in attrs:
            if ok and attr in req:
                have = sum(getattr(objects[i], attr, None) == req[attr] for i in taken)
                if have < count:
                    ok = False
                    reasons.append(f"expected {req[attr]} {cls}>={count}, found {have}")
        if ok and req.get("position") is not None:
            rel, target = req["position"][0], int(req["position"][1])
            ref = matched[target] if target < len(matched) else None
            if ref is None:
                ok = False
                reasons.append(f"no target for {cls} to be {rel}")
            else:
                for i in taken:
                    bad = [j for j in ref if rel not in relative_position(
                        objects[i].box, objects[j].box, position_threshold)]  # fmt: skip
                    if bad:
                        ok = False
                        found = relative_position(objects[i].box, objects[bad[0]].box)
                        seen = " and ".join(sorted(found)) or "overlapping"
                        reasons.append(f"expected {cls} {rel} target, found {seen}")
                        break
        matched.append(tuple(taken) if ok else None)
        satisfied += ok
    for req in metadata.get("exclude", []) or []:
        cls, count = normalize_class(req["class"]), int(req.get("count", 1))
        n = sum(o.shape == cls for o in objects)
        if n >= count:
            reasons.append(f"expected {cls}<{count}, found {n}")
        else:
            satisfied += 1
    total = len(metadata["include"]) + len(metadata.get("exclude", []) or [])
    return CheckResult(satisfied == total, tuple(reasons), satisfied, total, tuple(matched))


# --------------------------------------------------------------------------- plans


def object_from_label(box: Box, size_threshold: int | None = None) -> PlanObject:
    """Read a plan box as an object: shape, colour, size and texture words of its label
    (``"large striped red circle"``); a missing size comes from the box's longer side."""
    words = [normalize_class(w) for w in box.label.lower().replace(",", " ").split()]
    shape = next((w for w in reversed(words) if w in SHAPES), " ".join(words))
    color = next((w for w in words if w in COLORS), "")
    texture = next((w for w in words if w in TEXTURES), None)
    size = next((w for w in words if w in SIZES), None)
    if size is None:
        threshold = size_threshold if size_threshold is not None else size_threshold_for()
        side = max(box.x2 - box.x1, box.y2 - box.y1)
        size = SIZES[-1] if side >= threshold else SIZES[0]
    return PlanObject(shape, color, size, box, texture, area=box.area / 1e6)


def plan_faithfulness(
    plan: Plan | Sequence[Box],
    metadata: dict[str, Any],
    size_threshold: int | None = None,
    separate: bool = True,
    **kwargs: Any,
) -> CheckResult:
    """Does the plan, read as objects (``object_from_label``), satisfy the prompt's metadata?

    With ``separate`` (default) the plan must also be drawable: no two boxes may overlap (the
    world's scenes keep objects apart; overlapping objects occlude or merge, so a plan of four
    overlapping squares can count four while its image shows fewer). That is one more
    requirement in ``satisfied``/``total``, and each clash is a reason.

    ``size_threshold`` sizes unlabelled boxes (default ``reasongen.shapes.scene.size_threshold_for()``,
    right for both layouts, as the detector's). Texture is not checked unless ``check_texture=True`` is passed
    (plan labels usually omit it). Other keyword arguments go to ``check_objects``.
    """
    boxes = plan.boxes if isinstance(plan, Plan) else tuple(plan)
    kwargs.setdefault("check_texture", False)
    objects = [object_from_label(b, size_threshold) for b in boxes]
    verdict = check_objects(metadata, objects, **kwargs)
    if not separate:
        return verdict
    clashes = overlapping_boxes(boxes)
    reasons = tuple(f"boxes {i} and {j} overlap" for i, j in clashes)
    return CheckResult(
        correct=verdict.correct and not clashes,
        reasons=verdict.reasons + reasons,
        satisfied=verdict.satisfied + (not clashes),
        total=verdict.total + 1,
        matched=verdict.matched,
    )


def overlapping_boxes(boxes: Sequence[Box]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of boxes whose intersection has positive area."""
    return [(i, j) for (i, a), (j, b) in combinations(enumerate(boxes), 2) if box_iou(a, b) > 0]


def _compatible(planned: PlanObject, found: ObjectLike) -> bool:
    return planned.shape == found.shape and (not planned.color or planned.color == found.color)


def plan_image_iou(
    plan: Plan | Sequence[Box],
    detections: Sequence[ObjectLike],
    *,
    require_label_match: bool = True,
) -> tuple[float, list[tuple[int, int, float]]]:
    """Mean IoU over planned boxes after optimal one-to-one matching with the detections.

    With ``require_label_match`` a planned box may only match a detection of the same shape (and
    colour, when the label names one). Unmatched planned boxes count 0 and extra detections cost
    nothing (as ``reasongen.rewards.geometry.plan_image_iou``); an empty plan gives 0. Returns the
    mean and the ``(plan_index, detection_index, iou)`` pairs.
    """
    boxes = plan.boxes if isinstance(plan, Plan) else tuple(plan)
    if not boxes or not detections:
        return 0.0, []
    objs = [object_from_label(b) for b in boxes]
    iou = np.array(
        [
            [
                box_iou(p.box, d.box) if not require_label_match or _compatible(p, d) else 0.0
                for d in detections
            ]
            for p in objs
        ]
    )  # [P, D]
    rows, cols = linear_sum_assignment(-iou)
    pairs = sorted((int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] > 0)
    return sum(p[2] for p in pairs) / len(boxes), pairs


def check_image(
    image: Any, metadata: dict[str, Any], detector: Any | None = None, **kwargs: Any
) -> tuple[CheckResult, list[Any]]:
    """Detect the objects of ``image`` and check them against ``metadata``.

    ``detector`` is a callable image → detections (default: ``reasongen.shapes.detect.detect``);
    keyword arguments go to ``check_objects``. Returns the verdict and the detections.
    """
    dets = (detector or detect)(image)
    return check_objects(metadata, dets, **kwargs), dets
