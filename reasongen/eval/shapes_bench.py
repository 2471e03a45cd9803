"""The shapes-world benchmark: GenEval's six categories, judged by the classical detector.

``benchmark_prompts`` draws a fixed, seeded, category-balanced prompt set from the world's scene
sampler. ``evaluate_shapes`` runs any generator over it — a callable that takes a list of
``BenchPrompt`` and returns, per prompt, a list of images or ``Sample``s — and checks every image
with the detector and GenEval's rules (``reasongen.shapes.geneval``). Samples that carry a box
plan (recipes with ``uses_plan``) are also scored for plan faithfulness and plan–image IoU, and
samples with a CoT for description faithfulness (the description names what the prompt asks:
``reasongen.shapes.cot.description_faithfulness``) and, with both, for description places (the
description says where its own plan puts things: ``reasongen.shapes.cot.places_agree``).
``summarize`` gives GenEval's numbers: accuracy per category over images, and ``overall`` as the
mean of the category accuracies (GenEval's overall score). Two suites share all of it: ``geneval``
(the six templates) and ``compositional`` (the rest of the language, ``reasongen.shapes.compose``).

Generators: ``model_generator`` (a loaded Janus model through ``reasongen.generation.generate``),
``oracle_generator`` (renders the ground-truth scene: checks the detector and prompts, ≈ 1.0),
``blank_generator`` (empty canvases: 0.0).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from reasongen.recipes import sample_uses_plan, sample_writes_cot
from reasongen.shapes.cot import description_faithfulness, places_agree
from reasongen.shapes.geneval import check_objects, plan_faithfulness, plan_image_iou
from reasongen.shapes.pools import benchmark_texts, suite_scenes
from reasongen.shapes.scene import BACKGROUND, Scene
from reasongen.shapes.scene_sampler import sample_scenes
from reasongen.types import CATEGORIES, Sample

Generated = Image.Image | Sample
GeneratorFn = Callable[[Sequence["BenchPrompt"]], Sequence[Sequence[Generated]]]
"""prompts → for each prompt, its images (or samples), in order."""


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt: its position in the set, GenEval category, text and metadata."""

    index: int
    category: str
    prompt: str
    metadata: dict[str, Any] = field(compare=False)
    scene: Scene | None = field(default=None, compare=False)


SUITES = ("geneval", "compositional")
"""``geneval``: GenEval's six templates; ``compositional``: the rest of the shapes language
(``reasongen.shapes.compose``: counts with attributes, several counted kinds, three and four
objects, relations between attributed objects, textures in free layouts)."""


def benchmark_prompts(
    n: int, seed: int = 0, cell: int | None = None, suite: str = "geneval", exclude_benchmark: int = 0
) -> list[BenchPrompt]:
    """``n`` prompts cycling through the suite's categories (balanced), from one seeded sampler.

    The same ``(n, seed, cell, suite)`` always gives the same prompts, so models are compared on
    one set. ``cell`` (e.g. 125) samples cell-aligned scenes, the embedded model's layout (fixed
    sizes, no textures, so no prompt asks for a texture it cannot draw); None: free layouts.
    The compositional suite draws from its own held-out seeds (``SUITE_SEED_BASE + seed``).

    ``exclude_benchmark`` > 0 makes a validation set: no prompt's text is among the benchmark's
    first ``exclude_benchmark`` prompts of the suite (prompt seed 0). Prompts of seed ``seed`` are
    taken in order, skipping those texts, with each position keeping its category, so the set stays
    balanced; a text may repeat where a category has few (GenEval's single-object template has 24
    texts in all on the cell layout, 22 of them among the benchmark's first 600).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the benchmark needs at least one prompt; got n={n!r}")
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if exclude_benchmark < 0:
        raise ValueError(f"exclude_benchmark must be >= 0, got {exclude_benchmark}")
    scenes = _suite_scenes(n, seed, cell, suite)
    if exclude_benchmark:
        scenes = _outside(scenes, seed, cell, suite, exclude_benchmark)
    return [BenchPrompt(i, s.category, s.prompt, s.metadata, s) for i, s in enumerate(scenes)]


def _suite_scenes(n: int, seed: int, cell: int | None, suite: str) -> list[Scene]:
    if suite == "compositional":
        return suite_scenes(n, seed=seed, cell=cell or None)
    return sample_scenes(n, seed=seed, categories=CATEGORIES, cell=cell or None)


def _outside(scenes: list[Scene], seed: int, cell: int | None, suite: str, holdout: int) -> list[Scene]:
    """``scenes``' categories, in order, filled with scenes of the same seed whose text is not one
    of the benchmark's first ``holdout`` texts (drawing four times more until every category has
    enough)."""
    held = benchmark_texts(holdout, cell or None, (suite,))
    need = Counter(s.category for s in scenes)
    draw = 4 * len(scenes)
    for _ in range(5):
        pools: dict[str, deque[Scene]] = defaultdict(deque)
        for s in _suite_scenes(draw, seed, cell, suite):
            if s.prompt not in held:
                pools[s.category].append(s)
        if all(len(pools[c]) >= k for c, k in need.items()):
            return [pools[s.category].popleft() for s in scenes]
        draw *= 4
    short = sorted(c for c, k in need.items() if len(pools[c]) < k)
    raise ValueError(f"too few {suite} prompts outside the benchmark's first {holdout} for "
                     f"{', '.join(short)}; lower n")  # fmt: skip


@dataclass
class ImageResult:
    """The verdict on one image."""

    prompt_index: int
    image_index: int
    category: str
    prompt: str
    metadata: dict[str, Any]
    correct: bool
    reasons: list[str]
    satisfied: int
    total: int
    detections: list[dict[str, Any]]
    cot: str | None = None
    plan: list[dict[str, Any]] | None = None
    plan_faithful: bool | None = None
    plan_iou: float | None = None
    cot_faithful: bool | None = None
    cot_places: bool | None = None
    image: Image.Image | None = None
    image_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_index": self.prompt_index,
            "image_index": self.image_index,
            "category": self.category,
            "prompt": self.prompt,
            "metadata": self.metadata,
            "correct": self.correct,
            "reasons": self.reasons,
            "satisfied": self.satisfied,
            "total": self.total,
            "detections": self.detections,
            "cot": self.cot,
            "plan": self.plan,
            "plan_faithful": self.plan_faithful,
            "plan_iou": self.plan_iou,
            "cot_faithful": self.cot_faithful,
            "cot_places": self.cot_places,
            "image_file": self.image_file,
        }


def judge(
    item: BenchPrompt,
    output: Generated,
    image_index: int = 0,
    detector: Callable[[Image.Image], list[Any]] | None = None,
) -> ImageResult:
    """Check one generated image (or sample) against its prompt."""
    from reasongen.shapes.detect import detect

    sample = output if isinstance(output, Sample) else None
    image = sample.image if sample is not None else output
    if not isinstance(image, Image.Image):
        raise ValueError(
            f"generator returned {type(output).__name__} for prompt {item.index}; "
            "expected a PIL image or a Sample with an image"
        )
    dets = (detector or detect)(image)
    verdict = check_objects(item.metadata, dets)
    res = ImageResult(
        prompt_index=item.index,
        image_index=image_index,
        category=item.category,
        prompt=item.prompt,
        metadata=item.metadata,
        correct=verdict.correct,
        reasons=list(verdict.reasons),
        satisfied=verdict.satisfied,
        total=verdict.total,
        detections=[d.to_dict() for d in dets],
        image=image,
    )
    if sample is not None:
        res.cot = sample.cot_text
        if sample_writes_cot(sample):
            res.cot_faithful = description_faithfulness(sample.cot_text or "", item.metadata).correct
        if sample_uses_plan(sample):
            plan = sample.plan.boxes if sample.plan is not None else ()
            res.plan = [b.to_dict() for b in plan]
            res.plan_faithful = plan_faithfulness(plan, item.metadata).correct
            res.plan_iou = round(plan_image_iou(plan, dets)[0], 4)
            if sample_writes_cot(sample):
                res.cot_places = places_agree(sample.cot_text or "", plan)
    return res


def evaluate_shapes(
    generator: GeneratorFn,
    prompts: Sequence[BenchPrompt],
    *,
    chunk: int = 8,
    detector: Callable[[Image.Image], list[Any]] | None = None,
    progress: bool = False,
) -> list[ImageResult]:
    """Generate for ``prompts`` (``chunk`` prompts per generator call) and judge every image."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    results: list[ImageResult] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), desc="shapes benchmark", unit="prompt")
    for start in range(0, len(prompts), chunk):
        items = list(prompts[start : start + chunk])
        outputs = list(generator(items))
        if len(outputs) != len(items):
            raise ValueError(
                f"generator returned {len(outputs)} results for {len(items)} prompts; "
                "it must return one list of images per prompt"
            )
        for item, outs in zip(items, outputs):
            if not outs:
                raise ValueError(f"generator returned no image for prompt {item.index}")
            results += [judge(item, o, k, detector) for k, o in enumerate(outs)]
        if bar is not None:
            bar.update(len(items))
    if bar is not None:
        bar.close()
    return results


def summarize(results: Sequence[ImageResult]) -> dict[str, Any]:
    """GenEval's numbers: per-category accuracy over images, ``overall`` = mean over categories
    (GenEval's six in their order, any others in the order first met).

    Also ``overall_images`` (plain mean over all images), counts per category and, when any
    image had a plan, the plan's mean faithfulness and IoU.
    """
    if not results:
        raise ValueError("no results to summarize")
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        c = counts.setdefault(r.category, {"prompts": 0, "images": 0, "correct": 0})
        c["images"] += 1
        c["correct"] += int(r.correct)
        c["prompts"] += int(r.image_index == 0)
    order = [c for c in CATEGORIES if c in counts] + [c for c in counts if c not in CATEGORIES]
    categories = {c: counts[c]["correct"] / counts[c]["images"] for c in order}
    out: dict[str, Any] = {
        "overall": sum(categories.values()) / len(categories),
        "overall_images": sum(r.correct for r in results) / len(results),
        "categories": categories,
        "counts": {c: counts[c] for c in order},
    }
    planned = [r for r in results if r.plan_faithful is not None]
    if planned:
        out["plan"] = {
            "images": len(planned),
            "faithfulness": sum(bool(r.plan_faithful) for r in planned) / len(planned),
            "iou": sum(float(r.plan_iou or 0.0) for r in planned) / len(planned),
            "categories": {
                c: sum(bool(r.plan_faithful) for r in planned if r.category == c)
                / max(1, sum(r.category == c for r in planned))
                for c in order
                if any(r.category == c for r in planned)
            },
        }
        modes = layout_mode_share(planned, order)
        out["plan"]["layout_mode_share"] = sum(modes.values()) / len(modes)
        out["plan"]["layout_mode_share_categories"] = modes
    described = [r for r in results if r.cot_faithful is not None]
    if described:
        out["description"] = {
            "images": len(described),
            "faithfulness": sum(bool(r.cot_faithful) for r in described) / len(described),
        }
        placed = [r for r in described if r.cot_places is not None]
        if placed:
            out["description"]["places"] = sum(bool(r.cot_places) for r in placed) / len(placed)
    return out


def layout_mode_share(planned: Sequence[ImageResult], order: Sequence[str]) -> dict[str, float]:
    """Per category, the share of planned images whose box layout (the boxes' coordinates, labels
    aside) is the category's most common one: low when plans vary with the prompt and the sample,
    near 1 when every prompt gets the same layout. GRPO can collapse plans to one layout (the
    shapes-janus-full-r1 run puts 88% of its single-object plans in one box; SFT 4%), which accuracy
    alone does not show and which fails wherever the model draws badly in that place."""
    layouts: dict[str, Counter[tuple[tuple[int, int, int, int], ...]]] = defaultdict(Counter)
    for r in planned:
        boxes = tuple(sorted((b["x1"], b["y1"], b["x2"], b["y2"]) for b in r.plan or ()))
        layouts[r.category][boxes] += 1
    return {c: max(layouts[c].values()) / sum(layouts[c].values()) for c in order if c in layouts}


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a ``summarize`` result."""
    plan = summary.get("plan", {}).get("categories", {})
    w = max(15, 1 + max(map(len, summary["categories"])))
    head = f"{'category':<{w}}{'prompts':>8}{'images':>8}{'correct':>9}{'accuracy':>10}"
    head += f"{'plan ok':>9}" if plan else ""
    lines = [head, "-" * len(head)]
    for cat, acc in summary["categories"].items():
        c = summary["counts"][cat]
        line = f"{cat:<{w}}{c['prompts']:>8}{c['images']:>8}{c['correct']:>9}{acc:>10.3f}"
        if plan:
            line += f"{plan[cat]:>9.3f}" if cat in plan else f"{'-':>9}"
        lines.append(line)
    lines.append("-" * len(head))
    lines.append(f"{'overall (mean of categories)':<40}{summary['overall']:>10.3f}")
    lines.append(f"{'overall (all images)':<40}{summary['overall_images']:>10.3f}")
    if "plan" in summary:
        p = summary["plan"]
        lines.append(f"{'plan faithfulness':<40}{p['faithfulness']:>10.3f}")
        lines.append(f"{'plan-image IoU':<40}{p['iou']:>10.3f}")
        if "layout_mode_share" in p:
            lines.append(f"{'most common layout (share of a category)':<40}{p['layout_mode_share']:>10.3f}")
    if "description" in summary:
        lines.append(f"{'description faithfulness':<40}{summary['description']['faithfulness']:>10.3f}")
        if "places" in summary["description"]:
            lines.append(f"{'description places = plan':<40}{summary['description']['places']:>10.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- generators


def oracle_generator(size: int | None = None) -> GeneratorFn:
    """Renders each prompt's ground-truth scene (an upper bound: checks detector and prompts)."""
    from reasongen.shapes.render import IMAGE_SIZE, render_scene

    def gen(items: Sequence[BenchPrompt]) -> list[list[Image.Image]]:
        out = []
        for it in items:
            if it.scene is None:
                raise ValueError(f"prompt {it.index} has no scene to render")
            out.append([render_scene(it.scene, size or IMAGE_SIZE)])
        return out

    return gen


def blank_generator(size: int = 128) -> GeneratorFn:
    """Empty background canvases (a lower bound: every prompt fails)."""

    def gen(items: Sequence[BenchPrompt]) -> list[list[Image.Image]]:
        return [[Image.new("RGB", (size, size), BACKGROUND)] for _ in items]

    return gen


def model_generator(
    loaded: Any,
    recipe: str = "got-r1",
    samples_per_prompt: int = 1,
    seed: int = 0,
    settings: Any = None,
) -> GeneratorFn:
    """Generate with a loaded model: ``samples_per_prompt`` samples of each prompt of a chunk,
    the chunk's prompts decoded together by one multi-prompt ``generate`` call, each seeded
    ``seed + prompt index`` with its own random stream (so a result does not depend on the
    chunking)."""
    from reasongen.generation import generate

    def gen(items: Sequence[BenchPrompt]) -> list[list[Sample]]:
        if not items:
            return []
        k = samples_per_prompt
        flat = generate(loaded, [it.prompt for it in items], recipe=recipe, n=k,
                        seed=[seed + it.index for it in items], settings=settings,
                        metadata=[it.metadata for it in items])  # fmt: skip
        return [flat[j * k : (j + 1) * k] for j in range(len(items))]

    return gen


def timed(generator: GeneratorFn) -> tuple[GeneratorFn, dict[str, float]]:
    """Wrap a generator so the seconds spent inside it accumulate in the returned dict."""
    clock = {"generation_s": 0.0}

    def gen(items: Sequence[BenchPrompt]) -> Sequence[Sequence[Generated]]:
        t0 = time.perf_counter()
        try:
            return generator(items)
        finally:
            clock["generation_s"] += time.perf_counter() - t0

    return gen, clock
