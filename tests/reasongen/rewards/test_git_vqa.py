"""GIT-VQA: questions from metadata, batched yes/no probabilities on a tiny real GIT model."""

from __future__ import annotations

import pytest
import torch

from reasongen.rewards import RewardModelUnavailable, get_reward
from reasongen.rewards.phrases import noun_phrase, plural, vqa_questions


def test_questions_from_attribute_noun_pairs():
    meta = {
        "tag": "color_attr",
        "include": [
            {"class": "cat", "count": 1, "color": "red"},
            {"class": "box", "count": 2, "size": "small", "color": "blue"},
        ],
    }
    assert vqa_questions(meta, "ignored") == [
        "is there a red cat?",
        "are there two small blue boxes?",
    ]
    assert vqa_questions(None, "A red cat.") == ["does this image show A red cat?"]
    assert plural("strawberry", 3) == "strawberries" and plural("dog", 1) == "dog"
    assert noun_phrase({"class": "cube", "texture": "striped", "color": "red"}) == "striped red cube"


def test_git_vqa_end_to_end(tiny_git_dir, sample_factory, images):
    meta = {"tag": "counting", "include": [{"class": "cat", "count": 2, "color": "red"}]}
    two = {"tag": "two_object", "include": [{"class": "dog"}, {"class": "ball", "color": "blue"}]}
    samples = [
        sample_factory("two red cats", images[0], metadata=meta),
        sample_factory("a dog and a blue ball", images[1], metadata=two),
        sample_factory("a red cat", images[2]),
        sample_factory("nothing", None, metadata=meta),
    ]
    r = get_reward("git_vqa", model=str(tiny_git_dir), batch_size=3)
    out = r(samples)
    assert r.load_count == 1
    assert out.scores[3] is None and out.details[3] == {"skipped": "no image"}
    assert [q["question"] for q in out.details[1]["questions"]] == [
        "is there a dog?",
        "is there a blue ball?",
    ]
    for s, d in zip(out.scores[:3], out.details[:3]):
        ps = [q["p_yes"] for q in d["questions"]]
        assert all(0.0 < p < 1.0 for p in ps)
        assert s == pytest.approx(sum(ps) / len(ps))

    # The read-out equals an unpadded single forward pass done by hand.
    model, processor, yes_id, no_id = r.bundle
    q = "is there a blue ball?"
    ids = torch.tensor(
        [[processor.tokenizer.cls_token_id, *processor.tokenizer(q, add_special_tokens=False).input_ids]]
    )
    pix = processor(images=[images[1]], return_tensors="pt").pixel_values
    with torch.no_grad():
        probs = model(input_ids=ids, pixel_values=pix).logits[0, -1].softmax(-1)
    manual = (probs[yes_id] / (probs[yes_id] + probs[no_id])).item()
    assert out.details[1]["questions"][1]["p_yes"] == pytest.approx(manual, abs=1e-5)
    one = get_reward("git_vqa", model=str(tiny_git_dir), batch_size=1)
    assert one(samples).scores[:3] == pytest.approx(out.scores[:3], abs=1e-5)


def test_git_vqa_rejects_answers_that_are_not_single_tokens(tiny_git_dir, sample_factory, images):
    r = get_reward("git_vqa", model=str(tiny_git_dir), yes="absolutely")
    with pytest.raises(ValueError, match="'absolutely' is not a single known token"):
        r([sample_factory("a cat", images[0])])


def test_git_vqa_offline_error(monkeypatch, sample_factory, images):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = get_reward("git_vqa", model="microsoft/no-such-git")
    with pytest.raises(RewardModelUnavailable, match=r"GIT .*microsoft/no-such-git"):
        r([sample_factory("a cat", images[0])])


class _NanGit:
    """Stands in for GIT: NaN logits for the first row of every batch, zeros elsewhere."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __call__(self, input_ids, attention_mask, pixel_values):
        logits = torch.zeros(input_ids.shape[0], 5 + input_ids.shape[1], self.vocab)  # [B, 5 + T, V]
        logits[0] = float("nan")
        return type("Out", (), {"logits": logits})()


def test_git_vqa_non_finite_logits_give_none_not_nan(tiny_git_dir, sample_factory, images, monkeypatch):
    r = get_reward("git_vqa", model=str(tiny_git_dir), batch_size=2)
    model, processor, yes_id, no_id = r.bundle
    monkeypatch.setattr(r, "_bundle", (_NanGit(model.config.vocab_size), processor, yes_id, no_id))
    out = r([sample_factory("a red cat", images[0]), sample_factory("a blue dog", images[1])])
    assert out.scores[0] is None and "not finite" in out.details[0]["error"]
    assert out.details[0]["questions"][0]["p_yes"] is None
    assert out.scores[1] == pytest.approx(0.5)  # equal logits: yes and no alike
