"""``hps``: Human Preference Score v2.1 (HPSv2) on open_clip's ViT-H-14, without the hpsv2 package.

Expected checkpoint: ``HPS_v2.1_compressed.pt`` from the hub repository ``xswu/HPSv2`` (a dict
whose ``"state_dict"`` holds the full CLIP weights; a bare state dict is accepted too). Give a
local file path as ``model`` on an offline machine.

What follows hpsv2 1.2.0 (read from its ``img_score.py`` and bundled open_clip, not copied):
the model is open_clip's ``ViT-H-14`` CLIP (embed 1024; vision 32 layers, width 1280, head width
80, patch 14, 224 px; text 24 layers, width 1024, 16 heads, context 77, vocab 49408) with the
checkpoint's state dict loaded strictly; validation preprocessing converts to a tensor, resizes
the longest side to 224 (bicubic), pads the short side equally with 0 and normalises with
OpenAI's CLIP mean/std; the score is the dot product of the L2-normalised image and text features
(no logit scale), i.e. a cosine in [-1, 1] (real images score about 0.2–0.35).

Verification status: tests check that our ViT-H-14 has exactly the state-dict keys and shapes of
hpsv2's bundled model code (recorded from hpsv2 1.2.0, and re-derived from the wheel in a slow
test), and run the whole path (file → strict load → preprocessing → score) on a tiny config.
Scores against hpsv2's own ``hpsv2.score`` with the real checkpoint have NOT been compared here
(no weights offline); do it once on a GPU machine: same images and prompts, |Δ| < 1e-3 in fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..types import Sample
from .base import (
    ModelReward,
    ModelRewardConfig,
    RewardModelUnavailable,
    RewardOutput,
    batched,
    image_of,
    missing_weights_message,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class HpsConfig(ModelRewardConfig):
    """HPS v2.1 settings."""

    model: str = field(
        default="xswu/HPSv2:HPS_v2.1_compressed.pt",
        metadata={"help": "Local checkpoint file, or 'hub_repo:filename' on the Hugging Face hub."},
    )
    arch: str = field(default="ViT-H-14", metadata={"help": "open_clip architecture name."})
    arch_config: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "Explicit open_clip model config (embed_dim, vision_cfg, text_cfg)."},
    )
    weights_only: bool = field(
        default=True,
        metadata={"help": "torch.load(weights_only=...); False only for a checkpoint you trust."},
    )

    def model_config(self) -> dict[str, Any]:
        """The open_clip config the model is built from."""
        if self.arch_config is not None:
            return dict(self.arch_config)
        import open_clip

        cfg = open_clip.get_model_config(self.arch)
        if cfg is None:
            raise ValueError(f"open_clip has no architecture {self.arch!r}; give arch_config")
        return dict(cfg)


def build_hps_model(cfg: dict[str, Any]) -> Any:
    """An open_clip CLIP with HPS's architecture (random weights; load a state dict into it)."""
    import open_clip

    keep = {k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    return open_clip.model.CLIP(**keep, output_dict=True)


def resolve_checkpoint(source: str, local_files_only: bool = False) -> str:
    """A local path for ``source`` (a file, or ``repo:filename`` fetched through the hub cache)."""
    if os.path.isfile(source):
        return source
    repo, sep, filename = source.partition(":")
    if not sep or not filename or os.sep in repo.replace("/", "", 1):
        raise RewardModelUnavailable(missing_weights_message("HPS v2.1 checkpoint", source))
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, filename, local_files_only=local_files_only)
    except Exception as e:  # offline, missing repo or file: all end the same way
        raise RewardModelUnavailable(missing_weights_message("HPS v2.1 checkpoint", source, e)) from e


def load_state_dict(path: str, weights_only: bool = True) -> dict[str, Any]:
    """The CLIP state dict inside an HPS checkpoint (``"state_dict"`` key or bare; no DDP prefix)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        raise RewardModelUnavailable(
            f"could not read the HPS checkpoint {path!r} ({type(e).__name__}: {e}); if you trust "
            f"the file and it holds more than tensors, set weights_only=False"
        ) from e
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise RewardModelUnavailable(f"{path!r} is not an HPS checkpoint (no state dict inside)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def preprocess(image: Any, size: int) -> Any:
    """hpsv2's validation transform: tensor, longest side → ``size`` (bicubic), centred 0-padding,
    OpenAI normalisation. Returns ``[3, size, size]``."""
    import torchvision.transforms.functional as TF

    x = TF.to_tensor(image.convert("RGB"))  # [3, H, W] in [0, 1]
    h, w = x.shape[1:]
    scale = size / float(max(h, w))
    if scale != 1.0:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))  # a sliver keeps one pixel
        x = TF.resize(x, [nh, nw], interpolation=TF.InterpolationMode.BICUBIC)
        ph, pw = size - nh, size - nw
        x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
    return TF.normalize(x, OPENAI_MEAN, OPENAI_STD)


class HPSReward(ModelReward):
    """HPS v2.1: cosine of normalised CLIP image and prompt features."""

    name = "hps"
    config_class = HpsConfig
    config: HpsConfig

    def load(self) -> Any:
        from open_clip.tokenizer import SimpleTokenizer

        cfg = self.config
        mcfg = cfg.model_config()
        path = resolve_checkpoint(cfg.model, cfg.local_files_only)
        model = build_hps_model(mcfg)
        try:
            model.load_state_dict(load_state_dict(path, cfg.weights_only), strict=True)
        except RuntimeError as e:
            raise RewardModelUnavailable(
                f"{path!r} does not fit open_clip {cfg.arch} ({str(e).splitlines()[0]}); is it an "
                f"HPS v2/v2.1 checkpoint for this architecture?"
            ) from e
        model = model.to(device=cfg.torch_device(), dtype=cfg.torch_dtype()).eval()
        ctx = int(mcfg.get("text_cfg", {}).get("context_length", 77))
        size = mcfg.get("vision_cfg", {}).get("image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else int(size)
        return model, SimpleTokenizer(context_length=ctx), size

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        import torch

        model, tokenizer, size = self.bundle
        idx = [i for i, s in enumerate(samples) if s.image is not None]
        scores: list[float | None] = [None] * len(samples)
        details: list[dict[str, Any]] = [{"skipped": "no image"} for _ in samples]
        dev, dtype = next(model.parameters()).device, next(model.parameters()).dtype
        for chunk in batched(idx, self.config.batch_size):
            images = torch.stack([preprocess(image_of(samples[i]), size) for i in chunk])  # [B,3,S,S]
            text = tokenizer([samples[i].prompt for i in chunk])  # [B, ctx]
            with torch.no_grad():
                out = model(images.to(dev, dtype), text.to(dev))
            sims = (out["image_features"].float() * out["text_features"].float()).sum(-1)  # [B]
            for i, v in zip(chunk, sims.tolist()):
                scores[i] = float(v)
                details[i] = {"hps": float(v)}
        return RewardOutput(self.name, scores, details)
