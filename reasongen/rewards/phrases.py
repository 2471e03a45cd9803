"""Turning GenEval-shaped prompt metadata into what reward models are asked about."""

from __future__ import annotations

from typing import Any

_NUMBER_WORDS = {
    1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
    9: "nine", 10: "ten",
}  # fmt: skip

ATTRIBUTE_KEYS = ("size", "texture", "color")
"""Attribute fields of an ``include`` entry, in the order they are written before the noun."""


def number_word(n: int) -> str:
    return _NUMBER_WORDS.get(n, str(n))


def plural(noun: str, count: int) -> str:
    """Naive English plural, enough for object nouns (``box`` → ``boxes``, ``cat`` → ``cats``)."""
    if count == 1:
        return noun
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def attributes(obj: dict[str, Any]) -> list[str]:
    """The object's attribute words (size, texture, colour), in writing order."""
    return [str(obj[k]) for k in ATTRIBUTE_KEYS if obj.get(k)]


def noun_phrase(obj: dict[str, Any], with_count: bool = False) -> str:
    """``"red cube"``; with ``with_count``: ``"two red cubes"``."""
    count = int(obj.get("count", 1))
    words = [*attributes(obj), plural(obj["class"], count if with_count else 1)]
    if with_count and count > 1:
        words.insert(0, number_word(count))
    return " ".join(words)


def vqa_questions(meta: dict[str, Any] | None, prompt: str) -> list[str]:
    """Yes/no questions from the prompt's attribute–noun pairs (one per ``include`` entry).

    Without metadata a single question about the whole prompt is asked.
    """
    if not meta:
        return [f"does this image show {prompt.strip().rstrip('.')}?"]
    qs = []
    for obj in meta["include"]:
        count = int(obj.get("count", 1))
        phrase = noun_phrase(obj, with_count=True)
        qs.append(f"are there {phrase}?" if count > 1 else f"is there a {phrase}?")
    return qs
