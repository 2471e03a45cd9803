"""A sample whose image a reward cannot score costs that sample (``None`` with the reason), never
the batch: every reward buildable offline, on empty and sliver images beside good ones."""

from __future__ import annotations

import pytest
from PIL import Image

from reasongen.rewards import Reward, RewardOutput, get_reward, make_reward

from .conftest import HPS_SMALL

META = {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a red cat"}
BAD = [(0, 0), (1, 4000), (4000, 1)]
REWARDS = ["hps", "gdino", "git_vqa", "orm", "binary_judge", "got_judge", "shapes", "combined"]


def build(kind, tiny_hps_ckpt, tiny_gdino_dir, tiny_git_dir, tiny_qwen_dir) -> Reward:
    if kind == "hps":
        return get_reward("hps", model=str(tiny_hps_ckpt), arch_config=HPS_SMALL, device="cpu")
    if kind == "gdino":
        return get_reward("gdino", model=str(tiny_gdino_dir), device="cpu")
    if kind == "git_vqa":
        return get_reward("git_vqa", model=str(tiny_git_dir), device="cpu")
    if kind == "shapes":
        return get_reward("shapes")
    if kind == "combined":
        return make_reward("shapes,hps", "weighted_sum", options={"hps": {
            "model": str(tiny_hps_ckpt), "arch_config": HPS_SMALL, "device": "cpu"}})  # fmt: skip
    if kind == "orm":  # the zero-shot Qwen backend; T2I-R1's LLaVA-OneVision is tested in test_orm.py
        return get_reward("orm", backend="qwen", model=str(tiny_qwen_dir), device="cpu", max_new_tokens=4)
    return get_reward(kind, model=str(tiny_qwen_dir), device="cpu", max_new_tokens=4)


@pytest.mark.parametrize("kind", REWARDS)
def test_bad_images_cost_only_their_sample(
    kind, tiny_hps_ckpt, tiny_gdino_dir, tiny_git_dir, tiny_qwen_dir, sample_factory, images
):
    reward = build(kind, tiny_hps_ckpt, tiny_gdino_dir, tiny_git_dir, tiny_qwen_dir)
    good = [sample_factory("a red cat", im) for im in images[:2]]
    bad = [sample_factory("a red cat", Image.new("RGB", size, "white")) for size in BAD]
    batch = [good[0], *bad, good[1]]
    out = reward(batch, [META] * len(batch))
    alone = reward(good, [META] * 2)
    assert len(out) == 5
    assert [out.scores[0], out.scores[4]] == alone.scores  # the good ones, as if scored alone
    assert [out.details[0], out.details[4]] == alone.details
    for (w, h), score, detail in zip(BAD, out.scores[1:4], out.details[1:4]):
        assert score is None
        assert f"{w}x{h} pixels" in detail["error"] or f"{w}x{h} pixels" in str(detail)


def test_hps_scores_a_thin_image_within_the_aspect_limit(tiny_hps_ckpt, sample_factory):
    # the tiny model's 32 px input once rounded a 1x199 image's short side to 0 and failed
    reward = get_reward("hps", model=str(tiny_hps_ckpt), arch_config=HPS_SMALL, device="cpu")
    out = reward([sample_factory("a cat", Image.new("RGB", (1, 199), "red"))])
    assert isinstance(out.scores[0], float) and -1.0 <= out.scores[0] <= 1.0


def test_gdino_names_an_image_its_resize_would_empty(tiny_gdino_dir, sample_factory):
    reward = get_reward("gdino", model=str(tiny_gdino_dir), device="cpu")  # longest_edge 64
    out = reward([sample_factory("a cat", Image.new("RGB", (1, 199)))], [META])
    assert out.scores == [None] and "too thin for GroundingDINO's resize to 64 px" in out.details[0]["error"]


class Counting(Reward):
    name = "counting"
    min_image_side = 8

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def score(self, samples, metas):
        self.seen.append(len(samples))
        return RewardOutput(self.name, [1.0] * len(samples), [{} for _ in samples])


def test_guard_keeps_order_and_never_calls_score_for_an_all_bad_batch(sample_factory):
    r = Counting()
    ims = [Image.new("RGB", s) for s in [(8, 8), (7, 64), (8, 8 * 200 + 1), (64, 8)]]
    out = r([sample_factory("x", im) for im in ims] + [sample_factory("x", None)])
    assert out.scores == [1.0, None, None, 1.0, 1.0] and r.seen == [3]  # a missing image is the reward's call
    assert "counting needs at least 8 a side" in out.details[1]["error"]
    assert "200:1" in out.details[2]["error"]
    out = r([sample_factory("x", Image.new("RGB", (0, 0)))])
    assert out.scores == [None] and r.seen == [3]


def test_all_bad_batch_loads_no_model(tiny_hps_ckpt, sample_factory):
    reward = get_reward("hps", model=str(tiny_hps_ckpt), arch_config=HPS_SMALL, device="cpu")
    out = reward([sample_factory("x", Image.new("RGB", (0, 5)))])
    assert out.scores == [None] and not reward.loaded
