"""GroundingDINO: scoring rules on hand-made detections, and the real model path on a tiny model."""

from __future__ import annotations

import pickle

import pytest

from reasongen.rewards import RewardModelUnavailable, get_reward
from reasongen.rewards.gdino import GdinoConfig, needed_phrases, score_detections

CFG = GdinoConfig(model="unused")
LEFT, RIGHT = (0.05, 0.4, 0.25, 0.6), (0.7, 0.4, 0.9, 0.6)
TOP, BOTTOM = (0.4, 0.05, 0.6, 0.25), (0.4, 0.7, 0.6, 0.9)


def meta(tag, include, exclude=None):
    m = {"tag": tag, "include": include}
    if exclude:
        m["exclude"] = exclude
    return m


def test_presence_and_counting():
    m = meta("counting", [{"class": "cat", "count": 2}], [{"class": "cat", "count": 3}])
    two = {"cat": [(LEFT, 0.9), (RIGHT, 0.8)]}
    three = {"cat": [(LEFT, 0.9), (RIGHT, 0.8), (TOP, 0.7)]}
    assert score_detections(m, two, CFG)[0] == 1.0
    value, checks = score_detections(m, three, CFG)
    assert value == 0.0 and [c["ok"] for c in checks] == [False, False]
    single = meta("single_object", [{"class": "cat", "count": 1}])
    assert score_detections(single, three, CFG)[0] == 1.0  # presence: at least one
    assert score_detections(single, {}, CFG)[0] == 0.0


def test_attribute_binding_needs_the_phrase_on_a_noun_box():
    m = meta("color_attr", [{"class": "car", "count": 1, "color": "red"}])
    assert needed_phrases(m) == ["car", "red car"]
    bound = {"car": [(LEFT, 0.9)], "red car": [((0.06, 0.4, 0.25, 0.6), 0.5)]}
    value, checks = score_detections(m, bound, CFG)
    assert value == 1.0 and checks[1]["check"] == "binding 'red car'"
    elsewhere = {"car": [(LEFT, 0.9)], "red car": [(RIGHT, 0.5)]}
    assert score_detections(m, elsewhere, CFG)[0] == 0.5
    strict = GdinoConfig(model="unused", strict=True)
    assert score_detections(m, elsewhere, strict)[0] == 0.0


@pytest.mark.parametrize(
    ("rel", "a", "b", "ok"),
    [
        ("left of", LEFT, RIGHT, True),
        ("right of", LEFT, RIGHT, False),
        ("above", TOP, BOTTOM, True),
        ("below", TOP, BOTTOM, False),
        ("below", BOTTOM, TOP, True),
    ],
)
def test_relations_in_normalised_coordinates(rel, a, b, ok):
    m = meta("position", [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": [rel, 0]}])
    found = {"dog": [(a, 0.9)], "cat": [(b, 0.9)]}
    value, checks = score_detections(m, found, CFG)
    assert checks[-1] == {"check": f"dog {rel} cat", "ok": ok}
    assert value == pytest.approx((2 + ok) / 3)


def test_relation_with_a_missing_object_fails_without_crashing():
    m = meta("position", [{"class": "cat"}, {"class": "dog", "position": ["above", 0]}])
    value, checks = score_detections(m, {"dog": [(TOP, 0.9)]}, CFG)
    assert checks[-1]["ok"] is False and value == pytest.approx(1 / 3)


def test_tiny_grounding_dino_end_to_end(tiny_gdino_dir, sample_factory, images):
    r = get_reward("gdino", model=str(tiny_gdino_dir), batch_size=2, box_threshold=0.0)
    m1 = meta("color_attr", [{"class": "cat", "count": 1, "color": "red"}])
    m2 = meta("position", [{"class": "dog"}, {"class": "ball", "position": ["left of", 0]}])
    samples = [
        sample_factory("a red cat", images[0], metadata=m1),
        sample_factory("a ball left of a dog", images[1], metadata=m2),
        sample_factory("no metadata", images[2]),
    ]
    out = r(samples)
    assert r.load_count == 1
    assert out.scores[2] is None and out.details[2]["skipped"] == "no prompt metadata"
    for s, d in zip(out.scores[:2], out.details[:2]):
        assert 0.0 <= s <= 1.0
        for dets in d["detections"].values():
            assert dets, "threshold 0 keeps at least one box"
            assert all(0.0 <= v <= 1.0 for det in dets for v in det["box"])
            scores = [det["score"] for det in dets]
            assert scores == sorted(scores, reverse=True)
    assert set(out.details[0]["detections"]) == {"cat", "red cat"}
    assert [c["check"] for c in out.details[1]["checks"]][-1] == "ball left of dog"
    # batch size does not change the result; pickled copies reload and agree
    again = get_reward("gdino", model=str(tiny_gdino_dir), batch_size=1, box_threshold=0.0)
    assert again(samples).scores == pytest.approx(out.scores)
    assert pickle.loads(pickle.dumps(r))(samples).scores == pytest.approx(out.scores)
    # a high threshold finds nothing: every presence check fails
    none = get_reward("gdino", model=str(tiny_gdino_dir), box_threshold=1.0)
    assert none(samples[:1]).scores == [0.0]


def test_missing_gdino_weights_fail_fast_and_clearly(monkeypatch, tmp_path, sample_factory, images):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = meta("single_object", [{"class": "cat"}])
    r = get_reward("gdino", model="IDEA-Research/no-such-grounding-dino")
    with pytest.raises(RewardModelUnavailable, match=r"GroundingDINO .* 'IDEA-Research/no-such"):
        r([sample_factory("a cat", images[0], metadata=m)])
    r = get_reward("gdino", model=str(tmp_path / "empty"))
    with pytest.raises(RewardModelUnavailable, match="local path"):
        r([sample_factory("a cat", images[0], metadata=m)])
