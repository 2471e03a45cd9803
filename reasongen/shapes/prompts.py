"""Prompt writer of the shapes world: natural prompts per GenEval category plus their metadata.

Prompts follow GenEval's phrasing ("a photo of a circle and a star", "a photo of three stars",
"a photo of a red circle", "a photo of a star left of a square"), with a few variants of the
opening words. The metadata is in GenEval's JSON shape (``reasongen.types.validate_metadata``):
``include`` lists the required objects with ``class`` (shape), ``count`` and, where the prompt
says so, ``color``, ``size``, ``texture`` and ``position`` = ``[relation, reference_index]``;
counting prompts add ``exclude: [{"class": shape, "count": n + 1}]`` (no more than n).

``write_prompt`` writes the six GenEval templates (the benchmark's and the shipped models'
prompts). ``write_mentions`` writes the whole language ``parse_prompt`` reads: groups of objects
named with an article or a count and any of size, texture and colour, up to four of them joined
by "and" and commas, or two joined by a relation (``reasongen.shapes.compose`` samples scenes
for it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasongen.types import RELATIONS, validate_metadata

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


# --------------------------------------------------------------------------- the whole language

ATTRIBUTE_KINDS = ("size", "texture", "color")
"""The attributes an object phrase may name, in the order the writer puts them."""
MAX_MENTIONS = 4
"""Most object phrases in one prompt (the parser's ``MAX_OBJECTS``)."""
MAX_DIGIT = 9
"""Largest count the language writes (number words go to six, digits to nine)."""
RELATION_PHRASES: tuple[tuple[str, str], ...] = (
    ("to the left of", "left of"),
    ("to the right of", "right of"),
    ("left of", "left of"),
    ("right of", "right of"),
    ("above", "above"),
    ("below", "below"),
)
"""``(words, relation)``: every way the language writes a relation, longest first."""
COMPOSED_OPENINGS = (
    "a photo of ", "a photo of ", "an image of ", "a picture of ", "a drawing of ",
    "an illustration of ", "a render of ", "a picture showing ", "an image with ", "", "",
)  # fmt: skip
"""Openings of compositional prompts: every form the parser reads (its ``_OPENING``) and none."""


@dataclass(frozen=True)
class Mention:
    """How a prompt names a group of the scene's objects.

    ``objects`` are indices into the scene's objects, all of one shape and alike in every
    attribute named. ``exact``: a number ("two stars": exactly that many, GenEval's counting
    rule); otherwise an article ("a star": at least one; only for a single object).
    ``attributes`` are some of ``ATTRIBUTE_KINDS``, written in that order; ``digits`` writes the
    count as a digit (counts above six always are).
    """

    objects: tuple[int, ...]
    exact: bool = False
    attributes: tuple[str, ...] = ()
    digits: bool = False


def reading_tag(include: Sequence[dict[str, Any]], exact: Sequence[bool], relation: bool) -> str:
    """The GenEval category a prompt reads as (the parser's and the writer's one rule):
    ``position`` with a relation, ``counting`` for one object with a number, ``colors`` for one
    object with attributes, ``single_object`` for a bare one, ``color_attr`` for several objects
    with attributes, ``two_object`` for several without."""
    attributed = any(k in e for e in include for k in ATTRIBUTE_KINDS)
    if relation:
        return "position"
    if len(include) > 1:
        return "color_attr" if attributed else "two_object"
    if exact[0]:
        return "counting"
    return "colors" if attributed else "single_object"


def exclusions(include: Sequence[dict[str, Any]], exact: Sequence[bool]) -> list[dict[str, Any]]:
    """GenEval's ``exclude`` entries of a reading: one more of each exactly counted shape, except
    for a shape named twice ("two red stars and a blue star" states no total for stars)."""
    classes = [e["class"] for e in include]
    return [
        {"class": e["class"], "count": e["count"] + 1}
        for e, ex in zip(include, exact)
        if ex and classes.count(e["class"]) == 1
    ]


def _mention_phrase(objects: Sequence[ShapeObject], m: Mention) -> tuple[str, dict[str, Any]]:
    """The words and include entry of one mention (checked against its objects)."""
    if not m.objects:
        raise ValueError("a mention names at least one object")
    group = [objects[i] for i in m.objects]
    n, first = len(group), group[0]
    if n > MAX_DIGIT:
        raise ValueError(f"the language counts to {MAX_DIGIT}; a mention of {n} objects cannot be written")
    if not m.exact and n != 1:
        raise ValueError(f"an article names one object; use exact=True for {n}")
    unknown = [a for a in m.attributes if a not in ATTRIBUTE_KINDS]
    if unknown or len(set(m.attributes)) != len(m.attributes):
        raise ValueError(f"attributes must be distinct names from {ATTRIBUTE_KINDS}; got {m.attributes}")
    for o in group:
        if o.shape != first.shape or any(getattr(o, a) != getattr(first, a) for a in m.attributes):
            raise ValueError(f"the objects of one mention must share its shape and {m.attributes}")
    if "texture" in m.attributes and first.texture is None:
        raise ValueError("a plain object has no texture to name")
    words = [str(getattr(first, a)) for a in ATTRIBUTE_KINDS if a in m.attributes]
    noun = first.shape if n == 1 else PLURALS[first.shape]
    phrase = " ".join([*words, noun])
    if not m.exact:
        qty = article(phrase)
    elif m.digits or n >= len(NUMBER_WORDS):
        qty = str(n)
    else:
        qty = NUMBER_WORDS[n]
    entry: dict[str, Any] = {"class": first.shape, "count": n}
    entry |= {a: getattr(first, a) for a in ATTRIBUTE_KINDS if a in m.attributes}
    return f"{qty} {phrase}", entry


def write_mentions(
    objects: Sequence[ShapeObject],
    mentions: Sequence[Mention],
    rng: random.Random,
    relation: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A prompt in the whole shapes language naming ``mentions`` of ``objects``, and its metadata.

    One to ``MAX_MENTIONS`` mentions joined by "and" and commas, or, with ``relation`` (one of
    ``RELATIONS``), exactly two: "<mention 0> <relation> <mention 1>". The opening and the
    relation's wording are drawn from ``rng``. The metadata is what ``parse_prompt`` reads from
    the prompt (its ``tag`` is ``reading_tag``'s), validated. Raises ``ValueError`` for
    mentions the language cannot write.
    """
    if not 1 <= len(mentions) <= MAX_MENTIONS:
        raise ValueError(f"a prompt names 1 to {MAX_MENTIONS} groups of objects, got {len(mentions)}")
    read = [_mention_phrase(objects, m) for m in mentions]
    phrases, entries = [p for p, _ in read], [e for _, e in read]
    exact = [m.exact for m in mentions]
    if relation is not None:
        words = [w for w, r in RELATION_PHRASES if r == relation]
        if not words or len(mentions) != 2:
            raise ValueError(f"a relation ({', '.join(RELATIONS)}) joins exactly two mentions")
        body = f"{phrases[0]} {rng.choice(words)} {phrases[1]}"
        include = [entries[1], {**entries[0], "position": [relation, 0]}]
        exact = exact[::-1]
    else:
        body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        include = entries
    prompt = rng.choice(COMPOSED_OPENINGS) + body
    tag = reading_tag(include, exact, relation is not None)
    meta: dict[str, Any] = {"tag": tag, "prompt": prompt, "include": include}
    exclude = exclusions(include, exact)
    if exclude:
        meta["exclude"] = exclude
    return prompt, validate_metadata(meta)
