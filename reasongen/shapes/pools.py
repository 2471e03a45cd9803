"""Prompt sets drawn from the shapes world's language: the compositional benchmark suite (on its
held-out seeds) and the training pools of pre-training and GRPO (the benchmarks' prompts left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reasongen.types import CATEGORIES

from .compose import SUITE_SEED_BASE, check_categories, suite_categories
from .scene import Scene
from .scene_sampler import sample_scenes


def suite_scenes(n: int, seed: int = 0, cell: int | None = None) -> list[Scene]:
    """The compositional suite: ``n`` scenes cycling through ``suite_categories(cell)``, drawn
    from the held-out seed ``SUITE_SEED_BASE + seed``."""
    return sample_scenes(n, seed=SUITE_SEED_BASE + seed, categories=suite_categories(cell), cell=cell)


BENCHMARK_SEED = 0
"""Prompt seed of the benchmark (``python -m reasongen.eval shapes``); its texts stay out of training."""


def benchmark_texts(n: int, cell: int | None = None, suites: Iterable[str] = ("geneval",)) -> set[str]:
    """The texts of the first ``n`` benchmark prompts (prompt seed 0) of each suite on layout
    ``cell``: the one rule for what training pools, the validation sets and the over-optimisation
    monitor leave out. ``geneval`` is GenEval's six templates, ``compositional`` the rest of the
    language (``suite_scenes``). Empty for ``n <= 0``."""
    if n <= 0:
        return set()
    texts: set[str] = set()
    for suite in suites:
        if suite == "geneval":
            scenes = sample_scenes(n, seed=BENCHMARK_SEED, categories=CATEGORIES, cell=cell)
        elif suite == "compositional":
            scenes = suite_scenes(n, seed=BENCHMARK_SEED, cell=cell)
        else:
            raise ValueError(f"unknown suite {suite!r}; choose geneval or compositional")
        texts |= {s.prompt for s in scenes}
    return texts


def held_out_suites(categories: Iterable[str]) -> tuple[str, ...]:
    """The benchmark suites whose texts a pool of ``categories`` must leave out: GenEval's always,
    the compositional suite's too when the pool composes (names a category beyond GenEval's six)."""
    composes = bool(set(categories) - set(CATEGORIES))
    return ("geneval", "compositional") if composes else ("geneval",)


def prompt_pool(
    n: int, seed: int, categories: Sequence[str], cell: int | None = None, holdout: int = 0
) -> list[tuple[str, dict]]:
    """``(prompt, metadata)`` of ``n`` scenes cycling through ``categories`` (name one more than
    once to weight it), leaving out the texts of the first ``holdout`` prompts of the GenEval
    benchmark (prompt seed 0) and, when the pool composes, of the compositional suite too.

    With only GenEval categories this is the pool the shipped GRPO model was trained on.
    """
    check_categories(categories, cell)
    scenes = sample_scenes(n, seed=seed, categories=tuple(categories), cell=cell)
    held = benchmark_texts(holdout, cell, held_out_suites(categories))
    pool = [(s.prompt, s.metadata) for s in scenes if s.prompt not in held]
    if not pool:
        raise ValueError("every 'shapes' prompt is a benchmark prompt; raise num_shapes_prompts")
    return pool
