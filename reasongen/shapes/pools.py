"""Prompt sets drawn from the shapes world's language: the compositional benchmark suite (on its
held-out seeds) and the training pools of pre-training and GRPO (the benchmarks' prompts left out).
"""

from __future__ import annotations

from collections.abc import Sequence

from reasongen.types import CATEGORIES

from .compose import SUITE_SEED_BASE, check_categories, suite_categories
from .scene import Scene
from .scene_sampler import sample_scenes


def suite_scenes(n: int, seed: int = 0, cell: int | None = None) -> list[Scene]:
    """The compositional suite: ``n`` scenes cycling through ``suite_categories(cell)``, drawn
    from the held-out seed ``SUITE_SEED_BASE + seed``."""
    return sample_scenes(n, seed=SUITE_SEED_BASE + seed, categories=suite_categories(cell), cell=cell)


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
    held: set[str] = set()
    if holdout > 0:
        held = {s.prompt for s in sample_scenes(holdout, seed=0, categories=CATEGORIES, cell=cell)}
        if set(categories) - set(CATEGORIES):
            held |= {s.prompt for s in suite_scenes(holdout, seed=0, cell=cell)}
    pool = [(s.prompt, s.metadata) for s in scenes if s.prompt not in held]
    if not pool:
        raise ValueError("every 'shapes' prompt is a benchmark prompt; raise num_shapes_prompts")
    return pool
