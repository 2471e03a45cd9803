"""Checkpoints of a run: saving, resuming, listing, the final export, and tail averaging.

A checkpoint is a folder ``<out_dir>/checkpoint-<step>/`` holding an HF-format model (loadable by
``reasongen.loading.load_model``), its processor, and ``trainer_state/`` written by accelerate
(optimizer, scheduler, RNG states of every process) plus our own ``extra.pt`` (step, entropy
controllers, anything else the entry point needs to continue exactly). ``final/`` is the last
checkpoint without its trainer state, or the mean of the last few.

Tail averaging (``average_checkpoints``; ``RunConfig.average_last``; ``python -m
training.averaging``): checkpoints late in one run lie close together, and their mean is often
better than any one of them (Polyak–Ruppert averaging; "stochastic weight averaging", Izmailov et
al. 2018): the update noise of the last steps partly cancels. Each checkpoint is an HF folder
(``save_pretrained``): one ``model.safetensors`` or several shards with their index. Floating
tensors are averaged in float64 per shard (one shard of each source in memory at a time) and
stored in their own dtype; integer and bool tensors (buffers) must be equal in every source. The
first source's config, processor and other files are copied; its ``trainer_state/`` (optimizer,
RNG) and a LoRA ``adapter/`` are not, since neither describes the averaged weights (the
``model.safetensors`` of a LoRA run holds the merged weights, which do average).
``averaged_from.json`` lists the sources.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reasongen.weight_files import weight_files

from .errors import NonFiniteWeightsError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def merged_lora_state_dict(base: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's state dict with every LoRA delta folded in, computed out of place.

    ``base`` is a peft model's base model (LoRA layers injected). Keys lose peft's
    ``base_layer.`` infix and the ``lora_*`` tensors, so ``from_pretrained`` of the plain class
    loads the result; the live model and its adapters are left untouched.
    """
    from peft.tuners.lora import LoraLayer

    deltas: dict[str, torch.Tensor] = {}
    for name, mod in base.named_modules():
        if isinstance(mod, LoraLayer) and hasattr(mod, "get_delta_weight"):
            for adapter in mod.active_adapters:
                d = mod.get_delta_weight(adapter).detach()
                key = f"{name}.weight"
                deltas[key] = deltas[key] + d if key in deltas else d
    out: dict[str, torch.Tensor] = {}
    for key, val in base.state_dict().items():
        if ".lora_" in key:
            continue
        clean = key.replace(".base_layer.", ".")
        out[clean] = (val + deltas[clean].to(val.dtype)) if clean in deltas else val
    return out


def non_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors of ``tensors`` that hold a NaN or ±inf."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _refuse_non_finite(bad: Sequence[str], total: int, what: str) -> None:
    if bad:
        raise NonFiniteWeightsError(
            f"{what}: {len(bad)} of {total} tensors hold NaN or inf values (first: "
            f"{', '.join(bad[:3])}); nothing was written. The run diverged: lower lr, check the "
            "rewards and the loss, or resume from an earlier checkpoint"
        )


def _agree(accelerator: Any, count: int) -> int:
    """``count`` summed over the processes (every process must call this at the same point)."""
    if accelerator.num_processes == 1:
        return count
    t = torch.tensor([float(count)], device=accelerator.device)
    return int(accelerator.reduce(t, reduction="sum")[0])


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state" / "extra.pt").is_file()]


def resolve_resume(resume: str, out_dir: str | Path) -> Path | None:
    """``""`` → None; ``"latest"`` → newest complete checkpoint (None if none); else that folder."""
    if not resume:
        return None
    if resume == "latest":
        found = checkpoint_dirs(out_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "trainer_state" / "extra.pt").is_file():
        raise ValueError(f"{path} is not a complete checkpoint (no trainer_state/extra.pt)")
    return path


def save_checkpoint(
    accelerator: Any,
    model: torch.nn.Module,
    processor: Any,
    out_dir: str | Path,
    step: int,
    extra: dict[str, Any],
    keep_last: int = 0,
) -> Path:
    """Write ``checkpoint-<step>/`` (HF model + processor + resumable state); return its path.

    ``extra`` is pickled with ``torch.save`` last, so a folder without it is incomplete and
    ignored by ``resume``. ``keep_last > 0`` deletes older checkpoints beyond that many. A model
    holding NaN or ±inf (on any process) raises ``NonFiniteWeightsError`` before anything is
    written.
    """
    path = Path(out_dir) / f"checkpoint-{step}"
    state = accelerator.unwrap_model(model).state_dict()
    bad = non_finite_tensors(state)
    if _agree(accelerator, len(bad)):
        _refuse_non_finite(bad or ["on another process"], len(state), f"checkpoint-{step}")
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path / "trainer_state"))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped = getattr(unwrapped, "inner", unwrapped)  # JanusPolicy → Janus / peft model
        if hasattr(unwrapped, "peft_config"):
            unwrapped.save_pretrained(path / "adapter")  # the LoRA adapters alone
            base = unwrapped.get_base_model()
            base.save_pretrained(path, state_dict=merged_lora_state_dict(base), safe_serialization=True)
        else:
            unwrapped.save_pretrained(path, safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(path)
        torch.save(extra, path / "trainer_state" / "extra.pt")
        if keep_last > 0:
            for old in checkpoint_dirs(out_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore model/optimizer/scheduler/RNG state from ``path``; return its ``extra`` dict."""
    path = Path(path)
    accelerator.load_state(str(path / "trainer_state"))
    return torch.load(path / "trainer_state" / "extra.pt", weights_only=False)


def export_final(
    accelerator: Any, checkpoint: str | Path, out_dir: str | Path, average_last: int = 0
) -> Path:
    """Write ``<out_dir>/final``: the HF model + processor of ``checkpoint`` (not its trainer
    state), or with ``average_last > 1`` the mean of the newest ``average_last`` checkpoints in
    ``out_dir`` up to ``checkpoint`` (fewer if the run saved fewer; a warning says so).

    Weights holding NaN or ±inf (a checkpoint written before this check existed) raise
    ``NonFiniteWeightsError`` on every process, and an existing ``final/`` is left as it was."""
    src, dst = Path(checkpoint), Path(out_dir) / "final"
    failure: NonFiniteWeightsError | None = None
    if accelerator.is_main_process:
        found = [p.resolve() for p in checkpoint_dirs(out_dir)]
        upto = found[: found.index(src.resolve()) + 1] if src.resolve() in found else [src]
        sources = upto[-average_last:] if average_last > 1 else [src]
        if len(sources) < max(average_last, 1):
            print(f"warning: average_last is {average_last} but the run has {len(sources)} "
                  f"checkpoints up to {src.name}; final/ averages those", file=sys.stderr)  # fmt: skip
        try:
            if len(sources) > 1:
                average_checkpoints(sources, dst)  # checks the mean before writing
            else:
                check_finite_folder(src)
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("trainer_state"))
        except NonFiniteWeightsError as err:
            failure = err
    if _agree(accelerator, failure is not None):
        raise failure or NonFiniteWeightsError("final/: the main process found non-finite weights")
    accelerator.wait_for_everyone()
    return dst


MANIFEST = "averaged_from.json"
"""The file of an averaged folder that lists its sources."""


def _weight_files(folder: Path) -> list[str]:
    return [p.name for p in weight_files(folder, safetensors_only=True)]


def check_finite_folder(folder: str | Path) -> None:
    """Raise ``NonFiniteWeightsError`` if a weight file of the HF folder holds NaN or ±inf."""
    folder = Path(folder)
    bad: list[str] = []
    total = 0
    for name in _weight_files(folder):
        tensors = load_file(folder / name)
        bad += non_finite_tensors(tensors)
        total += len(tensors)
    _refuse_non_finite(bad, total, f"{folder}")


def average_checkpoints(sources: Sequence[str | Path], dst: str | Path) -> Path:
    """Write to ``dst`` an HF model folder whose weights are the mean of ``sources``'; return ``dst``.

    Raises ``ValueError`` for fewer than two sources, a missing folder, or sources whose weight
    files, tensor names, shapes, dtypes or non-float tensors differ (different models cannot be
    averaged). ``dst`` is replaced if it exists and must not be one of the sources. A mean that
    holds NaN or ±inf (a source did) raises ``NonFiniteWeightsError`` before ``dst`` is touched.
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
    bad = [k for tensors in averaged.values() for k in non_finite_tensors(tensors)]
    total = sum(len(t) for t in averaged.values())
    _refuse_non_finite(bad, total, f"the mean of {', '.join(map(str, srcs))}")

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(
        srcs[0], dst, ignore=shutil.ignore_patterns("trainer_state", "adapter", "*.safetensors", MANIFEST)
    )
    for name, tensors in averaged.items():
        save_file(tensors, dst / name, metadata={"format": "pt"})
    (dst / MANIFEST).write_text(json.dumps({"checkpoints": [str(s) for s in srcs]}, indent=1) + "\n")
    return dst
