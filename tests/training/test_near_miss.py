"""Near-miss scenes for the reward model's pre-training: each edit does what it says, a near miss is
wrong for its prompt by the world's rules, and pre-training with them sees them as negatives."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from reasongen.shapes import render_objects, sample_scene
from reasongen.shapes.codes import CELL
from reasongen.shapes.scene import CELL_SIDES, ShapeObject
from reasongen.shapes.write_prompts import LANGUAGES
from reasongen.types import Box
from training.reward_model.near_miss import EDITS, near_miss, satisfies


def _obj(shape: str, color: str, x: int, y: int, size: str = "small") -> ShapeObject:
    side = CELL_SIDES[size]
    return ShapeObject(shape, color, size, None, Box(f"{color} {shape}", x, y, x + side, y + side))


SCENE = (_obj("circle", "red", 0, 0), _obj("star", "blue", 500, 0))


def test_each_edit_changes_one_thing() -> None:
    rng = random.Random(0)
    recoloured = EDITS["recolour"](SCENE, rng, CELL)
    changed = [(a, b) for a, b in zip(SCENE, recoloured, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].color != changed[0][1].color
    assert changed[0][1].box.label == f"{changed[0][1].color} {changed[0][1].shape}"
    reshaped = EDITS["reshape"](SCENE, rng, CELL)
    changed = [(a, b) for a, b in zip(SCENE, reshaped, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].shape != changed[0][1].shape
    assert len(EDITS["drop"](SCENE, rng, CELL)) == 1
    added = EDITS["add_copy"](SCENE, rng, CELL)
    assert len(added) == 3 and (added[2].shape, added[2].color) in {(o.shape, o.color) for o in SCENE}
    assert all(v % CELL == 0 for v in (added[2].box.x1, added[2].box.y1))  # stays on the grid
    resized = EDITS["resize"](SCENE, rng, CELL)
    sizes = Counter(o.size for o in resized)
    assert sizes == Counter({"small": 1, "large": 1})
    big = next(o for o in resized if o.size == "large")
    assert big.box.x2 - big.box.x1 == CELL_SIDES["large"]
    mirrored = EDITS["mirror"](SCENE, random.Random(1), CELL)
    xs = [(o.box.x1, o.box.x2) for o in mirrored]
    ys = [(o.box.y1, o.box.y2) for o in mirrored]
    assert xs == [(750, 1000), (250, 500)] or ys == [(750, 1000), (750, 1000)]


def test_edits_of_an_empty_scene_give_none() -> None:
    assert all(edit((), random.Random(0), None) is None for edit in EDITS.values())


@pytest.mark.parametrize("cell", [CELL, None])
def test_a_near_miss_is_wrong_for_its_prompt_and_the_scene_right(cell: int | None) -> None:
    rng = random.Random(3)
    made = 0
    for k in range(120):
        scene = sample_scene(LANGUAGES["full"][k % len(LANGUAGES["full"])], rng, cell)
        assert satisfies(scene.metadata, scene.objects), scene.prompt
        edited = near_miss(scene, rng, cell)
        if edited is None:
            continue
        made += 1
        assert not satisfies(scene.metadata, edited), scene.prompt
        assert render_objects(edited).size == render_objects(scene.objects).size
    assert made >= 110  # almost every scene has one (a lone shape's colour and size are free)


def test_a_relation_prompt_is_failed_by_its_mirror() -> None:
    rng = random.Random(0)
    scene = next(s for s in (sample_scene("position", rng, CELL) for _ in range(50)) if "left of" in s.prompt)
    mirrored = tuple(
        o.__class__(o.shape, o.color, o.size, o.texture, Box(o.box.label, 1000 - o.box.x2, o.box.y1,
                                                              1000 - o.box.x1, o.box.y2))
        for o in scene.objects
    )  # fmt: skip
    assert mirrored == EDITS["mirror"](scene.objects, _AlwaysLow(), CELL)
    assert not satisfies(scene.metadata, mirrored)


class _AlwaysLow(random.Random):
    def random(self) -> float:  # mirror left–right
        return 0.0


def test_pretraining_batches_carry_near_misses_as_extra_negatives(tmp_path) -> None:
    from training.reward_model.pretrain import PretrainConfig, caption_batch, clip_loss

    base = dict(arch="tiny", steps=2, batch=6, holdout_benchmark=0, language="full", device="cpu")
    plain = PretrainConfig(out="x", **base)
    hard = PretrainConfig(out="x", hard_negatives=1.0, **base)
    images, prompts, negatives = caption_batch(0, plain, set())
    assert negatives == []
    images_h, prompts_h, negatives_h = caption_batch(0, hard, set())
    assert prompts_h == prompts  # the scenes do not depend on the near misses
    assert [im.tobytes() for im in images_h] == [im.tobytes() for im in images]
    assert 4 <= len(negatives_h) <= 6
    with pytest.raises(ValueError, match="hard_negatives"):
        PretrainConfig(out="x", hard_negatives=1.5, **base)
    # the loss: a near miss closer to caption 0 than its own image raises it; it is no anchor
    txt = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    img = txt.clone()
    scale = torch.tensor(10.0)
    base_loss = clip_loss(img, txt, scale)
    assert torch.allclose(base_loss, clip_loss(torch.cat([img, -txt[:1]]), txt, scale), atol=0.05)
    assert clip_loss(torch.cat([img, txt[:1]]), txt, scale) > base_loss + 0.05


def test_resuming_with_other_hard_negatives_is_refused(tmp_path) -> None:
    from training.reward_model.pretrain import PretrainConfig, pretrain

    base = dict(arch="tiny", steps=1, batch=4, holdout_benchmark=0, device="cpu", log_every=0, warmup_steps=0)
    pretrain(PretrainConfig(out=str(tmp_path / "p"), hard_negatives=0.5, **base), log=lambda m: None)
    again = PretrainConfig(out=str(tmp_path / "p"), resume=True, **{**base, "steps": 2})
    with pytest.raises(ValueError, match=r"hard_negatives=0\.5"):
        pretrain(again, log=lambda m: None)


def test_with_a_plan_a_moved_object_is_a_near_miss_and_captions_carry_the_plan() -> None:
    from reasongen.rewards.learned import plan_of_text
    from training.reward_model.near_miss import PLAN_EDITS, follows_plan
    from training.reward_model.pretrain import PretrainConfig, caption_batch

    moved = PLAN_EDITS["move"](SCENE, random.Random(0), CELL)
    assert sum(a != b for a, b in zip(SCENE, moved, strict=True)) == 1
    assert follows_plan(SCENE, SCENE) and not follows_plan(SCENE, moved)
    assert not follows_plan(SCENE, SCENE[:1]) and "move" not in EDITS
    # a lone circle "a photo of a red circle" is still right anywhere: only the plan makes it a miss
    rng = random.Random(5)
    scene = next(s for s in (sample_scene("single_object", rng, CELL) for _ in range(20)))
    plan_misses = [near_miss(scene, random.Random(k), CELL, plan=True) for k in range(30)]
    assert any(m is not None and satisfies(scene.metadata, m) for m in plan_misses)
    assert all(m is None or not follows_plan(scene.objects, m) for m in plan_misses)
    base = dict(arch="tiny", steps=2, batch=4, holdout_benchmark=0, language="full", device="cpu")
    _, prompts, _ = caption_batch(0, PretrainConfig(out="x", **base), set())
    _, captions, _ = caption_batch(0, PretrainConfig(out="x", text="prompt_plan", **base), set())
    read = [plan_of_text(c) for c in captions]  # each caption is its prompt and a non-empty plan
    assert [prompt for prompt, _ in read] == prompts and all(boxes for _, boxes in read)
    with pytest.raises(ValueError, match="--text"):
        PretrainConfig(out="x", text="plan", **base)


def test_a_plan_captioned_pretraining_loads_as_a_plan_reading_scorer(tmp_path) -> None:
    import json

    from reasongen.rewards.learned import text_mode_of
    from training.reward_model.pretrain import PretrainConfig, pretrain

    out = pretrain(PretrainConfig(out=str(tmp_path / "p"), arch="tiny", steps=1, batch=4, warmup_steps=0,
                                  holdout_benchmark=0, device="cpu", log_every=0, text="prompt_plan",
                                  hard_negatives=1.0), log=lambda m: None)  # fmt: skip
    assert text_mode_of(json.loads((out / "open_clip_config.json").read_text())) == "prompt_plan"


def test_drift_moves_one_object_part_way_off_its_box_and_clear_of_the_rest() -> None:
    from reasongen.plans import box_iou
    from training.reward_model.near_miss import drift

    rng = random.Random(3)
    for _ in range(20):
        moved = drift(SCENE, rng, CELL)
        assert moved is not None
        changed = [(a, b) for a, b in zip(SCENE, moved, strict=True) if a != b]
        assert len(changed) == 1
        before, after = changed[0]
        assert (before.shape, before.color, before.size) == (after.shape, after.color, after.size)
        assert 0.25 <= box_iou(before.box, after.box) <= 0.75
        others = [o.box for o in moved if o is not after]
        assert all(box_iou(after.box, b) == 0 for b in others)
    assert drift((), rng) is None


def test_jitter_nudges_every_object_a_little_and_drawn_never_copies_the_plan() -> None:
    from reasongen.plans import box_iou
    from training.reward_model.near_miss import jitter
    from training.reward_model.pretrain import drawn

    rng = random.Random(1)
    nudged = jitter(SCENE, rng)
    assert nudged != SCENE and len(nudged) == len(SCENE)
    for before, after in zip(SCENE, nudged, strict=True):
        assert (before.shape, before.color, before.size) == (after.shape, after.color, after.size)
        assert box_iou(before.box, after.box) >= 0.8
    assert box_iou(nudged[0].box, nudged[1].box) == 0
    scene = sample_scene("position", random.Random(2), CELL)
    picture = drawn(scene.objects, random.Random(3), scene.metadata)
    assert picture.size == render_objects(scene.objects).size
    assert picture.tobytes() != render_objects(scene.objects).tobytes()


def test_image_plan_pretraining_shows_each_scene_beside_its_plan_with_misses_on_either_side(tmp_path) -> None:
    """--image image_plan: pictures twice as wide as high (scene | plan), every kind of near miss
    drawn, each below the careful annotator's best; the folder loads as an image_plan scorer."""
    import json

    from reasongen.rewards.learned import beside_plan, image_mode_of
    from reasongen.shapes import render_scene
    from reasongen.shapes.geneval import plan_faithfulness
    from training.reward_model.near_miss import follows_plan
    from training.reward_model.pretrain import (
        PLAN_MISSES,
        PretrainConfig,
        caption_batch,
        plan_near_miss,
        pretrain,
    )

    base = dict(arch="tiny", batch=8, warmup_steps=0, holdout_benchmark=0, device="cpu", log_every=0)

    cfg = PretrainConfig(out="x", image="image_plan", hard_negatives=1.0, language="full", **base)
    images, _, negatives = caption_batch(0, cfg, set())
    assert len(images) == 8 and negatives and all(im.size == (256, 128) for im in images + negatives)
    rng = random.Random(0)
    kinds: Counter[str] = Counter()
    for k in range(60):
        scene = sample_scene(LANGUAGES["full"][k % len(LANGUAGES["full"])], rng, CELL)
        assert beside_plan(render_scene(scene), scene.boxes).size == (256, 128)
        miss_rng = random.Random(k)
        kind = random.Random(k).choice(PLAN_MISSES)  # the kind plan_near_miss draws first
        miss = plan_near_miss(scene, miss_rng, CELL)
        if miss is None:
            continue
        kinds[kind] += 1
        drawn, plan = miss
        image_right = satisfies(scene.metadata, drawn)
        plan_right = plan_faithfulness(plan, scene.metadata).correct
        # never as good as the scene beside its own boxes: something is wrong or off its box
        as_planned = tuple(plan) == scene.boxes and tuple(drawn) == scene.objects
        assert not (image_right and plan_right and as_planned)
        if kind == "plan":
            assert tuple(drawn) == scene.objects and not plan_right
        if kind == "both":
            assert not image_right and tuple(o.box for o in drawn) == tuple(plan)
        if kind == "drift":
            assert tuple(plan) == scene.boxes and not follows_plan(scene.objects, drawn, min_iou=0.8)
    assert set(kinds) == set(PLAN_MISSES)
    out = pretrain(PretrainConfig(out=str(tmp_path / "p"), steps=1, image="image_plan", hard_negatives=1.0,
                                  **{**base, "batch": 4}), log=lambda m: None)  # fmt: skip
    saved = json.loads((out / "open_clip_config.json").read_text())
    assert image_mode_of(saved) == "image_plan" and saved["model_cfg"]["vision_cfg"]["image_size"] == [32, 64]
    with pytest.raises(ValueError, match="image='image_plan'"):
        again = PretrainConfig(out=str(out), steps=2, resume=True, hard_negatives=1.0, **{**base, "batch": 4})
        pretrain(again)
    with pytest.raises(ValueError, match="--image must be one of"):
        PretrainConfig(out="x", image="plan", **base)


def test_plan_dropout_shows_some_images_beside_an_empty_canvas() -> None:
    """--plan_dropout P: a share of the pairs (and their near misses) carry no plan, so the image
    half alone must say whether the image is right; the scenes and captions stay those of P = 0."""
    from reasongen.shapes.scene import BACKGROUND
    from training.reward_model.pretrain import PretrainConfig, caption_batch

    base = dict(arch="tiny", batch=16, holdout_benchmark=0, image="image_plan", hard_negatives=1.0,
                language="full")  # fmt: skip
    plain = caption_batch(2, PretrainConfig(out="x", **base), set())
    images, captions, negatives = caption_batch(2, PretrainConfig(out="x", plan_dropout=0.5, **base), set())
    assert captions == plain[1]

    def empty_plan(im) -> bool:
        return im.crop((128, 0, 256, 128)).getcolors() == [(128 * 128, BACKGROUND)]

    blank = [empty_plan(im) for im in images]
    assert 0 < sum(blank) < len(images) and not any(empty_plan(im) for im in plain[0])
    assert any(empty_plan(im) for im in negatives)
    with pytest.raises(ValueError, match="--plan_dropout needs --image image_plan or outlined_plan"):
        PretrainConfig(out="x", plan_dropout=0.5)
    with pytest.raises(ValueError, match="--plan_dropout is a probability"):
        PretrainConfig(out="x", **{**base, "image": "image_plan"}, plan_dropout=1.5)


def test_outlined_plan_pretraining_draws_rings_at_the_scorers_size(tmp_path) -> None:
    """--image outlined_plan: each picture is composed at the scorer's input side (the candidates'
    size), its image half ringed where the plan's boxes are; the folder records the mode and takes
    [S, 2S] images."""
    import json

    from reasongen.rewards.learned import PLAN_OUTLINE_RGB, image_mode_of
    from training.reward_model.pretrain import PretrainConfig, caption_batch, pretrain

    base = dict(arch="tiny", batch=8, warmup_steps=0, holdout_benchmark=0, device="cpu", log_every=0)
    cfg = PretrainConfig(out="x", image="outlined_plan", hard_negatives=1.0, language="full", **base)
    images, _, negatives = caption_batch(0, cfg, set())
    assert all(im.size == (64, 32) for im in images + negatives)  # the tiny config's 32 px side

    def rings(im) -> int:
        return sum(px == PLAN_OUTLINE_RGB for px in im.crop((0, 0, 32, 32)).getdata())

    assert all(rings(im) > 0 for im in images)  # every scene has a plan, so every image half a ring
    assert all(PLAN_OUTLINE_RGB not in im.crop((32, 0, 64, 32)).getdata() for im in images)  # not the plan
    out = pretrain(PretrainConfig(out=str(tmp_path / "p"), steps=1, image="outlined_plan", hard_negatives=1.0,
                                  **{**base, "batch": 4}), log=lambda m: None)  # fmt: skip
    saved = json.loads((out / "open_clip_config.json").read_text())
    assert image_mode_of(saved) == "outlined_plan" and saved["model_cfg"]["vision_cfg"]["image_size"] == [
        32,
        64,
    ]


@pytest.mark.parametrize("category", ["position", "relation_attr"])
def test_mirror_relation_reverses_the_relation_along_its_axis(category: str) -> None:
    """Left/right prompts are mirrored left–right, above/below top–bottom; the mirror is always
    wrong for the prompt and keeps every object's look; prompts without a relation give None."""
    from training.reward_model.near_miss import mirror_relation

    rng = random.Random(3)
    seen = set()
    for _ in range(60):
        scene = sample_scene(category, rng, CELL if rng.random() < 0.5 else None)
        mirrored = mirror_relation(scene)
        assert mirrored is not None and not satisfies(scene.metadata, mirrored)
        horizontal = " left of " in scene.prompt or " right of " in scene.prompt
        seen.add(horizontal)
        for a, b in zip(scene.objects, mirrored, strict=True):
            assert (a.shape, a.color, a.size, a.texture, a.box.label) == (
                b.shape,
                b.color,
                b.size,
                b.texture,
                b.box.label,
            )
            if horizontal:
                assert (b.box.x1, b.box.x2, b.box.y1, b.box.y2) == (
                    1000 - a.box.x2,
                    1000 - a.box.x1,
                    a.box.y1,
                    a.box.y2,
                )
            else:
                assert (b.box.x1, b.box.x2, b.box.y1, b.box.y2) == (
                    a.box.x1,
                    a.box.x2,
                    1000 - a.box.y2,
                    1000 - a.box.y1,
                )
    assert seen == {True, False}  # both axes were drawn
    assert mirror_relation(sample_scene("counting", rng, CELL)) is None


def test_relation_mirror_makes_each_relation_captions_near_miss_its_mirror(monkeypatch) -> None:
    """--relation_mirror 1: every relation caption's extra negative is its scene mirrored — in
    outlined_plan, plan and image alike — other captions keep their random near misses, the scenes
    do not change, and the option needs hard negatives."""
    from PIL import Image

    from training.reward_model import near_miss as nm
    from training.reward_model.pretrain import PretrainConfig, caption_batch, scorer_picture

    made = []

    def recording(scene):
        out = real(scene)
        if out is not None:
            made.append(out)
        return out

    real = nm.mirror_relation
    monkeypatch.setattr(nm, "mirror_relation", recording)
    base = dict(arch="tiny", batch=24, warmup_steps=0, holdout_benchmark=0, device="cpu", language="full",
                hard_negatives=1.0)  # fmt: skip
    _, captions, _ = caption_batch(0, PretrainConfig(out="x", **base), set())
    assert made == []  # off by default: not even asked
    _, captions_m, negatives = caption_batch(0, PretrainConfig(out="x", relation_mirror=1.0, **base), set())
    assert captions_m == captions
    relational = [
        c for c in captions if any(w in c for w in (" left of ", " right of ", " above ", " below "))
    ]
    assert relational and len(made) == len(relational)
    rendered = {im.tobytes() for im in negatives}
    assert all(render_objects(m).tobytes() in rendered for m in made)  # image mode: the mirror, drawn
    assert len(negatives) > len(made)  # the other captions still bring their near misses

    made.clear()
    cfg = PretrainConfig(out="x", relation_mirror=1.0, image="outlined_plan", **base)
    _, _, negatives = caption_batch(0, cfg, set())
    side = negatives[0].size[1]
    plan_halves = {im.crop((side, 0, 2 * side, side)).tobytes() for im in negatives}
    blank = Image.new("RGB", (side, side))
    for m in made:  # the plan half shows the mirrored boxes: plan and image reversed together
        shown = scorer_picture(cfg, blank, tuple(o.box for o in m))
        assert shown.crop((side, 0, 2 * side, side)).tobytes() in plan_halves
    with pytest.raises(ValueError, match="--relation_mirror chooses among near misses"):
        PretrainConfig(out="x", **{**base, "hard_negatives": 0.0}, relation_mirror=0.5)
    with pytest.raises(ValueError, match="relation_mirror is a probability"):
        PretrainConfig(out="x", **base, relation_mirror=2.0)


def test_pretraining_can_start_from_a_reward_model_folder(tmp_path) -> None:
    """--init DIR continues from the folder's weights (a fine-tuned reward model, say) and reads what
    it reads unless told otherwise; a folder that reads other pictures than --image names, or a path
    that is no folder, is refused before training."""
    from safetensors.torch import load_file

    from training.reward_model.pretrain import PretrainConfig, pretrain

    base = dict(arch="tiny", steps=1, batch=4, holdout_benchmark=0, device="cpu", log_every=0, warmup_steps=0,
                language="full", hard_negatives=1.0)  # fmt: skip
    first = pretrain(
        PretrainConfig(out=str(tmp_path / "a"), image="outlined_plan", **base), log=lambda m: None
    )
    w0 = load_file(first / "open_clip_model.safetensors")
    logs = []
    again = pretrain(
        PretrainConfig(out=str(tmp_path / "b"), image="outlined_plan", init=str(first), relation_mirror=1.0,
                       seed=9, lr=1e-9, **{k: v for k, v in base.items()}),
        log=logs.append,
    )  # fmt: skip
    w1 = load_file(again / "open_clip_model.safetensors")
    assert logs[0] == f"starting from {first}"
    # a step at a tiny learning rate: the start's weights, not seed 9's random ones
    assert all(torch.allclose(w0[k], w1[k], atol=1e-4) for k in w0)
    # --image and --text left out: the folder's modes, recorded as this run's settings
    adopted = PretrainConfig(out=str(tmp_path / "e"), init=str(first), **base)
    assert (adopted.text, adopted.image) == ("prompt", "outlined_plan")
    plain = PretrainConfig(out="x", **base)
    assert (plain.text, plain.image) == ("prompt", "image")
    with pytest.raises(ValueError, match="reads text 'prompt', image 'outlined_plan'"):
        pretrain(PretrainConfig(out=str(tmp_path / "c"), image="image", init=str(first), **base),
                 log=lambda m: None)  # fmt: skip
    with pytest.raises(ValueError, match="give an open_clip folder"):
        pretrain(
            PretrainConfig(out=str(tmp_path / "d"), init=str(tmp_path / "none"), **base), log=lambda m: None
        )
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_swap_relation_reverses_the_one_relation_of_a_caption() -> None:
    from reasongen.shapes.parse import parse_prompt
    from training.reward_model.near_miss import swap_relation

    assert (
        swap_relation("a red circle to the left of a blue square")
        == "a red circle to the right of a blue square"
    )
    assert swap_relation("two big stars above a cross") == "two big stars below a cross"
    assert swap_relation("a circle right of a square") == "a circle left of a square"
    assert swap_relation("two red circles") is None and swap_relation("a star and a cross") is None
    rng = random.Random(0)
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    for _ in range(40):  # every relation prompt of the language: the same objects, the relation reversed
        scene = sample_scene(rng.choice(["position", "relation_attr"]), rng, CELL)
        meta, swapped = scene.metadata, parse_prompt(swap_relation(scene.prompt))
        rel = next(r for r in meta["include"] if "position" in r)
        rel_s = next(r for r in swapped["include"] if "position" in r)
        assert rel_s["position"][0] == opposite[rel["position"][0]]
        assert {k: v for k, v in rel_s.items() if k != "position"} == {
            k: v for k, v in rel.items() if k != "position"
        }
        assert not satisfies(swapped, scene.objects)  # false of the scene the original captions


def test_relation_swapped_captions_are_negatives_of_the_image_side_only() -> None:
    """clip_loss with T extra texts: an image closer to a swapped caption than to its own pays for
    it; the extra texts are never anchors (their own images do not exist)."""
    from training.reward_model.pretrain import clip_loss

    txt = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    img = txt.clone()
    scale = torch.tensor(10.0)
    base = clip_loss(img, txt, scale)
    assert torch.allclose(base, clip_loss(img, torch.cat([txt, -txt[:1]]), scale, pairs=3), atol=0.05)
    assert clip_loss(img, torch.cat([txt, txt[:1]]), scale, pairs=3) > base + 0.05
    # exactly: image-to-text over all 4 texts, text-to-image from the 3 captions over the images
    extra = torch.cat([txt, torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)])
    logits = scale * img @ extra.T  # [3, 4]
    target = torch.arange(3)
    want = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :3].T, target))
    assert torch.allclose(clip_loss(img, extra, scale, pairs=3), want)


def test_pretraining_with_relation_swap_runs_and_is_kept_on_resume(tmp_path) -> None:
    from training.reward_model.pretrain import PretrainConfig, pretrain

    base = dict(arch="tiny", batch=8, holdout_benchmark=0, device="cpu", log_every=0, warmup_steps=0,
                language="full", hard_negatives=1.0, relation_mirror=1.0)  # fmt: skip
    out = pretrain(
        PretrainConfig(out=str(tmp_path / "p"), steps=1, relation_swap=True, **base), log=lambda m: None
    )
    assert json.loads((out / "pretrain.json").read_text())["settings"]["relation_swap"] is True
    with pytest.raises(ValueError, match="relation_swap=True"):
        pretrain(PretrainConfig(out=str(out), steps=2, resume=True, **base), log=lambda m: None)


def test_plan_negatives_carry_an_unfaithful_an_overlapping_or_a_drifted_plan_beside_the_prompt() -> None:
    """Each worse plan keeps the prompt and is ranked below the scene's own by the careful key: the
    plan no longer satisfies the prompt, or two of its boxes overlap (it cannot be drawn), or one box
    has drifted part-way off its object."""
    from reasongen.plans import box_iou
    from reasongen.rewards.learned import plan_of_text, reward_text
    from reasongen.shapes.geneval import overlapping_boxes, plan_faithfulness
    from training.reward_model.pretrain import PretrainConfig, batch_scenes, caption_batch, negative_texts

    base = dict(out="x", batch=32, holdout_benchmark=0, language="full", text="prompt_plan", seed=3)
    cfg = PretrainConfig(plan_negatives=1.0, **base)
    scenes = {s.prompt: s for s, _ in batch_scenes(4, cfg.seed, cfg.categories, cfg.batch, set())}
    _, captions, _ = caption_batch(4, cfg, set())
    texts = negative_texts(4, cfg, set(), captions)
    assert len(texts) >= 24 and not set(texts) & set(captions)  # most scenes bring one; none is a caption
    kinds = Counter()
    for text in texts:
        prompt, boxes = plan_of_text(text)
        scene = scenes[prompt]
        assert plan_faithfulness(scene.boxes, scene.metadata).correct  # the scene's own plan is right
        if overlapping_boxes(boxes):
            kinds["overlap"] += 1
            continue
        if not plan_faithfulness(boxes, scene.metadata).correct:
            kinds["unfaithful"] += 1
            continue
        moved = [box_iou(a, b) for a, b in zip(scene.boxes, boxes, strict=True) if a != b]
        assert len(moved) == 1 and 0.25 <= moved[0] <= 0.75, text
        kinds["drift"] += 1
    assert min(kinds["unfaithful"], kinds["overlap"], kinds["drift"]) >= 4, kinds
    first = scenes[plan_of_text(captions[0])[0]]
    assert reward_text(first.prompt, first.boxes, "prompt_plan") == captions[0]
    # off: no extra texts; the images of a step never depend on the option
    plain = PretrainConfig(**base)
    assert negative_texts(4, plain, set(), captions) == []
    assert caption_batch(4, plain, set())[1] == captions
    # relation swaps come first, then the worse plans
    both = PretrainConfig(plan_negatives=1.0, relation_swap=True, **base)
    swapped = negative_texts(4, PretrainConfig(relation_swap=True, **base), set(), captions)
    assert swapped and negative_texts(4, both, set(), captions) == swapped + texts


def test_plan_negatives_reach_the_loss_are_refused_without_a_plan_and_kept_on_resume(
    tmp_path, monkeypatch
) -> None:
    import training.reward_model.pretrain as pre
    from training.reward_model.pretrain import PretrainConfig, pretrain

    seen: list[tuple[int, int]] = []

    def spy(img, txt, scale, pairs=None):
        seen.append((len(txt), pairs))
        return real(img, txt, scale, pairs)

    real = pre.clip_loss
    monkeypatch.setattr(pre, "clip_loss", spy)

    with pytest.raises(ValueError, match="--text prompt_plan"):
        PretrainConfig(out="x", plan_negatives=0.5)
    with pytest.raises(ValueError, match="probability"):
        PretrainConfig(out="x", text="prompt_plan", plan_negatives=1.5)
    base = dict(arch="tiny", batch=8, holdout_benchmark=0, device="cpu", log_every=0, warmup_steps=0,
                language="full", text="prompt_plan", context_length=64)  # fmt: skip
    out = pretrain(
        PretrainConfig(out=str(tmp_path / "p"), steps=1, plan_negatives=1.0, **base), log=lambda m: None
    )
    assert json.loads((out / "pretrain.json").read_text())["settings"]["plan_negatives"] == 1.0
    assert seen and seen[0][1] == 8 and seen[0][0] > 8  # the 8 captions, then the worse plans
    with pytest.raises(ValueError, match=r"plan_negatives=1\.0"):
        pretrain(PretrainConfig(out=str(out), steps=2, resume=True, **base), log=lambda m: None)


def test_overlap_moves_one_box_onto_another_inside_the_canvas() -> None:
    from reasongen.plans import box_iou
    from reasongen.shapes.geneval import overlapping_boxes, plan_faithfulness
    from training.reward_model.near_miss import overlap

    assert overlap(SCENE[:1], random.Random(0), CELL) is None  # one object overlaps nothing
    for k in range(30):
        moved = overlap(SCENE, random.Random(k), CELL)
        assert moved is not None
        changed = [i for i, (a, b) in enumerate(zip(SCENE, moved, strict=True)) if a != b]
        assert len(changed) == 1
        o, was = moved[changed[0]], SCENE[changed[0]]
        assert (o.shape, o.color, o.size, o.box.label) == (was.shape, was.color, was.size, was.box.label)
        assert (
            o.box.x2 - o.box.x1 == was.box.x2 - was.box.x1 and o.box.y2 - o.box.y1 == was.box.y2 - was.box.y1
        )
        assert min(o.box.x1, o.box.y1) >= 0 and max(o.box.x2, o.box.y2) <= 1000
        assert box_iou(moved[0].box, moved[1].box) > 0 and overlapping_boxes([x.box for x in moved])
    meta = {"tag": "two_object", "include": [{"class": "circle", "count": 1}, {"class": "star", "count": 1}]}
    assert plan_faithfulness([x.box for x in SCENE], meta).correct
    assert not plan_faithfulness([x.box for x in overlap(SCENE, random.Random(1), CELL)], meta).correct


def test_loosen_moves_every_object_into_the_band_and_keeps_what_it_is() -> None:
    from reasongen.plans import box_iou
    from training.reward_model.near_miss import ALIGN_IOU, loosen

    rng = random.Random(4)
    lo, hi = ALIGN_IOU
    for _ in range(20):
        loose = loosen(SCENE, rng)
        assert loose is not None and len(loose) == len(SCENE)
        ious = [box_iou(a.box, b.box) for a, b in zip(SCENE, loose, strict=True)]
        assert all(lo <= v <= hi for v in ious if v < 1.0) and sum(ious) / len(ious) <= hi
        for before, after in zip(SCENE, loose, strict=True):
            assert (before.shape, before.color, before.size, before.box.label) == (
                after.shape, after.color, after.size, after.box.label)  # fmt: skip
            assert min(after.box.x1, after.box.y1) >= 0 and max(after.box.x2, after.box.y2) <= 1000
        assert box_iou(loose[0].box, loose[1].box) == 0
    assert loosen((), rng) is None
    with pytest.raises(ValueError, match="band"):
        loosen(SCENE, rng, band=(0.9, 0.5))


def test_align_negatives_pair_a_drawing_on_its_boxes_with_one_a_pixel_or_two_off_them() -> None:
    """--align_negatives 1: every caption's positive is drawn on its plan and its near miss is the
    same objects drawn off it; the detector's plan-image IoU, the careful annotator's key, puts the
    positive above its near miss, and the plan half of the two pictures is the same."""
    from reasongen.shapes.detect import detect
    from reasongen.shapes.geneval import plan_image_iou
    from training.reward_model.pretrain import PretrainConfig, batch_scenes, caption_batch

    cfg = PretrainConfig(out="x", arch="tiny", batch=8, holdout_benchmark=0, image="image_plan",
                         hard_negatives=1.0, align_negatives=1.0, language="full", seed=2)  # fmt: skip
    images, captions, negatives = caption_batch(5, cfg, set())
    scenes = [s for s, _ in batch_scenes(5, cfg.seed, cfg.categories, cfg.batch, set())]
    assert len(images) == len(captions) == len(negatives) == 8
    better = 0
    for scene, pos, neg in zip(scenes, images, negatives, strict=True):
        w, h = pos.size
        assert pos.crop((w // 2, 0, w, h)).tobytes() == neg.crop((w // 2, 0, w, h)).tobytes()
        tight, _ = plan_image_iou(scene.boxes, detect(pos.crop((0, 0, w // 2, h))))
        loose, _ = plan_image_iou(scene.boxes, detect(neg.crop((0, 0, w // 2, h))))
        better += round(tight, 1) > round(loose, 1)
    assert better >= 7  # the detector misreads a blurred edge now and then
    with pytest.raises(ValueError, match="--align_negatives needs --image"):
        PretrainConfig(out="x", align_negatives=0.5)
    with pytest.raises(ValueError, match="probability"):
        PretrainConfig(out="x", image="outlined_plan", align_negatives=1.5)
