"""Core data types shared by generation, rewards, annotation and training.

Everything here is plain data: no model is loaded and no file is written. Boxes follow the GoT
convention (integers normalised to 0–1000, ``(x1, y1)`` the top-left corner). Prompt metadata
follows GenEval's JSON shape so that the same reward code scores real prompts and the shapes world.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from PIL import Image

COORD_MAX = 1000
"""Plans use integer coordinates in [0, COORD_MAX] (GoT's convention)."""

CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""GenEval's six prompt categories (its ``tag`` field)."""

RELATIONS = ("left of", "right of", "above", "below")
"""Spatial relations used in ``position`` prompts, GenEval's spelling."""


@dataclass(frozen=True)
class Box:
    """A labelled box in GoT coordinates (0–1000 integers, top-left origin)."""

    label: str
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def area(self) -> int:
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        return cls(str(d["label"]), int(d["x1"]), int(d["y1"]), int(d["x2"]), int(d["y2"]))


@dataclass(frozen=True)
class Plan:
    """A layout plan: ordered boxes, the free text around them, and what could not be parsed.

    ``text`` is the whole chain of thought the plan was parsed from; ``errors`` lists one
    human-readable line per malformed box that was skipped or repaired.
    """

    boxes: tuple[Box, ...] = ()
    text: str = ""
    errors: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "boxes": [b.to_dict() for b in self.boxes],
            "text": self.text,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            boxes=tuple(Box.from_dict(b) for b in d.get("boxes", [])),
            text=str(d.get("text", "")),
            errors=tuple(str(e) for e in d.get("errors", [])),
        )


@dataclass(frozen=True)
class SamplingSettings:
    """How a sample was drawn. Stored with every sample so log-probs can be recomputed.

    ``num_image_tokens`` is a fact of the model: ``None`` means "the model's" and generation fills
    it in (``loading.settings_for``); a value that differs from the model's is an error there.
    """

    guidance: float = 5.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cot_temperature: float = 1.0
    cot_top_k: int | None = None
    cot_top_p: float | None = None
    max_cot_tokens: int = 256
    num_image_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


CotEnd = Literal["boi", "eos", "length", "none"]
"""How step 1 ended: the model emitted ``<begin_of_image>``, emitted EOS, hit the length cap,
or the recipe has no CoT at all (``direct``)."""


@dataclass
class Sample:
    """One generated candidate: everything needed to show it, score it and train on it.

    Token layout for the trainer. Step 1 is ``prompt_ids + cot_token_ids`` (``prompt_ids`` starts
    with BOS); the log-prob of ``cot_token_ids[i]`` is predicted from
    ``prompt_ids + cot_token_ids[:i]``. ``cot_token_ids`` are the sampled tokens, including the
    ``<begin_of_image>`` or EOS that ended the CoT when the model emitted one. Step 2 starts from
    ``prefix_ids``, the exact conditional sequence before the first image token: for recipes that
    continue one sequence (``same_sequence``), ``prompt_ids`` + CoT text tokens +
    ``<begin_of_image>`` (an EOS that ended the CoT is replaced by ``<begin_of_image>`` at the
    same position, so one forward pass over ``prefix_ids + image_token_ids`` gives every
    log-prob); T2I-R1 re-wraps prompt and CoT in a new conversation instead. The log-prob of
    ``image_token_ids[j]`` is predicted from ``prefix_ids + image_token_ids[:j]``. Both are under
    the distribution actually sampled from (temperature, top-k/top-p, and for images the guided
    logits ``u + w·(c − u)`` whose unconditional row is ``prefix_ids`` with every token but BOS
    and ``<begin_of_image>`` replaced by pad).
    """

    prompt: str
    recipe: str
    model_id: str
    seed: int
    settings: SamplingSettings
    prompt_ids: list[int]
    cot_text: str
    cot_token_ids: list[int]
    cot_logprobs: list[float]
    cot_end: CotEnd
    prefix_ids: list[int]
    image_token_ids: list[int]
    image_logprobs: list[float]
    plan: Plan | None = None
    image: Image.Image | None = None
    metadata: dict[str, Any] | None = None
    index: int = 0

    @property
    def same_sequence(self) -> bool:
        """Whether step 2 continued the step-1 sequence (``prefix_ids`` extends ``prompt_ids``)."""
        n = len(self.prompt_ids)
        return self.prefix_ids[:n] == self.prompt_ids and len(self.prefix_ids) >= n

    def to_dict(self, with_image: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict. The image is included as base64 PNG only if asked."""
        d: dict[str, Any] = {
            "prompt": self.prompt,
            "recipe": self.recipe,
            "model_id": self.model_id,
            "seed": self.seed,
            "settings": self.settings.to_dict(),
            "prompt_ids": list(self.prompt_ids),
            "cot_text": self.cot_text,
            "cot_token_ids": list(self.cot_token_ids),
            "cot_logprobs": [float(x) for x in self.cot_logprobs],
            "cot_end": self.cot_end,
            "prefix_ids": list(self.prefix_ids),
            "image_token_ids": list(self.image_token_ids),
            "image_logprobs": [float(x) for x in self.image_logprobs],
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "metadata": self.metadata,
            "index": self.index,
        }
        if with_image and self.image is not None:
            buf = io.BytesIO()
            self.image.save(buf, format="PNG")
            d["image_png_b64"] = base64.b64encode(buf.getvalue()).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], image: Image.Image | None = None) -> Sample:
        if image is None and d.get("image_png_b64"):
            image = Image.open(io.BytesIO(base64.b64decode(d["image_png_b64"]))).convert("RGB")
        plan = d.get("plan")
        return cls(
            prompt=d["prompt"],
            recipe=d["recipe"],
            model_id=d["model_id"],
            seed=int(d["seed"]),
            settings=SamplingSettings.from_dict(d.get("settings", {})),
            prompt_ids=[int(x) for x in d["prompt_ids"]],
            cot_text=d.get("cot_text", ""),
            cot_token_ids=[int(x) for x in d.get("cot_token_ids", [])],
            cot_logprobs=[float(x) for x in d.get("cot_logprobs", [])],
            cot_end=d.get("cot_end", "none"),
            prefix_ids=[int(x) for x in d["prefix_ids"]],
            image_token_ids=[int(x) for x in d["image_token_ids"]],
            image_logprobs=[float(x) for x in d["image_logprobs"]],
            plan=Plan.from_dict(plan) if plan else None,
            image=image,
            metadata=d.get("metadata"),
            index=int(d.get("index", 0)),
        )


# --------------------------------------------------------------------------- stream events


@dataclass(frozen=True)
class CotDelta:
    """New chain-of-thought text for sample ``index`` (concatenated deltas equal its ``cot_text``)."""

    index: int
    text: str


@dataclass(frozen=True)
class PlanReady:
    """The plan of sample ``index``, parsed the moment its CoT ended."""

    index: int
    plan: Plan


@dataclass(frozen=True)
class ImageProgress:
    """``rows_done`` of ``rows_total`` token rows are drawn; one decoded preview per sample."""

    rows_done: int
    rows_total: int
    previews: list[Image.Image] = field(default_factory=list)


@dataclass(frozen=True)
class Done:
    """Sample ``sample.index`` is finished."""

    sample: Sample


StreamEvent = CotDelta | PlanReady | ImageProgress | Done


# --------------------------------------------------------------------------- prompt metadata


def validate_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Check prompt metadata in GenEval's shape and return it; raise ``ValueError`` if malformed.

    Shape: ``{"tag": category, "prompt": str, "include": [{"class": noun, "count": int,
    "color"?: str, "position"?: [relation, index_of_reference_object], "size"?: str,
    "texture"?: str}], "exclude"?: [{"class": noun, "count": int}]}``. ``exclude`` with
    ``count: n`` means "fewer than n" (GenEval's counting convention).
    """
    if not isinstance(meta, dict):
        raise ValueError(f"prompt metadata must be a JSON object, got {type(meta).__name__}")
    tag = meta.get("tag")
    if tag not in CATEGORIES:
        raise ValueError(f"metadata 'tag' must be one of {', '.join(CATEGORIES)}; got {tag!r}")
    include = meta.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError("metadata 'include' must be a non-empty list of objects")
    for i, obj in enumerate(include):
        if not isinstance(obj, dict) or not isinstance(obj.get("class"), str) or not obj["class"]:
            raise ValueError(f"metadata include[{i}] needs a non-empty string 'class'")
        count = obj.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"metadata include[{i}] 'count' must be a positive integer")
        pos = obj.get("position")
        if pos is not None and (
            not isinstance(pos, (list, tuple))
            or len(pos) != 2
            or pos[0] not in RELATIONS
            or not isinstance(pos[1], int)
            or not 0 <= pos[1] < len(include)
            or pos[1] == i
        ):
            raise ValueError(
                f"metadata include[{i}] 'position' must be [relation, other_index] with "
                f"relation in {RELATIONS}; got {pos!r}"
            )
    for i, obj in enumerate(meta.get("exclude", []) or []):
        if not isinstance(obj, dict) or not isinstance(obj.get("class"), str):
            raise ValueError(f"metadata exclude[{i}] needs a string 'class'")
    return meta
