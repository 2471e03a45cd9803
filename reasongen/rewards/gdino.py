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
  overlaps (IoU ≥ ``bind_iou``) a box found for the bare noun. For colours the phrase competes
  in one caption with the noun in every other GenEval colour (``"orange cube. yellow cube. ..."``)
  and a box counts only where the asked colour's phrase scores highest (a phrase grounded alone
  has no competitor, so a cube of any colour may pass for ``"red cube"``);
- relations (``left of``/``right of``/``above``/``below``, plus ``near``): centres of the two
  best-scoring boxes compared with a ``margin`` (fraction of the image), never pixels.

The score is the fraction of checks passed (``strict=True``: 1 only if all pass). Without
metadata the score is ``None``.

``rules="t2i-r1"`` scores as T2I-R1's released reward does instead (box threshold 0.3 on
span-averaged token scores, object fraction, exact counts after NMS, 0.2 per object plus half a
soft position score; :mod:`.t2i_r1_rules`, with its three documented fixes). It needs T2I-R1's
data fields in the metadata (``metadata["t2i_r1"]``, :mod:`reasongen.t2i_r1_data`); a prompt
without them scores ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..t2i_r1_data import t2i_r1_of
from ..types import Sample
from .base import ModelReward, ModelRewardConfig, RewardOutput, batched, image_of, load_pretrained
from .geometry import NBox, from_cxcywh, iou, nms, relation_holds
from .phrases import attributes, noun_phrase
from .t2i_r1_rules import BOX_THRESHOLD as T2I_R1_BOX_THRESHOLD
from .t2i_r1_rules import NEAR as T2I_R1_NEAR
from .t2i_r1_rules import detection_caption, gdino_score

Detection = tuple[NBox, float]

GENEVAL_COLORS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)  # fmt: skip
"""GenEval's colour classes."""

RULES = ("geneval", "t2i-r1")
"""Scoring rules: our GenEval-style checks, or T2I-R1's released reward."""


@dataclass
class GdinoConfig(ModelRewardConfig):
    """GroundingDINO reward settings (defaults: GroundingDINO's demo thresholds)."""

    model: str = field(
        default="IDEA-Research/grounding-dino-tiny",
        metadata={"help": "Hub id or local folder of a transformers GroundingDINO checkpoint."},
    )
    rules: str = field(
        default="geneval",
        metadata={"help": "'geneval' (our checks below) or 't2i-r1' (T2I-R1's released scoring)."},
    )
    box_threshold: float | None = field(
        default=None,
        metadata={"help": "Min. phrase score of a box (default: 0.35 for geneval, 0.3 for t2i-r1)."},
    )
    nms_iou: float = field(default=0.5, metadata={"help": "IoU above which NMS drops a box."})
    bind_iou: float = field(
        default=0.5, metadata={"help": "Attribute phrase box must overlap a noun box this much."}
    )
    margin: float = field(
        default=0.05, metadata={"help": "Relation margin between centres (fraction of the image)."}
    )
    near: float = field(default=0.3, metadata={"help": "'near': max centre distance (fraction)."})
    t2i_r1_near: float = field(
        default=T2I_R1_NEAR,
        metadata={
            "help": "rules t2i-r1: 'near'/'next to' scores 1 when the centres are this close on "
            "either axis (fraction of the image; T2I-R1's 150 px on 384-px images)."
        },
    )
    strict: bool = field(default=False, metadata={"help": "Score 1 only if every check passes."})
    contrastive_colors: bool = field(
        default=True,
        metadata={
            "help": "Ground 'red car' in one caption with every other colour of color_vocab "
            "('orange car. yellow car. ...'): a box counts for the asked colour only if that "
            "colour's phrase scores highest on it."
        },
    )
    color_vocab: tuple[str, ...] = field(
        default=GENEVAL_COLORS, metadata={"help": "Colours competing in contrastive binding."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rules not in RULES:
            raise ValueError(f"rules must be one of {', '.join(RULES)}; got {self.rules!r}")
        if self.box_threshold is None:
            self.box_threshold = T2I_R1_BOX_THRESHOLD if self.rules == "t2i-r1" else 0.35
        for name in ("box_threshold", "nms_iou", "bind_iou", "margin", "near", "t2i_r1_near"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a fraction in [0, 1], got {v}")


def phrase_groups(meta: dict[str, Any], cfg: GdinoConfig) -> list[list[str]]:
    """Captions the detector is run with for this prompt, each a list of competing phrases.

    Bare nouns are grounded alone; an attribute phrase (``"red car"``) alone too, or, for colours
    with ``contrastive_colors``, together with the same noun in every other colour.
    """
    groups: list[list[str]] = []
    for obj in list(meta["include"]) + list(meta.get("exclude", []) or []):
        candidates = [[obj["class"]]]
        if attributes(obj):
            phrase = noun_phrase(obj)
            color = obj.get("color")
            if cfg.contrastive_colors and color and set(attributes(obj)) == {color}:
                others = [c for c in cfg.color_vocab if c != color]
                candidates.append([phrase] + [f"{c} {obj['class']}" for c in others])
            else:
                candidates.append([phrase])
        groups += [g for g in candidates if all(g[0] != h[0] for h in groups)]
    return groups


def phrase_spans(tokenizer: Any, phrases: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The caption ``"p1. p2. ..."`` and each phrase's token span ``[start, end)`` in its ids.

    Checked against the tokenisation of the whole caption (``[CLS] ... [SEP]``), so spans never
    silently drift.
    """
    caption = " ".join(p.lower().strip().rstrip(".") + "." for p in phrases)
    full = tokenizer(caption).input_ids
    pos, spans, pieces = 1, [], []
    for p in phrases:
        ids = tokenizer(p.lower().strip().rstrip("."), add_special_tokens=False).input_ids
        dot = tokenizer(".", add_special_tokens=False).input_ids
        spans.append((pos, pos + max(len(ids), 1)))
        pos += len(ids) + len(dot)
        pieces += ids + dot
    if full[1 : 1 + len(pieces)] != pieces:
        raise RuntimeError(f"GroundingDINO tokenizer splits {caption!r} unlike its phrases")
    return caption, spans


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

    def image_problem(self, image: Any) -> str | None:
        """The shared limits, and a short side that the processor's resize (long side capped at
        ``longest_edge``) would round to zero pixels."""
        problem = super().image_problem(image)
        if problem is not None or image is None:
            return problem
        size = self.bundle[1].image_processor.size
        longest = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
        w, h = image.size
        if longest and round(longest * min(w, h) / max(w, h)) < 1:
            return f"image is {w}x{h} pixels: too thin for GroundingDINO's resize to {longest} px"
        return None

    def _token_probs(self, images: list[Any], captions: list[str]) -> tuple[Any, Any]:
        """One batched GroundingDINO forward: per-query token probabilities ``[B, Q, T]`` (sigmoid
        of the logits) and the raw output (``pred_boxes``: ``[B, Q, 4]`` centre/size)."""
        import torch

        model, processor = self.bundle
        inp = processor(images=images, text=captions, return_tensors="pt", padding=True)
        inp = {k: v.to(model.device) for k, v in inp.items()}
        inp["pixel_values"] = inp["pixel_values"].to(model.dtype)
        with torch.no_grad():
            res = model(**inp)
        return res.logits.float().sigmoid(), res

    def detect(self, images: list[Any], groups: list[list[str]]) -> list[dict[str, list[Detection]]]:
        """Ground each phrase group in its image: every box goes to the phrase of the group that
        scores highest on it; boxes under the threshold are dropped, then NMS per phrase.
        Returns phrase → detections (best first) per image."""
        import torch

        _, processor = self.bundle
        out: list[dict[str, list[Detection]]] = []
        for chunk in batched(list(zip(images, groups)), self.config.batch_size):
            captions, spans = zip(*(phrase_spans(processor.tokenizer, g) for _, g in chunk))
            probs, res = self._token_probs([im for im, _ in chunk], list(captions))  # [B, Q, T]
            for b, (_, group) in enumerate(chunk):
                per = torch.stack([probs[b, :, s:e].max(-1).values for s, e in spans[b]], -1)  # [Q, K]
                best, which = per.max(-1)  # [Q], [Q]
                found: dict[str, list[Detection]] = {}
                for k, phrase in enumerate(group):
                    keep = ((which == k) & (best >= self.config.box_threshold)).nonzero().flatten().tolist()
                    boxes = [from_cxcywh(res.pred_boxes[b, q].float().tolist()) for q in keep]
                    scores = [float(best[q]) for q in keep]
                    found[phrase] = [(boxes[i], scores[i]) for i in nms(boxes, scores, self.config.nms_iou)]
                out.append(found)
        return out

    def detect_t2i_r1(
        self, images: list[Any], noun_lists: list[list[str]]
    ) -> list[dict[str, list[Detection]]]:
        """T2I-R1's grounding: one caption ``"n1 . n2 ."`` per image; a noun's score on a query is
        the mean token probability over its first and last word (``create_positive_map_from_span``,
        whose rows are normalised with ``+ 1e-6``); every query above the box threshold is a box
        of that noun (no NMS here, a query may serve several nouns)."""
        _, processor = self.bundle
        out: list[dict[str, list[Detection]]] = []
        for chunk in batched(list(zip(images, noun_lists)), self.config.batch_size):
            caps, spans = zip(*(detection_caption(processor.tokenizer, nouns) for _, nouns in chunk))
            probs, res = self._token_probs([im for im, _ in chunk], list(caps))  # [B, Q, T]
            for b, (_, nouns) in enumerate(chunk):
                found: dict[str, list[Detection]] = {}
                for noun, idx in zip(nouns, spans[b]):
                    per = probs[b][:, idx].sum(-1) / (len(idx) + 1e-6)  # [Q]
                    keep = (per > self.config.box_threshold).nonzero().flatten().tolist()
                    boxes = res.pred_boxes[b].float()  # [Q, 4] cx, cy, w, h
                    for q in keep:
                        cx, cy, w, h = boxes[q].tolist()
                        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                        found.setdefault(noun, []).append((box, float(per[q])))
                out.append(found)
        return out

    def score_t2i_r1(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        """Scores under ``rules="t2i-r1"``; ``None`` for a prompt without T2I-R1 fields."""
        fields = [t2i_r1_of(m) for m in metas]
        todo = [
            i for i, (s, f) in enumerate(zip(samples, fields)) if f and f.get("nouns") and s.image is not None
        ]
        nouns = [list(fields[i]["nouns"]) for i in todo]  # type: ignore[index]
        dets = dict(zip(todo, self.detect_t2i_r1([image_of(samples[i]) for i in todo], nouns)))
        scores: list[float | None] = []
        details: list[dict[str, Any]] = []
        for i, (s, f) in enumerate(zip(samples, fields)):
            if f is None or s.image is None:
                scores.append(None)
                details.append(
                    {"skipped": "no T2I-R1 metadata (nouns, task_type...)" if f is None else "no image"}
                )
                continue
            found = dets.get(i, {})
            scores.append(gdino_score(f, found, self.config.t2i_r1_near))
            boxes = {p: [{"box": list(b), "score": sc} for b, sc in d] for p, d in found.items()}
            details.append({"rules": "t2i-r1", "task_type": f.get("task_type"), "detections": boxes})
        return RewardOutput(self.name, scores, details)

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        if self.config.rules == "t2i-r1":
            return self.score_t2i_r1(samples, metas)
        queries: list[tuple[int, list[str]]] = []
        for i, (s, m) in enumerate(zip(samples, metas)):
            if m is not None and s.image is not None:
                queries += [(i, g) for g in phrase_groups(m, self.config)]
        dets = self.detect([image_of(samples[i]) for i, _ in queries], [g for _, g in queries])
        found: dict[int, dict[str, list[Detection]]] = {}
        for (i, g), d in zip(queries, dets):
            found.setdefault(i, {})[g[0]] = d[g[0]]  # only the asked phrase matters
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
