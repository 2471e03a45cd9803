"""T2I-R1's scoring rules for the GroundingDINO and GIT-VQA rewards (``rules="t2i-r1"``).

Read from CaraJ7/T2I-R1 ``src/t2i-r1/src/utils/reward_gdino.py`` (class ``GDino``) and
``utils/reward_git.py`` (class ``GIT``); the code here is our own. Inputs are T2I-R1's data
fields (:mod:`reasongen.t2i_r1_data`). Boxes are normalised ``(x1, y1, x2, y2)``, top-left origin.

GroundingDINO, one caption per image: the nouns joined as ``"car . zebra."``; a noun's score on a
query is the mean of the query's token probabilities over the noun's first and last word (its
``create_positive_map_from_span`` row); every query above the box threshold (0.3) is a box of
that noun. Then, by ``task_type``:

- ``spatial``: 0.2 for each of ``obj1``/``obj2`` found; with both found, plus half the position
  score of their best boxes (:func:`position_score`), so at most 0.9;
- ``numeracy``: per counted object (weight 1/n): no box 0, else NMS at IoU 0.5 and 1 for the exact
  count, 0.2 otherwise;
- anything else: the fraction of nouns found. No nouns at all scores 1.

GIT-VQA: ``"{attr_noun}?"`` per attribute phrase (the nouns when there are none), mean of
``P(yes)/(P(yes)+P(no))``; 0 for ``spatial`` and ``numeracy`` prompts; 1 with no nouns.

Fixes to upstream, each a departure from its released code:

1. ``above`` and ``on top of`` are scored as "obj1 higher than obj2"; upstream's branch lists only
   ``on the top of``/``top of``, so these two localities (437 of its 2,195 spatial prompts) always
   scored 0 for position.
2. ``near``/``next to``/``on side of`` compare centre distances with ``near`` as a fraction of the
   image (default 150/384: upstream's 150 px on its 384-px images); upstream compared 150 with
   normalised coordinates, so every pair was "near" and scored 1.
3. Counting NMS runs on corner boxes; upstream passed GroundingDINO's centre/size boxes to
   torchvision's ``nms``, which reads them as corners.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .geometry import NBox, nms

BOX_THRESHOLD = 0.3
"""``GDino.box_threshold``."""
POSITION_IOU = 0.1
"""``determine_position``'s ``iou_threshold``: above it, a relation scores ``0.1 / IoU``."""
NEAR = 150 / 384
"""``determine_position``'s ``distance_threshold`` (150 px) as a fraction of a 384-px image."""
COUNT_NMS_IOU = 0.5
NEAR_WORDS = ("next to", "on side of", "near")
RIGHT_WORDS = ("on the right of", "right of")
LEFT_WORDS = ("on the left of", "left of")
BELOW_WORDS = ("on the bottom of", "below")
ABOVE_WORDS = ("on the top of", "top of", "above", "on top of")  # the last two: fix 1

Found = dict[str, list[tuple[NBox, float]]]
"""Noun → its boxes above the threshold, each with the noun's span-averaged score."""


def detection_caption(tokenizer: Any, nouns: Sequence[str]) -> tuple[str, list[list[int]]]:
    """T2I-R1's caption ``"n1 . n2 ."`` (``make_prompt``) and, per noun, the positions of the
    tokens of its first and last word in the caption's ids (``[CLS]`` at 0).

    Checked against the tokenisation of the whole caption, so positions never silently drift.
    """
    caption = " . ".join(nouns) + "."
    full = tokenizer(caption).input_ids
    dot = tokenizer(".", add_special_tokens=False).input_ids
    pos, pieces, spans = 1, [], []
    for noun in nouns:
        words = noun.strip().split(" ")
        per_word = [tokenizer(w, add_special_tokens=False).input_ids for w in words]
        starts, p = [], pos
        for ids in per_word:
            starts.append(p)
            p += len(ids)
        first = list(range(starts[0], starts[0] + len(per_word[0])))
        last = list(range(starts[-1], starts[-1] + len(per_word[-1]))) if len(words) > 1 else []
        spans.append(sorted(set(first + last)))
        pieces += [i for ids in per_word for i in ids] + dot
        pos = p + len(dot)
    if full[1 : 1 + len(pieces)] != pieces:
        raise RuntimeError(f"GroundingDINO tokenizer splits {caption!r} unlike its nouns")
    return caption, spans


def position_score(
    locality: str, a: NBox, b: NBox, near: float = NEAR, iou_threshold: float = POSITION_IOU
) -> float:
    """How well box ``a`` (obj1) stands ``locality`` box ``b`` (obj2), in [0, 1]
    (``determine_position`` with fixes 1 and 2). Unknown localities score 0."""
    dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2  # > 0: b's centre is right of a's
    dy = (b[1] + b[3]) / 2 - (a[1] + a[3]) / 2  # > 0: b's centre is below a's
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    iou = ix * iy / union if union > 0 else 0.0

    def soft(along: float, across: float, sign_ok: bool) -> float:
        if not sign_ok or abs(along) <= abs(across):
            return 0.0
        return 1.0 if iou < iou_threshold else iou_threshold / iou

    if locality in NEAR_WORDS:
        far = max(abs(dx), abs(dy))
        return 1.0 if abs(dx) < near or abs(dy) < near else near / far
    if locality in RIGHT_WORDS:
        return soft(dx, dy, dx < 0)
    if locality in LEFT_WORDS:
        return soft(dx, dy, dx > 0)
    if locality in BELOW_WORDS:
        return soft(dy, dx, dy < 0)
    if locality in ABOVE_WORDS:
        return soft(dy, dx, dy > 0)
    return 0.0


def object_score(found: Found, nouns: Sequence[str]) -> float:
    """Fraction of ``nouns`` with at least one box (``get_object_score``)."""
    return sum(1.0 for n in nouns if found.get(n)) / len(nouns)


def numeracy_score(found: Found, numeracy: Sequence[dict[str, Any]], nms_iou: float = COUNT_NMS_IOU) -> float:
    """``get_numeracy_score`` with fix 3: per counted object, 0 with no box, 1 when NMS leaves
    exactly ``num`` boxes, 0.2 otherwise; averaged over the objects."""
    total = 0.0
    for item in numeracy:
        dets = found.get(item["obj_name"], [])
        if not dets:
            continue
        kept = nms([b for b, _ in dets], [s for _, s in dets], nms_iou)
        total += 1.0 if len(kept) == item["num"] else 0.2
    return total / len(numeracy)


def spatial_score(found: Found, spatial: dict[str, str], near: float = NEAR) -> float:
    """``get_spatial_score``: 0.2 per object found, plus half the position score of the two
    best-scoring boxes when both are."""
    a, b = found.get(spatial["obj1"], []), found.get(spatial["obj2"], [])
    score = 0.2 * bool(a) + 0.2 * bool(b)
    if a and b:
        best_a = max(a, key=lambda d: d[1])[0]
        best_b = max(b, key=lambda d: d[1])[0]
        score += position_score(spatial["locality"], best_a, best_b, near) / 2
    return score


def gdino_score(fields: dict[str, Any], found: Found, near: float = NEAR) -> float:
    """The GroundingDINO reward of one image under T2I-R1's rules (see the module docstring)."""
    nouns = fields.get("nouns") or []
    if not nouns:
        return 1.0
    task = fields.get("task_type")
    if task == "spatial":
        spatial = fields.get("spatial_info")
        return spatial_score(found, spatial, near) if spatial else 0.0  # upstream: an error scores 0
    if task == "numeracy":
        numeracy = fields.get("numeracy_info")
        return numeracy_score(found, numeracy) if numeracy else 0.0
    return object_score(found, nouns)


def git_questions(fields: dict[str, Any]) -> list[str] | float:
    """T2I-R1's GIT questions for one prompt, or the fixed score when it asks none: 0 for
    ``spatial`` and ``numeracy`` prompts, 1 when there are no nouns."""
    if fields.get("task_type") in ("spatial", "numeracy"):
        return 0.0
    phrases = fields.get("attr_nouns") or fields.get("nouns") or []
    if not phrases:
        return 1.0
    return [f"{p}?" for p in phrases]
