"""training.reward_model.candidate_probe on a rendered shapes study: one-box plan nudges."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reasongen.plans import box_iou
from training.reward_model import candidate_probe as cp


@dataclass
class _Blind:
    """Reads neither plan nor image: every pair ties."""

    text_mode: str = "prompt"

    def model_image(self, image, boxes=()):
        return image

    def score(self, images, texts):
        return [1.0] * len(images)


def test_nudges_move_one_box_of_a_right_candidate_and_lower_its_careful_key(store, make_shapes_study) -> None:
    sid, kinds = make_shapes_study(store, n_prompts=6)
    cfg = cp.CandidateProbeConfig(study=str(sid), model=["x"], max_px=3, seed=1)
    pairs = cp.nudge_pairs(store, sid, cfg)
    assert pairs and pairs == cp.nudge_pairs(store, sid, cfg)  # reproducible
    for p in pairs:
        assert kinds[p.candidate_id] == "right"  # the others are wrong, unfaithful or plan-less
        moved = [(a, b) for a, b in zip(p.boxes, p.nudged, strict=True) if a != b]
        assert len(moved) == 1 and moved[0][0].label == moved[0][1].label
        px = 1000 / p.sample.image.size[0]
        a, b = moved[0]
        assert all(isinstance(v, int) for v in (b.x1, b.y1, b.x2, b.y2))  # plans are whole units
        assert 1 <= round(abs(b.x1 - a.x1) / px) <= 3 and round(abs(b.y1 - a.y1) / px) <= 3
        assert b.x2 - b.x1 == a.x2 - a.x1 and box_iou(a, b) < 1.0
        assert p.iou >= cfg.min_iou and round(p.nudged_iou * 10) < round(p.iou * 10)


def test_a_scorer_of_plan_image_iou_scores_one_and_a_blind_one_half(
    store, make_shapes_study, monkeypatch, tmp_path, plan_iou_scorer
):
    sid, _ = make_shapes_study(store, n_prompts=6)
    out = tmp_path / "p" / "nudge.json"
    cfg = cp.CandidateProbeConfig(study=str(sid), model=["iou"], max_px=3, out=str(out))
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: plan_iou_scorer)
    report = cp.run(cfg, store=store, log=lambda m: None)
    assert report["pairs"] >= 3 and report["accuracy"] == 1.0 and report["ci_low"] <= 1.0
    assert out.is_file() and '"accuracy": 1.0' in out.read_text()
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _Blind())
    blind = cp.run(
        cp.CandidateProbeConfig(study=str(sid), model=["b"], max_px=3), store=store, log=lambda m: None
    )
    assert blind["accuracy"] == 0.5 and blind["pairs"] == report["pairs"]
    # an ensemble is the mean: the IoU reader beside a blind member still ranks every pair
    monkeypatch.setattr(
        "reasongen.rewards.learned.load_scorer", lambda m: plan_iou_scorer if m == "iou" else _Blind()
    )
    both = cp.run(cp.CandidateProbeConfig(study=str(sid), model=["iou", "b"], max_px=3), store=store,
                  log=lambda m: None)  # fmt: skip
    assert both["accuracy"] == 1.0


def test_settings_are_checked_and_a_study_without_pairs_is_refused(store, monkeypatch) -> None:
    for kwargs, msg in [
        ({"model": ["m"]}, "--study is required"),
        ({"study": "s"}, "--model is required"),
        ({"study": "s", "model": ["m"], "max_px": 0}, "--max_px"),
        ({"study": "s", "model": ["m"], "min_iou": 0.0}, "--min_iou"),
    ]:
        with pytest.raises(ValueError, match=msg):
            cp.CandidateProbeConfig(**kwargs)
    st = store.create_study("empty", group_size=4, rankings_per_task=1)
    store.add_prompts(st.id, [{"prompt": "a red circle", "metadata": None}])
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _Blind())
    with pytest.raises(ValueError, match="no right candidate"):
        cp.run(cp.CandidateProbeConfig(study=str(st.id), model=["m"]), store=store, log=lambda m: None)
