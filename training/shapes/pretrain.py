"""Pretrain the embedded shapes model: tokenizer, VQ decoder and a small Janus LM, from nothing.

    python -m training.shapes.pretrain --out assets/models/shapes-janus [--seed 0]
    python -m training.shapes.pretrain --out DIR --language full   # the whole prompt language

Everything comes from the shapes world (``reasongen.shapes``) and is seeded. The model draws
cell-aligned scenes on an 8 × 8 token grid whose codes are semantic (``reasongen.shapes.codes``),
so the VQ decoder (trained in a second process) and the LM (SFT on got-r1 and direct examples)
train at the same time. Runs on the CPU and uses CUDA when present. Writes a transformers Janus
folder (``save_pretrained`` model + ``JanusProcessor``) that ``reasongen.loading.load_model`` and
``JanusForConditionalGeneration.from_pretrained`` both load, plus ``training_stats.json``.

Across sessions: each stage checkpoints its weights, optimizer, scheduler, RNG states and step
into ``OUT/checkpoints/{lm,vq}/`` every ``--save-every`` steps (``stage_state.py``); the same
command with ``--resume`` continues both stages from their newest checkpoints (a killed run loses
at most ``--save-every`` steps), and with ``--max-minutes 0`` (the step schedule) the result is
bit-identical to an uninterrupted run's. ``--session-minutes`` ends a session cleanly (exit status
75, no model, the command to continue printed); ``--max-minutes`` is each stage's budget over all
sessions. A run that did all its steps deletes ``OUT/checkpoints`` (``--keep-checkpoints`` keeps it).

    # every session, until it exits with 0 (--resume without checkpoints starts afresh):
    python -m training.shapes.pretrain --out D --language full --max-minutes 0 --session-minutes 170 --resume
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import JanusConfig, JanusForConditionalGeneration, JanusVQVAE

from reasongen.config import parse_config
from reasongen.devices import resolve_device
from reasongen.shapes import render_scene, sample_scenes
from reasongen.shapes.codes import (
    CELL,
    EMBED_DIM,
    GRID_CELLS,
    NUM_BACKGROUND,
    NUM_CODES,
    codebook_vectors,
    corner_mask,
)
from reasongen.shapes.compose import FULL_LANGUAGE, check_categories
from reasongen.tiny import make_processor, set_generation_defaults
from reasongen.types import CATEGORIES

from .data import build_tokenizer, encode_texts, lm_codes
from .lm import shapes_config, train_lm
from .stage_state import STOP_BUDGET, STOP_SESSION, StageCheckpoints
from .vq import decode_codes, set_codebook, train_decoder

LANGUAGES = ("geneval", "full")
CHECKPOINTS = "checkpoints"
"""The output folder's sub-folder of stage checkpoints (``lm/`` and ``vq/``)."""
PAUSED_EXIT = 75
"""Exit status of a run that ``--session-minutes`` ended before its steps (EX_TEMPFAIL: resume it)."""


@dataclass
class PretrainShapesConfig:
    """Configuration of ``python -m training.shapes.pretrain`` (every field is a flag)."""

    out: str = field(default="assets/models/shapes-janus", metadata={"help": "output folder"})
    seed: int = field(default=0, metadata={"help": "seed of scenes, initialisation and batches"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA if present), cpu or cuda"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process"})
    image_size: int = field(default=64, metadata={"help": "model image side in pixels (8 cells)"})
    vq_base_channels: int = field(default=32, metadata={"help": "VQ base channels (>= 32)"})
    vq_steps: int = field(default=1200, metadata={"help": "VQ decoder optimiser steps"})
    vq_batch: int = field(default=16, metadata={"help": "VQ decoder batch size"})
    vq_lr: float = field(default=2e-3, metadata={"help": "VQ decoder peak learning rate"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary (before added tokens)"})
    text_scenes: int = field(default=6000, metadata={"help": "scenes whose text trains the BPE"})
    hidden: int = field(default=128, metadata={"help": "LM hidden size"})
    layers: int = field(default=4, metadata={"help": "LM layers"})
    heads: int = field(default=4, metadata={"help": "LM attention heads"})
    lm_scenes: int = field(default=40000, metadata={"help": "scenes in the SFT set"})
    lm_steps: int = field(default=3600, metadata={"help": "SFT optimiser steps"})
    lm_batch: int = field(default=24, metadata={"help": "SFT batch size"})
    lm_lr: float = field(default=3e-3, metadata={"help": "SFT peak learning rate"})
    language: str = field(
        default="geneval",
        metadata={"help": "prompt language of the scenes: 'geneval' (GenEval's six templates, the "
                  "shipped models) or 'full' (the whole shapes language, reasongen.shapes.compose."
                  "FULL_LANGUAGE, unless --categories says otherwise)"},
    )  # fmt: skip
    categories: list[str] = field(
        default_factory=list,
        metadata={"help": "scene categories the text and SFT scenes cycle through (default: the "
                  "--language's); name one more than once to weight it, e.g. count_color twice"},
    )  # fmt: skip
    direct_fraction: float = field(default=0.3, metadata={"help": "share of direct (no-CoT) examples"})
    drop_prompt: float = field(default=0.1, metadata={"help": "share of unconditional examples (CFG)"})
    corner_weight: float = field(default=5.0, metadata={"help": "image-loss weight of object starts"})
    anchor_weight: float = field(
        default=1.0, metadata={"help": "weight of the box tokens' object-identity loss (0: off)"}
    )
    guidance: float = field(
        default=2.0,
        metadata={"help": "CFG weight saved as the model's default (5 overshoots: 0.36 vs 0.87 overall)"},
    )
    max_minutes: float = field(
        default=40.0,
        metadata={"help": "each stage's time budget, counted over every session of a resumed run: "
                  "the stage stops after this long and its learning-rate decay follows the clock "
                  "when that is further along than the steps (0: off, the step schedule alone)"},
    )  # fmt: skip
    session_minutes: float = field(
        default=0.0,
        metadata={"help": "end this session after this long: each stage saves a checkpoint and "
                  "stops (the schedule does not see it), no model is written, and the command "
                  "prints how to continue with --resume (0: off)"},
    )  # fmt: skip
    save_every: int = field(
        default=200,
        metadata={"help": "checkpoint each stage into OUT/checkpoints every this many steps (and "
                  "whenever a stage stops); a killed run loses at most this many steps (0: only "
                  "when a stage stops)"},
    )  # fmt: skip
    resume: bool = field(
        default=False,
        metadata={"help": "continue each stage from its newest checkpoint in OUT/checkpoints "
                  "(same settings required; the weights come out as an uninterrupted run's)"},
    )  # fmt: skip
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "keep OUT/checkpoints after a run that did all its steps"}
    )
    eval_images: int = field(default=300, metadata={"help": "held-out scenes for VQ accuracy"})

    def __post_init__(self) -> None:
        if self.vq_base_channels < 32 or self.vq_base_channels % 32:
            raise ValueError("vq_base_channels must be a multiple of 32 (GroupNorm(32)); e.g. 32")
        if self.image_size % GRID_CELLS or (self.image_size // GRID_CELLS) & (
            self.image_size // GRID_CELLS - 1
        ):
            raise ValueError(f"image_size must be {GRID_CELLS} × a power of two, e.g. 64 or 128")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by heads {self.heads}")
        if not 0 <= self.direct_fraction < 1 or not 0 <= self.drop_prompt < 1:
            raise ValueError("direct_fraction and drop_prompt must lie in [0, 1)")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}; got {self.language!r}")
        check_categories(self.scene_categories, CELL)
        for name in ("vq_steps", "lm_scenes", "lm_steps", "text_scenes", "vq_batch", "lm_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("max_minutes", "session_minutes", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: off)")

    @property
    def scene_categories(self) -> tuple[str, ...]:
        """The categories scenes cycle through: ``categories``, else the language's."""
        if self.categories:
            return tuple(self.categories)
        return FULL_LANGUAGE if self.language == "full" else CATEGORIES

    @property
    def downsample_levels(self) -> int:
        return (self.image_size // GRID_CELLS).bit_length() - 1


def parse_args(argv: list[str] | None = None) -> PretrainShapesConfig:
    """Command-line flags, one per config field (``--vq-steps 100``), or ``--config FILE.yaml``."""
    return parse_config(PretrainShapesConfig, argv, prog="python -m training.shapes.pretrain",
                        description=(__doc__ or "").split("\n\n")[0])  # fmt: skip


def _build_config(cfg: PretrainShapesConfig, vocab_size: int) -> JanusConfig:
    return shapes_config(vocab_size, cfg.hidden, cfg.layers, cfg.heads, cfg.image_size,
                         cfg.downsample_levels, NUM_CODES, EMBED_DIM, cfg.vq_base_channels)  # fmt: skip


SESSION_FIELDS = ("out", "device", "threads", "max_minutes", "session_minutes", "save_every", "resume",
                  "keep_checkpoints", "guidance", "eval_images")  # fmt: skip
"""Settings a resumed run may change: where and how long it runs, and what is done after training."""


def fingerprint(cfg: PretrainShapesConfig) -> dict[str, Any]:
    """The settings the trained weights depend on (every field but ``SESSION_FIELDS``)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SESSION_FIELDS}


def command_line(cfg: PretrainShapesConfig, show: tuple[str, ...] = ("out",), **changes: Any) -> str:
    """The command that runs ``cfg`` with ``changes``: every setting that is not the default, and
    the fields named in ``show`` even when they are."""
    cfg = dataclasses.replace(cfg, **changes)
    words = ["python", "-m", "training.shapes.pretrain"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value == default and f.name not in show:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else f"{flag} false")
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(words)


def stage_checkpoints(cfg: PretrainShapesConfig, stage: str) -> StageCheckpoints:
    """Where stage ``lm`` or ``vq`` keeps its checkpoints: ``OUT/checkpoints/<stage>``."""
    return StageCheckpoints(Path(cfg.out) / CHECKPOINTS / stage, cfg.save_every, fingerprint(cfg))


def _watch_parent() -> None:
    """End this process when its parent dies (a killed run must not leave the decoder training)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _decoder_stage(cfg_dict: dict[str, Any], vq_config: dict[str, Any], path: str,
                   stop_at: float | None = None) -> None:  # fmt: skip
    """Child process: train (or resume) the VQ decoder; save its state dict and summary to ``path``."""
    from transformers import JanusVQVAEConfig

    _watch_parent()
    cfg = PretrainShapesConfig(**cfg_dict)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + 10)
    vq = JanusVQVAE(JanusVQVAEConfig(**vq_config))
    limit = cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    done = train_decoder(vq, cfg.image_size, cfg.vq_steps, cfg.vq_batch, cfg.vq_lr,
                         cfg.seed + 11, resolve_device(cfg.device), limit,
                         stage_checkpoints(cfg, "vq"), cfg.resume, stop_at)  # fmt: skip
    summary = {"steps": done.steps, "seconds": done.seconds, "final_loss": float(np.mean(done.record[-20:])),
               "stop": done.stop, "resumed_from": done.resumed_from}  # fmt: skip
    torch.save({"state": vq.cpu().state_dict(), "summary": summary}, path)


def detector_accuracy(scenes, images: np.ndarray) -> float:
    """Share of images the world's detector finds correct for their scene."""
    from PIL import Image

    from reasongen.shapes.geneval import check_image

    ok = [bool(check_image(Image.fromarray(im), s.metadata)[0].correct) for s, im in zip(scenes, images)]
    return float(np.mean(ok))


def _vq_eval(vq: JanusVQVAE, cfg: PretrainShapesConfig) -> dict[str, Any]:
    """Decode held-out scenes' codes; compare with clean renders (pixels and the detector)."""
    scenes = sample_scenes(cfg.eval_images, seed=cfg.seed + 3, cell=CELL)
    rec = decode_codes(vq, lm_codes(scenes))
    clean = np.stack([np.asarray(render_scene(s, size=cfg.image_size)) for s in scenes])
    return {
        "recon_mae": float(np.abs(rec.astype(float) - clean).mean()),
        "detector_accuracy_recon": detector_accuracy(scenes, rec),
        "detector_accuracy_clean": detector_accuracy(scenes, clean),
    }


def _check_checkpoints(cfg: PretrainShapesConfig) -> None:
    """A fresh run refuses an output folder that holds an earlier run's checkpoints."""
    found = [p for stage in ("lm", "vq") for p in stage_checkpoints(cfg, stage).existing()]
    if cfg.resume and not found:
        print(f"--resume: no checkpoints in {Path(cfg.out) / CHECKPOINTS}; starting afresh", flush=True)
    if not cfg.resume and found:
        raise ValueError(
            f"{Path(cfg.out) / CHECKPOINTS} holds checkpoints of an earlier run ({found[-1].name}, ...): "
            f"pass --resume to continue it, or delete that folder to start afresh"
        )


def _stopped_early(cfg: PretrainShapesConfig, stops: dict[str, tuple[str, int, int]]) -> str:
    """What to tell about stages that stopped before their steps (empty if none did)."""
    ckpt = Path(cfg.out) / CHECKPOINTS
    where = ", ".join(f"the {name} at step {done} of {steps}" for name, (stop, done, steps) in stops.items()
                      if stop in (STOP_SESSION, STOP_BUDGET))  # fmt: skip
    if any(stop == STOP_SESSION for stop, _, _ in stops.values()):
        return (f"--session-minutes {cfg.session_minutes:g} ended this session ({where}); no model "
                f"was written. Their state is in {ckpt}. Continue with:\n"
                f"  {command_line(cfg, resume=True)}")  # fmt: skip
    if any(stop == STOP_BUDGET for stop, _, _ in stops.values()):
        longer = max(2 * cfg.max_minutes, 1.0)
        return (f"--max-minutes {cfg.max_minutes:g} stopped {where} (the learning rate followed the clock "
                f"to its end); {cfg.out} holds that model and {ckpt} its state (delete it before "
                f"shipping the folder). To train on, give a larger budget (the decay then follows it):"
                f"\n  {command_line(cfg, resume=True, max_minutes=longer)}\nor the step schedule "
                f"alone:\n  {command_line(cfg, resume=True, max_minutes=0.0)}")  # fmt: skip
    return ""


def run(cfg: PretrainShapesConfig) -> dict[str, Any]:
    """Train everything (or continue it, ``cfg.resume``) and save it to ``cfg.out``; returns the
    stats written beside it. A run that ``session_minutes`` ended before its steps writes no model
    and returns stats whose ``unfinished`` names the stages to resume."""
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_checkpoints(cfg)
    stop_at = t0 + 60 * cfg.session_minutes if cfg.session_minutes > 0 else None
    stats: dict[str, Any] = {"config": dataclasses.asdict(cfg), "device": str(dev)}

    cats = cfg.scene_categories
    tok = build_tokenizer(sample_scenes(cfg.text_scenes, cfg.seed + 1, cats, CELL), cfg.vocab_size)
    config = _build_config(cfg, len(tok))
    config.image_token_id = tok.convert_tokens_to_ids(tok.image_token)
    print(f"tokenizer: {len(tok)} tokens; image tokens: {config.vision_config.num_image_tokens}")

    vq_path = out / "_decoder.pt"
    child = mp.get_context("spawn").Process(
        target=_decoder_stage,
        args=(dataclasses.asdict(cfg), config.vq_config.to_dict(), str(vq_path), stop_at),
    )
    child.start()

    model = JanusForConditionalGeneration(config)
    set_codebook(model.model.vqmodel)
    with torch.no_grad():
        # Input embeddings of image tokens: the codebook, plus a distinct random direction per
        # background cell (all background codes share one codebook vector).
        emb = torch.from_numpy(codebook_vectors())  # [K, D]
        noise = torch.randn(NUM_BACKGROUND, emb.shape[1], generator=torch.Generator().manual_seed(cfg.seed))
        emb[:NUM_BACKGROUND] += 0.5 * torch.nn.functional.normalize(noise, dim=1)
        model.model.generation_embeddings.weight.copy_(emb)
    weights = 1.0 + (cfg.corner_weight - 1.0) * torch.from_numpy(corner_mask()).float()  # [K]
    scenes = sample_scenes(cfg.lm_scenes, cfg.seed + 4, cats, CELL)
    texts = encode_texts(scenes, tok, cfg.direct_fraction, cfg.seed + 5)
    codes = lm_codes(scenes)  # [n, 64]
    limit = cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    lm = train_lm(model, texts, codes, tok.pad_token_id, cfg.lm_steps, cfg.lm_batch, cfg.lm_lr,
                  cfg.drop_prompt, dev, cfg.seed + 6, max_seconds=limit, code_weights=weights,
                  anchor_weight=cfg.anchor_weight, checkpoints=stage_checkpoints(cfg, "lm"),
                  resume=cfg.resume, stop_at=stop_at)  # fmt: skip
    tail = np.array(lm.record[-50:])
    stats["lm"] = {"steps": lm.steps, "seconds": lm.seconds, "stop": lm.stop,
                   "final_text_loss": float(tail[:, 0].mean()),
                   "final_image_loss": float(tail[:, 1].mean())}  # fmt: skip

    child.join()
    if child.exitcode != 0 or not vq_path.is_file():
        raise RuntimeError(f"the VQ decoder process failed (exit code {child.exitcode})")
    saved = torch.load(vq_path, map_location="cpu")
    vq_path.unlink()
    resumed = {"lm_from_step": lm.resumed_from, "vq_from_step": saved["summary"].pop("resumed_from")}
    if any(resumed.values()):
        stats["resumed"] = resumed
    stops = {"LM": (lm.stop, lm.steps, cfg.lm_steps),
             "VQ decoder": (saved["summary"]["stop"], saved["summary"]["steps"], cfg.vq_steps)}  # fmt: skip
    note = _stopped_early(cfg, stops)
    if any(stop == STOP_SESSION for stop, _, _ in stops.values()):
        print(note, flush=True)
        unfinished = [name for name, (stop, _, _) in stops.items() if stop == STOP_SESSION]
        return {**stats, "vq": saved["summary"], "unfinished": unfinished}

    model = model.to("cpu").eval()
    model.model.vqmodel.load_state_dict(saved["state"])
    stats["vq"] = {**saved["summary"], **_vq_eval(model.model.vqmodel, cfg)}
    print(f"VQ: {stats['vq']}", flush=True)

    set_generation_defaults(model, tok, cfg.guidance)
    processor = make_processor(tok, cfg.image_size, config.vision_config.num_image_tokens)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    stats["parameters"] = {
        "total": sum(p.numel() for p in model.parameters()),
        "language_model": sum(p.numel() for p in model.model.language_model.parameters()),
        "vq": sum(p.numel() for p in model.model.vqmodel.parameters()),
    }
    stats["wall_seconds"] = time.time() - t0
    (out / "training_stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, indent=2), flush=True)
    if note:
        print(note, flush=True)
    elif not cfg.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    stats = run(parse_args(argv))
    return PAUSED_EXIT if stats.get("unfinished") else 0


if __name__ == "__main__":
    sys.exit(main())
