"""Tail averaging: a model whose weights are the element-wise mean of several checkpoints'.

    python -m training.averaging OUT_DIR RUN/checkpoint-325 RUN/checkpoint-350 ...
    python -m training.averaging OUT_DIR --run RUN --last 4

Checkpoints late in one run lie close together, and their mean is often better than any one of
them (Polyak–Ruppert averaging; "stochastic weight averaging", Izmailov et al. 2018): the update
noise of the last steps partly cancels. The trainers use it through ``RunConfig.average_last``,
which exports ``final/`` as the mean of the run's last N checkpoints.

Each checkpoint is an HF folder (``save_pretrained``): one ``model.safetensors`` or several shards
with their index. Floating tensors are averaged in float64 per shard (one shard of each source in
memory at a time) and stored in their own dtype; integer and bool tensors (buffers) must be equal
in every source. The first source's config, processor and other files are copied; its
``trainer_state/`` (optimizer, RNG) and a LoRA ``adapter/`` are not, since neither describes the
averaged weights (the ``model.safetensors`` of a LoRA run holds the merged weights, which do
average). ``averaged_from.json`` lists the sources.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MANIFEST = "averaged_from.json"


def _weight_files(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.glob("*.safetensors"))
    if not names:
        raise ValueError(f"{folder} has no *.safetensors weights (save with safe_serialization=True)")
    return names


def average_checkpoints(sources: Sequence[str | Path], dst: str | Path) -> Path:
    """Write to ``dst`` an HF model folder whose weights are the mean of ``sources``'; return ``dst``.

    Raises ``ValueError`` for fewer than two sources, a missing folder, or sources whose weight
    files, tensor names, shapes, dtypes or non-float tensors differ (different models cannot be
    averaged). ``dst`` is replaced if it exists and must not be one of the sources.
    """
    srcs = [Path(s) for s in sources]
    dst = Path(dst)
    if len(srcs) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(srcs)}")
    for s in srcs:
        if not s.is_dir():
            raise ValueError(f"checkpoint folder {s} does not exist")
    if any(dst.resolve() == s.resolve() for s in srcs):
        raise ValueError(f"the output folder {dst} is one of the checkpoints being averaged")
    files = _weight_files(srcs[0])
    for s in srcs[1:]:
        if _weight_files(s) != files:
            raise ValueError(f"{s} has weight files {_weight_files(s)}, {srcs[0]} has {files}")

    averaged: dict[str, dict[str, torch.Tensor]] = {}
    for name in files:
        first = load_file(srcs[0] / name)
        sums = {k: v.to(torch.float64) for k, v in first.items() if v.is_floating_point()}
        for s in srcs[1:]:
            other = load_file(s / name)
            if other.keys() != first.keys():
                diff = sorted(set(other) ^ set(first))
                raise ValueError(f"{s / name} and {srcs[0] / name} hold different tensors: {diff[:5]}")
            for k, v in other.items():
                ref = first[k]
                if v.shape != ref.shape or v.dtype != ref.dtype:
                    raise ValueError(f"tensor {k}: {tuple(v.shape)} {v.dtype} in {s}, "
                                     f"{tuple(ref.shape)} {ref.dtype} in {srcs[0]}")  # fmt: skip
                if k in sums:
                    sums[k] += v.to(torch.float64)
                elif not torch.equal(v, ref):
                    raise ValueError(f"non-float tensor {k} differs between {s} and {srcs[0]}")
        averaged[name] = {k: (sums[k] / len(srcs)).to(v.dtype) if k in sums else v for k, v in first.items()}

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(
        srcs[0], dst, ignore=shutil.ignore_patterns("trainer_state", "adapter", "*.safetensors", MANIFEST)
    )
    for name, tensors in averaged.items():
        save_file(tensors, dst / name, metadata={"format": "pt"})
    (dst / MANIFEST).write_text(json.dumps({"checkpoints": [str(s) for s in srcs]}, indent=1) + "\n")
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, help="folder to write the averaged model to")
    ap.add_argument("checkpoints", nargs="*", type=Path, help="checkpoint folders to average")
    ap.add_argument("--run", type=Path, default=None, help="a run folder: average its checkpoints")
    ap.add_argument("--last", type=int, default=0, help="with --run: only its newest N checkpoints")
    args = ap.parse_args(argv)
    from training.common import checkpoint_dirs

    if bool(args.run) == bool(args.checkpoints):
        ap.error("give either checkpoint folders or --run")
    sources = list(args.checkpoints)
    if args.run:
        sources = checkpoint_dirs(args.run)
        sources = sources[-args.last :] if args.last > 0 else sources
    try:
        out = average_checkpoints(sources, args.out_dir)
    except ValueError as err:
        ap.error(str(err))
    print(f"wrote {out}: mean of {', '.join(str(s) for s in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
