"""The near-miss probe (training.reward_model.probe): its pairs are what they say, a scorer that
knows the truth scores about 1, one that cannot tell scores exactly 0.5, and the CLI reports."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import training.reward_model.model  # noqa: F401 (see below)
from reasongen.shapes.geneval import check_image
from reasongen.shapes.parse import parse_prompt
from training.reward_model import probe
from training.reward_model.near_miss import satisfies

# training.reward_model.model binds reasongen.rewards.learned.load_scorer when first imported
# (run_probe imports it through pretrain): importing it here, before any test patches
# load_scorer, keeps a stand-in scorer from leaking into later tests that load a real folder.


def test_probe_pairs_are_wrong_for_their_prompt_and_reproducible() -> None:
    pairs = probe.probe_pairs("mirror_relation", 20, "full", 0)
    assert len(pairs) == 20 and pairs == probe.probe_pairs("mirror_relation", 20, "full", 0)
    for prompt, objects, edited in pairs:
        meta = parse_prompt(prompt)
        assert meta["tag"] == "position" or any("position" in r for r in meta["include"])
        assert satisfies(meta, objects) and not satisfies(meta, edited)
        assert [(o.shape, o.color) for o in objects] == [(o.shape, o.color) for o in edited]
    recoloured = probe.probe_pairs("recolour", 20, "geneval", 1)
    assert all(not satisfies(parse_prompt(p), e) for p, _, e in recoloured)
    assert recoloured != probe.probe_pairs("recolour", 20, "geneval", 2)


@dataclass
class _Scorer:
    """A stand-in scorer: the detector's verdict (knows the truth) or a constant (knows nothing)."""

    knows: bool
    text_mode: str = "prompt"
    image_mode: str = "image"

    def model_image(self, image, boxes=()):
        return image

    def score(self, images, prompts):
        if not self.knows:
            return [1.0] * len(images)
        return [
            float(check_image(im, parse_prompt(p))[0].correct) for im, p in zip(images, prompts, strict=True)
        ]


def test_a_scorer_that_knows_scores_near_one_and_one_that_cannot_tell_exactly_half(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _Scorer(knows=m == "knows"))
    cfg = probe.ProbeConfig(model=["knows"], n=24, probes=["mirror_relation", "drop"], language="geneval",
                            out=str(tmp_path / "p" / "probe.json"))  # fmt: skip
    report = probe.run_probe(cfg, log=lambda m: None)
    for name in ("mirror_relation", "drop"):
        r = report["probes"][name]
        assert r["pairs"] == 24 and r["accuracy"] >= 0.9 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    assert json.loads((tmp_path / "p" / "probe.json").read_text()) == json.loads(json.dumps(report))
    blind = probe.run_probe(
        probe.ProbeConfig(model=["blind"], n=10, probes=["mirror_relation"]), log=lambda m: None
    )
    assert blind["probes"]["mirror_relation"]["accuracy"] == 0.5  # every pair a tie
    # an ensemble is the mean: one member that knows and one that does not still ranks right
    both = probe.run_probe(
        probe.ProbeConfig(model=["knows", "blind"], n=10, probes=["drop"]), log=lambda m: None
    )
    assert both["probes"]["drop"]["accuracy"] >= 0.9


def test_probe_settings_are_checked_and_the_cli_probes_a_real_folder(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="--model is required"):
        probe.ProbeConfig()
    with pytest.raises(ValueError, match="unknown probe"):
        probe.ProbeConfig(model=["x"], probes=["swap_everything"])
    from training.reward_model.pretrain import PretrainConfig, pretrain

    tiny = PretrainConfig(out=str(tmp_path / "m"), arch="tiny", steps=1, batch=4, holdout_benchmark=0,
                          device="cpu", log_every=0, warmup_steps=0, image="outlined_plan")  # fmt: skip
    folder = pretrain(tiny, log=lambda m: None)
    assert probe.main(["--model", str(folder), "--n", "3", "--probes", "mirror_relation", "resize"]) == 0
    out = capsys.readouterr()
    assert "probed 2 kinds of near miss; weakest:" in out.out and "mirror_relation:" in out.err
    assert probe.main(["--model", str(tmp_path / "none"), "--n", "3"]) == 2
    assert "error:" in capsys.readouterr().err


@dataclass
class _PlanReader(_Scorer):
    """A stand-in that reads only the plan in its text: 1 when the plan is faithful to the prompt."""

    text_mode: str = "prompt_plan"

    def score(self, images, prompts):
        from reasongen.rewards.learned import plan_of_text
        from reasongen.shapes.geneval import plan_faithfulness

        out = []
        for text in prompts:
            prompt, boxes = plan_of_text(text)
            out.append(float(plan_faithfulness(boxes, parse_prompt(prompt)).correct))
        return out


def test_plan_probes_change_only_the_plan(monkeypatch) -> None:
    """A plan probe's two pictures are one drawing: a scorer of the image alone (even one that knows
    the truth) ties every pair; one that reads the plan's faithfulness catches unfaithful and
    overlapping plans (a drifted plan is still faithful: a tie for it)."""
    from reasongen.plans import box_iou
    from reasongen.shapes.geneval import overlapping_boxes

    for _, objects, plan in probe.probe_pairs("plan_overlap", 20, "full", 0):
        assert overlapping_boxes([o.box for o in plan]) and not overlapping_boxes([o.box for o in objects])
        assert sorted(o.box.label for o in plan) == sorted(o.box.label for o in objects)
    for prompt, objects, plan in probe.probe_pairs("plan_unfaithful", 20, "full", 0):
        assert satisfies(parse_prompt(prompt), objects) and not satisfies(parse_prompt(prompt), plan)
    for _, objects, plan in probe.probe_pairs("plan_drift", 20, "full", 0):
        moved = [box_iou(a.box, b.box) for a, b in zip(objects, plan, strict=True) if a != b]
        assert len(moved) == 1 and 0.25 <= moved[0] <= 0.75
    assert probe.probe_names()[-4:] == [*probe.PLAN_PROBES, probe.LOOSE_PROBE]
    names = list(probe.PLAN_PROBES)
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _Scorer(knows=True))
    blind = probe.run_probe(probe.ProbeConfig(model=["knows"], n=12, probes=names), log=lambda m: None)
    assert all(blind["probes"][n]["accuracy"] == 0.5 for n in names)
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _PlanReader(knows=True))
    reader = probe.run_probe(probe.ProbeConfig(model=["reader"], n=12, probes=names), log=lambda m: None)
    assert reader["probes"]["plan_overlap"]["accuracy"] == 1.0
    assert reader["probes"]["plan_unfaithful"]["accuracy"] == 1.0
    assert reader["probes"]["plan_drift"]["accuracy"] == 0.5


def test_plan_probes_are_the_kinds_of_worse_plan() -> None:
    """The names users pass to ``--probes``, one for each kind of worse plan."""
    from training.reward_model.near_miss import WORSE_PLANS

    assert probe.PLAN_PROBES == ("plan_unfaithful", "plan_overlap", "plan_drift")
    assert WORSE_PLANS == ("unfaithful", "overlap", "drift")


def test_the_loose_probe_draws_the_same_objects_off_their_boxes_beside_the_same_plan(
    monkeypatch, plan_iou_scorer
) -> None:
    """``plan_loose``: the edit keeps every object and moves it into the loose band; the pictures
    carry the scene's own plan, so a scorer of plan-image IoU ranks the drawing on its boxes first."""
    from reasongen.plans import box_iou
    from training.reward_model.near_miss import ALIGN_IOU

    pairs = probe.probe_pairs(probe.LOOSE_PROBE, 20, "full", 0)
    assert pairs == probe.probe_pairs(probe.LOOSE_PROBE, 20, "full", 0)
    for _, objects, loose in pairs:
        assert [(o.shape, o.color, o.size) for o in objects] == [(o.shape, o.color, o.size) for o in loose]
        ious = [box_iou(a.box, b.box) for a, b in zip(objects, loose, strict=True)]
        assert sum(ious) / len(ious) <= ALIGN_IOU[1]
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: plan_iou_scorer)
    report = probe.run_probe(
        probe.ProbeConfig(model=["iou"], n=16, probes=[probe.LOOSE_PROBE]), log=lambda m: None
    )
    assert report["probes"][probe.LOOSE_PROBE]["accuracy"] >= 0.9
    monkeypatch.setattr("reasongen.rewards.learned.load_scorer", lambda m: _Scorer(knows=False))
    blind = probe.run_probe(
        probe.ProbeConfig(model=["b"], n=8, probes=[probe.LOOSE_PROBE]), log=lambda m: None
    )
    assert blind["probes"][probe.LOOSE_PROBE]["accuracy"] == 0.5
