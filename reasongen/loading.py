"""Loading Janus-family models (HF format) into one object the rest of ReasonGen works with.

``load_model`` accepts a local folder in transformers' Janus layout (Janus-Pro-1B/7B as published
by deepseek-community, converted T2I-R1 / GoT-R1 / ReasonGen-R1 checkpoints, our own shapes models)
or a hub id. DeepSeek's original layout must first go through ``python -m reasongen convert``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .devices import resolve_device, resolve_dtype
from .tokenizer import BOI, EOS, GOT_BOX_TOKENS, PAD
from .types import SamplingSettings

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
EMBEDDED_MODELS = (
    "shapes-janus-full-r2", "shapes-janus-full-r1", "shapes-janus-r1", "shapes-janus-full", "shapes-janus",
)  # fmt: skip
"""Shipped models, best first; the first one present is the default. The ``-full`` models were
trained on the whole shapes language (compositional prompts too): SFT, one GRPO stage (``-r1``)
and a second (``-r2``); the other pair, on GenEval's six templates only, stays for comparison
(see each model card)."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what was tried and how to fix it."""


def default_model_path() -> Path | None:
    """The embedded default model shipped under ``assets/models/``, or None if none is there."""
    for name in EMBEDDED_MODELS:
        path = ASSETS / name
        if (path / "config.json").is_file():
            return path
    return None


@dataclass
class SpecialIds:
    """Token ids generation needs, read from the tokenizer."""

    bos: int
    eos: int
    pad: int
    boi: int
    box_tokens: tuple[int, ...]


@dataclass
class LoadedModel:
    """A Janus model, its processor and tokenizer, special ids and sampling defaults."""

    model: Any  # transformers.JanusForConditionalGeneration
    processor: Any  # transformers.JanusProcessor
    tokenizer: Any
    model_id: str
    ids: SpecialIds
    num_image_tokens: int
    image_size: int
    defaults: SamplingSettings

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def grid(self) -> int:
        """Image tokens per row (the token grid is ``grid × grid``)."""
        return int(round(self.num_image_tokens**0.5))


def _resolve(name_or_path: str | os.PathLike | None) -> tuple[str, bool]:
    """Return (what to pass to from_pretrained, whether it is a local folder)."""
    if name_or_path is None:
        path = default_model_path()
        if path is None:
            raise ModelLoadError(
                "no model given and no embedded model under "
                f"{ASSETS} (looked for {', '.join(EMBEDDED_MODELS)}); pass --model PATH_OR_HUB_ID"
            )
        return str(path), True
    text = str(name_or_path)
    local = Path(text).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"{local} exists but has no config.json, so it is not a transformers (HF) Janus "
                "folder. If it is a DeepSeek-format checkpoint, convert it first: "
                f"python -m reasongen convert {local} {local}-hf"
            )
        return str(local), True
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"model folder {local.resolve()} does not exist")
    return text, False


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a Janus model and processor; ``None`` loads the embedded default model.

    Raises ``ModelLoadError`` with one readable message (what was tried, how to supply it) when
    the folder is missing or not HF-format, or when a hub id is not cached and we are offline.
    """
    from transformers import AutoProcessor, JanusForConditionalGeneration

    source, is_local = _resolve(name_or_path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        model = JanusForConditionalGeneration.from_pretrained(source, dtype=torch_dtype)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as err:
        where = f"local folder {source}" if is_local else f"hub id {source!r}"
        how = (
            "the hub is unreachable (HF_HUB_OFFLINE is set or there is no network) and it is not "
            "in the local cache; download it on a connected machine (huggingface-cli download "
            f"{source} --local-dir DIR) and pass --model DIR"
            if not is_local or offline
            else "check that the folder holds a complete save_pretrained() output"
        )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not load {where}: {first}. {how}.") from None
    # from_pretrained records how it found the files (``is_local``, ``local_files_only``) among the
    # tokenizer's init kwargs, and save_pretrained would write them into every checkpoint saved
    # from this model: they describe this load, not the tokenizer.
    for key in ("is_local", "local_files_only"):
        processor.tokenizer.init_kwargs.pop(key, None)
    model.to(dev).eval()
    return wrap_loaded(model, processor, model_id=str(name_or_path or source))


def wrap_loaded(model: Any, processor: Any, model_id: str) -> LoadedModel:
    """Bundle an already-built model and processor (tests, trainers) as a ``LoadedModel``."""
    tok = processor.tokenizer
    gen = model.generation_config

    def tid(token: str) -> int:
        i = tok.convert_tokens_to_ids(token)
        if i is None or i == tok.unk_token_id:
            raise ModelLoadError(f"tokenizer of {model_id} lacks the token {token!r}")
        return int(i)

    boxes = tuple(int(tok.convert_tokens_to_ids(t)) for t in GOT_BOX_TOKENS if t in tok.get_vocab())
    ids = SpecialIds(
        bos=int(gen.bos_token_id if gen.bos_token_id is not None else tok.bos_token_id),
        eos=int(tok.eos_token_id if tok.eos_token_id is not None else tid(EOS)),
        pad=int(gen.pad_token_id if gen.pad_token_id is not None else tid(PAD)),
        boi=tid(BOI),
        box_tokens=boxes,
    )
    n_img = int(model.config.vision_config.num_image_tokens)
    grid = int(round(n_img**0.5))
    size = grid * 2 ** (len(model.config.vq_config.channel_multiplier) - 1)  # VQ upsampling
    guidance = float(gen.guidance_scale) if getattr(gen, "guidance_scale", None) else 5.0
    defaults = SamplingSettings(guidance=guidance, num_image_tokens=n_img)
    return LoadedModel(model, processor, tok, model_id, ids, n_img, size, defaults)


def settings_for(
    loaded: LoadedModel, base: SamplingSettings | None = None, **overrides: Any
) -> SamplingSettings:
    """The ``SamplingSettings`` to sample ``loaded`` with: ``base`` (default: the model's defaults,
    ``loaded.defaults``) with ``overrides`` applied, and ``num_image_tokens`` set to the model's.

    An override of ``None`` keeps the base's value, so optional flags pass straight through
    (``guidance=None`` is the model's guidance). Nothing a caller gave is replaced: an unknown
    override name raises ``TypeError``, and a ``num_image_tokens`` (in ``base`` or the overrides)
    other than the model's raises ``ValueError``.
    """
    known = {f.name for f in dataclasses.fields(SamplingSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown sampling setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    settings = base if base is not None else loaded.defaults
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    n_img = settings.num_image_tokens
    if n_img is None:
        return dataclasses.replace(settings, num_image_tokens=loaded.num_image_tokens)
    if n_img != loaded.num_image_tokens:
        raise ValueError(
            f"num_image_tokens={n_img} was asked for, but {loaded.model_id} draws "
            f"{loaded.num_image_tokens} image tokens per image; leave it unset to use the model's"
        )
    return settings
