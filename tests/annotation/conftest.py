"""Fixtures for the annotation store tests: a fresh store per test on SQLite (always) and on
PostgreSQL (only when ``REASONGEN_TEST_PG_URL`` points at a server, e.g. from .ci/postgres.sh),
plus pre-built ``Sample`` objects so no model is needed."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.store import Store
from reasongen.types import Plan, Sample, SamplingSettings

PG_ENV = "REASONGEN_TEST_PG_URL"
TEST_PASSWORD_COST = 2**4  # scrypt n for tests only; the default is 2**14


def make_sample(
    prompt: str,
    model_id: str = "tiny",
    recipe: str = "direct",
    seed: int = 0,
    index: int = 0,
    size: int = 16,
) -> Sample:
    """A small but complete Sample; its random image is fixed by (prompt, model, seed, index)."""
    rng = np.random.default_rng(zlib.crc32(f"{prompt}|{model_id}|{recipe}|{seed}|{index}".encode()))
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return Sample(
        prompt=prompt,
        recipe=recipe,
        model_id=model_id,
        seed=seed,
        settings=SamplingSettings(num_image_tokens=4),
        prompt_ids=[1, 5, 6],
        cot_text=f"thinking about {prompt}",
        cot_token_ids=[7, 8],
        cot_logprobs=[-0.5, -1.25],
        cot_end="boi",
        prefix_ids=[1, 5, 6, 7, 8, 2],
        image_token_ids=[3, 1, 4, 1],
        image_logprobs=[-2.0, -1.5, -0.25, -3.0],
        plan=Plan(text=f"thinking about {prompt}"),
        image=Image.fromarray(pixels),
        metadata={"tag": "single_object"},
        index=index,
    )


def _reset_postgres(url: str) -> None:
    """Empty the test database (drops its public schema). Refuses databases not named *test*."""
    from sqlalchemy import create_engine, make_url, text

    if "test" not in (make_url(url).database or ""):
        pytest.fail(f"{PG_ENV} must name a throw-away database with 'test' in its name; the tests wipe it")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store (SQLite file in tmp_path, or the test PostgreSQL database)."""
    if request.param == "postgres":
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"{PG_ENV} is not set (run .ci/postgres.sh to start a server)")
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path / 'test.db'}"
    st = Store(url, tmp_path / "data", password_cost=TEST_PASSWORD_COST, pool_size=8)
    try:
        yield st
    finally:
        st.close()


def populate(
    store: Store,
    *,
    n_prompts: int = 3,
    systems=(("m1", "direct"), ("m2", "got-r1")),
    per_system: int = 2,
    group_size: int = 4,
    rankings_per_task: int = 2,
    control_rate: float = 0.0,
    name: str = "s1",
) -> tuple[int, list[int]]:
    """A study with prompts, candidates from each system and mixed tasks; returns (study, tasks)."""
    st = store.create_study(
        name,
        group_size=group_size,
        rankings_per_task=rankings_per_task,
        control_rate=control_rate,
        guidelines="rank by prompt fidelity",
    )
    pids = store.add_prompts(st.id, [f"a red square number {i}" for i in range(n_prompts)])
    for pid, text in zip(pids, [f"a red square number {i}" for i in range(n_prompts)], strict=True):
        for model, recipe in systems:
            samples = [make_sample(text, model, recipe, seed=7, index=k) for k in range(per_system)]
            store.add_candidates(pid, samples)
    return st.id, store.build_tasks(st.id)


@pytest.fixture
def sample_factory():
    """``make_sample`` as a fixture (test modules cannot import conftest under importlib mode)."""
    return make_sample


@pytest.fixture
def populate_study():
    """``populate`` as a fixture."""
    return populate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, unmigrated database: a new SQLite file in tmp_path, or the test
    PostgreSQL database wiped (skipped when ``REASONGEN_TEST_PG_URL`` is not set)."""
    if request.param == "postgres":
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"{PG_ENV} is not set (run .ci/postgres.sh to start a server)")
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path / 'fresh.db'}"


SHAPES_KINDS = ("right", "loose_plan", "wrong_image", "blank")
"""The candidates of each prompt of :func:`shapes_study`, best first by the careful verdict:
the scene rendered with its own plan (correct, plan faithful, IoU ≈ 1); the same image with every
box squeezed into the top-left corner (correct, low IoU); another scene's image with this plan
(wrong); a blank image without a plan (wrong, no plan)."""


def shapes_study(
    store: Store,
    *,
    n_prompts: int = 6,
    rankings_per_task: int = 3,
    controls: int = 0,
    control_rate: float = 0.0,
    name: str = "shapes",
    seed: int = 5,
) -> tuple[int, dict[int, str]]:
    """A study of rendered shapes scenes (no model) with one task per prompt holding the four
    :data:`SHAPES_KINDS` candidates, and ``controls`` control tasks (a prompt's right candidate
    among other prompts' blank ones). Returns (study id, candidate id → kind)."""
    from dataclasses import replace

    from reasongen.plans import parse_plan
    from reasongen.shapes import BACKGROUND, render_scene, sample_scenes, write_cot
    from reasongen.types import Box

    scenes = sample_scenes(n_prompts + 1, seed=seed)
    st = store.create_study(
        name, group_size=4, rankings_per_task=rankings_per_task, control_rate=control_rate
    )
    pids = store.add_prompts(
        st.id, [{"prompt": sc.prompt, "metadata": sc.metadata} for sc in scenes[:n_prompts]]
    )
    kinds: dict[int, str] = {}
    by_prompt: dict[int, dict[str, int]] = {}
    for i, (pid, sc) in enumerate(zip(pids, scenes, strict=False)):
        cot = write_cot(sc)
        plan = parse_plan(cot)
        squeezed = replace(plan, boxes=tuple(Box(b.label, 0, 0, 30, 30) for b in plan.boxes))
        image = render_scene(sc)
        other = render_scene(scenes[i + 1])
        blank = Image.new("RGB", image.size, BACKGROUND)
        base = make_sample(sc.prompt, "shapes", "got-r1", seed=1)
        samples = [
            replace(base, image=image, plan=plan, cot_text=cot, metadata=sc.metadata, index=0),
            replace(base, image=image, plan=squeezed, cot_text=cot, metadata=sc.metadata, index=1),
            replace(base, image=other, plan=plan, cot_text=cot, metadata=sc.metadata, index=2),
            replace(base, image=blank, plan=None, cot_text="", metadata=sc.metadata, index=3),
        ]
        ids = store.add_candidates(pid, samples)
        kinds.update(zip(ids, SHAPES_KINDS, strict=True))
        by_prompt[pid] = dict(zip(SHAPES_KINDS, ids, strict=True))
    store.build_tasks(st.id)
    order = list(by_prompt)
    for k in range(controls):
        pid = order[k % len(order)]
        others = [by_prompt[p]["blank"] for p in order if p != pid][:3]
        store.create_task(
            st.id, [*others[:1], by_prompt[pid]["right"], *others[1:]], control_best=by_prompt[pid]["right"]
        )
    return st.id, kinds


@pytest.fixture
def make_shapes_study():
    """``shapes_study`` as a fixture."""
    return shapes_study
