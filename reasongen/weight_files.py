"""Which files of a checkpoint folder hold its weights (one lister for conversion and averaging)."""

from __future__ import annotations

import json
from pathlib import Path

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def weight_files(folder: str | Path, safetensors_only: bool = False) -> list[Path]:
    """The weight files of ``folder``, sorted by name.

    The shards its index names (``model.safetensors.index.json``, else
    ``pytorch_model.bin.index.json``) when there is one; else every ``*.safetensors``; else
    every ``pytorch_model*.bin``. ``safetensors_only`` never looks at ``.bin`` weights. Raises
    ``ValueError`` when an index names a shard that is not there or there are no weights.
    """
    folder = Path(folder)
    indexes = (SAFETENSORS_INDEX,) if safetensors_only else (SAFETENSORS_INDEX, BIN_INDEX)
    for index_name in indexes:
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            files = sorted({folder / name for name in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing or not files:
                raise ValueError(f"{index} lists shard(s) that are not there: {', '.join(missing) or 'none'}")
            return files
    files = sorted(folder.glob("*.safetensors"))
    if safetensors_only:
        if not files:
            raise ValueError(f"{folder} has no *.safetensors weights (save with safe_serialization=True)")
        return files
    files = files or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ValueError(f"{folder} has no weights (*.safetensors or pytorch_model*.bin)")
    return files
