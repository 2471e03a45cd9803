"""The shapes world's classical detector and its GenEval-style rules."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from reasongen.plans import parse_plan
from reasongen.shapes import BACKGROUND, COLORS, SHAPES, render_objects, render_scene, sample_scenes
from reasongen.shapes.cot import write_cot
from reasongen.shapes.detect import (
    Detection,
    Detector,
    DetectorConfig,
    detect,
    detector_agreement,
    matches_objects,
    shape_features,
)
from reasongen.shapes.geneval import (
    check_image,
    check_objects,
    object_from_label,
    overlapping_boxes,
    plan_faithfulness,
    plan_image_iou,
    relative_position,
)
from reasongen.shapes.scene import CELL_SIDES, SIZE_RANGE, ShapeObject, size_threshold_for
from reasongen.types import CATEGORIES, Box


@pytest.fixture(scope="module")
def clean_set():
    scenes = sample_scenes(300, seed=2026)
    return scenes, [render_scene(s) for s in scenes]


def _obj(shape: str, color: str, x1: int, y1: int, side: int = 200, texture=None) -> ShapeObject:
    size = "large" if side >= 270 else "small"
    return ShapeObject(shape, color, size, texture, Box(f"{color} {shape}", x1, y1, x1 + side, y1 + side))


# --------------------------------------------------------------------------- detector


def test_detector_is_right_on_clean_renders(clean_set):
    scenes, images = clean_set
    det = Detector()
    wrong = []
    for i, (scene, img) in enumerate(zip(scenes, images)):
        found = det(img)
        sizes_ok = sorted(o.size for o in scene.objects) == sorted(d.size for d in found)
        if not (matches_objects(found, scene.objects, min_iou=0.7) and sizes_ok):
            wrong.append(i)
    assert {s.category for s in scenes} == set(CATEGORIES)
    assert sum(len(s.objects) for s in scenes) > 450
    assert len(wrong) / len(scenes) <= 0.01, f"wrong on scenes {wrong}"


def test_textures_are_classified_on_clean_renders(clean_set):
    scenes, images = clean_set
    pairs = []
    for scene, img in zip(scenes, images):
        found = detect(img)
        for o in scene.objects:
            d = max(found, key=lambda d: _iou(d.box, o.box))
            pairs.append((o.texture, d.texture))
    textured = [p for p in pairs if p[0] is not None]
    assert len(textured) >= 30
    assert sum(a == b for a, b in pairs) / len(pairs) >= 0.99


def _iou(a: Box, b: Box) -> float:
    from reasongen.plans import box_iou

    return box_iou(a, b)


def test_boxes_agree_with_the_scene(clean_set):
    scenes, images = clean_set
    ious = []
    for scene, img in zip(scenes[:60], images[:60]):
        found = detect(img)
        ious += [max(_iou(d.box, o.box) for d in found) for o in scene.objects]
    assert min(ious) > 0.8
    assert float(np.mean(ious)) > 0.9


def test_detector_agreement_counts_matching_images(clean_set):
    scenes, images = clean_set
    assert detector_agreement(images[:30], scenes[:30]) == 1.0
    blank = [Image.new("RGB", (128, 128), BACKGROUND)] * 4
    assert detector_agreement(blank, scenes[:4]) == 0.0
    # Half right: two correct images, two with another scene's render.
    mixed = [images[0], images[1], images[3], images[2]]
    score = detector_agreement(mixed, scenes[:4])
    assert score == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one per image"):
        detector_agreement(images[:2], scenes[:3])


@pytest.mark.parametrize("size", [64, 128])
def test_detector_is_right_on_cell_aligned_renders(size):
    scenes = sample_scenes(150, seed=7, cell=125)
    images = [render_scene(s, size=size) for s in scenes]
    assert detector_agreement(images, scenes, min_iou=0.8) == 1.0
    sizes = [(sorted(o.size for o in s.objects), sorted(d.size for d in detect(im)))
             for s, im in zip(scenes, images)]  # fmt: skip
    assert all(a == b for a, b in sizes)
    assert {o.size for s in scenes for o in s.objects} == {"small", "large"}


def test_one_size_threshold_serves_both_layouts():
    t = size_threshold_for()
    assert SIZE_RANGE["small"][1] < t < SIZE_RANGE["large"][0]
    assert CELL_SIDES["small"] < t < CELL_SIDES["large"]
    assert CELL_SIDES["small"] < size_threshold_for(125) < CELL_SIDES["large"]
    assert (t, size_threshold_for(125)) == (290, 312)  # the values the shipped models were scored with
    assert DetectorConfig().size_threshold == t
    big, small = Box("circle", 0, 0, t, t), Box("circle", 0, 0, t - 10, t - 10)
    assert (object_from_label(big).size, object_from_label(small).size) == ("large", "small")


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize(
    "degrade",
    [
        lambda im: im.filter(ImageFilter.GaussianBlur(1.0)),
        lambda im: _jpeg(im, 40),
        lambda im: im.resize((64, 64), Image.Resampling.BILINEAR).resize((128, 128)),
    ],
    ids=["blur", "jpeg", "half-resolution"],
)
def test_detector_tolerates_blur_and_compression(clean_set, degrade):
    scenes, images = clean_set
    agreement = detector_agreement([degrade(im) for im in images[:120]], scenes[:120])
    assert agreement >= 0.97


def test_wrong_colour_or_shape_is_not_a_match():
    obj = _obj("circle", "red", 100, 100)
    img = render_objects([obj])
    found = detect(img)
    assert matches_objects(found, [obj])
    assert not matches_objects(found, [replace(obj, color="blue")])
    assert not matches_objects(found, [replace(obj, shape="square")])
    assert not matches_objects(found, [obj, _obj("star", "green", 600, 600)])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("color", list(COLORS))
def test_every_shape_and_colour_alone(shape, color):
    small, large = _obj(shape, color, 80, 120, 170), _obj(shape, color, 500, 450, 330)
    found = detect(render_objects([small, large]))
    assert [(d.shape, d.color, d.size) for d in found] == [
        (shape, color, "small"),
        (shape, color, "large"),
    ]
    assert all(0 < d.score <= 1 for d in found)


def test_blank_and_speckled_images_give_no_detections():
    blank = Image.new("RGB", (128, 128), BACKGROUND)
    assert detect(blank) == []
    arr = np.asarray(blank).copy()
    arr[10:12, 10:12] = COLORS["red"]  # 4 pixels: below min_area
    arr[60, 60] = COLORS["black"]
    assert detect(arr) == []


def test_touching_objects_of_different_colours_are_split():
    a = _obj("square", "blue", 200, 300, 300)
    b = _obj("square", "yellow", 500, 300, 300)  # shares an edge with a
    found = detect(render_objects([a, b]))
    assert sorted((d.color, d.shape) for d in found) == [("blue", "square"), ("yellow", "square")]


def test_images_from_outside_the_world_are_bounded():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((384, 384), Image.Resampling.BICUBIC)  # colour patches
    t0 = time.perf_counter()
    found = detect(photo)
    assert time.perf_counter() - t0 < 5.0
    assert len(found) <= DetectorConfig().max_objects
    squares = [_obj("square", "blue", 60 + 240 * (i % 4), 60 + 240 * (i // 4)) for i in range(8)]
    assert len(detect(render_objects(squares))) == 8
    capped = Detector(DetectorConfig(max_objects=3))(render_objects(squares))
    assert len(capped) == 3
    with pytest.raises(ValueError, match="max_objects"):
        DetectorConfig(max_objects=0)


def test_array_inputs_and_other_resolutions():
    obj = _obj("triangle", "green", 300, 300, 300)
    img = render_objects([obj], size=256)
    as_float = np.asarray(img).astype(np.float32) / 255.0
    for inp in (img, np.asarray(img), as_float):
        (d,) = detect(inp)
        assert (d.shape, d.color, d.size) == ("triangle", "green", "large")
        assert _iou(d.box, obj.box) > 0.9
    assert d.to_dict()["box"] == [d.box.x1, d.box.y1, d.box.x2, d.box.y2]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="RGB image"):
        detect(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="min_area"):
        DetectorConfig(min_area=0.0)
    with pytest.raises(ValueError, match="RGB triple"):
        DetectorConfig(colors={"red": (300, 0, 0)})
    with pytest.raises(ValueError, match="at least 3"):
        shape_features(np.zeros((5, 5), bool))


def test_shape_features_of_a_square_and_a_diamond():
    sq = np.zeros((40, 40), bool)
    sq[5:35, 5:35] = True
    f = shape_features(sq)
    assert f.fill == pytest.approx(1.0)
    assert f.corners == 4
    yy, xx = np.mgrid[:41, :41]
    diamond = np.abs(yy - 20) + np.abs(xx - 20) <= 18
    g = shape_features(diamond)
    assert 0.45 < g.fill < 0.6
    assert g.corners == 4


def test_detector_is_fast(clean_set):
    _, images = clean_set
    det = Detector()
    det(images[0])
    t0 = time.perf_counter()
    for img in images[:100]:
        det(img)
    per_image = (time.perf_counter() - t0) / 100
    assert per_image < 0.05, f"{per_image * 1000:.1f} ms per image"


# --------------------------------------------------------------------------- GenEval rules


def _det(shape, color, x1, y1, side=200, size=None, texture=None) -> Detection:
    size = size or ("large" if side >= 245 else "small")
    return Detection(shape, color, size, Box(f"{color} {shape}", x1, y1, x1 + side, y1 + side),
                     area=side * side / 1e6, score=1.0, texture=texture)  # fmt: skip


def test_relative_position_uses_image_coordinates():
    left, right = Box("a", 100, 400, 300, 600), Box("b", 600, 420, 800, 620)
    assert relative_position(left, right) == {"left of"}
    assert relative_position(right, left) == {"right of"}
    top, bottom = Box("a", 400, 50, 600, 250), Box("b", 420, 600, 620, 800)
    assert relative_position(top, bottom) == {"above"}  # smaller y is higher
    assert relative_position(bottom, top) == {"below"}
    assert relative_position(top, Box("c", 410, 60, 610, 260)) == set()  # within the margin
    diag = relative_position(Box("a", 0, 0, 100, 100), Box("b", 800, 800, 900, 900))
    assert diag == {"left of", "above"}


def test_counting_needs_the_exact_count():
    meta = {"tag": "counting", "prompt": "three stars", "include": [{"class": "star", "count": 3}],
            "exclude": [{"class": "star", "count": 4}]}  # fmt: skip
    stars = [_det("star", "red", 50 + 230 * i, 100) for i in range(4)]
    assert check_objects(meta, stars[:3]).correct
    too_many = check_objects(meta, stars)
    assert not too_many.correct and "star<4" in too_many.reasons[0]
    assert too_many.fraction == pytest.approx(0.5)
    too_few = check_objects(meta, stars[:2])
    assert not too_few.correct and too_few.matched == (None,)
    assert check_objects(meta, [*stars[:3], _det("circle", "red", 100, 700)]).correct


def test_colour_size_and_texture_attributes():
    meta = {"tag": "colors", "prompt": "a large striped red circle",
            "include": [{"class": "circle", "count": 1, "color": "red", "size": "large",
                         "texture": "striped"}]}  # fmt: skip
    good = _det("circle", "red", 100, 100, 300, texture="striped")
    assert check_objects(meta, [good]).correct
    # The matching object is found even when another circle comes first.
    assert check_objects(meta, [_det("circle", "blue", 500, 500, 300), good]).correct
    assert not check_objects(meta, [replace(good, color="pink")]).correct
    small = replace(good, size="small")
    assert not check_objects(meta, [small]).correct
    assert check_objects(meta, [small], check_size=False).correct
    plain = replace(good, texture=None)
    assert not check_objects(meta, [plain]).correct
    assert check_objects(meta, [plain], check_texture=False).correct
    assert not check_objects(meta, [replace(good, shape="square")]).correct


def test_position_and_colour_binding():
    meta = {"tag": "position", "prompt": "a star left of a cross",
            "include": [{"class": "cross", "count": 1},
                        {"class": "star", "count": 1, "position": ["left of", 0]}]}  # fmt: skip
    star, cross = _det("star", "red", 100, 400), _det("cross", "blue", 600, 420)
    assert check_objects(meta, [star, cross]).correct
    swapped = check_objects(meta, [replace(star, box=cross.box), replace(cross, box=star.box)])
    assert not swapped.correct and "right of" in swapped.reasons[0]
    missing = check_objects(meta, [star])
    assert not missing.correct and any("no target" in r for r in missing.reasons)
    binding = {"tag": "color_attr", "prompt": "a red star and a blue cross",
               "include": [{"class": "star", "count": 1, "color": "red"},
                           {"class": "cross", "count": 1, "color": "blue"}]}  # fmt: skip
    assert check_objects(binding, [star, cross]).correct
    assert not check_objects(binding, [replace(star, color="blue"), replace(cross, color="red")]).correct


def test_malformed_metadata_raises():
    with pytest.raises(ValueError, match="tag"):
        check_objects({"tag": "nope", "include": [{"class": "star"}]}, [])
    with pytest.raises(ValueError, match="include"):
        check_objects({"tag": "colors", "include": []}, [])


def test_world_renders_pass_their_own_prompts(clean_set):
    scenes, images = clean_set
    verdicts = [check_image(img, s.metadata)[0] for s, img in zip(scenes, images)]
    assert sum(v.correct for v in verdicts) / len(verdicts) >= 0.99
    blank = Image.new("RGB", (128, 128), BACKGROUND)
    assert not any(check_image(blank, s.metadata)[0].correct for s in scenes[:12])


def test_plan_faithfulness_rejects_overlapping_boxes():
    """Four planned squares of which two overlap count four on paper but cannot be drawn as four."""
    meta = {"tag": "counting", "prompt": "four squares", "include": [{"class": "square", "count": 4}]}
    corners = [(0, 0), (500, 0), (0, 500), (625, 625)]
    apart = [Box("red square", x, y, x + 250, y + 250) for x, y in corners]
    assert overlapping_boxes(apart) == []
    ok = plan_faithfulness(apart, meta)
    assert ok.correct and (ok.satisfied, ok.total) == (2, 2)  # the count and the layout
    # Touching edges are not an overlap; a shared area is.
    touching = [*apart[:3], Box("red square", 250, 500, 500, 750)]
    assert plan_faithfulness(touching, meta).correct
    clash = [*apart[:3], Box("red square", 125, 200, 375, 550)]  # overlaps boxes 0 and 2
    assert overlapping_boxes(clash) == [(0, 3), (2, 3)]
    bad = plan_faithfulness(clash, meta)
    assert not bad.correct
    assert bad.reasons == ("boxes 0 and 3 overlap", "boxes 2 and 3 overlap")
    assert (bad.satisfied, bad.total) == (1, 2) and bad.fraction == 0.5
    assert plan_faithfulness(clash, meta, separate=False).correct


def test_plan_checks_on_the_world_cot(clean_set):
    scenes, images = clean_set
    for scene, img in zip(scenes[:60], images[:60]):
        plan = parse_plan(write_cot(scene))
        assert plan_faithfulness(plan, scene.metadata).correct, scene.prompt
        score, pairs = plan_image_iou(plan, detect(img))
        assert score > 0.8 and len(pairs) == len(scene.objects)
    # A plan that names the wrong shape fails faithfulness and matches nothing by label.
    scene = next(s for s in scenes if s.category == "single_object")
    (box,) = scene.boxes
    other = next(s for s in SHAPES if s != scene.objects[0].shape)
    wrong = replace(box, label=f"{scene.objects[0].color} {other}")
    assert not plan_faithfulness([wrong], scene.metadata).correct
    found = detect(render_scene(scene))
    assert plan_image_iou([wrong], found)[0] == 0.0
    assert plan_image_iou([wrong], found, require_label_match=False)[0] > 0.8
    assert plan_image_iou([], found) == (0.0, [])


def test_plan_labels_are_read_as_objects():
    o = object_from_label(Box("a large striped red circle", 0, 0, 100, 100))
    assert (o.shape, o.color, o.size, o.texture) == ("circle", "red", "large", "striped")
    o = object_from_label(Box("Blue Crosses", 0, 0, 300, 300))
    assert (o.shape, o.color, o.size) == ("cross", "blue", "large")
    assert object_from_label(Box("green thing", 0, 0, 100, 100)).shape == "green thing"
