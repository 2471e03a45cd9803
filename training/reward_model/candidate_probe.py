"""Whether a plan-reading scorer sees a box a pixel or two off, on a study's own candidates.

    python -m training.reward_model.candidate_probe --db URL --data_dir DIR --study S \
        --model DIR [DIR2 ...] [--max_px 2] [--seed 0] [--out probe.json]

The panel's IoU pairs (``annotation stats --by-shapes-basis``) are mostly two right images whose
plan-image IoU, read by the shapes detector and rounded to 0.1, is 1.0 against 0.9 or 0.8: a pixel
or two on the model's own drawings. ``probe.py``'s ``plan_loose`` asks that on rendered scenes,
where a scorer can learn it without learning the model's drawings. This probe asks it on the
candidates themselves, with nothing edited in the image: each candidate the detector finds right
for its prompt, with a faithful plan drawn on its boxes (IoU at least ``--min_iou``), is shown
beside its own plan and beside the same plan with one box moved 1 to ``--max_px`` pixels, kept
only where the careful annotator's rounded IoU key falls. The image is the same in both, so a
scorer that does not read the plan ties every pair (0.5), and one that reads it perfectly scores
1.0. Several ``--model`` folders are an ensemble (mean score), as in ``probe.py``.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from reasongen.config import parse_config


@dataclass
class CandidateProbeConfig:
    """Probe scorers with one-box plan nudges on a study's right candidates."""

    study: str = field(default="", metadata={"help": "The study (id, name or name:NAME)."})
    db: str = field(default="", metadata={"help": "Database URL (default: the annotation store's)."})
    data_dir: str = field(default="data", metadata={"help": "The store's data directory (images)."})
    model: list[str] = field(
        default_factory=list,
        metadata={"help": "Scorer folder (open_clip local-dir layout); several: an ensemble (mean score)."},
    )
    max_px: int = field(default=2, metadata={"help": "Largest move of the nudged box, in image pixels."})
    min_iou: float = field(
        default=0.95, metadata={"help": "Only candidates whose plan-image IoU is at least this."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of which box moves, and how."})
    batch_size: int = field(default=64, metadata={"help": "Pictures per forward pass."})
    out: str = field(default="", metadata={"help": "Also write the result here as JSON (optional)."})

    def __post_init__(self) -> None:
        if not self.study:
            raise ValueError("--study is required")
        if not self.model:
            raise ValueError("--model is required (a scorer folder; several for an ensemble)")
        if self.max_px < 1 or self.batch_size < 1:
            raise ValueError(
                f"--max_px and --batch_size must be >= 1, got {self.max_px} and {self.batch_size}"
            )
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"--min_iou must be in (0, 1], got {self.min_iou}")


@dataclass
class NudgePair:
    """A candidate, its own plan's boxes and the plan with one box moved, and the IoU of each."""

    candidate_id: int
    sample: Any
    boxes: tuple[Any, ...]
    nudged: tuple[Any, ...]
    iou: float
    nudged_iou: float


def nudge(boxes: Sequence[Any], rng: random.Random, px: float, max_px: int) -> tuple[Any, ...] | None:
    """``boxes`` with one (at random) moved by 1..``max_px`` pixels across and -max_px..max_px
    down, ``px`` GoT units a pixel (rounded to whole units, as plans are written); None when the
    move leaves the canvas (or there is no box)."""
    if not boxes:
        return None
    i = rng.randrange(len(boxes))
    dx = rng.choice([s * k for k in range(1, max_px + 1) for s in (-1, 1)])
    dy = rng.randint(-max_px, max_px)
    b, ux, uy = boxes[i], round(dx * px), round(dy * px)
    moved = dataclasses.replace(b, x1=b.x1 + ux, x2=b.x2 + ux, y1=b.y1 + uy, y2=b.y2 + uy)
    if min(moved.x1, moved.y1) < 0 or max(moved.x2, moved.y2) > 1000:
        return None
    return (*boxes[:i], moved, *boxes[i + 1 :])


def nudge_pairs(store: Any, study: int | str, cfg: CandidateProbeConfig) -> list[NudgePair]:
    """The probe's pairs: every right candidate of ``study`` with a faithful plan drawn on its boxes,
    its plan nudged once so that the careful key's rounded IoU falls (a function of the study and
    ``cfg.seed``)."""
    from annotation.errors import AnnotationError
    from annotation.simulate import ShapesJudge
    from annotation.tables import candidates_frame
    from reasongen.shapes.detect import detect
    from reasongen.shapes.geneval import plan_image_iou

    judge = ShapesJudge(store)
    rng = random.Random(f"candidate nudge {cfg.seed}")
    pairs: list[NudgePair] = []
    frame = candidates_frame(store, study, with_sample=False)
    if frame.empty:  # no candidates: no columns either
        return pairs
    for cid, pid in frame[["candidate_id", "prompt_id"]].itertuples(index=False):
        try:
            right, faithful, _ = judge.verdict(int(cid), int(pid))
        except AnnotationError:  # a prompt the shapes parser cannot read
            continue
        if not (right and faithful):
            continue
        sample = store.load_sample(int(cid))
        boxes = tuple(sample.plan.boxes)
        found = detect(sample.image)
        iou, _ = plan_image_iou(boxes, found)
        if iou < cfg.min_iou:
            continue
        moved = nudge(boxes, rng, 1000 / sample.image.size[0], cfg.max_px)
        if moved is None:
            continue
        moved_iou, _ = plan_image_iou(moved, found)
        if round(moved_iou / judge.iou_step) < round(iou / judge.iou_step):  # the key the panel reads
            pairs.append(NudgePair(int(cid), sample, boxes, moved, iou, moved_iou))
    return pairs


def _scores(scorer: Any, pairs: Sequence[NudgePair], nudged: bool) -> list[float]:
    """``scorer``'s score of each candidate beside its own plan, or beside the nudged one."""
    from reasongen.rewards.learned import reward_text

    plans = [p.nudged if nudged else p.boxes for p in pairs]
    return scorer.score(
        [scorer.model_image(p.sample.image, b) for p, b in zip(pairs, plans, strict=True)],
        [reward_text(p.sample.prompt, b, scorer.text_mode) for p, b in zip(pairs, plans, strict=True)],
    )


def run(cfg: CandidateProbeConfig, store: Any = None, log: Any = None) -> dict[str, Any]:
    """The share of pairs where the candidate beside its own plan scores above the nudged plan,
    with its 95% Clopper-Pearson interval; ``ValueError`` when the study gives no pair."""
    import statistics

    from annotation.store import Store
    from reasongen.rewards.learned import load_scorer

    from .probe import accuracy_row, pairs_right, write_report

    log = log or (lambda msg: print(msg, file=sys.stderr))
    store = store or Store(cfg.db or None, data_dir=cfg.data_dir)
    study = store.find_study(cfg.study)
    scorers = [load_scorer(m) for m in cfg.model]  # a missing folder fails before the detector runs
    pairs = nudge_pairs(store, study.id, cfg)
    if not pairs:
        raise ValueError(
            f"study {study.name}: no right candidate with a faithful plan drawn on its boxes "
            f"(IoU >= {cfg.min_iou}) whose plan a nudge of up to {cfg.max_px} px makes worse"
        )
    right = 0.0
    for k in range(0, len(pairs), cfg.batch_size):
        chunk = pairs[k : k + cfg.batch_size]
        own, moved = partial(_scores, pairs=chunk, nudged=False), partial(_scores, pairs=chunk, nudged=True)
        right += pairs_right(scorers, own, moved)
    report = {
        "model": cfg.model,
        "study": study.name,
        "max_px": cfg.max_px,
        "seed": cfg.seed,
        **accuracy_row(right, len(pairs)),
        "nudged_iou_median": statistics.median(p.nudged_iou for p in pairs),
    }
    log(
        f"plan_nudge on {study.name}: {report['accuracy']:.3f} [{report['ci_low']:.3f}, "
        f"{report['ci_high']:.3f}] ({len(pairs)} pairs; nudged plans' IoU median "
        f"{report['nudged_iou_median']:.2f})"
    )
    write_report(cfg.out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2."""
    from annotation.errors import AnnotationError
    from reasongen.rewards.base import RewardModelUnavailable
    from training.errors import cli_main

    def body() -> str:
        report = run(parse_config(CandidateProbeConfig, argv))
        return f"plan_nudge: {report['accuracy']:.3f} over {report['pairs']} pairs"

    return cli_main(body, (RewardModelUnavailable, AnnotationError))


if __name__ == "__main__":
    raise SystemExit(main())
