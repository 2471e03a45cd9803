"""Reading a free-text prompt of the shapes world back into GenEval-style metadata.

``write_prompt`` turns a scene into a prompt; ``parse_prompt`` goes the other way for prompts a
person types, so that a prompt such as "two green stars" or "a red circle to the left of a blue
square" can be scored by the exact ``shapes`` reward (and asked about by the VQA rewards) even
though it is not one of the benchmark's prompts.

The language read is the one ``write_prompt`` writes, a little widened:

- an optional opening ("a photo of", "an image of", "a picture of", "a drawing of", …);
- objects: a quantity ("a", "an", "one" … "six" or a digit), then any of a size (``SIZES``), a
  texture (``TEXTURES``) and a colour (``COLORS``) in any order, then a shape (``SHAPES``,
  singular or plural to agree with the quantity);
- one to four objects joined by "and" or commas, or two joined by a relation ("left of",
  "to the left of", "right of", "above", "below").

A number word means exactly that many (GenEval's counting rule: an ``exclude`` entry for one
more of that shape), "a"/"an" means at least one. Anything outside this language, a word the
parser does not know or a quantity that disagrees with its noun, gives ``None``: a wrong
reading would score the image against a prompt the visitor did not write, so the parser never
guesses.
"""

from __future__ import annotations

import re
from typing import Any

from reasongen.types import validate_metadata

from .scene import COLORS, SHAPES, SIZES, TEXTURES

MAX_OBJECTS = 4
"""Most object phrases read from one prompt."""
MAX_CHARS = 300
"""Longer texts are not read (four objects with every attribute fit well within this)."""

_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_NUMBERS.update({str(i): i for i in range(1, 10)})
_ARTICLES = ("a", "an")
_PLURAL = {("crosses" if s == "cross" else s + "s"): s for s in SHAPES}
_OPENING = re.compile(
    r"^(?:(?:a|an)\s+)?(?:photo|image|picture|drawing|illustration|render)\s+(?:of|showing|with)\s+"
)
# Longest first, so "to the left of" is not read as "left of" with a dangling "to the".
_RELATIONS = (
    ("to the left of", "left of"),
    ("to the right of", "right of"),
    ("left of", "left of"),
    ("right of", "right of"),
    ("above", "above"),
    ("below", "below"),
)


def _object(words: list[str]) -> dict[str, Any] | None:
    """One object phrase (``["two", "large", "green", "stars"]``) as an include entry."""
    if len(words) < 2:
        return None
    qty, *adjectives, noun = words
    if qty in _ARTICLES:
        count, explicit = 1, False
    elif qty in _NUMBERS:
        count, explicit = _NUMBERS[qty], True
    else:
        return None
    if count == 1 and noun in SHAPES:
        shape = noun
    elif count > 1 and noun in _PLURAL:
        shape = _PLURAL[noun]
    else:
        return None  # unknown noun, or "a stars" / "three star"
    entry: dict[str, Any] = {"class": shape, "count": count}
    for word in adjectives:
        key = (
            "color"
            if word in COLORS
            else "size"
            if word in SIZES
            else "texture"
            if word in TEXTURES
            else None
        )
        if key is None or key in entry:
            return None  # an unknown word, or two colours for one object
        entry[key] = word
    if explicit:
        entry["_exact"] = True
    return entry


def _objects(text: str) -> list[dict[str, Any]] | None:
    """Object phrases joined by commas and "and"."""
    parts = [p.split() for p in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", text)]
    if not 1 <= len(parts) <= MAX_OBJECTS:
        return None
    entries = [_object(p) for p in parts]
    return None if any(e is None for e in entries) else entries  # type: ignore[return-value]


def _split_relation(text: str) -> tuple[str, str, str] | None:
    """``(subject, relation, reference)`` when ``text`` holds exactly one relation."""
    for phrase, relation in _RELATIONS:
        pieces = re.split(rf"\s+{phrase}\s+", text)
        if len(pieces) == 2:
            return pieces[0], relation, pieces[1]
        if len(pieces) > 2:
            return None
    return None


def parse_prompt(prompt: str) -> dict[str, Any] | None:
    """GenEval-style metadata for a prompt in the shapes world's language, or ``None``.

    The result passes ``validate_metadata`` and keeps ``prompt`` as given. ``tag`` is the GenEval
    category the prompt reads as: ``position`` with a relation, ``counting`` for one object with
    a number word, ``colors`` for one object with attributes, ``single_object`` for a bare one,
    ``color_attr`` for several objects with attributes, ``two_object`` for several without.
    """
    if not isinstance(prompt, str) or len(prompt) > MAX_CHARS:
        return None
    text = " ".join(prompt.lower().split()).rstrip(".!")
    text = _OPENING.sub("", text)
    relation = _split_relation(text)
    if relation is not None:
        subject_text, rel, reference_text = relation
        subject, reference = _objects(subject_text), _objects(reference_text)
        if subject is None or reference is None or len(subject) != 1 or len(reference) != 1:
            return None
        include = [reference[0], {**subject[0], "position": [rel, 0]}]
        tag = "position"
    else:
        found = _objects(text)
        if found is None:
            return None
        include = found
        attributed = any(k in e for e in include for k in ("color", "size", "texture"))
        if len(include) > 1:
            tag = "color_attr" if attributed else "two_object"
        elif include[0].get("_exact"):
            tag = "counting"
        else:
            tag = "colors" if attributed else "single_object"
    # "two stars" means no third star; when a shape is named twice ("a red star and a blue star")
    # the total it may reach is not stated, so no exclusion is read for it.
    classes = [e["class"] for e in include]
    exclude = [
        {"class": e["class"], "count": e["count"] + 1}
        for e in include
        if e.get("_exact") and classes.count(e["class"]) == 1
    ]
    for e in include:
        e.pop("_exact", None)
    meta: dict[str, Any] = {"tag": tag, "prompt": prompt, "include": include}
    if exclude:
        meta["exclude"] = exclude
    return validate_metadata(meta)
