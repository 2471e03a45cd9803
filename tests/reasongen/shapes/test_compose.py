"""The whole shapes language: the writer and the parser agree on every construction, the
compositional scenes are drawable and held out, and their CoTs and plans state what was asked."""

from __future__ import annotations

import hashlib
import random
from itertools import combinations

import pytest

from reasongen.plans import parse_plan
from reasongen.shapes import sample_scene, sample_scenes, write_cot
from reasongen.shapes.compose import (
    COMPOSITIONAL,
    FULL_LANGUAGE,
    SUITE_SEED_BASE,
    check_categories,
    suite_categories,
)
from reasongen.shapes.cot import describe
from reasongen.shapes.geneval import check_image, plan_faithfulness
from reasongen.shapes.parse import MAX_OBJECTS, QUANTITIES, parse_prompt
from reasongen.shapes.pools import prompt_pool, suite_scenes
from reasongen.shapes.prompts import (
    ATTRIBUTE_KINDS,
    COMPOSED_OPENINGS,
    NUMBER_WORDS,
    RELATION_PHRASES,
    Mention,
    write_mentions,
)
from reasongen.shapes.render import render_scene
from reasongen.shapes.scene import COLORS, PLURALS, SHAPES, SIZES, TEXTURES, Scene, ShapeObject
from reasongen.types import CATEGORIES, RELATIONS, Box

ATTRIBUTE_SETS = [c for k in range(len(ATTRIBUTE_KINDS) + 1) for c in combinations(ATTRIBUTE_KINDS, k)]
STRUCTURES = [(k, None) for k in range(1, MAX_OBJECTS + 1)] + [(2, r) for r in RELATIONS]
"""Every way the parser joins object phrases: 1-4 in a list, or two around each relation."""


def _group(rng: random.Random, quantity: int | None, shape: str, color: str) -> list[ShapeObject]:
    n = quantity or 1
    size, texture = rng.choice(SIZES), rng.choice(TEXTURES)
    return [ShapeObject(shape, color, size, texture, Box("x", 0, 0, 100, 100)) for _ in range(n)]


def _construction(rng: random.Random, forms: list[tuple[int | None, tuple[str, ...]]], relation: str | None):
    """Objects and mentions with the given ``(quantity, attributes)`` per object phrase."""
    objects: list[ShapeObject] = []
    mentions = []
    colors = rng.sample(list(COLORS), len(forms))
    for (quantity, attrs), color in zip(forms, colors):
        group = _group(rng, quantity, rng.choice(SHAPES), color)
        span = tuple(range(len(objects), len(objects) + len(group)))
        objects += group
        mentions.append(Mention(span, quantity is not None, attrs, digits=rng.random() < 0.3))
    return objects, mentions


def _form_read(entry: dict, exact: bool) -> tuple[int | None, tuple[str, ...]]:
    return (entry["count"] if exact else None), tuple(a for a in ATTRIBUTE_KINDS if a in entry)


def test_every_construction_the_parser_reads_is_one_the_writer_emits() -> None:
    """Enumerate the parser's grammar (every structure, every object slot, every quantity and
    attribute set in it): the writer emits it and the parser reads back exactly its metadata
    and that form in that slot."""
    rng = random.Random(0)
    cases = 0
    for n, relation in STRUCTURES:
        for slot in range(n):
            for quantity in QUANTITIES:
                for attrs in ATTRIBUTE_SETS:
                    forms = [(rng.choice(QUANTITIES), rng.choice(ATTRIBUTE_SETS)) for _ in range(n)]
                    forms[slot] = (quantity, attrs)
                    objects, mentions = _construction(rng, forms, relation)
                    prompt, meta = write_mentions(objects, mentions, rng, relation)
                    assert parse_prompt(prompt) == meta, prompt
                    include = meta["include"]
                    if relation is not None:  # the metadata lists the reference first
                        include = [include[1], include[0]]
                        assert include[0]["position"] == [relation, 0]
                    excluded = {e["class"] for e in meta.get("exclude", [])}
                    entry = include[slot]
                    exact = quantity is not None
                    assert _form_read(entry, exact) == (quantity, attrs), prompt
                    # A number is read as exact: one more is excluded unless the shape is named twice.
                    named_twice = sum(e["class"] == entry["class"] for e in include) > 1
                    assert (entry["class"] in excluded) == (exact and not named_twice), prompt
                    cases += 1
    assert cases == sum(n for n, _ in STRUCTURES) * len(QUANTITIES) * len(ATTRIBUTE_SETS)


def test_every_opening_and_relation_wording_is_read() -> None:
    rng = random.Random(1)
    objects, mentions = _construction(rng, [(None, ("color",)), (2, ())], None)
    openings, relations = set(), set()
    for seed in range(300):
        for relation in (None, "left of"):
            prompt, meta = write_mentions(objects, mentions, random.Random(seed), relation)
            assert parse_prompt(prompt) == meta, prompt
            openings.add(max((o for o in COMPOSED_OPENINGS if prompt.startswith(o)), key=len))
            relations |= {w for w, _ in RELATION_PHRASES if f" {w} " in prompt}
    assert openings == set(COMPOSED_OPENINGS)
    assert {"to the left of", "left of"} <= relations


@pytest.mark.parametrize("cell", [None, 125])
def test_sampled_prompts_of_every_category_read_back_as_their_metadata(cell) -> None:
    cats = tuple(suite_categories(cell))
    for scene in sample_scenes(400, seed=5, categories=(*CATEGORIES, *cats), cell=cell):
        assert parse_prompt(scene.prompt) == scene.metadata, scene.prompt


def test_writer_refuses_what_the_language_cannot_say() -> None:
    rng = random.Random(0)
    plain = ShapeObject("star", "red", "small", None, Box("x", 0, 0, 100, 100))
    other = ShapeObject("circle", "red", "small", None, Box("x", 200, 0, 300, 100))
    with pytest.raises(ValueError, match="1 to 4"):
        write_mentions([plain], [], rng)
    with pytest.raises(ValueError, match="1 to 4"):
        write_mentions([plain], [Mention((0,))] * 5, rng)
    with pytest.raises(ValueError, match="article names one object"):
        write_mentions([plain, plain], [Mention((0, 1))], rng)
    with pytest.raises(ValueError, match="share its shape"):
        write_mentions([plain, other], [Mention((0, 1), exact=True)], rng)
    with pytest.raises(ValueError, match="no texture"):
        write_mentions([plain], [Mention((0,), attributes=("texture",))], rng)
    with pytest.raises(ValueError, match="attributes"):
        write_mentions([plain], [Mention((0,), attributes=("shade",))], rng)
    with pytest.raises(ValueError, match="exactly two"):
        write_mentions([plain], [Mention((0,))], rng, "left of")
    with pytest.raises(ValueError, match="counts to 9"):
        write_mentions([plain] * 10, [Mention(tuple(range(10)), exact=True)], rng)
    with pytest.raises(ValueError, match="categories must name"):
        check_categories(["count_color", "juggling"])
    with pytest.raises(ValueError, match="free layouts"):
        sample_scene("textured", rng, cell=125)


def test_geneval_scenes_and_cots_are_unchanged() -> None:
    """The shipped models' pools: GenEval scenes, prompts and CoTs as before the compositional
    language was added (digest of the pre-training pool's first 2000 scenes at cell 125 and of
    free layouts, taken before the change)."""
    digest = hashlib.sha256()
    for cell in (125, None):
        for s in sample_scenes(2000, seed=4, cell=cell):
            digest.update(f"{s.prompt}\n{write_cot(s)}\n{s.metadata}\n".encode())
    assert digest.hexdigest() == GENEVAL_DIGEST


GENEVAL_DIGEST = "317c431c1d9a6a1dc362391ad530e9f24336ed4b895c0fc61184b3067f904827"


@pytest.mark.parametrize("cell", [None, 125])
def test_suite_is_balanced_seeded_held_out_and_drawable(cell) -> None:
    cats = suite_categories(cell)
    assert ("textured" in cats) == (cell is None) and set(cats) <= set(COMPOSITIONAL)
    scenes = suite_scenes(4 * len(cats), seed=0, cell=cell)
    assert [s.category for s in scenes] == list(cats) * 4
    assert [s.prompt for s in scenes] == [s.prompt for s in suite_scenes(4 * len(cats), 0, cell)]
    assert [s.prompt for s in scenes] != [s.prompt for s in suite_scenes(4 * len(cats), 1, cell)]
    # Its own seeds: the suite at seed s is the sampler at SUITE_SEED_BASE + s, no pool's seed.
    again = sample_scenes(len(scenes), seed=SUITE_SEED_BASE, categories=cats, cell=cell)
    assert [s.prompt for s in again] == [s.prompt for s in scenes]
    for s in scenes:
        boxes = s.boxes
        assert all(b1.x2 <= b2.x1 or b2.x2 <= b1.x1 or b1.y2 <= b2.y1 or b2.y2 <= b1.y1
                   for b1, b2 in combinations(boxes, 2))  # fmt: skip
        if cell:
            assert all(o.texture is None and o.box.x1 % cell == 0 for o in s.objects)
        verdict, _ = check_image(render_scene(s), s.metadata)
        assert verdict.correct, (s.prompt, verdict.reasons)


def test_cot_names_what_was_asked_and_the_plan_has_its_boxes() -> None:
    scenes = suite_scenes(350, seed=2, cell=125)
    for s in scenes:
        cot = write_cot(s)
        text = describe(s).lower()
        plan = parse_plan(cot).boxes
        assert plan == s.boxes
        assert [b.label for b in plan] == [f"{o.color} {o.shape}" for o in s.objects]
        assert plan_faithfulness(plan, s.metadata).correct, (s.prompt, cot)
        for entry in s.metadata["include"]:
            noun = entry["class"] if entry["count"] == 1 else PLURALS[entry["class"]]
            words = [entry.get(a) for a in ("size", "color") if a in entry]
            asked = " ".join([*words, noun])
            assert asked in text, (s.prompt, text)
            if entry["count"] > 1:
                # A counted group is named with its number: "three small blue triangles".
                assert f"{NUMBER_WORDS[entry['count']]} {entry.get('size', '')}".strip() in text, text
            boxes = [b for b in plan if b.label.endswith(entry["class"])
                     and ("color" not in entry or b.label.startswith(entry["color"]))]  # fmt: skip
            assert len(boxes) >= entry["count"]


def test_cot_examples() -> None:
    """A worked example: two counted kinds, named with their counts, one box per object."""
    two = (Box("red square", 0, 0, 250, 250), Box("red square", 0, 750, 250, 1000),
           Box("blue circle", 750, 375, 1000, 625))  # fmt: skip
    objs = (
        ShapeObject("square", "red", "small", None, two[0]),
        ShapeObject("square", "red", "small", None, two[1]),
        ShapeObject("circle", "blue", "small", None, two[2]),
    )
    scene = Scene("two_counts", objs, "two red squares and one circle", {})
    assert describe(scene) == (
        "Two small red squares at the top left and bottom left and a small blue circle at the right."
    )
    plan = parse_plan(write_cot(scene)).boxes
    assert plan == two
    meta = parse_prompt("two red squares and one circle")
    assert plan_faithfulness(plan, meta).correct
    assert not plan_faithfulness(plan[1:], meta).correct  # one square short


def test_pools_draw_from_the_weighted_language_and_leave_both_suites_out() -> None:
    geneval = prompt_pool(300, 7, list(CATEGORIES), 125, holdout=0)
    assert {m["tag"] for _, m in geneval} <= set(CATEGORIES)
    assert [p for p, _ in geneval] == [s.prompt for s in sample_scenes(300, 7, CATEGORIES, 125)]
    full = prompt_pool(len(FULL_LANGUAGE) * 20, 7, FULL_LANGUAGE, 125, holdout=300)
    suite = {s.prompt for s in suite_scenes(300, 0, 125)}
    bench = {s.prompt for s in sample_scenes(300, 0, CATEGORIES, 125)}
    assert not ({p for p, _ in full} & (suite | bench))
    drawn = sample_scenes(len(FULL_LANGUAGE) * 20, 7, FULL_LANGUAGE, 125)
    share = sum(s.category == "count_color" for s in drawn) / len(drawn)
    assert share == pytest.approx(2 / len(FULL_LANGUAGE))
    assert all(parse_prompt(p) == m for p, m in full)
    with pytest.raises(ValueError, match="free layouts"):
        prompt_pool(10, 7, ["textured"], 125)


def test_app_examples_cover_every_category_the_model_draws() -> None:
    """The Generate tab's examples (assets/examples/shapes.jsonl): every GenEval and every
    cell-layout compositional category, each with the metadata its prompt reads as."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "assets" / "examples" / "shapes.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert {r["category"] for r in rows} == set(CATEGORIES) | set(suite_categories(125))
    for r in rows:
        assert parse_prompt(r["prompt"]) == r["metadata"], r["prompt"]
    assert any(r["prompt"] == "two green stars" for r in rows)  # the README's example


def test_benchmark_texts_is_each_suites_benchmark_and_the_one_rule_every_holdout_uses() -> None:
    from reasongen.eval.shapes_bench import benchmark_prompts
    from reasongen.shapes.pools import benchmark_texts
    from training.monitor import validation_prompts
    from training.reward_model.pretrain import benchmark_texts as pretrain_texts

    for suite in ("geneval", "compositional"):
        want = {p.prompt for p in benchmark_prompts(200, 0, 125, suite)}
        assert benchmark_texts(200, 125, (suite,)) == want and len(want) > 50
        # the validation set of that suite keeps none of them
        assert not {p.prompt for p in benchmark_prompts(100, 1, 125, suite, exclude_benchmark=200)} & want
    both = benchmark_texts(200, 125, ("geneval", "compositional"))
    assert both == benchmark_texts(200, 125) | benchmark_texts(200, 125, ("compositional",))
    assert benchmark_texts(0, 125) == set()
    assert not {p for p, _ in validation_prompts(40, 125, 200)} & benchmark_texts(200, 125)
    assert pretrain_texts(200) == benchmark_texts(200, 125) | benchmark_texts(200, None)
    with pytest.raises(ValueError, match="unknown suite"):
        benchmark_texts(10, 125, ("nope",))
