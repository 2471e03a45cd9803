"""Filling a study with candidates: generation through reasongen, optional reward scoring.

Generation sits behind a :data:`SampleSource` callable so tests (and other pipelines) can pass
pre-built ``Sample`` objects; :func:`reasongen_source` is the real one
(``reasongen.loading.load_model`` + ``reasongen.generation.generate``), loading each model once.
Rewards are any callables ``reward(samples) -> output`` with ``output.scores`` (float or None per
sample) and ``output.details``; :func:`load_rewards` builds them by name from
``reasongen.rewards`` (imported only when asked for).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from annotation.errors import AnnotationError

if TYPE_CHECKING:
    from annotation.store import Store

SampleSource = Callable[[str, str, str, int, int, "dict[str, Any] | None"], list[Any]]
"""``source(model, prompt, recipe, n, seed, metadata) -> list[Sample]``: ``n`` samples of one
prompt (``metadata``: the prompt's GenEval-style metadata or None, kept on the samples so
metadata-driven rewards can score them)."""

RewardFn = Callable[[list[Any]], Any]
BATCH_PROMPTS = 8  # prompts a batch-capable source samples together


def parse_system(spec: str) -> tuple[str, str]:
    """``"MODEL:RECIPE"`` (split at the last colon) -> ``(model, recipe)``."""
    model, sep, recipe = spec.rpartition(":")
    if not sep or not model or not recipe:
        raise AnnotationError(
            f"system {spec!r} must look like MODEL:RECIPE, e.g. assets/models/shapes-janus-r1:got-r1"
        )
    return model, recipe


def derive_seed(base: int, prompt_position: int, system: tuple[str, str]) -> int:
    """A reproducible 31-bit seed for one (prompt, system) group."""
    key = f"{base}|{prompt_position}|{system[0]}|{system[1]}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF


def reasongen_source(device: str | None = None, settings: Any = None) -> SampleSource:
    """A :data:`SampleSource` that generates with reasongen, loading each model once (lazily).

    It also has a ``batch(model, prompts, recipe, n, seeds, metadata)`` attribute that samples
    several prompts in one multi-prompt ``generate`` call (one random stream per prompt, so each
    prompt's samples are those the one-prompt call gives); :func:`populate_study` uses it.
    """
    cache: dict[str, Any] = {}

    def loaded(model: str) -> Any:
        from reasongen.loading import load_model

        if model not in cache:
            cache[model] = load_model(model, device=device)
        return cache[model]

    def source(
        model: str, prompt: str, recipe: str, n: int, seed: int, metadata: dict[str, Any] | None
    ) -> list[Any]:
        from reasongen.generation import generate

        return generate(
            loaded(model), prompt, recipe=recipe, n=n, seed=seed, settings=settings, metadata=metadata
        )

    def batch(
        model: str,
        prompts: Sequence[str],
        recipe: str,
        n: int,
        seeds: Sequence[int],
        metadata: Sequence[dict[str, Any] | None],
    ) -> list[list[Any]]:
        from reasongen.generation import generate

        flat = generate(loaded(model), list(prompts), recipe=recipe, n=n, seed=list(seeds),
                        settings=settings, metadata=list(metadata))  # fmt: skip
        return [flat[k * n : (k + 1) * n] for k in range(len(prompts))]

    source.batch = batch  # type: ignore[attr-defined]
    return source


def load_rewards(names: Sequence[str]) -> dict[str, RewardFn]:
    """Reward callables by registry name (``reasongen.rewards.make_reward``), built on demand."""
    if not names:
        return {}
    from reasongen.rewards import make_reward

    return {name: make_reward([name]) for name in names}


def populate_study(
    store: Store,
    study_id: int,
    systems: Sequence[tuple[str, str]],
    source: SampleSource,
    *,
    n: int | None = None,
    seed: int = 0,
    rewards: Mapping[str, RewardFn] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[int]:
    """Generate ``n`` (default: the study's group size) candidates per prompt and system, score
    them with each reward, and store them. Returns the new candidate ids."""
    study = store.get_study(study_id)
    n = n or study.group_size
    if not systems:
        raise AnnotationError("give at least one MODEL:RECIPE system to generate candidates")
    ids: list[int] = []
    prompts = store.prompt_rows(study.id)
    batch = getattr(source, "batch", None)
    step = BATCH_PROMPTS if batch is not None else 1
    indexed = list(enumerate(prompts))
    for start in range(0, len(indexed), step):
        chunk = indexed[start : start + step]
        drawn: dict[tuple[int, tuple[str, str]], list[Any]] = {}
        for system in systems:
            seeds = [derive_seed(seed, position, system) for position, _ in chunk]
            if batch is not None:
                groups = batch(system[0], [row[1] for _, row in chunk], system[1], n, seeds,
                               [row[2] for _, row in chunk])  # fmt: skip
            else:
                groups = [
                    source(system[0], row[1], system[1], n, sd, row[2]) for (_, row), sd in zip(chunk, seeds)
                ]
            for (position, _), samples in zip(chunk, groups):
                drawn[position, system] = samples
        for position, (prompt_id, _text, _meta) in chunk:  # stored in prompt, then system order
            for system in systems:
                samples = drawn[position, system]
                scored = {name: fn(samples) for name, fn in (rewards or {}).items()}
                ids += store.add_candidates(prompt_id, samples, rewards=scored)
                if progress is not None:
                    where = f"prompt {position + 1}/{len(prompts)} {system[0]}:{system[1]}"
                    progress(f"{where}: {len(samples)} candidates")
    return ids
