"""What a shapes-world scorer can tell apart: each near-miss edit, probed on rendered scenes.

    python -m training.reward_model.probe --model DIR [DIR2 ...] [--n 200] [--out probe.json]

For every edit of ``near_miss`` (an object recoloured, reshaped, resized, dropped or copied, the
layout mirrored) and for ``mirror_relation`` (a relation prompt's scene mirrored across its
relation's axis), ``--n`` scenes of the shapes language are drawn, each edited once so that the
world's GenEval rules judge it wrong for its prompt, and the scorer is asked which of the two
pictures the prompt describes: the probe's accuracy is the share of pairs where the scene scores
above its edit (ties count half), with a 95% Clopper–Pearson interval. 0.5 is blindness to that
kind of error. The scene and its edit are drawn as a model draws (``pretrain.drawn``: nudged and
blurred a little); for a scorer that reads the plan, the plan is edited with the image, so both
pictures agree with their plans and only the prompt can tell them apart.

The plan probes ask the opposite question of a scorer that reads the plan: one drawing of the
scene, shown once beside its own boxes and once beside a worse plan — ``plan_unfaithful`` (a near
miss's boxes: wrong for the prompt), ``plan_overlap`` (two boxes overlapping: not drawable, the
commonest failure of the shapes models' plans) or ``plan_drift`` (one box part-way off its
object). Only the plan differs, so a scorer that does not read it scores exactly 0.5.
``plan_loose`` asks the panel's IoU question: the scene drawn on its boxes (blurred, not nudged)
against the same objects drawn a pixel or two off them (``near_miss.loosen``, IoU 0.6–0.92), both
beside the scene's own plan.

On the human-loop scorers this found what rankings never showed: every one of them, whatever its
data, orders a left/right scene against its mirror at chance, while a recoloured object is caught
three times in four (training/README.md). Several ``--model`` folders are an ensemble scored by
the mean, as the ``learned`` reward scores one. A scorer that reads the plan as words
(``prompt_plan``) reads each picture's own boxes.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from reasongen.config import parse_config
from reasongen.shapes.compose import RELATION_CATEGORIES

from .near_miss import WORSE_PLANS

PROBE_CATEGORIES = {"mirror_relation": RELATION_CATEGORIES}
"""Categories a probe draws from when not the whole language (a relation needs a relation prompt)."""
PLAN_PROBES = tuple(f"plan_{kind}" for kind in WORSE_PLANS)
"""Probes whose edit is the plan alone, the image kept: ``plan_unfaithful``, ``plan_overlap`` and
``plan_drift``, one for each kind of ``near_miss.WORSE_PLANS`` (``near_miss.worse_plan``)."""
LOOSE_PROBE = "plan_loose"
"""The probe whose edit is where the objects are drawn, the plan kept: on its boxes against a pixel
or two off them (``near_miss.loosen``), the pairs the careful annotator's IoU key orders."""


@dataclass
class ProbeConfig:
    """Probe a scorer with near-miss pairs of rendered scenes."""

    model: list[str] = field(
        default_factory=list,
        metadata={"help": "Scorer folder (open_clip local-dir layout); several: an ensemble (mean score)."},
    )
    n: int = field(default=200, metadata={"help": "Scene pairs per probe."})
    probes: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Probes to run (default: every near-miss edit, mirror_relation and the plan probes)."
        },
    )
    language: str = field(default="full", metadata={"help": "'geneval' or 'full': the prompts drawn."})
    seed: int = field(default=0, metadata={"help": "Seed of the scenes, their edits and their drawing."})
    batch_size: int = field(default=64, metadata={"help": "Pictures per forward pass."})
    out: str = field(default="", metadata={"help": "Also write the results here as JSON (optional)."})

    def __post_init__(self) -> None:
        from reasongen.shapes.write_prompts import LANGUAGES

        if not self.model:
            raise ValueError("--model is required (a scorer folder; several for an ensemble)")
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"--n and --batch_size must be >= 1, got {self.n} and {self.batch_size}")
        if self.language not in LANGUAGES:
            raise ValueError(f"--language must be one of {', '.join(LANGUAGES)}, got {self.language!r}")
        unknown = sorted(set(self.probes) - set(probe_names()))
        if unknown:
            raise ValueError(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(probe_names())}")


def probe_names() -> list[str]:
    """Every probe: the near-miss edits, ``mirror_relation``, the plan probes, then ``plan_loose``."""
    from .near_miss import EDITS

    return [*sorted(EDITS), "mirror_relation", *PLAN_PROBES, LOOSE_PROBE]


def probe_pairs(name: str, n: int, language: str, seed: int) -> list[tuple[str, Any, Any]]:
    """``n`` (prompt, scene objects, edited objects) triples for probe ``name``, the edit wrong for
    the prompt by the world's rules (for the plan probes: the worse plan, as objects; for
    ``plan_loose``: the objects drawn off their boxes); a function of the arguments only."""
    from reasongen.shapes import sample_scene
    from reasongen.shapes.codes import CELL
    from reasongen.shapes.write_prompts import LANGUAGES

    from .near_miss import EDITS, loosen, mirror_relation, satisfies, worse_plan

    categories = PROBE_CATEGORIES.get(name, LANGUAGES[language])
    rng = random.Random(f"probe {name} {seed}")
    pairs: list[tuple[str, Any, Any]] = []
    for _ in range(200 * n):
        cell = CELL if rng.random() < 0.5 else None
        scene = sample_scene(rng.choice(categories), rng, cell)
        if name == "mirror_relation":
            edited = mirror_relation(scene)
        elif name in PLAN_PROBES:
            edited = worse_plan(name.removeprefix("plan_"), scene, rng, cell)
        elif name == LOOSE_PROBE:
            edited = loosen(scene.objects, rng)
        else:
            edited = EDITS[name](scene.objects, rng, cell)
            edited = None if edited is None or satisfies(scene.metadata, edited) else edited
        if edited is not None:
            pairs.append((scene.prompt, scene.objects, edited))
            if len(pairs) == n:
                return pairs
    raise ValueError(f"probe {name}: only {len(pairs)} of {n} scenes could be edited wrong")


def _scores(scorer: Any, shown: Sequence[tuple[str, Any, Any]]) -> list[float]:
    """``scorer``'s score of each (prompt, objects, rendered image): the image with the objects'
    boxes as its plan, composed as in pre-training (``pretrain.rendered_picture``)."""
    from reasongen.rewards.learned import reward_text

    from .pretrain import rendered_picture

    # the input side matters only where the rings are composed at it (a plain image is resized by
    # the scorer's own preprocessing)
    side = int(scorer.model.visual.image_size[0]) if scorer.image_mode == "outlined_plan" else 0
    return scorer.score(
        [rendered_picture(scorer.image_mode, im, [o.box for o in objs], side) for _, objs, im in shown],
        [reward_text(p, [o.box for o in objs], scorer.text_mode) for p, objs, _ in shown],
    )


def pairs_right(
    scorers: Sequence[Any], better: Callable[[Any], list[float]], worse: Callable[[Any], list[float]]
) -> float:
    """How many pairs the ensemble of ``scorers`` (mean score) orders right: ``better(scorer)`` and
    ``worse(scorer)`` are one member's scores of the pairs' two sides; a pair counts 1 when the
    summed margin is positive, 1/2 when it is zero (a tie)."""
    margins: list[float] = []  # per pair, the members' summed score(better) - score(worse)
    for scorer in scorers:
        good, bad = better(scorer), worse(scorer)
        margins = [m + g - b for m, g, b in zip(margins or [0.0] * len(good), good, bad, strict=True)]
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins)


def accuracy_row(right: float, pairs: int) -> dict[str, Any]:
    """``right`` of ``pairs`` as ``accuracy`` with its 95% Clopper-Pearson interval and the count."""
    from scipy.stats import binomtest

    ci = binomtest(int(round(right)), pairs).proportion_ci(0.95)
    return {"accuracy": right / pairs, "ci_low": ci.low, "ci_high": ci.high, "pairs": pairs}


def write_report(out: str, report: dict[str, Any]) -> None:
    """``report`` as indented JSON at ``out`` (its folder made), when ``out`` is given."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")


def run_probe(cfg: ProbeConfig, log: Any = None) -> dict[str, Any]:
    """Each probe's accuracy (the scene above its edit), with its 95% interval and pair count."""
    from reasongen.rewards.learned import load_scorer
    from reasongen.shapes.parse import parse_prompt

    from .pretrain import blurred, drawn

    log = log or (lambda msg: print(msg, file=sys.stderr))
    scorers = [load_scorer(m) for m in cfg.model]
    results: dict[str, Any] = {}
    for name in cfg.probes or probe_names():
        pairs = probe_pairs(name, cfg.n, cfg.language, cfg.seed)
        right = 0.0
        for k in range(0, len(pairs), cfg.batch_size):
            chunk = pairs[k : k + cfg.batch_size]
            # drawn once, as a model draws (nudged, blurred), and shown to every member
            rng = random.Random(f"drawn {name} {cfg.seed} {k}")
            if name == LOOSE_PROBE:  # on its boxes, or off them, beside the same plan
                scenes = [(p, o, blurred(o, rng)) for p, o, _ in chunk]
                edits = [(p, o, blurred(e, rng)) for p, o, e in chunk]
            else:
                scenes = [(p, o, drawn(o, rng, parse_prompt(p))) for p, o, _ in chunk]
                if name in PLAN_PROBES:  # the same drawing beside the worse plan
                    edits = [(p, e, im) for (p, _, e), (_, _, im) in zip(chunk, scenes, strict=True)]
                else:
                    edits = [(p, e, drawn(e, rng)) for p, _, e in chunk]
            right += pairs_right(scorers, partial(_scores, shown=scenes), partial(_scores, shown=edits))
        r = results[name] = accuracy_row(right, len(pairs))
        log(f"{name}: {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] ({len(pairs)} pairs)")
    report = {"model": cfg.model, "language": cfg.language, "seed": cfg.seed, "probes": results}
    write_report(cfg.out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2."""
    from reasongen.rewards.base import RewardModelUnavailable
    from training.errors import cli_main

    def body() -> str:
        report = run_probe(parse_config(ProbeConfig, argv))
        name, worst = min(report["probes"].items(), key=lambda kv: kv[1]["accuracy"])
        return f"probed {len(report['probes'])} kinds of near miss; weakest: {name} {worst['accuracy']:.3f}"

    return cli_main(body, (RewardModelUnavailable,))


if __name__ == "__main__":
    raise SystemExit(main())
