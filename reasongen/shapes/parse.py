"""Reading a free-text prompt of the shapes world back into GenEval-style metadata.

``write_prompt`` turns a scene into a prompt; ``parse_prompt`` goes the other way for prompts a
person types, so that a prompt such as "two green stars" or "a red circle to the left of a blue
square" can be scored by the exact ``shapes`` reward (and asked about by the VQA rewards) even
though it is not one of the benchmark's prompts.

The language read is the one ``write_mentions`` writes (``write_prompt``'s GenEval templates are
part of it):

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

from .geneval import normalize_class
from .prompts import MAX_DIGIT, MAX_MENTIONS, NUMBER_WORDS, RELATION_PHRASES, exclusions, reading_tag
from .scene import COLORS, SHAPES, SIZES, TEXTURES

MAX_OBJECTS = MAX_MENTIONS
"""Most object phrases read from one prompt."""
MAX_CHARS = 300
"""Longer texts are not read (four objects with every attribute fit well within this)."""

_NUMBERS = {word: n for n, word in enumerate(NUMBER_WORDS) if n} | {
    str(n): n for n in range(1, MAX_DIGIT + 1)
}
QUANTITIES: tuple[int | None, ...] = (None, *range(1, MAX_DIGIT + 1))
"""Every quantity an object phrase can state: ``None`` for an article (at least one), else the
exact count (a number word up to six, a digit up to nine)."""
_ARTICLES = ("a", "an")
_ATTRIBUTES = (
    dict.fromkeys(COLORS, "color") | dict.fromkeys(SIZES, "size") | dict.fromkeys(TEXTURES, "texture")
)
_OPENING = re.compile(
    r"^(?:(?:a|an)\s+)?(?:photo|image|picture|drawing|illustration|render)\s+(?:of|showing|with)\s+"
)
# Longest first, so "to the left of" is not read as "left of" with a dangling "to the".
_RELATIONS = RELATION_PHRASES


def _object(words: list[str]) -> tuple[dict[str, Any], bool] | None:
    """One object phrase (``["two", "large", "green", "stars"]``) as an include entry, and
    whether its count was a number word (exact) rather than an article (at least one)."""
    if len(words) < 2:
        return None
    qty, *adjectives, noun = words
    exact = qty in _NUMBERS
    if not exact and qty not in _ARTICLES:
        return None
    count = _NUMBERS[qty] if exact else 1
    shape = normalize_class(noun)  # singular of a plural
    if shape not in SHAPES or (noun != shape) != (count > 1):
        return None  # unknown noun, or "a stars" / "three star"
    entry: dict[str, Any] = {"class": shape, "count": count}
    for word in adjectives:
        key = _ATTRIBUTES.get(word)
        if key is None or key in entry:
            return None  # an unknown word, or two colours for one object
        entry[key] = word
    return entry, exact


def _objects(text: str) -> list[tuple[dict[str, Any], bool]] | None:
    """Object phrases joined by commas and "and" (see ``_object``)."""
    parts = [p.split() for p in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", text)]
    if not 1 <= len(parts) <= MAX_OBJECTS:
        return None
    read = [_object(p) for p in parts]
    return None if any(r is None for r in read) else read  # type: ignore[return-value]


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
        (ref, ref_exact), (subj, subj_exact) = reference[0], subject[0]
        read = [(ref, ref_exact), ({**subj, "position": [rel, 0]}, subj_exact)]
        tag = "position"
    else:
        found = _objects(text)
        if found is None:
            return None
        read = found
        tag = reading_tag([e for e, _ in read], [x for _, x in read], relation=False)
    include = [e for e, _ in read]
    # "two stars" means no third star; when a shape is named twice ("a red star and a blue star")
    # the total it may reach is not stated, so no exclusion is read for it.
    exclude = exclusions(include, [x for _, x in read])
    meta: dict[str, Any] = {"tag": tag, "prompt": prompt, "include": include}
    if exclude:
        meta["exclude"] = exclude
    return validate_metadata(meta)
