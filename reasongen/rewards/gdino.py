"""``gdino``: GroundingDINO scoring of objects, counts, attribute binding and spatial relations.

Expected checkpoint: ``IDEA-Research/grounding-dino-tiny`` on the hub (transformers' port of
``groundingdino_swint_ogc.pth``, the Swin-T OGC weights T2I-R1 trains with), loaded through
``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``. ``grounding-dino-base`` also works.

Verification status: the loading path, batching, phrase scoring and every rule below are tested
on a tiny randomly initialised ``GroundingDinoForObjectDetection`` built offline and on hand-made
detections. Agreement with the official GroundingDINO repository on real images (boxes and
scores for the same captions, thresholds 0.35 box / 0.25 text) has NOT been checked here: no
weights can be fetched on this machine. Check it once with network access by running both on a
few COCO images and comparing the kept boxes (IoU > 0.9) and scores (±0.02).

Scoring (metadata in GenEval's shape, one query per phrase, all coordinates normalised to [0, 1]
with a top-left origin; see :mod:`reasongen.rewards.geometry`):

- presence: at least ``count`` boxes of the noun after the box threshold and NMS;
- counting prompts (tag ``counting``): exactly ``count`` boxes; ``exclude`` entries: fewer than
  ``count`` boxes;
- attribute binding (colour, size, texture): the phrase ``"red cube"`` must ground on a box that
  overlaps (IoU ≥ ``bind_iou``) a box found for the bare noun;
- relations (``left of``/``right of``/``above``/``below``, plus ``near``): centres of the two
  best-scoring boxes compared with a ``margin`` (fraction of the image), never pixels.

The score is the fraction of checks passed (``strict=True``: 1 only if all pass). Without
metadata the score is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Sample
from .base import ModelReward, ModelRewardConfig, RewardOutput, batched, image_of, load_pretrained
from .geometry import NBox, from_cxcywh, iou, nms, relation_holds
from .phrases import attributes, noun_phrase

Detection = tuple[NBox, float]


@dataclass
class GdinoConfig(ModelRewardConfig):
    """GroundingDINO reward settings (defaults: GroundingDINO's demo thresholds)."""

    model: str = field(
        default="IDEA-Research/grounding-dino-tiny",
        metadata={"help": "Hub id or local folder of a transformers GroundingDINO checkpoint."},
    )
    box_threshold: float = field(default=0.35, metadata={"help": "Min. phrase score of a box."})
    nms_iou: float = field(default=0.5, metadata={"help": "IoU above which NMS drops a box."})
    bind_iou: float = field(
        default=0.5, metadata={"help": "Attribute phrase box must overlap a noun box this much."}
    )
    margin: float = field(
        default=0.05, metadata={"help": "Relation margin between centres (fraction of the image)."}
    )
    near: float = field(default=0.3, metadata={"help": "'near': max centre distance (fraction)."})
    strict: bool = field(default=False, metadata={"help": "Score 1 only if every check passes."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("box_threshold", "nms_iou", "bind_iou", "margin", "near"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a fraction in [0, 1], got {v}")


def needed_phrases(meta: dict[str, Any]) -> list[str]:
    """Every phrase the detector is queried with for this prompt (nouns, then attribute phrases)."""
    out: list[str] = []
    for obj in list(meta["include"]) + list(meta.get("exclude", []) or []):
        for p in (obj["class"], noun_phrase(obj) if attributes(obj) else None):
            if p and p not in out:
                out.append(p)
    return out


def score_detections(
    meta: dict[str, Any], found: dict[str, list[Detection]], cfg: GdinoConfig
) -> tuple[float, list[dict[str, Any]]]:
    """Score one prompt's detections (phrase → kept boxes, best first). Pure; no model."""
    checks: list[dict[str, Any]] = []
    include = meta["include"]
    for obj in include:
        noun, count = obj["class"], int(obj.get("count", 1))
        n = len(found.get(noun, []))
        if meta["tag"] == "counting":
            checks.append({"check": f"exactly {count} {noun}", "found": n, "ok": n == count})
        else:
            checks.append({"check": f"at least {count} {noun}", "found": n, "ok": n >= count})
        if attributes(obj):
            phrase = noun_phrase(obj)
            nouns = [b for b, _ in found.get(noun, [])]
            bound = [s for b, s in found.get(phrase, []) if any(iou(b, nb) >= cfg.bind_iou for nb in nouns)]
            checks.append({"check": f"binding '{phrase}'", "found": len(bound), "ok": bool(bound)})
    for obj in include:
        pos = obj.get("position")
        if not pos:
            continue
        rel, j = pos[0], int(pos[1])
        a, b = found.get(obj["class"], []), found.get(include[j]["class"], [])
        ok = bool(a and b) and relation_holds(a[0][0], b[0][0], rel, cfg.margin, cfg.near)
        checks.append({"check": f"{obj['class']} {rel} {include[j]['class']}", "ok": ok})
    for obj in meta.get("exclude", []) or []:
        noun, count = obj["class"], int(obj.get("count", 1))
        n = len(found.get(noun, []))
        checks.append({"check": f"fewer than {count} {noun}", "found": n, "ok": n < count})
    passed = [c["ok"] for c in checks]
    value = float(all(passed)) if cfg.strict else sum(passed) / len(passed)
    return value, checks


class GroundingDinoReward(ModelReward):
    """GenEval-style object/count/attribute/relation checks with GroundingDINO."""

    name = "gdino"
    config_class = GdinoConfig
    config: GdinoConfig

    def load(self) -> Any:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        cfg = self.config
        kw = {"local_files_only": cfg.local_files_only}
        processor = load_pretrained(AutoProcessor.from_pretrained, cfg.model, "GroundingDINO processor", **kw)
        model = load_pretrained(
            AutoModelForZeroShotObjectDetection.from_pretrained,
            cfg.model,
            "GroundingDINO model",
            dtype=cfg.torch_dtype(),
            **kw,
        )
        return model.to(cfg.torch_device()).eval(), processor

    def detect(self, images: list[Any], phrases: list[str]) -> list[list[Detection]]:
        """Boxes for ``phrases[i]`` in ``images[i]``, thresholded and NMS-ed, best first."""
        import torch

        model, processor = self.bundle
        out: list[list[Detection]] = []
        for chunk in batched(list(zip(images, phrases)), self.config.batch_size):
            ims = [im for im, _ in chunk]
            texts = [p.lower().strip().rstrip(".") + "." for _, p in chunk]
            inp = processor(images=ims, text=texts, return_tensors="pt", padding=True)
            inp = {k: v.to(model.device) for k, v in inp.items()}
            if "pixel_values" in inp:
                inp["pixel_values"] = inp["pixel_values"].to(model.dtype)
            with torch.no_grad():
                res = model(**inp)
            probs = res.logits.float().sigmoid()  # [B, Q, T]
            for b, text in enumerate(texts):
                n_tok = len(processor.tokenizer(text[:-1], add_special_tokens=False).input_ids)
                s = probs[b, :, 1 : 1 + max(n_tok, 1)].max(-1).values  # [Q] best phrase-token score
                keep = (s >= self.config.box_threshold).nonzero().flatten().tolist()
                boxes = [from_cxcywh(res.pred_boxes[b, q].float().tolist()) for q in keep]
                scores = [float(s[q]) for q in keep]
                kept = nms(boxes, scores, self.config.nms_iou)
                out.append([(boxes[k], scores[k]) for k in kept])
        return out

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        queries: list[tuple[int, str]] = []
        for i, (s, m) in enumerate(zip(samples, metas)):
            if m is not None and s.image is not None:
                queries += [(i, p) for p in needed_phrases(m)]
        dets = self.detect([image_of(samples[i]) for i, _ in queries], [p for _, p in queries])
        found: dict[int, dict[str, list[Detection]]] = {}
        for (i, p), d in zip(queries, dets):
            found.setdefault(i, {})[p] = d
        scores: list[float | None] = []
        details: list[dict[str, Any]] = []
        for i, (s, m) in enumerate(zip(samples, metas)):
            if m is None or s.image is None:
                scores.append(None)
                details.append({"skipped": "no prompt metadata" if m is None else "no image"})
                continue
            value, checks = score_detections(m, found.get(i, {}), self.config)
            scores.append(value)
            boxes = {p: [{"box": list(b), "score": sc} for b, sc in d] for p, d in found[i].items()}
            details.append({"checks": checks, "detections": boxes})
        return RewardOutput(self.name, scores, details)
