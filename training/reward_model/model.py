"""Building, initialising and saving the open_clip scorer of a preference reward model.

Three starts: a local open_clip folder (``open_clip_config.json`` + weights: a LAION/OpenAI CLIP
in open_clip's hub layout, or a folder this package wrote), a bare checkpoint file with an
open_clip architecture name (HPS v2.1: ``HPS_v2.1_compressed.pt`` with ``ViT-H-14``), or a small
config from scratch (``SHAPES_CONFIG``, for the shapes world). Saving writes open_clip's local-dir
layout, which ``reasongen.rewards.learned`` and open_clip itself load.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from reasongen.rewards.learned import (
    CONFIG_FILE,
    IMAGE_MODES,
    PLAN_MODES,
    WEIGHTS_FILE,
    Scorer,
    image_mode_of,
    load_scorer,
    text_mode_of,
)

SHAPES_CONFIG: dict[str, Any] = {
    "model_cfg": {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 64,
            "patch_size": 8,
            "width": 128,
            "layers": 4,
            "head_width": 32,
            "mlp_ratio": 2.0,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 3,
            "mlp_ratio": 2.0,
        },
    },
    "preprocess_cfg": {
        "size": 64,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}
"""A small open_clip CLIP for the shapes world (64 px images in 8 px patches, prompts of at most
30 BPE tokens); 3.8 M parameters, 3.2 M of them open_clip's 49,408-token text embedding (15 MB
in float32)."""

TINY_CONFIG: dict[str, Any] = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
    },
    "preprocess_cfg": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}
"""A minute config for tests."""

SHAPES_P4_CONFIG: dict[str, Any] = copy.deepcopy(SHAPES_CONFIG)
SHAPES_P4_CONFIG["model_cfg"]["embed_dim"] = 128
SHAPES_P4_CONFIG["model_cfg"]["vision_cfg"].update(patch_size=4, width=256, layers=6, mlp_ratio=4.0)
SHAPES_P4_CONFIG["model_cfg"]["text_cfg"].update(width=128, heads=4, layers=4, mlp_ratio=4.0)
"""The shapes scorer at the scale its open problems point to, for a GPU: 4 px patches (a ring one
pixel outside a planned box, and an object one or two pixels off it, fall inside one patch's own
pixels; 256 patches per 64 px picture, 512 beside a plan), a vision tower twice as wide and half
again as deep, a text tower of twice the width (relations: "A left of B" and its reverse embed at
cosine 0.998 in the 64-wide one). About 12 M parameters, 6.3 M of them the text embedding (too big
to ship under assets/ in float32). `benchmarks/reward_model_scale.py` times a step of it against
``shapes`` (training/README.md, "What the bigger scorer costs here")."""

SHAPES_CONV_CONFIG: dict[str, Any] = copy.deepcopy(SHAPES_CONFIG)
SHAPES_CONV_CONFIG["model_cfg"]["vision_cfg"] = {
    "timm_model_name": "mobilenetv2_050",
    "timm_model_pretrained": False,
    "timm_pool": "avg",
    "timm_proj": "linear",
    "image_size": 64,
}
"""``shapes`` with a convolutional image tower (timm's MobileNetV2 at half width, 0.77 M
parameters against the ViT's 0.58 M, through open_clip's timm tower: average-pooled features
and a linear projection; score and text tower unchanged). Its first convolutions run at the
image's full resolution, where whether an object's edge meets its plan box's one-pixel ring
(``--image outlined_plan``, the panel's IoU pairs) is in the pixels the ViT's 8 px patches cut;
a CPU step costs about the ViT's (``shapes-p4`` costs 33x). Any input size: the plan modes'
``[S, 2S]`` pictures need no grid. Measured against ``shapes`` on the same pre-training (850
steps here): it learns the captions far more slowly (contrastive loss 2.77 against 0.83 at step
800) and orders the panel's IoU pairs no better (training/README.md, "The IoU pairs from the
image side"); an option for a longer, GPU-sized run, not the default."""

CONFIGS = {
    "shapes": SHAPES_CONFIG,
    "shapes-conv": SHAPES_CONV_CONFIG,
    "shapes-p4": SHAPES_P4_CONFIG,
    "tiny": TINY_CONFIG,
}


def for_image_mode(config: dict[str, Any], mode: str) -> dict[str, Any]:
    """``config`` (a copy) made for image mode ``mode``: for the plan modes (``PLAN_MODES``: an image
    beside its plan, ``reasongen.rewards.learned.beside_plan``) the vision tower and the preprocessing take
    images twice as wide as high, ``[S, 2S]`` (open_clip's ViT grids a non-square image in the same
    patches), and the config records the mode; ``image`` leaves the sizes alone."""
    if mode not in IMAGE_MODES:
        raise ValueError(f"image mode must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")
    cfg = copy.deepcopy(config)
    if mode in PLAN_MODES:
        side = cfg["model_cfg"]["vision_cfg"]["image_size"]
        side = side[0] if isinstance(side, list | tuple) else int(side)
        cfg["model_cfg"]["vision_cfg"]["image_size"] = [side, 2 * side]
        cfg.setdefault("preprocess_cfg", {})["size"] = [side, 2 * side]
    cfg["reasongen"] = {**cfg.get("reasongen", {}), "image": mode}
    return cfg


def scorer_from_config(config: dict[str, Any], weights: str | Path | None = None, seed: int = 0) -> Scorer:
    """A scorer built from an ``open_clip_config.json`` mapping: random (seeded) weights, or those
    of the checkpoint file ``weights`` (loaded strictly, converted by open_clip where it can)."""
    import open_clip

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that a bare config has no weights: intended here
    try:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, CONFIG_FILE).write_text(json.dumps(config))
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp}")
            tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp}")
    finally:
        root.setLevel(level)
    if weights is not None:
        try:
            open_clip.load_checkpoint(model, str(weights), strict=True)
        except (RuntimeError, OSError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{weights} does not load into this open_clip architecture ({first})") from e
    return Scorer(model, preprocess, tokenizer, text_mode_of(config), image_mode_of(config))


def initial_scorer(
    init: str, arch: str, seed: int, context_length: int = 0
) -> tuple[Scorer, dict[str, Any], str]:
    """The scorer to start from, its open_clip config and a one-line description.

    ``init`` is a folder (open_clip local-dir layout), a checkpoint file (then ``arch`` names its
    open_clip architecture), or a config name of ``CONFIGS`` (random weights, seeded; a non-zero
    ``context_length`` replaces its text context). Folders and files keep their own context:
    a ``context_length`` that differs is an error.
    """

    if init in CONFIGS:
        cfg = copy.deepcopy(CONFIGS[init])
        if context_length:
            cfg["model_cfg"]["text_cfg"]["context_length"] = context_length
        return scorer_from_config(cfg, seed=seed), cfg, f"from scratch (config {init!r}, seed {seed})"
    path = Path(init).expanduser()
    scorer, cfg, how = _from_path(path, arch, init)
    have = int(cfg["model_cfg"]["text_cfg"].get("context_length", 77))
    if context_length and context_length != have:
        raise ValueError(
            f"--context_length {context_length}: {init} has a text context of {have} tokens and keeps "
            "it; pre-train with the context you need (pretrain --context_length)"
        )
    return scorer, cfg, how


def _from_path(path: Path, arch: str, init: str) -> tuple[Scorer, dict[str, Any], str]:
    if path.is_dir():
        cfg = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else None
        if cfg is None:
            hf = (
                " (it looks like a transformers CLIPModel folder, e.g. PickScore: not read here)"
                if (path / "config.json").is_file()
                else ""
            )
            raise ValueError(
                f"--init {path}: no {CONFIG_FILE}{hf}; give an open_clip folder, or a checkpoint "
                "file with --arch"
            )
        scorer = load_scorer(path)  # its text and image modes with it
        scorer.model.train()
        return scorer, cfg, f"from the open_clip folder {path}"
    if path.is_file():
        if not arch:
            raise ValueError(
                f"--init {path} is a checkpoint file: name its open_clip architecture with --arch "
                "(HPS v2.1: ViT-H-14)"
            )
        cfg = arch_config(arch)
        return scorer_from_config(cfg, weights=path), cfg, f"from {path} ({arch})"
    raise ValueError(
        f"--init {init!r} is neither a folder, a checkpoint file nor one of {', '.join(CONFIGS)}"
    )


def arch_config(arch: str) -> dict[str, Any]:
    """An ``open_clip_config.json`` mapping for ``arch``: an open_clip architecture name (its
    default preprocessing), or a JSON file holding such a mapping (or a bare model config)."""
    import open_clip

    if arch.endswith(".json"):
        path = Path(arch).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--arch {arch}: cannot read an open_clip config there ({e})") from e
        cfg = (
            data
            if isinstance(data, dict) and "model_cfg" in data
            else {"model_cfg": data, "preprocess_cfg": {}}
        )
        if not isinstance(cfg["model_cfg"], dict) or not {"vision_cfg", "text_cfg"} <= set(cfg["model_cfg"]):
            raise ValueError(f"--arch {arch}: not an open_clip model config (needs vision_cfg and text_cfg)")
        return cfg
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(
            f"open_clip has no architecture {arch!r} (e.g. ViT-H-14, ViT-B-32), and it is no .json file"
        )
    return {"model_cfg": model_cfg, "preprocess_cfg": {}}


def save_scorer(scorer: Scorer, config: dict[str, Any], out: str | Path, dtype: str = "float32") -> Path:
    """Write ``open_clip_config.json`` and ``open_clip_model.safetensors`` into ``out``; return it.
    ``dtype`` ``float16`` halves the file (the model loads back in float32)."""
    from safetensors.torch import save_file

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"save dtype must be float32, float16 or bfloat16, got {dtype!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    want = getattr(torch, dtype)
    state = {
        k: (v.detach().to(want) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in scorer.model.state_dict().items()
    }
    for k, v in state.items():
        if not torch.isfinite(v.float()).all():
            raise ValueError(f"refusing to save: weight {k} holds NaN or inf")
    tmp = out / (WEIGHTS_FILE + ".partial")
    save_file(state, str(tmp))
    tmp.chmod(0o644)  # safetensors creates the file private; a model folder is meant to be shared
    tmp.replace(out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out
