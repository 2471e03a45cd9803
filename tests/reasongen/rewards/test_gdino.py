"""GroundingDINO: scoring rules on hand-made detections, and the real model path on a tiny model."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch

from reasongen.rewards import RewardModelUnavailable, get_reward
from reasongen.rewards.gdino import (
    GENEVAL_COLORS,
    GdinoConfig,
    phrase_groups,
    phrase_spans,
    score_detections,
)

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
    groups = phrase_groups(m, CFG)
    assert groups[0] == ["car"]
    assert groups[1][0] == "red car" and len(groups[1]) == len(GENEVAL_COLORS)
    assert set(groups[1][1:]) == {f"{c} car" for c in GENEVAL_COLORS if c != "red"}
    plain = phrase_groups(m, GdinoConfig(model="unused", contrastive_colors=False))
    assert plain == [["car"], ["red car"]]
    sized = {"tag": "colors", "include": [{"class": "car", "color": "red", "size": "small"}]}
    assert phrase_groups(sized, CFG) == [["car"], ["small red car"]]
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


def test_phrase_spans_follow_the_caption_tokens(tiny_gdino_dir):
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(tiny_gdino_dir).tokenizer
    caption, spans = phrase_spans(tok, ["red cat", "blue cat", "dog"])
    assert caption == "red cat. blue cat. dog."
    ids = tok(caption).input_ids
    vocab = tok.get_vocab()
    assert [ids[s:e] for s, e in spans] == [
        [vocab["red"], vocab["cat"]],
        [vocab["blue"], vocab["cat"]],
        [vocab["dog"]],
    ]


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
        for phrase, dets in d["detections"].items():
            if " " not in phrase:  # a bare noun competes with nothing: threshold 0 keeps boxes
                assert dets
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


class _FakeDino:
    """Stands in for the model so the phrase assignment can be checked on known logits."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, logits, boxes):
        self.logits, self.boxes = logits, boxes

    def __call__(self, **inp):
        return SimpleNamespace(logits=self.logits, pred_boxes=self.boxes)


def test_contrastive_colour_binding_assigns_each_box_to_its_best_phrase(tiny_gdino_dir, images):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_gdino_dir)
    group = ["red cat", "blue cat"]
    _, spans = phrase_spans(processor.tokenizer, group)
    logits = torch.full((1, 3, 32), -10.0)  # [B, Q, T]
    (r0, r1), (b0, b1) = spans
    logits[0, 0, r0:r1] = 3.0  # query 0: clearly "red cat"
    logits[0, 1, r0:r1], logits[0, 1, b0:b1] = 1.0, 2.0  # query 1: red-ish, but "blue cat" wins
    logits[0, 2, b0:b1] = -3.0  # query 2: below any threshold
    boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]]])
    r = get_reward("gdino", model=str(tiny_gdino_dir), box_threshold=0.3)
    r._bundle = (_FakeDino(logits, boxes), processor)
    found = r.detect([images[0]], [group])[0]
    assert [s for _, s in found["red cat"]] == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item()])
    assert found["red cat"][0][0] == pytest.approx((0.1, 0.1, 0.3, 0.3))
    assert [b for b, _ in found["blue cat"]] == [pytest.approx((0.6, 0.6, 0.8, 0.8))]
    # alone, "red cat" would also have claimed query 1's box
    alone = r.detect([images[0]], [["red cat"]])[0]["red cat"]
    assert len(alone) == 2


def test_missing_gdino_weights_fail_fast_and_clearly(monkeypatch, tmp_path, sample_factory, images):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = meta("single_object", [{"class": "cat"}])
    r = get_reward("gdino", model="IDEA-Research/no-such-grounding-dino")
    with pytest.raises(RewardModelUnavailable, match=r"GroundingDINO .* 'IDEA-Research/no-such"):
        r([sample_factory("a cat", images[0], metadata=m)])
    r = get_reward("gdino", model=str(tmp_path / "empty"))
    with pytest.raises(RewardModelUnavailable, match="local path"):
        r([sample_factory("a cat", images[0], metadata=m)])
