"""``shapes``: the shapes world's classical detector as an exact reward (no model weights).

Built on ``reasongen.shapes`` (detector and GenEval-style rules): five parts, each in [0, 1]:

- ``prompt``: the image satisfies the prompt's metadata (``check_image``: objects, counts,
  colours, sizes, textures, positions, exclusions); 1/0, or the share of requirements met with
  ``graded=True``;
- ``plan``: the plan satisfies the prompt (``plan_faithfulness``), for recipes that write one;
- ``iou``: mean IoU of planned boxes with the detections after optimal matching
  (``reasongen.shapes.geneval.plan_image_iou``; labels must agree);
- ``cot``: the CoT's description names what the prompt asks for
  (``reasongen.shapes.cot.description_faithfulness``), for recipes that write a CoT. Weight 0 by
  default (today's recipes unchanged); without it GRPO lets the description drift — after 800
  steps of ``shapes_full.yaml`` it named the prompt's objects in 46–52% of the benchmark's
  samples, against 99% before GRPO — so ``shapes_full.yaml`` weighs it in.
- ``places``: the description names the place of every box its own plan draws, once each
  (``reasongen.shapes.cot.places_agree``; 1/0), for recipes that write a CoT and a plan. Weight 0
  by default. Nothing rewarded it when the shipped full-language models were trained, and their
  descriptions say where things are in 8% (compositional) and 38% (GenEval) of the benchmark's
  samples, against 70% and 85% for their SFT parent ("Two small green stars: center, center,
  center." over a plan of two boxes, centre and bottom).

The score is the weighted mean of the parts that apply: a sample of a plan-writing recipe
(``got-r1``) without a readable plan gets 0 for ``plan`` and ``iou`` rather than escaping them.
Without metadata the score is ``None`` (the detections are still reported).

Verification: exact by construction on clean renders (see the detector's own tests); here the
reward is tested on rendered scenes with known answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..recipes import sample_uses_plan, sample_writes_cot
from ..types import Sample
from .base import Reward, RewardConfig, RewardOutput, image_of

PARTS = ("prompt", "plan", "iou", "cot", "places")


@dataclass
class ShapesConfig(RewardConfig):
    """Shapes-world reward settings."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"prompt": 1.0, "plan": 0.5, "iou": 0.5, "cot": 0.0},
        metadata={
            "help": "Weight of each part (prompt, plan, iou, cot, places) in the weighted mean; a part "
            "left out weighs 0."
        },
    )
    graded: bool = field(
        default=False,
        metadata={"help": "Score prompt/plan by the share of requirements met instead of 1/0."},
    )
    position_threshold: float = field(
        default=0.1, metadata={"help": "GenEval's position margin (fraction of the box sizes)."}
    )

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown shapes parts {sorted(unknown)}; use {', '.join(PARTS)}")
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError(f"weights must be non-negative and not all zero, got {self.weights}")
        if not 0.0 <= self.position_threshold < 1.0:
            raise ValueError(f"position_threshold must be in [0, 1), got {self.position_threshold}")


class ShapesReward(Reward):
    """Exact prompt accuracy, plan faithfulness and plan–image IoU in the shapes world."""

    name = "shapes"
    config_class = ShapesConfig
    config: ShapesConfig
    min_image_side = 4  # the detector's smallest input

    def parts(self, sample: Sample, meta: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Part values (None where a part does not apply) and display details of one sample."""
        from ..shapes.geneval import check_image, plan_faithfulness, plan_image_iou

        cfg = self.config
        kw = {"position_threshold": cfg.position_threshold}
        values: dict[str, float | None] = dict.fromkeys(PARTS)
        image = image_of(sample)
        if meta is None:
            from ..shapes.detect import detect

            dets = detect(image)
            return values, {"detections": [d.to_dict() for d in dets], "skipped": "no prompt metadata"}
        verdict, dets = check_image(image, meta, **kw)
        values["prompt"] = verdict.fraction if cfg.graded else float(verdict.correct)
        details: dict[str, Any] = {"prompt": verdict.to_dict(), "detections": [d.to_dict() for d in dets]}
        has_plan = sample.plan is not None and bool(sample.plan.boxes)
        if has_plan:
            assert sample.plan is not None
            pf = plan_faithfulness(sample.plan, meta, **kw)
            values["plan"] = pf.fraction if cfg.graded else float(pf.correct)
            values["iou"], pairs = plan_image_iou(sample.plan, dets)
            details["plan"] = pf.to_dict()
            details["iou_pairs"] = pairs
        elif sample_uses_plan(sample):
            values["plan"] = values["iou"] = 0.0
            details["plan"] = "the recipe writes a plan but none could be read"
        if cfg.weights.get("cot", 0.0) > 0 and sample_writes_cot(sample):
            from ..shapes.cot import description_faithfulness

            said = description_faithfulness(sample.cot_text or "", meta)
            values["cot"] = said.fraction if cfg.graded else float(said.correct)
            details["cot"] = said.to_dict()
        if cfg.weights.get("places", 0.0) > 0 and sample_writes_cot(sample) and sample_uses_plan(sample):
            from ..shapes.cot import places_agree

            boxes = sample.plan.boxes if sample.plan is not None else ()
            values["places"] = float(places_agree(sample.cot_text or "", boxes))
            details["places"] = "agree" if values["places"] else "the description's places are not its plan's"
        return values, details

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        scores: list[float | None] = []
        details: list[dict[str, Any]] = []
        w = {k: float(self.config.weights.get(k, 0.0)) for k in PARTS}
        for s, m in zip(samples, metas):
            if s.image is None:
                scores.append(None)
                details.append({"skipped": "no image"})
                continue
            values, info = self.parts(s, m)
            used = {k: v for k, v in values.items() if v is not None and w[k] > 0}
            total = sum(w[k] * v for k, v in used.items()) / sum(w[k] for k in used) if used else None
            scores.append(total)
            details.append({"parts": values, **info})
        return RewardOutput(self.name, scores, details)
