"""The reward contract, registry, combination maths and box geometry."""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass

import pytest

from reasongen.rewards import (
    CombinedReward,
    ModelReward,
    ModelRewardConfig,
    Reward,
    RewardOutput,
    combine_outputs,
    get_reward,
    group_normalise,
    list_rewards,
    make_reward,
)
from reasongen.rewards.geometry import (
    from_cxcywh,
    from_pixels,
    from_plan_box,
    iou,
    nms,
    plan_image_iou,
    relation_holds,
    to_plan_box,
)
from reasongen.types import Box

FAMILIES = {"hps", "gdino", "git_vqa", "orm", "got_judge", "binary_judge", "shapes"}


class ConstReward(Reward):
    name = "const"

    def __init__(self, values, name="const"):
        super().__init__()
        self.values = values
        self.name = name

    def score(self, samples, metas):
        return RewardOutput(self.name, list(self.values), [{"i": i} for i in range(len(samples))])


@dataclass
class CountingConfig(ModelRewardConfig):
    model: str = "nowhere/counting"


class CountingModelReward(ModelReward):
    name = "counting"
    config_class = CountingConfig

    def load(self):
        return object()

    def score(self, samples, metas):
        self.bundle  # noqa: B018 - touch the model
        return RewardOutput(self.name, [1.0] * len(samples), [{} for _ in samples])


def test_registry_lists_every_family_and_rejects_unknown_names():
    assert set(list_rewards()) >= FAMILIES
    with pytest.raises(ValueError, match=r"unknown reward 'nope'.*gdino.*hps"):
        get_reward("nope")


def test_unknown_config_option_is_named():
    with pytest.raises(ValueError, match=r"unknown option.*colour.*accepted"):
        get_reward("gdino", colour="red")


def test_get_reward_loads_nothing_and_pickles(tmp_path):
    r = get_reward("gdino", model=str(tmp_path / "missing"))
    assert not r.loaded
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.config == r.config and not r2.loaded


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_with_defaults_without_loading_and_pickles(name):
    r = get_reward(name)
    assert r.name == name
    assert not getattr(r, "loaded", False)
    clone = pickle.loads(pickle.dumps(r))
    assert clone.config == r.config


def test_model_loads_once_and_is_dropped_when_pickled(sample_factory, images):
    r = CountingModelReward()
    assert r.load_count == 0
    samples = [sample_factory("a cat", images[0])] * 3
    r(samples)
    r(samples)
    assert r.load_count == 1 and r.loaded
    clone = pickle.loads(pickle.dumps(r))
    assert not clone.loaded
    clone(samples)
    assert clone.loaded


def test_metadata_defaults_to_sample_metadata_and_is_validated(sample_factory, images):
    seen = []

    class Spy(Reward):
        name = "spy"

        def score(self, samples, metas):
            seen.append(metas)
            return RewardOutput(self.name, [None] * len(samples), [{} for _ in samples])

    meta = {"tag": "single_object", "include": [{"class": "cat", "count": 1}]}
    s = sample_factory("a cat", images[0], metadata=meta)
    Spy()([s])
    assert seen[-1] == [meta]
    Spy()([s], [None])
    assert seen[-1] == [None]
    with pytest.raises(ValueError, match=r"metadata of sample 0"):
        Spy()([s], [{"tag": "bogus", "include": []}])
    with pytest.raises(ValueError, match=r"2 metadata entries for 1 samples"):
        Spy()([s], [None, None])
    assert Spy()([]).scores == []


def test_reward_output_checks_lengths():
    with pytest.raises(ValueError, match=r"2 scores but 1 details"):
        RewardOutput("x", [1.0, 2.0], [{}])


def test_config_validation_messages():
    with pytest.raises(ValueError, match=r"batch_size"):
        CountingConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"dtype"):
        CountingConfig(dtype="int8")
    with pytest.raises(ValueError, match=r"model is empty"):
        CountingConfig(model="")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"graded": "maybe"}, "ShapesConfig.graded expects bool, got 'maybe'"),
        ({"graded": 1}, "expects bool, got 1"),
        ({"position_threshold": True}, "position_threshold expects float, got True"),
        ({"position_threshold": "0.1"}, "expects float, got '0.1'"),
    ],
)
def test_options_of_the_wrong_kind_are_refused(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_reward("shapes", **options)


def test_options_of_the_right_kind_pass():
    r = get_reward("shapes", graded=True, position_threshold=0, weights={"prompt": 1})
    assert r.config.graded is True and r.config.position_threshold == 0
    assert get_reward("gdino", batch_size=2, box_threshold=1).config.box_threshold == 1
    with pytest.raises(ValueError, match=r"batch_size expects int, got 2.0"):
        get_reward("gdino", batch_size=2.0)


# --------------------------------------------------------------------------- combination


def test_weighted_sum_product_and_parts_reported():
    a = RewardOutput("a", [0.5, 1.0, None], [{}, {}, {}])
    b = RewardOutput("b", [0.2, 0.4, 0.3], [{}, {}, {}])
    ws = combine_outputs([a, b], "weighted_sum", {"a": 2.0})
    assert ws.scores[0] == pytest.approx(2 * 0.5 + 0.2)
    assert ws.scores[1] == pytest.approx(2 * 1.0 + 0.4)
    assert ws.scores[2] is None  # on_missing="none"
    assert ws.details[0]["parts"] == {"a": 0.5, "b": 0.2}
    assert ws.details[0]["weights"] == {"a": 2.0, "b": 1.0}
    pr = combine_outputs([a, b], "product", {"b": 2.0})
    assert pr.scores[0] == pytest.approx(0.5 * 0.2**2)
    skip = combine_outputs([a, b], "weighted_sum", on_missing="skip")
    assert skip.scores[2] == pytest.approx(0.3)


# group_norm standardises with GRPO's advantage formula (reasongen.group_zscore): the sample std
# (n - 1) plus eps 1e-4. Until the formula was unified it used the population std plus 1e-6, which
# gave exactly ±1 for a two-score group; with the sample std a two-score group gives ±1/√2.
Z2 = 1 / (math.sqrt(2) + 1e-4)  # |z| of each score in a two-score group whose deviations are ±1


def test_group_normalised_sum_standardises_within_groups():
    z = group_normalise([1.0, 3.0, 5.0, 5.0, None], groups=["p", "p", "q", "q", "q"])
    assert z[0] == pytest.approx(-Z2, rel=1e-12) and z[1] == pytest.approx(Z2, rel=1e-12)
    assert z[2] == 0.0 and z[3] == 0.0 and z[4] is None  # no spread → 0
    assert z[1] != pytest.approx(1.0, abs=1e-3)  # not the population std any more
    a = RewardOutput("a", [1.0, 3.0], [{}, {}])
    b = RewardOutput("b", [10.0, 30.0], [{}, {}])
    out = combine_outputs([a, b], "group_norm", {"b": 0.5}, groups=[0, 0])
    zb = 10 / (10 * math.sqrt(2) + 1e-4)
    assert out.scores[0] == pytest.approx(-(Z2 + 0.5 * zb), rel=1e-12)
    assert out.scores[1] == pytest.approx(Z2 + 0.5 * zb, rel=1e-12)
    assert out.details[1]["normalised"]["b"] == pytest.approx(zb, rel=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_group_norm_with_one_unusable_score_keeps_the_rest_finite(bad):
    z = group_normalise([1.0, bad, 3.0, 5.0], groups=["p", "p", "p", "q"])
    assert z[1] is None and z[3] == 0.0
    assert z[0] == pytest.approx(-Z2, rel=1e-12) and z[2] == pytest.approx(Z2, rel=1e-12)
    a = RewardOutput("a", [1.0, bad, 3.0], [{}, {}, {}])
    b = RewardOutput("b", [10.0, 20.0, 30.0], [{}, {}, {}])
    out = combine_outputs([a, b], "group_norm", groups=[0, 0, 0], on_missing="skip")
    assert all(math.isfinite(v) for v in out.scores)
    assert out.scores[0] == pytest.approx(-Z2 - 10 / (10 + 1e-4), rel=1e-12)  # b's sample std is 10


def test_combination_errors():
    a = RewardOutput("a", [1.0], [{}])
    with pytest.raises(ValueError, match=r"unknown combination mode"):
        combine_outputs([a], "mean")
    with pytest.raises(ValueError, match=r"weights given for rewards not combined: z"):
        combine_outputs([a], weights={"z": 1.0})
    with pytest.raises(ValueError, match=r"disagree"):
        combine_outputs([a, RewardOutput("b", [1.0, 2.0], [{}, {}])])
    with pytest.raises(ValueError, match=r"negative"):
        combine_outputs([RewardOutput("a", [-1.0], [{}])], "product", {"a": 0.5})


def test_combined_reward_groups_by_prompt(sample_factory, images):
    s = [sample_factory(p, images[0]) for p in ("x", "x", "y", "y")]
    r = CombinedReward(
        [ConstReward([1.0, 2.0, 3.0, 3.0], "a"), ConstReward([0.0, 1.0, 0.0, 2.0], "b")],
        mode="group_norm",
    )
    out = r(s)
    half = 0.5 / (math.sqrt(0.5) + 1e-4)  # |z| in a two-score group whose deviations are ±0.5
    assert out.scores[0] == pytest.approx(-2 * half, rel=1e-12)  # a and b both at -half
    assert out.scores[2] == pytest.approx(-Z2, rel=1e-12)  # a has no spread in group y
    assert out.details[0]["part_details"]["a"] == {"i": 0}
    assert pickle.loads(pickle.dumps(r)).config.mode == "group_norm"
    with pytest.raises(ValueError, match=r"duplicate"):
        CombinedReward([ConstReward([1.0]), ConstReward([1.0])])


def test_make_reward_builds_one_or_a_combination(sample_factory, images):
    one = make_reward("shapes", options={"shapes": {"graded": True}})
    assert one.name == "shapes" and one.config.graded
    both = make_reward("shapes, gdino", "product", {"gdino": 2.0})
    assert isinstance(both, CombinedReward) and [p.name for p in both.parts] == ["shapes", "gdino"]
    assert both.config.mode == "product" and both.config.weights == {"gdino": 2.0}
    assert make_reward(["hps", "git_vqa"]).config.mode == "weighted_sum"
    with pytest.raises(ValueError, match=r"options given for rewards not requested: hps"):
        make_reward("shapes", options={"hps": {}})
    with pytest.raises(ValueError, match=r"at least one"):
        make_reward(" , ")


# --------------------------------------------------------------------------- geometry


def test_conversions_share_one_normalised_convention():
    assert from_pixels((32, 0, 64, 48), 128, 64) == (0.25, 0.0, 0.5, 0.75)
    assert from_plan_box(Box("a", 250, 0, 500, 750)) == (0.25, 0.0, 0.5, 0.75)
    assert from_cxcywh((0.375, 0.375, 0.25, 0.75)) == pytest.approx((0.25, 0.0, 0.5, 0.75))
    assert to_plan_box("a", (0.25, 0.0, 0.5, 0.75)) == Box("a", 250, 0, 500, 750)
    assert from_pixels((-10, -10, 500, 500), 100, 100) == (0.0, 0.0, 1.0, 1.0)


def test_iou_on_hand_made_boxes():
    assert iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == pytest.approx(1.0)
    assert iou((0, 0, 0.5, 0.5), (0.25, 0, 0.75, 0.5)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0.2, 0.2), (0.5, 0.5, 1, 1)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = [(0, 0, 0.5, 0.5), (0.01, 0.01, 0.5, 0.5), (0.6, 0.6, 0.9, 0.9)]
    assert nms(boxes, [0.6, 0.9, 0.5], 0.5) == [1, 2]
    assert nms([], []) == []


@pytest.mark.parametrize(
    ("rel", "a", "b", "expected"),
    [
        ("left of", (0.0, 0.4, 0.2, 0.6), (0.7, 0.4, 0.9, 0.6), True),
        ("left of", (0.7, 0.4, 0.9, 0.6), (0.0, 0.4, 0.2, 0.6), False),
        ("right of", (0.7, 0.4, 0.9, 0.6), (0.0, 0.4, 0.2, 0.6), True),
        ("above", (0.4, 0.0, 0.6, 0.2), (0.4, 0.7, 0.6, 0.9), True),  # smaller y is higher
        ("above", (0.4, 0.7, 0.6, 0.9), (0.4, 0.0, 0.6, 0.2), False),
        ("below", (0.4, 0.7, 0.6, 0.9), (0.4, 0.0, 0.6, 0.2), True),
        ("below", (0.4, 0.0, 0.6, 0.2), (0.4, 0.7, 0.6, 0.9), False),
        ("left of", (0.40, 0.4, 0.5, 0.6), (0.42, 0.4, 0.52, 0.6), False),  # within the margin
        ("near", (0.4, 0.4, 0.5, 0.5), (0.5, 0.5, 0.6, 0.6), True),
        ("near", (0.0, 0.0, 0.1, 0.1), (0.9, 0.9, 1.0, 1.0), False),
    ],
)
def test_spatial_relations(rel, a, b, expected):
    assert relation_holds(a, b, rel) is expected


def test_unknown_relation_is_an_error():
    with pytest.raises(ValueError, match=r"unknown relation 'on top of'"):
        relation_holds((0, 0, 1, 1), (0, 0, 1, 1), "on top of")


def test_plan_image_iou_uses_optimal_matching():
    planned = [Box("cat", 0, 0, 500, 500), Box("dog", 500, 500, 1000, 1000)]
    found = [Box("x", 500, 500, 1000, 1000), Box("y", 0, 0, 500, 250)]
    mean, pairs = plan_image_iou(planned, found)
    assert pairs == [(0, 1, 0.5), (1, 0, 1.0)]
    assert mean == pytest.approx(0.75)
    assert plan_image_iou(planned, [])[0] == 0.0  # nothing found: 0, not a crash
    assert plan_image_iou([], found)[0] == 0.0
    assert math.isclose(plan_image_iou(planned[:1], found)[0], 0.5)


def test_missing_parts_renormalise_the_weights_by_default():
    """A reward that needs metadata gives None; the combination keeps the sample, rescaling the
    present parts' weights to the same total (issue 20, item 11)."""
    from reasongen.rewards import CombinedConfig

    hps = RewardOutput("hps", [0.3, 0.2, None], [{}, {}, {}])
    gdino = RewardOutput("gdino", [0.5, None, None], [{}, {}, {}])
    git = RewardOutput("git_vqa", [1.0, None, None], [{}, {}, {}])
    w = {"hps": 1.0, "gdino": 2.0, "git_vqa": 1.0}
    out = combine_outputs([hps, gdino, git], "weighted_sum", w, on_missing="renormalise")
    assert out.scores[0] == pytest.approx(0.3 + 2 * 0.5 + 1.0)  # nothing missing: unchanged
    assert out.scores[1] == pytest.approx(0.2 * 4 / 1)  # only hps: its weight becomes the total, 4
    assert out.scores[2] is None and out.details[2]["missing"] == ["gdino", "git_vqa", "hps"]
    assert out.details[1]["used_weights"] == {"hps": 4.0} and out.details[1]["missing"] == [
        "gdino",
        "git_vqa",
    ]
    assert combine_outputs([hps, gdino, git], "weighted_sum", w).scores[1] is None  # on_missing="none"
    assert combine_outputs([hps, gdino, git], "weighted_sum", w, on_missing="skip").scores[1] == 0.2
    pr = combine_outputs([hps, gdino], "product", on_missing="renormalise")
    assert pr.scores[1] == pytest.approx(0.2**2)  # exponent 1 → 2
    zero = combine_outputs([hps, gdino], "weighted_sum", {"hps": 0.0}, on_missing="renormalise")
    assert zero.scores[1] is None  # the weights present sum to 0: no rescaling exists
    assert CombinedConfig().on_missing == "renormalise"
    with pytest.raises(ValueError, match="on_missing must be one of renormalise, skip, none"):
        combine_outputs([hps], on_missing="drop")


def test_make_reward_renormalises_by_default_and_takes_on_missing(sample_factory, images, monkeypatch):
    from reasongen.rewards import Reward, registry

    class _Half(Reward):
        name = "half_meta"

        def score(self, samples, metas):
            scores = [0.5 if m else None for m in metas]
            return RewardOutput(self.name, scores, [{} for _ in samples])

    class _One(Reward):
        name = "one_always"

        def score(self, samples, metas):
            return RewardOutput(self.name, [1.0] * len(samples), [{} for _ in samples])

    monkeypatch.setattr(
        registry, "get_reward", lambda name, **kw: {"half_meta": _Half, "one_always": _One}[name]()
    )
    meta = {"tag": "single_object", "include": [{"class": "cat", "count": 1}]}
    samples = [sample_factory("a cat", images[0], metadata=meta), sample_factory("free text", images[1])]
    assert make_reward("half_meta,one_always")(samples).scores == [1.5, 2.0]
    assert make_reward("half_meta,one_always", on_missing="none")(samples).scores == [1.5, None]
