"""The "About this model" panel and the notice for prompts outside the model's language.

Built from what the app has loaded: the model folder's card (``README.md``, its first paragraph),
the image size, the shapes world's vocabulary, the recipes' descriptions and what each reward's
score means (and why one can read n/a).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCORE_HELP = {
    "shapes": "the shapes world's exact check: the fraction of the prompt's requirements (objects, "
    "counts, colours, positions) that a detector finds in the image, 0–1",
    "hps": "human preference score (HPSv2): how much people tend to like the image",
    "gdino": "GroundingDINO: are the prompt's objects detected in the image",
    "git_vqa": "a VQA model's yes-probability for questions derived from the prompt",
    "orm": "an outcome reward model judging the image against the prompt",
    "got_judge": "a judge scoring the plan and the image against the prompt",
    "binary_judge": "a judge's yes/no verdict on whether the image matches the prompt",
    "combined": "the weighted sum of the other scores (a missing score is left out)",
}
"""What each reward's score means, by reward name."""

NA_HELP = (
    "**n/a** means the reward could not score this prompt: the `shapes` reward needs to know what "
    "the prompt asks for, which it has for the examples and for prompts in the shapes language "
    "below; any other prompt gets n/a. A reward that failed to load says *unavailable* instead."
)


def is_shapes_model(model_id: str) -> bool:
    """Whether the model was trained on the shapes world (its folder name says so)."""
    return "shapes" in Path(str(model_id)).name


def card_summary(model_id: str) -> str:
    """The first paragraph of the model folder's ``README.md`` after its title ('' if none)."""
    path = Path(str(model_id)) / "README.md"
    if not path.is_file():
        return ""
    paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
    body = [p for p in paras if p and not p.startswith("#")]
    return " ".join(body[0].split()) if body else ""


def vocabulary_markdown() -> str:
    """The shapes language: quantities, sizes, textures, colours, shapes and relations."""
    from reasongen.shapes.scene import COLORS, SHAPES, SIZES, TEXTURES

    return (
        "**What it knows (the shapes language):** one to four objects, each *a quantity* "
        "(a, one … six), optionally a size ("
        + ", ".join(SIZES)
        + "), a texture ("
        + ", ".join(TEXTURES)
        + ") and a colour ("
        + ", ".join(COLORS)
        + "), and a shape ("
        + ", ".join(SHAPES)
        + "); joined by *and*, or two objects by a relation (left of, right "
        "of, above, below). E.g. *a photo of two green stars*, *a red circle left of a blue square*."
    )


def about_markdown(services: Any, reward_names: list[str]) -> str:
    """The panel's text for the loaded model, its recipes and the configured rewards."""
    from reasongen.recipes import RECIPES

    from .common import model_label

    loaded = services.loaded
    model_id = str(getattr(loaded, "model_id", "?"))
    size = int(getattr(loaded, "image_size", 0))
    parts = [f"**Model:** `{model_label(model_id)}`. " + card_summary(model_id)]
    if size:
        grid = int(getattr(loaded, "grid", 0))
        tokens = f"{grid}×{grid} image tokens"
        parts.append(f"**Images:** {size}×{size} pixels ({tokens}), shown enlarged without smoothing.")
    if is_shapes_model(model_id):
        parts.append(vocabulary_markdown())
    parts.append("**Recipes** (how the model is asked to think before drawing):\n" + "\n".join(
        f"- `{name}`: {r.description}" for name, r in RECIPES.items()
    ))  # fmt: skip
    names = [*reward_names, "combined"] if reward_names else []
    if names:
        parts.append("**Scores:**\n" + "\n".join(
            f"- `{n}`: {SCORE_HELP.get(n, 'a configured reward')}" for n in names
        ))  # fmt: skip
    parts.append(NA_HELP)
    return "\n\n".join(parts)


def outside_language_notice(services: Any, prompt: str) -> str | None:
    """A notice with suggestions when a shapes model gets a prompt it cannot read (``None`` when
    the prompt is in its language, is an example, or the model is not a shapes model)."""
    model_id = str(getattr(services.loaded, "model_id", ""))
    if not is_shapes_model(model_id) or services.prompt_metadata(prompt) is not None:
        return None
    seen: dict[str, str] = {}
    for ex in services.examples:
        seen.setdefault(ex.category, ex.prompt)
    tries = list(seen.values())[:3] or ["a photo of two green stars", "a red circle left of a blue square"]
    return (
        "This prompt is outside the shapes language this model was trained on, so expect garbled "
        "reasoning, a blank or random image, and n/a for the shapes score. Try: "
        + "; ".join(f"*{t}*" for t in tries)
        + " (see **About this model** for the vocabulary)."
    )
