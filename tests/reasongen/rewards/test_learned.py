"""``learned``: a reward-model folder (open_clip local-dir layout) loads through the registry and
scores logit_scale × cosine; bad folders fail with a message naming the path and the fix."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
import torch
from PIL import Image

from reasongen.rewards import RewardModelUnavailable, get_reward, list_rewards, make_reward
from reasongen.rewards.cli import main
from reasongen.rewards.learned import (
    CONFIG_FILE,
    DEFAULT_MODEL,
    MODEL_ENV,
    NO_PLAN_NOTE,
    WEIGHTS_FILE,
    LearnedConfig,
    load_scorer,
)

CONFIG = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
    },
    "preprocess_cfg": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}


def _write_folder(path, config=CONFIG, seed=0):
    import open_clip
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**config["model_cfg"])
    with torch.no_grad():
        model.logit_scale.fill_(1.5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(config))
    return path, model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("learned") / "rm")


def _reference(model, image, prompt):
    """logit_scale × cosine computed straight from open_clip's own model and transforms."""
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2

    pre = image_transform_v2(PreprocessCfg(**CONFIG["preprocess_cfg"]), is_train=False)
    tok = SimpleTokenizer(context_length=16)
    with torch.no_grad():
        img = model.encode_image(pre(image)[None])
        txt = model.encode_text(tok([prompt]))
        cos = torch.nn.functional.cosine_similarity(img, txt).item()
    return float(torch.tensor(1.5).exp()) * cos


def test_learned_scores_in_the_registry(model_dir, sample_factory, images) -> None:
    path, model = model_dir
    assert "learned" in list_rewards()
    reward = get_reward("learned", model=str(path), device="cpu")
    assert not reward.loaded  # nothing loads before the first call
    samples = [sample_factory("a red square", images[0]), sample_factory("a blue circle", images[1]),
               sample_factory("a green square", None)]  # fmt: skip
    out = reward(samples)
    assert out.name == "learned" and out.scores[2] is None and out.details[2] == {"skipped": "no image"}
    for i in (0, 1):
        want = _reference(model.eval(), images[i], samples[i].prompt)
        assert out.scores[i] == pytest.approx(want, abs=1e-4)
        assert abs(out.scores[i]) <= float(torch.tensor(1.5).exp()) + 1e-5  # |cos| ≤ 1
        assert out.details[i] == {"learned": out.scores[i]}
    again = pickle.loads(pickle.dumps(reward))  # picklable; the copy loads on its own
    assert not again.loaded and again(samples[:1]).scores[0] == pytest.approx(out.scores[0], abs=1e-6)
    combined = make_reward("learned", options={"learned": {"model": str(path), "device": "cpu"}})
    assert combined(samples[:2]).scores == pytest.approx(out.scores[:2], abs=1e-6)


def test_default_is_the_environment_then_the_shipped_folder(monkeypatch, model_dir) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert LearnedConfig().model == str(DEFAULT_MODEL)
    assert DEFAULT_MODEL.parts[-3:] == ("assets", "models", "shapes-reward")
    monkeypatch.setenv(MODEL_ENV, str(model_dir[0]))
    assert get_reward("learned").config.model == str(model_dir[0])  # no options: the app's way


def test_open_clip_reads_the_folder_itself(model_dir) -> None:
    path, _ = model_dir
    scorer = load_scorer(path)
    im = Image.new("RGB", (40, 40), "red")
    a, b = scorer.score([im, im], ["a red square", "two blue circles"])
    assert a != b  # the prompt matters


def test_rewards_cli_takes_the_folder_by_set(model_dir, tmp_path, capsys) -> None:
    path, _ = model_dir
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    (tmp_path / "p.txt").write_text("a red square\n")
    args = ["score", "--rewards", "learned", "--images", str(tmp_path), "--prompts", str(tmp_path / "p.txt"),
            "--set", f"learned.model={path}", "--set", "learned.device=cpu", "--json"]  # fmt: skip
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert rec["image"] == "a.png" and rec["prompt"] == "a red square"
    assert isinstance(rec["learned"]["score"], float) and rec["learned"]["details"] == {
        "learned": rec["learned"]["score"]
    }


def _bad(path, kind):
    if kind == "missing":
        return path / "nope"
    if kind == "file":
        path.write_text("x")
        return path
    path.mkdir()
    if kind == "no_config":
        (path / WEIGHTS_FILE).write_bytes(b"")
    elif kind == "bad_json":
        (path / CONFIG_FILE).write_text("{not json")
    elif kind == "no_model_cfg":
        (path / CONFIG_FILE).write_text(json.dumps({"preprocess_cfg": {}}))
    elif kind == "no_weights":
        (path / CONFIG_FILE).write_text(json.dumps(CONFIG))
    elif kind == "wrong_weights":
        other = json.loads(json.dumps(CONFIG))
        other["model_cfg"]["embed_dim"] = 8
        _write_folder(path, other)
        (path / CONFIG_FILE).write_text(json.dumps(CONFIG))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no learned reward model at"),
        ("file", "is a file"),
        ("no_config", "has no open_clip_config.json"),
        ("bad_json", "is not valid JSON"),
        ("no_model_cfg", "no open_clip 'model_cfg'"),
        ("no_weights", "no weights"),
        ("wrong_weights", "do its weights fit"),
    ],
)
def test_bad_folders_fail_clearly(tmp_path, sample_factory, images, kind, message) -> None:
    path = _bad(tmp_path / "rm", kind)
    reward = get_reward("learned", model=str(path), device="cpu")
    with pytest.raises(RewardModelUnavailable, match=message) as err:
        reward([sample_factory("a red square", images[0])])
    assert "python -m training.reward_model" in str(err.value) or kind in ("bad_json", "no_model_cfg")
    assert str(path) in str(err.value)


def test_reward_text_modes() -> None:
    from reasongen.rewards.learned import reward_text
    from reasongen.types import Box

    boxes = (Box("red circle", 125, 750, 375, 1000), Box("black diamond", 625, 0, 1000, 375))
    assert reward_text("a red circle", boxes) == "a red circle"
    assert reward_text("a red circle", boxes, "prompt_plan") == (
        "a red circle. plan: red circle 125 750 375 1000; black diamond 625 0 1000 375"
    )
    assert reward_text("a red circle", (), "prompt_plan") == "a red circle. plan: none"
    with pytest.raises(ValueError, match="text mode"):
        reward_text("x", (), "cot")


def test_plan_of_text_reads_back_what_reward_text_writes_and_refuses_other_text() -> None:
    from reasongen.rewards.learned import plan_of_text, reward_text
    from reasongen.types import Box

    boxes = [Box("red circle", 125, 750, 375, 1000), Box("large black diamond", 625, 0, 1000, 375)]
    prompt = "a red circle left of a large black diamond"
    assert plan_of_text(reward_text(prompt, boxes, "prompt_plan")) == (prompt, boxes)
    assert plan_of_text(reward_text(prompt, [], "prompt_plan")) == (prompt, [])
    for bad, match in [
        ("a red circle", "not a prompt_plan text"),
        ("a red circle. plan: red circle 1 2 3", "not a label and four integers"),
        ("a red circle. plan: 1 2 3 4", "not a label and four integers"),
        ("a red circle. plan: red circle 1 2 3 x", "not a label and four integers"),
        ("a red circle. plan: red circle 1 2 3 4; ", "not a label and four integers"),
    ]:
        with pytest.raises(ValueError, match=match):
            plan_of_text(bad)


def test_a_prompt_plan_model_reads_the_sample_plan(tmp_path, sample_factory, images) -> None:
    from reasongen.types import Box, Plan

    path, _ = _write_folder(tmp_path / "pp", {**CONFIG, "reasongen": {"text": "prompt_plan"}})
    plain, _ = _write_folder(tmp_path / "p", CONFIG)
    left = Plan(boxes=(Box("red square", 0, 0, 500, 500),))
    right = Plan(boxes=(Box("red square", 500, 500, 1000, 1000),))
    samples = [sample_factory("a red square", images[0], plan=p) for p in (left, right, None)]
    with_plan = get_reward("learned", model=str(path), device="cpu")(samples).scores
    assert len(set(with_plan)) == 3  # the plan (or its absence) changes the text, hence the score
    without = get_reward("learned", model=str(plain), device="cpu")(samples).scores
    assert without[0] == without[1] == without[2]  # a prompt model ignores plans
    (tmp_path / "bad").mkdir()
    _write_folder(tmp_path / "bad", {**CONFIG, "reasongen": {"text": "cot"}})
    with pytest.raises(RewardModelUnavailable, match="unknown text mode 'cot'"):
        get_reward("learned", model=str(tmp_path / "bad"), device="cpu")(samples[:1])


def test_an_image_plan_model_sees_each_image_beside_its_plan(
    tmp_path, sample_factory, images, caplog
) -> None:
    """Image mode image_plan: the picture scored is the image with its plan drawn to its right, so the
    plan (or its absence) changes the score; a plain model ignores plans; unknown modes are refused."""
    from reasongen.rewards.learned import beside_plan
    from reasongen.types import Box, Plan

    vision = {**CONFIG["model_cfg"]["vision_cfg"], "image_size": [32, 64]}
    wide = {
        **CONFIG,
        "model_cfg": {**CONFIG["model_cfg"], "vision_cfg": vision},
        "preprocess_cfg": {**CONFIG["preprocess_cfg"], "size": [32, 64]},
        "reasongen": {"image": "image_plan"},
    }  # fmt: skip
    path, _ = _write_folder(tmp_path / "ip", wide)
    scorer = load_scorer(path)
    assert scorer.image_mode == "image_plan" and scorer.text_mode == "prompt"
    left = Plan(boxes=(Box("red square", 0, 0, 500, 500),))
    right = Plan(boxes=(Box("red square", 500, 500, 1000, 1000),))
    samples = [sample_factory("a red square", images[0], plan=p) for p in (left, right, None)]
    shown = scorer.sample_image(samples[0])
    w, h = images[0].size
    assert shown.size == (2 * w, h) and scorer.pixels([shown]).shape == (1, 3, 32, 64)
    assert shown.crop((0, 0, w, h)).tobytes() == images[0].convert("RGB").tobytes()  # the image, untouched
    # the plan half: the red square drawn in its box (top-left quarter), the rest background
    assert shown.getpixel((w + w // 4, h // 4)) == (214, 30, 36)
    assert shown.getpixel((w + 3 * w // 4, 3 * h // 4)) != (214, 30, 36)
    from reasongen.shapes.scene import BACKGROUND

    assert beside_plan(images[0], ()).crop((w, 0, 2 * w, h)).getcolors() == [(w * h, BACKGROUND)]  # empty
    reward = get_reward("learned", model=str(path), device="cpu")
    with caplog.at_level(logging.WARNING, logger="reasongen.rewards.learned"):
        out = reward(samples)
        reward(samples)
    assert len(set(out.scores)) == 3
    # the sample without a plan is scored, and said to be, beside an empty plan; the others are not
    assert [("no_plan" in d) for d in out.details] == [False, False, True]
    warned = [r.getMessage() for r in caplog.records]  # once per reward object, not per call
    assert warned == [f"learned: 1 of 3 samples have no plan; {NO_PLAN_NOTE}"]
    plain, _ = _write_folder(tmp_path / "plain", CONFIG)
    plain_out = get_reward("learned", model=str(plain), device="cpu")(samples)
    assert not any("no_plan" in d for d in plain_out.details)
    (tmp_path / "bad").mkdir()
    _write_folder(tmp_path / "bad", {**CONFIG, "reasongen": {"image": "video"}})
    with pytest.raises(RewardModelUnavailable, match="unknown image mode 'video'"):
        get_reward("learned", model=str(tmp_path / "bad"), device="cpu")(samples[:1])


def test_outline_plan_rings_each_box_just_outside_its_pixels() -> None:
    """outline_plan: a one-pixel cyan ring around each planned box (GoT units scaled to the image),
    the pixels of the box itself untouched; empty boxes draw nothing; the input is not changed."""
    from PIL import Image

    from reasongen.rewards.learned import PLAN_OUTLINE_RGB, model_picture, outline_plan
    from reasongen.types import Box

    image = Image.new("RGB", (64, 64), (200, 0, 0))
    before = image.tobytes()
    ringed = outline_plan(image, (Box("red square", 250, 250, 500, 500), Box("empty", 700, 700, 700, 900)))
    assert image.tobytes() == before
    # the box covers pixels 16..31: the ring runs along 15 and 32 on each side
    for xy in [(15, 15), (32, 32), (15, 24), (24, 32), (32, 16)]:
        assert ringed.getpixel(xy) == PLAN_OUTLINE_RGB, xy
    for xy in [(16, 16), (31, 31), (24, 24), (14, 14), (33, 33), (45, 50)]:
        assert ringed.getpixel(xy) == (200, 0, 0), xy
    changed = sum(a != b for a, b in zip(ringed.getdata(), image.getdata(), strict=True))
    assert changed == 4 * 17  # the 18 x 18 ring's perimeter, and nothing for the empty box
    # outlined_plan = the ringed image beside the plan drawn; image_plan = the plain image beside it
    boxes = (Box("red square", 250, 250, 500, 500),)
    both = model_picture("outlined_plan", image, boxes)
    assert (
        both.size == (128, 64) and both.crop((0, 0, 64, 64)).tobytes() == outline_plan(image, boxes).tobytes()
    )
    assert (
        both.crop((64, 0, 128, 64)).tobytes()
        == model_picture("image_plan", image, boxes).crop((64, 0, 128, 64)).tobytes()
    )
    assert model_picture("image", image, boxes) is image
    with pytest.raises(ValueError, match="image mode must be one of"):
        model_picture("video", image, boxes)


def test_a_list_of_folders_is_an_ensemble_scored_by_the_mean(tmp_path, sample_factory, images) -> None:
    """``model`` a list: each member scores in its own modes and the reward is the mean of their
    scores, the members' scores in the details; the CLI's JSON ``--set`` gives the same list;
    empty, repeated or non-path lists are refused."""
    from reasongen.types import Box, Plan

    plain, _ = _write_folder(tmp_path / "a", CONFIG, seed=0)
    plan_reader, _ = _write_folder(tmp_path / "b", {**CONFIG, "reasongen": {"text": "prompt_plan"}}, seed=1)
    plan = Plan(boxes=(Box("red square", 0, 0, 500, 500),))
    samples = [
        sample_factory("a red square", images[0], plan=plan),
        sample_factory("two blue circles", images[1]),
    ]
    a = get_reward("learned", model=str(plain), device="cpu")(samples).scores
    b = get_reward("learned", model=str(plan_reader), device="cpu")(samples).scores
    both = get_reward("learned", model=[str(plain), str(plan_reader)], device="cpu")
    assert len(both.bundle) == 2 and [s.text_mode for s in both.bundle] == ["prompt", "prompt_plan"]
    out = both(samples)
    assert a[0] != b[0]  # different members, so the mean is not either one
    assert out.scores == pytest.approx([(x + y) / 2 for x, y in zip(a, b, strict=True)], abs=1e-6)
    assert out.details[0]["members"] == pytest.approx([a[0], b[0]], abs=1e-6)
    single = get_reward("learned", model=str(plain), device="cpu")(samples[:1])
    assert "members" not in single.details[0] and len(get_reward("learned", model=str(plain)).bundle) == 1
    from reasongen.rewards.cli import _parse_sets

    opts = _parse_sets([f'learned.model=["{plain}", "{plan_reader}"]'])
    assert LearnedConfig.from_kwargs(**opts["learned"]).folders() == [str(plain), str(plan_reader)]
    for bad, message in [([], "one or more paths"), ([str(plain), str(plain)], "names a folder twice"),
                         ([str(plain), 3], "one or more paths"), (7, "a folder or a list")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            LearnedConfig(model=bad)
    with pytest.raises(RewardModelUnavailable, match="no learned reward model"):
        get_reward("learned", model=[str(plain), str(tmp_path / "missing")], device="cpu")(samples[:1])


def test_shipped_second_round_model_reads_the_plan_and_prefers_the_right_picture(sample_factory) -> None:
    """assets/models/shapes-reward-r2 (the plan-reading scorer of the loop's second round) loads in
    `outlined_plan` mode; alone and in the ensemble with the image-only model it scores a scene drawn
    as its prompt and plan above one with the wrong shape and colour, or one object too few.
    (It does not tell a relation prompt's scene from its mirror — probe `mirror_relation` 0.445, the
    weakness training/README.md reports — so no such case is asserted here.)"""
    from reasongen.shapes.render import render_plan
    from reasongen.types import Box, Plan

    shipped = DEFAULT_MODEL.parent / "shapes-reward-r2"
    scorer = load_scorer(shipped)
    assert (scorer.text_mode, scorer.image_mode) == ("prompt", "outlined_plan")
    pairs = [
        ("a photo of a red circle",
         [Box("red circle", 300, 300, 700, 700)],
         [Box("blue square", 300, 300, 700, 700)]),
        ("a photo of two green triangles",
         [Box("green triangle", 100, 300, 400, 600), Box("green triangle", 600, 300, 900, 600)],
         [Box("green triangle", 100, 300, 400, 600)]),
    ]  # fmt: skip
    for model in (str(shipped), [str(shipped), str(DEFAULT_MODEL)]):
        reward = get_reward("learned", model=model, device="cpu")
        for prompt, right, wrong in pairs:
            plan = Plan(boxes=right)
            out = reward(
                [sample_factory(prompt, render_plan(b).convert("RGB"), plan=plan) for b in (right, wrong)]
            )
            assert out.scores[0] > out.scores[1], (model, prompt, out.scores)
