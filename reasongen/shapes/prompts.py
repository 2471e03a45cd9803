"""Prompt writer of the shapes world: natural prompts per GenEval category plus their metadata.

Prompts follow GenEval's phrasing ("a photo of a circle and a star", "a photo of three stars",
"a photo of a red circle", "a photo of a star left of a square"), with a few variants of the
opening words. The metadata is in GenEval's JSON shape (``reasongen.types.validate_metadata``):
``include`` lists the required objects with ``class`` (shape), ``count`` and, where the prompt
says so, ``color``, ``size``, ``texture`` and ``position`` = ``[relation, reference_index]``;
counting prompts add ``exclude: [{"class": shape, "count": n + 1}]`` (no more than n).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from reasongen.types import validate_metadata

from .scene import PLURALS, Relation, ShapeObject

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
OPENINGS = ("a photo of ", "a photo of ", "a photo of ", "an image of ", "a picture of ", "")
MENTION_PROB = 0.3
"""In ``colors`` prompts, the chance that size (and separately texture) is also mentioned."""


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for the phrase that follows."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _noun(obj: ShapeObject, color: bool, size: bool = False, texture: bool = False) -> str:
    words = []
    if size:
        words.append(obj.size)
    if texture and obj.texture:
        words.append(obj.texture)
    if color:
        words.append(obj.color)
    words.append(obj.shape)
    phrase = " ".join(words)
    return f"{article(phrase)} {phrase}"


def _entry(obj: ShapeObject, color: bool, size: bool = False, texture: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"class": obj.shape, "count": 1}
    if color:
        d["color"] = obj.color
    if size:
        d["size"] = obj.size
    if texture and obj.texture:
        d["texture"] = obj.texture
    return d


def write_prompt(
    category: str,
    objects: Sequence[ShapeObject],
    relation: Relation | None,
    rng: random.Random,
) -> tuple[str, dict[str, Any]]:
    """The prompt for a scene of ``category`` and its validated GenEval-style metadata."""
    opening = rng.choice(OPENINGS)
    include: list[dict[str, Any]]
    exclude: list[dict[str, Any]] = []
    if category == "single_object":
        body, include = _noun(objects[0], False), [_entry(objects[0], False)]
    elif category == "colors":
        size = rng.random() < MENTION_PROB
        texture = objects[0].texture is not None and rng.random() < MENTION_PROB * 2
        body = _noun(objects[0], True, size, texture)
        include = [_entry(objects[0], True, size, texture)]
    elif category in ("two_object", "color_attr"):
        color = category == "color_attr"
        body = f"{_noun(objects[0], color)} and {_noun(objects[1], color)}"
        include = [_entry(objects[0], color), _entry(objects[1], color)]
    elif category == "counting":
        n, shape = len(objects), objects[0].shape
        body = f"{NUMBER_WORDS[n]} {shape if n == 1 else PLURALS[shape]}"
        include = [{"class": shape, "count": n}]
        exclude = [{"class": shape, "count": n + 1}]
    elif category == "position":
        if relation is None:
            raise ValueError("a position prompt needs a relation")
        subj, ref = objects[relation.subject], objects[relation.reference]
        body = f"{_noun(subj, False)} {relation.relation} {_noun(ref, False)}"
        include = [_entry(ref, False), {**_entry(subj, False), "position": [relation.relation, 0]}]
    else:
        raise ValueError(f"unknown category {category!r}")
    prompt = opening + body
    meta: dict[str, Any] = {"tag": category, "prompt": prompt, "include": include}
    if exclude:
        meta["exclude"] = exclude
    return prompt, validate_metadata(meta)
