"""T2I-R1's reward rules (rules="t2i-r1" of gdino and git_vqa): hand-computed values on made-up
boxes, the caption and its token spans, the real model path on tiny models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from reasongen.rewards import get_reward
from reasongen.rewards.t2i_r1_rules import (
    NEAR,
    detection_caption,
    gdino_score,
    git_questions,
    numeracy_score,
    object_score,
    position_score,
    spatial_score,
)
from reasongen.t2i_r1_data import metadata_from_record

A = (0.05, 0.40, 0.25, 0.60)  # centre (0.15, 0.5)
B = (0.70, 0.40, 0.90, 0.60)  # centre (0.80, 0.5)
UP = (0.40, 0.05, 0.60, 0.25)  # centre (0.5, 0.15)
DOWN = (0.40, 0.70, 0.60, 0.90)  # centre (0.5, 0.80)


def test_position_score_hard_cases():
    assert position_score("left of", A, B) == 1.0
    assert position_score("on the left of", B, A) == 0.0
    assert position_score("right of", B, A) == 1.0 == position_score("on the right of", B, A)
    assert position_score("below", DOWN, UP) == 1.0 == position_score("on the bottom of", DOWN, UP)
    assert position_score("below", UP, DOWN) == 0.0
    # fix 1: upstream scored "above" and "on top of" 0 whatever the boxes
    for word in ("above", "on top of", "on the top of", "top of"):
        assert position_score(word, UP, DOWN) == 1.0 and position_score(word, DOWN, UP) == 0.0
    # the relation must hold along its own axis: A is left of B but far more below it
    assert position_score("left of", (0.0, 0.9, 0.1, 1.0), (0.2, 0.0, 0.3, 0.1)) == 0.0
    assert position_score("behind", A, B) == 0.0


def test_position_score_soft_iou_term():
    a, b = (0.0, 0.0, 0.6, 1.0), (0.2, 0.0, 0.8, 1.0)  # a's centre 0.3, b's 0.5; IoU 0.4 / 0.8
    assert position_score("left of", a, b) == pytest.approx(0.1 / 0.5)


def test_near_is_a_fraction_of_the_image_fix_2():
    assert pytest.approx(150 / 384) == NEAR
    assert position_score("next to", A, (0.3, 0.4, 0.5, 0.6)) == 1.0  # 0.25 apart on x, 0 on y
    far_a, far_b = (0.0, 0.0, 0.1, 0.1), (0.9, 0.9, 1.0, 1.0)  # 0.9 apart on both axes
    assert position_score("near", far_a, far_b) == pytest.approx(NEAR / 0.9)
    assert position_score("on side of", far_a, far_b, near=0.95) == 1.0


def test_spatial_object_and_numeracy_scores():
    spatial = {"obj1": "cat", "obj2": "dog", "locality": "left of"}
    both = {"cat": [(B, 0.4), (A, 0.9)], "dog": [(B, 0.8)]}  # cat's best box is A
    assert spatial_score(both, spatial) == pytest.approx(0.2 + 0.2 + 1.0 / 2)
    assert spatial_score({"cat": [(A, 0.9)]}, spatial) == pytest.approx(0.2)
    assert spatial_score({}, spatial) == 0.0
    assert object_score({"cat": [(A, 0.5)]}, ["cat", "dog"]) == 0.5
    numeracy = [{"obj_name": "cat", "num": 2}, {"obj_name": "dog", "num": 1}, {"obj_name": "car", "num": 3}]
    twin = (0.06, 0.40, 0.26, 0.60)  # overlaps A: NMS at 0.5 drops it
    found = {"cat": [(A, 0.9), (twin, 0.8), (B, 0.7)], "dog": [(A, 0.5), (B, 0.6)]}
    # cat: 2 boxes after NMS (exact) 1; dog: 2 for 1 → 0.2; car: none → 0
    assert numeracy_score(found, numeracy) == pytest.approx((1 + 0.2 + 0) / 3)


def test_gdino_score_by_task_type():
    found = {"cat": [(A, 0.9)]}
    assert gdino_score({"nouns": [], "task_type": "object"}, found) == 1.0  # no nouns: 1
    assert gdino_score({"nouns": ["cat", "dog"], "task_type": "color"}, found) == 0.5
    numeracy = {"nouns": ["cat"], "task_type": "numeracy", "numeracy_info": [{"obj_name": "cat", "num": 1}]}
    assert gdino_score(numeracy, found) == 1.0
    spatial = {"nouns": ["cat", "dog"], "task_type": "spatial",
               "spatial_info": {"obj1": "cat", "obj2": "dog", "locality": "above"}}  # fmt: skip
    assert gdino_score(spatial, found) == pytest.approx(0.2)


def test_git_questions():
    assert git_questions({"task_type": "spatial", "nouns": ["cat"]}) == 0.0
    assert git_questions({"task_type": "numeracy", "nouns": ["cat"]}) == 0.0
    assert git_questions({"task_type": "color", "nouns": ["cat"], "attr_nouns": ["red cat"]}) == ["red cat?"]
    assert git_questions({"task_type": "object", "nouns": ["cat", "dog"]}) == ["cat?", "dog?"]
    assert git_questions({"task_type": "non", "nouns": []}) == 1.0


def test_detection_caption_spans_first_and_last_word(tiny_gdino_dir):
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(tiny_gdino_dir).tokenizer
    caption, spans = detection_caption(tok, ["cat", "red car", "two blue cats"])
    assert caption == "cat . red car . two blue cats."
    ids = tok(caption).input_ids
    words = tok.convert_ids_to_tokens(ids)
    assert [[words[i] for i in s] for s in spans] == [["cat"], ["red", "car"], ["two", "cats"]]


class _FakeDino:
    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, logits, boxes):
        self.logits, self.boxes = logits, boxes

    def __call__(self, **inp):
        return SimpleNamespace(logits=self.logits, pred_boxes=self.boxes)


def test_detection_averages_over_the_span_and_keeps_every_query_above_threshold(tiny_gdino_dir, images):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_gdino_dir)
    _, spans = detection_caption(processor.tokenizer, ["cat", "red car"])
    logits = torch.full((1, 3, 32), -10.0)  # [B, Q, T]
    logits[0, 0, spans[0]] = 2.0  # query 0: cat, sigmoid(2) = 0.88
    red, car = spans[1]
    logits[0, 1, red], logits[0, 1, car] = 0.0, -10.0  # query 1: mean(0.5, ~0) = 0.25 < 0.3
    logits[0, 2, red], logits[0, 2, car] = 0.0, 0.0  # query 2: mean 0.5 (also no cat)
    boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.4, 0.2]]])
    r = get_reward("gdino", model=str(tiny_gdino_dir), rules="t2i-r1")
    assert r.config.box_threshold == 0.3
    r._bundle = (_FakeDino(logits, boxes), processor)
    found = r.detect_t2i_r1([images[0]], [["cat", "red car"]])[0]
    assert [s for _, s in found["cat"]] == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item()])
    assert found["cat"][0][0] == pytest.approx((0.1, 0.1, 0.3, 0.3))
    assert [s for _, s in found["red car"]] == pytest.approx([0.5], rel=1e-5)
    assert found["red car"][0][0] == pytest.approx((0.3, 0.4, 0.7, 0.6))


T2I_RECORDS = [
    {"prompt": "a cat left of a dog", "nouns": ["cat", "dog"], "task_type": "spatial",
     "spatial_info": {"obj1": "cat", "obj2": "dog", "locality": "left of"}},
    {"prompt": "a red cat", "nouns": ["cat"], "attr_nouns": ["red cat"], "task_type": "color"},
    {"prompt": "a dog and a ball", "nouns": ["dog", "ball"], "task_type": "object"},
]  # fmt: skip


def test_gdino_t2i_r1_rules_end_to_end(tiny_gdino_dir, sample_factory, images):
    metas = [metadata_from_record(r) for r in T2I_RECORDS]
    samples = [sample_factory(r["prompt"], im, metadata=m) for r, im, m in zip(T2I_RECORDS, images, metas)]
    samples.append(sample_factory("geneval only", images[0], metadata={
        "tag": "single_object", "include": [{"class": "cat", "count": 1}]}))  # fmt: skip
    out = get_reward("gdino", model=str(tiny_gdino_dir), rules="t2i-r1", box_threshold=0.0)(samples)
    # threshold 0 keeps every query for every noun: every object is found
    assert out.scores[0] == pytest.approx(0.4 + position_score_best(out.details[0], "left of") / 2)
    assert out.scores[1] == 1.0 and out.scores[2] == 1.0
    assert out.scores[3] is None and "no T2I-R1 metadata" in out.details[3]["skipped"]
    nothing = get_reward("gdino", model=str(tiny_gdino_dir), rules="t2i-r1", box_threshold=1.0)(samples)
    assert nothing.scores[:3] == [0.0, 0.0, 0.0]


def position_score_best(detail, locality):
    best = {n: max(d, key=lambda x: x["score"])["box"] for n, d in detail["detections"].items()}
    return position_score(locality, tuple(best["cat"]), tuple(best["dog"]))


def test_git_vqa_t2i_r1_rules_end_to_end(tiny_git_dir, sample_factory, images):
    metas = [metadata_from_record(r) for r in T2I_RECORDS]
    samples = [sample_factory(r["prompt"], im, metadata=m) for r, im, m in zip(T2I_RECORDS, images, metas)]
    samples.append(sample_factory("no metadata", images[0]))
    r = get_reward("git_vqa", model=str(tiny_git_dir), rules="t2i-r1")
    out = r(samples)
    assert out.scores[0] == 0.0  # spatial: not asked
    assert [q["question"] for q in out.details[1]["questions"]] == ["red cat?"]
    assert out.scores[1] == pytest.approx(r.answer_yes([images[1]], ["red cat?"])[0])
    asked = r.answer_yes([images[2], images[2]], ["dog?", "ball?"])
    assert out.scores[2] == pytest.approx(sum(asked) / 2)
    assert out.scores[3] is None
    with pytest.raises(ValueError, match="rules must be one of geneval, t2i-r1"):
        get_reward("git_vqa", model="x", rules="t2i")
