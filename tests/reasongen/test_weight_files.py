"""reasongen.weight_files: the one lister of a checkpoint folder's weight files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasongen.weight_files import weight_files


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def test_safetensors_first_then_bin(tmp_path):
    _touch(tmp_path / "a", "model-2.safetensors", "model-1.safetensors", "pytorch_model.bin", "x.json")
    assert [p.name for p in weight_files(tmp_path / "a")] == ["model-1.safetensors", "model-2.safetensors"]
    _touch(tmp_path / "b", "pytorch_model-2.bin", "pytorch_model-1.bin", "optimizer.bin")
    assert [p.name for p in weight_files(tmp_path / "b")] == ["pytorch_model-1.bin", "pytorch_model-2.bin"]
    with pytest.raises(ValueError, match=r"has no \*\.safetensors weights \(save with safe_serialization"):
        weight_files(tmp_path / "b", safetensors_only=True)
    with pytest.raises(ValueError, match=r"has no weights"):
        weight_files(tmp_path / "x.none")


def test_an_index_names_the_shards(tmp_path):
    _touch(tmp_path, "s-1.safetensors", "s-2.safetensors", "stray.safetensors")
    index = {"weight_map": {"a": "s-2.safetensors", "b": "s-1.safetensors", "c": "s-2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [p.name for p in weight_files(tmp_path)] == ["s-1.safetensors", "s-2.safetensors"]
    assert weight_files(tmp_path, safetensors_only=True) == weight_files(tmp_path)
    (tmp_path / "s-2.safetensors").unlink()
    with pytest.raises(ValueError, match=r"lists shard.* not there: s-2\.safetensors"):
        weight_files(tmp_path)


def test_a_bin_index_is_ignored_when_only_safetensors_count(tmp_path):
    _touch(tmp_path, "pytorch_model-1.bin", "model.safetensors")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "pytorch_model-1.bin"}})
    )
    assert [p.name for p in weight_files(tmp_path)] == ["pytorch_model-1.bin"]
    assert [p.name for p in weight_files(tmp_path, safetensors_only=True)] == ["model.safetensors"]
