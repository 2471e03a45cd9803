"""Tail averaging of checkpoints: the exact mean, its guards, and the trainers' ``average_last``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from reasongen.loading import load_model
from reasongen.tiny import save_tiny
from training.averaging import average_checkpoints, main
from training.config import RunConfig


def _two(tmp_path):
    return save_tiny(tmp_path / "a", seed=1), save_tiny(tmp_path / "b", seed=2)


def test_the_average_is_the_elementwise_mean_and_loads_as_a_model(tmp_path) -> None:
    a, b = _two(tmp_path)
    out = average_checkpoints([a, b], tmp_path / "avg")
    wa, wb, avg = (load_file(p / "model.safetensors") for p in (a, b, out))
    assert avg.keys() == wa.keys()
    floats = [k for k, v in wa.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(wa[k], wb[k]) for k in floats)
    for k, v in avg.items():
        assert v.dtype == wa[k].dtype and v.shape == wa[k].shape
        expect = (wa[k].double() + wb[k].double()) / 2 if k in floats else wa[k]
        torch.testing.assert_close(v, expect.to(v.dtype), rtol=0, atol=1e-7)
    sources = json.loads((out / "averaged_from.json").read_text())["checkpoints"]
    assert sources == [str(a), str(b)]
    model = load_model(out, device="cpu").model  # the processor and config came along
    state = model.state_dict()
    name = next(k for k in floats if k in state)
    torch.testing.assert_close(state[name], avg[name])


def test_three_checkpoints_average_with_equal_weights(tmp_path) -> None:
    a, b = _two(tmp_path)
    c = save_tiny(tmp_path / "c", seed=3)
    out = average_checkpoints([a, b, c], tmp_path / "avg")
    w = [load_file(p / "model.safetensors") for p in (a, b, c)]
    k = next(k for k, v in w[0].items() if v.is_floating_point() and v.numel() > 1)
    expect = (w[0][k].double() + w[1][k].double() + w[2][k].double()) / 3
    torch.testing.assert_close(load_file(out / "model.safetensors")[k], expect.to(w[0][k].dtype))


def test_sources_that_are_not_the_same_model_are_refused(tmp_path) -> None:
    a, b = _two(tmp_path)
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([a], tmp_path / "x")
    with pytest.raises(ValueError, match="does not exist"):
        average_checkpoints([a, tmp_path / "missing"], tmp_path / "x")
    with pytest.raises(ValueError, match="output folder"):
        average_checkpoints([a, b], a)
    weights = load_file(b / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    save_file({**weights, "extra.weight": torch.zeros(2)}, b / "model.safetensors")
    with pytest.raises(ValueError, match="different tensors"):
        average_checkpoints([a, b], tmp_path / "x")
    save_file({**weights, name: weights[name].flatten()[:1].clone()}, b / "model.safetensors")
    with pytest.raises(ValueError, match=f"tensor {name}"):
        average_checkpoints([a, b], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_cli_averages_the_newest_checkpoints_of_a_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    for step, seed in ((1, 1), (2, 2), (3, 3)):
        ckpt = save_tiny(run / f"checkpoint-{step}", seed=seed)
        (ckpt / "trainer_state").mkdir()
        torch.save({"step": step}, ckpt / "trainer_state" / "extra.pt")
    assert main([str(tmp_path / "avg"), "--run", str(run), "--last", "2"]) == 0
    assert "checkpoint-2, " in capsys.readouterr().out
    sources = json.loads((tmp_path / "avg" / "averaged_from.json").read_text())["checkpoints"]
    assert [s.rsplit("/", 1)[-1] for s in sources] == ["checkpoint-2", "checkpoint-3"]
    assert not (tmp_path / "avg" / "trainer_state").exists()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "avg2")])  # neither folders nor --run


def test_run_config_checks_average_last_against_saving() -> None:
    assert RunConfig(average_last=4, save_every=25, keep_last=20).average_last == 4
    with pytest.raises(ValueError, match="save_every"):
        RunConfig(average_last=2, save_every=0)
    with pytest.raises(ValueError, match="keeps fewer"):
        RunConfig(average_last=4, save_every=25, keep_last=3)
    with pytest.raises(ValueError, match=">= 0"):
        RunConfig(average_last=-1)
