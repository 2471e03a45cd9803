"""load_model's errors and the ``python -m reasongen generate`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasongen.loading import ModelLoadError, load_model, settings_for, wrap_loaded
from reasongen.tiny import build_tiny
from reasongen.types import SamplingSettings

ROOT = Path(__file__).resolve().parents[2]


def test_loaded_model_carries_ids_and_defaults(tiny_loaded):
    tok = tiny_loaded.tokenizer
    assert tiny_loaded.ids.boi == tok.convert_tokens_to_ids("<begin_of_image>")
    assert len(tiny_loaded.ids.box_tokens) == 4
    assert tiny_loaded.num_image_tokens == 16 and tiny_loaded.grid == 4 and tiny_loaded.image_size == 32
    assert tiny_loaded.defaults.guidance == 5.0
    assert str(tiny_loaded.device) == "cpu"


def test_settings_for_starts_from_the_models_defaults():
    model, processor = build_tiny(seed=0)
    model.generation_config.guidance_scale = 2.5
    lm = wrap_loaded(model, processor, "tiny")
    assert settings_for(lm) == SamplingSettings(guidance=2.5, num_image_tokens=16) == lm.defaults
    s = settings_for(lm, guidance=None, temperature=0.7, top_p=0.9, cot_top_k=5, max_cot_tokens=9)
    assert s == SamplingSettings(guidance=2.5, temperature=0.7, top_p=0.9, cot_top_k=5, max_cot_tokens=9,
                                 num_image_tokens=16)  # fmt: skip
    assert settings_for(lm, guidance=0.0, temperature=0.0).guidance == 0.0  # falsy values are kept


def test_settings_for_keeps_a_callers_settings_and_fills_in_the_image_tokens(tiny_loaded):
    base = SamplingSettings(temperature=0.3, max_cot_tokens=4)  # guidance 5.0 and no num_image_tokens
    assert settings_for(tiny_loaded, base) == SamplingSettings(temperature=0.3, max_cot_tokens=4,
                                                               num_image_tokens=16)  # fmt: skip
    assert settings_for(tiny_loaded, base, top_k=3).top_k == 3
    assert settings_for(tiny_loaded, num_image_tokens=16).num_image_tokens == 16


def test_settings_for_refuses_conflicting_image_tokens_and_unknown_names(tiny_loaded):
    with pytest.raises(ValueError, match=r"num_image_tokens=576.*16 image tokens"):
        settings_for(tiny_loaded, num_image_tokens=576)
    with pytest.raises(ValueError, match="num_image_tokens=64"):
        settings_for(tiny_loaded, SamplingSettings(num_image_tokens=64))
    with pytest.raises(TypeError, match="temprature"):
        settings_for(tiny_loaded, temprature=0.5)


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nowhere" / "model")


def test_folder_without_config_suggests_conversion(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ModelLoadError, match="python -m reasongen convert"):
        load_model(tmp_path)


def test_uncached_hub_id_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_model("deepseek-community/Janus-Pro-1B-does-not-exist")
    msg = str(err.value)
    assert "deepseek-community/Janus-Pro-1B-does-not-exist" in msg and "--model DIR" in msg
    assert "Traceback" not in msg and len(msg.splitlines()) == 1


def test_cuda_on_a_cpu_machine_is_a_value_error(tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model(tiny_model_dir, device="cuda")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "reasongen", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)  # fmt: skip


def test_cli_generate_writes_images_cot_and_plans(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    res = _cli("generate", "a red circle", "--model", str(tiny_model_dir), "--n", "2", "--seed", "3",
               "--max-cot-tokens", "8", "--out", str(out), "--save-tokens")  # fmt: skip
    assert res.returncode == 0, res.stderr
    for i in range(2):
        record = json.loads((out / f"{i:02d}.json").read_text())
        assert record["recipe"] == "got-r1" and record["seed"] == 3 and record["index"] == i
        assert len(record["image_token_ids"]) == 16
        assert (out / f"{i:02d}.cot.txt").read_text() == record["cot_text"]
        assert (out / f"{i:02d}.png").stat().st_size > 0
    assert "image rows" in res.stderr  # the progress bar


def test_cli_reports_bad_input_without_a_traceback(tiny_model_dir, tmp_path):
    res = _cli("generate", "  ", "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert res.returncode == 2 and "error: prompt is empty" in res.stderr and "Traceback" not in res.stderr
    res = _cli("generate", "a cat", "--model", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert res.returncode == 2 and "does not exist" in res.stderr
