"""reasongen.devices: 'auto' device and dtype, and the one dtype-name table."""

from __future__ import annotations

import pytest
import torch

from reasongen.devices import DTYPES, dtype_from_name, resolve_device, resolve_dtype
from reasongen.rewards import ModelRewardConfig


def test_auto_device_is_cuda_only_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_dtype_names_and_auto():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) is torch.float32 and resolve_dtype("auto", cuda) is torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) is torch.float16
    for name, alias in (("float32", "fp32"), ("bfloat16", "bf16"), ("float16", "fp16")):
        assert dtype_from_name(name) is dtype_from_name(alias) is getattr(torch, name)
        assert resolve_dtype(alias, cpu) is getattr(torch, name)
    with pytest.raises(ValueError, match="unknown dtype 'int8'; choose one of float32, fp32"):
        resolve_dtype("int8", cpu)


def test_reward_configs_use_the_same_table(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = ModelRewardConfig(model="x", dtype="bf16")
    assert cfg.torch_device() == torch.device("cpu") and cfg.torch_dtype() is torch.bfloat16
    assert ModelRewardConfig(model="x").torch_dtype() is torch.float32  # auto on the CPU
    assert set(DTYPES) >= {"float32", "bfloat16", "float16"}
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        ModelRewardConfig(model="x", dtype="int8")
