r"""MLLM judges on Qwen2.5-VL: ``orm`` (yes/no probability), ``binary_judge`` (ReasonGen-R1's
boxed 0/1) and ``got_judge`` (GoT-R1's R_PI · (R_sem + R_spa)/2 · R_RI).

Expected checkpoint: ``Qwen/Qwen2.5-VL-7B-Instruct`` for all three (see :mod:`.qwen`).

Sources of the facts used (prompts are our own wording, except ReasonGen-R1's released
judge template):

- ``orm`` (here, ``backend="qwen"`` of :mod:`.orm`): a zero-shot instruct model's P(yes) for
  "does the image match the prompt" (T2I-R1's own fine-tuned LLaVA-OneVision ORM is
  :mod:`.orm`'s default backend).
- ``binary_judge``: ReasonGen-R1's judge as released: the single-image 0/1 prompt verbatim from
  ``examples/janus_rl.sh`` (``RM_TEMPLATE``, the image at its ``<image>`` slot; the shell and
  Hydra quoting leave ``\"`` as ``"`` and ``\\boxed`` as ``\boxed``), the raw prompt with
  ``"A photo of "`` removed (``verl/workers/fsdp_workers.py``, ``_switch_chat_template``), images
  resized to at least 512² and at most 2048² pixels first (its ``process_image``), replies of up
  to 1,024 tokens (``reward_model.model.max_new_tokens``), the last ``\boxed{}`` read by
  ``mathruler``'s ``extract_boxed_content`` and anything but ``0``/``1`` scored 0
  (``get_score_from_output``; ``unparsed="none"`` gives ``None`` instead).
- ``got_judge``: GoT-R1 (reference/001): R_sem from four 0–10 criteria (completeness,
  faithfulness, consistency, clarity), R_spa from the plan drawn as boxes on a blank canvas,
  R_RI as the IoU between planned boxes and boxes the judge grounds in the image (optimal
  one-to-one matching among boxes of the same label; unmatched planned boxes count 0), combined as
  ``R_PI · (R_sem + R_spa)/2 · R_RI`` (its R_HPS factor is the ``hps`` reward; multiply it in with
  ``CombinedReward(mode="product")``). Each part is scaled to [0, 1].

Verification status: parsing is tested on malformed, empty and adversarial replies; the full
path (chat template, images, batched greedy generation, first-token probabilities) runs on a
tiny random Qwen2.5-VL; GoT-R1's formula is checked with canned replies. The prompts have NOT
been validated against the real 7B judge (no weights offline): before training on them, score
a small labelled set with the real judge and check parse rate (> 99 %) and agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..plans import render_plan
from ..types import Sample
from .base import RewardOutput, image_of
from .geometry import from_pixels, plan_image_iou, to_plan_box
from .judge_parsing import (
    SEM_CRITERIA,
    parse_binary_verdict,
    parse_criteria,
    parse_grounding,
    parse_score,
)
from .qwen import JudgeItem, QwenJudge, QwenJudgeConfig

ORM_PROMPT = (
    'This image was generated from the text prompt: "{prompt}".\n'
    "Does the image match the prompt? Answer Yes or No."
)

BINARY_PROMPT = (
    'You are given a text prompt: "{prompt}" \n'
    "Below is one generated image:\n"
    "<image>\n"
    "\n"
    "1. Describe the image thoroughly (objects, colors, layout, etc.), do not be affected by the prompt.\n"
    "2. Identify key visual elements and instructions from the prompt.\n"
    "3. Evaluate how well the image follows the prompt:\n"
    "   - Are all required elements present?\n"
    "   - Are object counts, colors, and positions accurate?\n"
    "\n"
    "Be extremly strict and precise:\n"
    "Only if the image matches the prompt perfectly, respond with: \\boxed{{1}}\n"
    "Otherwise, respond with: \\boxed{{0}}\n"
    "\n"
    "Reason before your final boxed answer. Only one number should appear inside the box."
)
"""ReasonGen-R1's judge template (examples/janus_rl.sh RM_TEMPLATE), spelling included; a fact of
its released reward, so it is kept verbatim."""

PI_PROMPT = (
    'Text prompt: "{prompt}".\n'
    "How well does this generated image follow the prompt (objects, counts, attributes, "
    "positions)? Rate it from 0 (not at all) to 10 (perfectly). Give a short reason, then a "
    "last line of the form 'Score: N'."
)

SEM_PROMPT = (
    'Text prompt: "{prompt}".\n'
    "Before drawing, an image generator wrote this reasoning:\n<<<\n{cot}\n>>>\n"
    "Rate the reasoning from 0 to 10 on each criterion:\n"
    "Completeness: it covers every object, attribute and relation in the prompt.\n"
    "Faithfulness: it adds nothing that contradicts the prompt.\n"
    "Consistency: it does not contradict itself.\n"
    "Clarity: it is coherent and well formatted.\n"
    "Answer with exactly four lines: 'Completeness: N', 'Faithfulness: N', 'Consistency: N', "
    "'Clarity: N'."
)

SPA_PROMPT = (
    "This picture is a layout plan: each labelled box marks where an object will be drawn for "
    'the prompt "{prompt}". Judge only the spatial arrangement: are the objects placed, sized '
    "and related as the prompt says (left/right/above/below, counts, relative sizes)? Rate it "
    "from 0 to 10 and end with a line 'Score: N'."
)

GROUND_PROMPT = (
    "Locate each of these objects in the image: {labels}. Output a JSON list with one entry per "
    'object you find, like {{"bbox_2d": [x1, y1, x2, y2], "label": "name"}}, using exactly the '
    "names given. Output [] if none is visible."
)


class OrmReward(QwenJudge):
    """Outcome reward: P(yes)/(P(yes)+P(no)) of the judge's first answer token."""

    name = "orm"
    config_class = QwenJudgeConfig

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        idx = [i for i, s in enumerate(samples) if s.image is not None]
        items: list[JudgeItem] = [
            ([image_of(samples[i])], ORM_PROMPT.format(prompt=samples[i].prompt)) for i in idx
        ]
        probs = self.yes_probability(items)
        scores: list[float | None] = [None] * len(samples)
        details: list[dict[str, Any]] = [{"skipped": "no image"} for _ in samples]
        for i, p in zip(idx, probs):
            scores[i], details[i] = p, {"p_yes": p}
            if p is None:
                details[i]["error"] = (
                    "the judge's first token is no usable yes/no answer (non-finite logits, or "
                    f"P(yes) + P(no) below min_answer_mass={self.config.min_answer_mass:g})"
                )
        return RewardOutput(self.name, scores, details)


@dataclass
class BinaryJudgeConfig(QwenJudgeConfig):
    """ReasonGen-R1 judge settings (defaults: its release)."""

    max_new_tokens: int = field(
        default=1024, metadata={"help": "Cap on each reply (janus_rl.sh: reward_model max_new_tokens)."}
    )
    unparsed: str = field(
        default="zero",
        metadata={"help": "A reply without a closed last \\boxed{0|1}: 'zero' (upstream) or 'none'."},
    )
    min_pixels: int = field(
        default=512 * 512, metadata={"help": "Smaller images are scaled up to this many pixels first."}
    )
    max_pixels: int = field(
        default=2048 * 2048, metadata={"help": "Larger images are scaled down to this many pixels first."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unparsed not in ("zero", "none"):
            raise ValueError(f"unparsed must be 'zero' or 'none', got {self.unparsed!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


def judge_image(image: Any, min_pixels: int = 512 * 512, max_pixels: int = 2048 * 2048) -> Any:
    """The image as ReasonGen-R1's ``process_image`` hands it to the judge: scaled (keeping its
    aspect, sides truncated to integers, PIL's default resampling) down to at most ``max_pixels``
    or up to at least ``min_pixels`` pixels, then RGB."""
    import math

    if image.width * image.height > max_pixels:
        f = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)))
    if image.width * image.height < min_pixels:
        f = math.sqrt(min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)))
    return image if image.mode == "RGB" else image.convert("RGB")


def judge_prompt_text(prompt: str) -> str:
    """The prompt as ReasonGen-R1's judge reads it: ``"A photo of "`` removed (only that casing,
    as ``_switch_chat_template`` does)."""
    return prompt.replace("A photo of ", "")


class BinaryJudgeReward(QwenJudge):
    r"""ReasonGen-R1's strict judge: 1.0 for ``\boxed{1}``, 0.0 for ``\boxed{0}`` and, as
    upstream, for an unreadable reply (``unparsed="none"``: ``None``)."""

    name = "binary_judge"
    config_class = BinaryJudgeConfig
    config: BinaryJudgeConfig

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        cfg = self.config
        idx = [i for i, s in enumerate(samples) if s.image is not None]
        items: list[JudgeItem] = [
            (
                [judge_image(image_of(samples[i]), cfg.min_pixels, cfg.max_pixels)],
                BINARY_PROMPT.format(prompt=judge_prompt_text(samples[i].prompt)),
            )
            for i in idx
        ]
        replies = self.chat(items)
        scores: list[float | None] = [None] * len(samples)
        details: list[dict[str, Any]] = [{"skipped": "no image"} for _ in samples]
        for i, raw in zip(idx, replies):
            v = parse_binary_verdict(raw)
            details[i] = {"raw": raw, "verdict": v}
            if v is None:
                details[i]["error"] = "no closed \\boxed{0} or \\boxed{1} at the end of the reply"
                v = 0.0 if cfg.unparsed == "zero" else None
            scores[i] = v
        return RewardOutput(self.name, scores, details)


@dataclass
class GotJudgeConfig(QwenJudgeConfig):
    """GoT-R1 judge settings."""

    coords: str = field(
        default="absolute",
        metadata={
            "help": "Grounding coordinates the judge writes: 'absolute' pixels of the image as "
            "resized by its processor (Qwen2.5-VL) or 'relative1000' (Qwen2-VL)."
        },
    )
    canvas_size: int = field(default=448, metadata={"help": "Side of the rendered plan canvas."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coords not in ("absolute", "relative1000"):
            raise ValueError(f"coords must be 'absolute' or 'relative1000', got {self.coords!r}")
        if self.canvas_size < 32:
            raise ValueError(f"canvas_size must be at least 32, got {self.canvas_size}")


def got_total(parts: dict[str, float | None]) -> float | None:
    """GoT-R1's ``R_PI · (R_sem + R_spa)/2 · R_RI`` (each part in [0, 1]); None if one is missing."""
    pi, sem, spa, ri = (parts.get(k) for k in ("R_PI", "R_sem", "R_spa", "R_RI"))
    if pi is None or sem is None or spa is None or ri is None:
        return None
    return pi * (sem + spa) / 2.0 * ri


class GotJudgeReward(QwenJudge):
    """GoT-R1's MLLM reward over prompt, reasoning chain (with its box plan) and image."""

    name = "got_judge"
    config_class = GotJudgeConfig
    config: GotJudgeConfig

    def _processed_size(self, image: Any) -> tuple[int, int]:
        """(width, height) of ``image`` as the judge sees it (Qwen2.5-VL resizes to 28-px tiles)."""
        _, processor = self.bundle
        ip = processor.image_processor
        thw = ip(images=[image], return_tensors="pt")["image_grid_thw"][0]
        return int(thw[2]) * ip.patch_size, int(thw[1]) * ip.patch_size

    def _grounded_boxes(self, raw: str, image: Any) -> list[Any] | None:
        found = parse_grounding(raw)
        if found is None:
            return None
        w, h = (1000, 1000) if self.config.coords == "relative1000" else self._processed_size(image)
        return [to_plan_box(label, from_pixels(box, w, h)) for label, box in found]

    def _queries(self, samples: list[Sample]) -> list[tuple[int, str, JudgeItem]]:
        q: list[tuple[int, str, JudgeItem]] = []
        for i, s in enumerate(samples):
            image = image_of(s)
            if image is None:
                continue
            q.append((i, "R_PI", ([image], PI_PROMPT.format(prompt=s.prompt))))
            if s.cot_text.strip():
                q.append((i, "R_sem", ([], SEM_PROMPT.format(prompt=s.prompt, cot=s.cot_text))))
            if s.plan is not None and s.plan.boxes:
                canvas = render_plan(s.plan, self.config.canvas_size)
                q.append((i, "R_spa", ([canvas], SPA_PROMPT.format(prompt=s.prompt))))
                labels = list(dict.fromkeys(b.label for b in s.plan.boxes))
                q.append((i, "R_RI", ([image], GROUND_PROMPT.format(labels=", ".join(labels)))))
        return q

    def _part(self, sample: Sample, kind: str, raw: str) -> tuple[float | None, dict[str, Any]]:
        if kind == "R_sem":
            crit = parse_criteria(raw)
            if crit is None:
                return None, {"error": f"need all of {', '.join(SEM_CRITERIA)} as 0-10 numbers"}
            return sum(crit.values()) / (10.0 * len(crit)), {"criteria": crit}
        if kind == "R_RI":
            assert sample.plan is not None
            found = self._grounded_boxes(raw, image_of(sample))
            if found is None:
                return None, {
                    "error": "no JSON list whose every entry has a string label and a bbox_2d of "
                    "four finite numbers"
                }
            total = 0.0
            pairs = []
            for label in dict.fromkeys(b.label for b in sample.plan.boxes):
                mine = [b for b in sample.plan.boxes if b.label == label]
                theirs = [b for b in found if b.label.strip().lower() == label.strip().lower()]
                mean, matched = plan_image_iou(mine, theirs)
                total += mean * len(mine)
                pairs += [{"label": label, "iou": m[2]} for m in matched]
            value = total / len(sample.plan.boxes)
            return value, {"grounded": [b.to_dict() for b in found], "matches": pairs}
        score = parse_score(raw)
        if score is None:
            return None, {"error": "no 'Score: N' with N in 0-10"}
        return score / 10.0, {}

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        queries = self._queries(samples)
        replies = self.chat([item for _, _, item in queries])
        parts: list[dict[str, float | None]] = [
            dict.fromkeys(("R_PI", "R_sem", "R_spa", "R_RI")) for _ in samples
        ]
        raws: list[dict[str, Any]] = [{} for _ in samples]
        for (i, kind, _), raw in zip(queries, replies):
            value, info = self._part(samples[i], kind, raw)
            parts[i][kind] = value
            raws[i][kind] = {"raw": raw, **info}
        scores: list[float | None] = []
        details: list[dict[str, Any]] = []
        for i, s in enumerate(samples):
            if s.image is None:
                scores.append(None)
                details.append({"skipped": "no image"})
                continue
            scores.append(got_total(parts[i]))
            d: dict[str, Any] = {"parts": parts[i], "judge": raws[i]}
            if s.plan is None or not s.plan.boxes:
                d["note"] = "no box plan: R_spa and R_RI (hence the total) do not apply"
            elif not s.cot_text.strip():
                d["note"] = "no chain of thought: R_sem does not apply"
            details.append(d)
        return RewardOutput(self.name, scores, details)
