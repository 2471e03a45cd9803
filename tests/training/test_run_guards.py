"""Runs never save garbage or report success for nothing: non-finite rewards, losses, gradients
and weights, runs that keep no group, and reward settings that cannot work (tiny models, 1-4 steps,
through the entry points)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reasongen.loading import load_model
from reasongen.rewards import Reward, RewardOutput, make_reward, registry
from reasongen.rewards.combine import CombinedConfig, combine_outputs
from reasongen.tiny import save_tiny
from training import grpo, sft
from training.checkpoints import average_checkpoints
from training.errors import NonFiniteWeightsError
from training.grpo_loss import group_advantages, rewards_tensor


class _InfFirst(Reward):
    """0 .. n-1 by position in the group, except +inf for the first sample."""

    name = "inf_first"

    def score(self, samples, metas):
        scores = [math.inf if i == 0 else float(i) for i in range(len(samples))]
        return RewardOutput(self.name, scores, [{} for _ in samples])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("guards")
    prompts = root / "prompts.txt"
    prompts.write_text("a red circle\ntwo green triangles\n")
    return save_tiny(root / "tiny", seed=6), prompts


def _grpo_args(model: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--prompts", str(prompts), "--out_dir", str(out), "--recipe", "got-r1",
            "--group_size", "4", "--prompts_per_step", "1", "--max_cot_tokens", "3", "--guidance", "3.0",
            "--lr", "1e-2", "--torch_threads", "1", "--progress", "false", "--save_every", "1",
            *extra]  # fmt: skip


def _scalars(out: Path, tag: str) -> list[float]:
    acc = EventAccumulator(str(next(out.glob("tb/**/events.out.tfevents.*"))))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def _all_finite(folder: Path) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in load_file(folder / "model.safetensors").values())


def test_group_advantages_treat_inf_rewards_as_missing() -> None:
    out = group_advantages(rewards_tensor([math.inf, 1.0, 2.0, 3.0, -math.inf, 5.0, 5.0, 6.0], 4))
    assert bool(torch.isfinite(out.advantages).all())
    assert out.valid.tolist() == [[False, True, True, True], [False, True, True, True]]
    ref = group_advantages(rewards_tensor([None, 1.0, 2.0, 3.0, None, 5.0, 5.0, 6.0], 4))
    assert torch.equal(out.advantages, ref.advantages)


def test_grpo_inf_reward_is_missing_counted_and_the_run_trains(tiny, tmp_path, monkeypatch, capsys) -> None:
    model, prompts = tiny
    monkeypatch.setitem(registry._REGISTRY, "inf_first", f"{__name__}:_InfFirst")
    out = tmp_path / "run"
    code = grpo.main(_grpo_args(model, prompts, out, "--rewards", "inf_first", "--max_steps", "2"))
    assert code == 0 and "GRPO finished" in capsys.readouterr().out
    assert _scalars(out, "grpo/reward/non_finite") == [1.0, 1.0]  # one +inf per group, logged
    assert _scalars(out, "grpo/reward/mean") == [2.0, 2.0]  # mean of 1, 2, 3: the inf left out
    assert _scalars(out, "grpo/groups/kept") == [1.0, 1.0]
    for folder in ("checkpoint-1", "checkpoint-2", "final"):
        assert _all_finite(out / folder), folder  # today: NaN in most trained tensors
    start = load_model(model, device="cpu").model.state_dict()
    after = load_model(out / "final", device="cpu").model.state_dict()
    assert not all(torch.equal(start[k], after[k]) for k in start)  # it did train


def _sft_data(tmp_path: Path) -> Path:
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "a red circle", "cot": "a red circle", "image_tokens": list(range(16))},
            {"prompt": "a blue star", "recipe": "direct", "image_tokens": [5] * 16}]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return data


def _sft_args(model: Path, data: Path, out: Path, steps: int) -> list[str]:
    return ["--model", str(model), "--data", str(data), "--out_dir", str(out), "--max_steps", str(steps),
            "--batch_size", "2", "--save_every", "1", "--progress", "false", "--torch_threads", "1",
            "--lr", "1e-2"]  # fmt: skip


def test_sft_step_with_nan_gradients_is_skipped_not_applied(tiny, tmp_path, monkeypatch) -> None:
    model, _ = tiny
    real, calls = sft.sft_loss, []

    def nan_on_first_call(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        calls.append(1)
        return (loss * math.nan if len(calls) == 1 else loss), metrics

    monkeypatch.setattr(sft, "sft_loss", nan_on_first_call)
    out = tmp_path / "run"
    assert sft.main(_sft_args(model, _sft_data(tmp_path), out, 2)) == 0
    assert _scalars(out, "sft/skipped") == [1.0, 0.0]
    start = load_model(model, device="cpu").model.state_dict()
    step1 = load_model(out / "checkpoint-1", device="cpu").model.state_dict()
    step2 = load_model(out / "checkpoint-2", device="cpu").model.state_dict()
    assert all(torch.equal(start[k], step1[k]) for k in start)  # the NaN step changed nothing
    assert not all(torch.equal(start[k], step2[k]) for k in start) and _all_finite(out / "final")


def test_a_run_whose_weights_turn_non_finite_writes_nothing_and_fails(
    tiny, tmp_path, monkeypatch, capsys
) -> None:
    model, _ = tiny
    real = sft.optimizer_step

    def poisoning_step(run, grad_clip, loss=None):
        result = real(run, grad_clip, loss)
        with torch.no_grad():
            next(p for p in run.model.parameters() if p.requires_grad).view(-1)[0] = math.inf
        return result

    monkeypatch.setattr(sft, "optimizer_step", poisoning_step)
    out = tmp_path / "run"
    assert sft.main(_sft_args(model, _sft_data(tmp_path), out, 1)) == 2  # NonFiniteWeightsError, one line
    assert re.search(
        r"^error: .*checkpoint-1: 1 of \d+ tensors hold NaN or inf", capsys.readouterr().err, re.M
    )
    assert not list(out.glob("checkpoint-*")) and not (out / "final").exists()


def test_averaging_refuses_a_non_finite_checkpoint_and_keeps_the_old_output(tmp_path) -> None:
    a, b = save_tiny(tmp_path / "a", seed=1), save_tiny(tmp_path / "b", seed=1)
    tensors = load_file(b / "model.safetensors")
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key].view(-1)[0] = math.nan
    save_file(tensors, b / "model.safetensors", metadata={"format": "pt"})
    dst = tmp_path / "avg"
    dst.mkdir()
    (dst / "keep.txt").write_text("old")
    with pytest.raises(NonFiniteWeightsError, match=key):
        average_checkpoints([a, b], dst)
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]


def test_a_run_that_keeps_no_group_stops_with_an_error(tiny, tmp_path, capsys) -> None:
    model, prompts = tiny  # text prompts have no shapes metadata: the shapes reward gives None
    out = tmp_path / "run"
    args = _grpo_args(model, prompts, out, "--rewards", "shapes", "--dynamic_sampling", "false")
    assert grpo.main([*args, "--max_steps", "5", "--max_empty_steps", "2"]) == 2  # NoSignalError
    want = (r"^error: stopping at step 2: 2 consecutive steps trained on nothing; "
            r"no group was kept: of 8 rewards drawn, 8 were missing .*metadata")  # fmt: skip
    assert re.search(want, capsys.readouterr().err, re.M)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]  # not the stopping step's
    # A run shorter than max_empty_steps that trains on nothing fails at its end.
    assert grpo.main([*args, "--max_steps", "1", "--out_dir", str(tmp_path / "short")]) == 2
    assert "error: stopping at step 1: 1 consecutive" in capsys.readouterr().err
    assert not (tmp_path / "short" / "final").exists()


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"reward_weights": {"shapes": math.nan}}, "weight of 'shapes' must be a finite number"),
        ({"reward_weights": {"shapes": math.inf}}, "weight of 'shapes' must be a finite number"),
        (
            {"reward_mode": "product", "reward_weights": {"shapes": -1.0}},
            "product mode uses weights as exponents",
        ),
        ({"reward_weights": {"hps": 1.0}}, "reward_weights names rewards not in this run: hps"),
        ({"reward_options": {"hps": {"device": "cpu"}}}, "reward_options names rewards not in this run: hps"),
    ],
)
def test_reward_settings_that_cannot_work_are_refused_before_loading(
    tmp_path, settings, error, capsys
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"rewards": ["shapes"], **settings}))
    # refused before any model is loaded (the path does not exist): one line, exit status 2
    assert (
        grpo.main(["--config", str(recipe), "--model", str(tmp_path / "no-model"), "--progress", "false"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and error in err and "Traceback" not in err


def test_combination_weights_and_eps_are_validated() -> None:
    zero = RewardOutput("a", [0.0, 1.0], [{}, {}])
    other = RewardOutput("b", [1.0, 1.0], [{}, {}])
    with pytest.raises(ValueError, match="product mode uses weights as exponents"):
        combine_outputs([zero, other], "product", {"a": -1.0})  # ZeroDivisionError today
    with pytest.raises(ValueError, match="finite number"):
        combine_outputs([zero, other], "weighted_sum", {"a": math.nan})
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        combine_outputs([zero, other], "group_norm", eps=0.0)
    for eps in (0.0, -1e-4, math.nan):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            CombinedConfig(mode="group_norm", eps=eps)
    with pytest.raises(ValueError, match="options given for rewards not requested: hps"):
        make_reward(["shapes"], "weighted_sum", options={"hps": {}})
    assert combine_outputs([zero, other], "weighted_sum", {"a": -1.0}).scores == [1.0, 0.0]  # a penalty
