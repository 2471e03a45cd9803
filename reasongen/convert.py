"""Convert checkpoints in DeepSeek's original Janus layout into transformers' HF Janus layout.

DeepSeek released Janus-Pro (and T2I-R1, GoT-R1 and ReasonGen-R1 were fine-tuned from it and
released the same way) as a ``MultiModalityCausalLM``: a ``config.json`` of model_type
``"multi_modality"`` with one ``{cls, params}`` entry per part, and weights named after the
original modules (``vision_model.vision_tower.*`` is a timm SigLIP, ``gen_vision_model.*`` the
VQ tokenizer, ``gen_head``/``gen_embed``/``gen_aligner`` the image-generation path,
``language_model.*`` a LLaMA). ``convert_checkpoint`` rewrites that into a folder
``reasongen.loading.load_model`` (and ``JanusForConditionalGeneration.from_pretrained``) can read:

* weight names go through ``KEY_MAP`` (an ordered table; the first matching row wins and
  a row whose replacement is ``None`` drops the key), then ``SPLITS`` cuts fused ``qkv``/``kv``
  projections into separate ones, and the timm ``pos_embed`` loses its batch axis;
* the config becomes a ``JanusConfig``; the sizes the original config leaves implicit (the
  vision tower's and the VQ model's) are read off the weights;
* the tokenizer is loaded from the source folder (GoT-R1's box tokens are kept as they are);
  GoT-R1 adds its four box tokens at load time (``src/processor/processor.py``), so a released
  folder may lack them: ``box_tokens="add"`` (or ``"auto"`` on a folder named like GoT-R1, or one
  holding some of them) appends the missing ones in GoT-R1's order, and the word embeddings and
  LM head grow when the tokenizer outgrows them (new rows: the mean of the old ones);
  the image processor comes from ``preprocessor_config.json`` when there is one;
* the model is loaded with ``strict=True``: a key nobody maps, or one the HF model misses, is a
  ``ValueError`` naming the keys, never a silently random weight.

Mapping facts: DeepSeek's ``janus/models`` module names and transformers' Janus module names
(see notes in the project research file); the table below is our own.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .devices import dtype_from_name
from .tokenizer import EXTRA_SPECIAL, GOT_BOX_TOKENS, GOT_R1_TOKEN_ORDER, IMAGE_PLACEHOLDER, PAD
from .weight_files import weight_files

log = logging.getLogger(__name__)

Replacement = str | Callable[[re.Match[str]], str] | None


def _mlp_layer(target: str) -> Callable[[re.Match[str]], str]:
    """Janus's ``MlpProjector`` (mlp_gelu) is ``Sequential(Linear, GELU, Linear, GELU, ...)``:
    Linear ``layers.2k`` becomes HF ``hidden_layers.{k-1}`` (``layers.0`` is ``fc1``)."""

    def sub(m: re.Match[str]) -> str:
        index = int(m.group(1))
        if index % 2:
            raise ValueError(f"{m.string}: odd MlpProjector index {index} is an activation, not a Linear")
        return f"{target}.hidden_layers.{index // 2 - 1}."

    return sub


VIT = r"^vision_model\.vision_tower\."
VQ = r"^gen_vision_model\."
HF_VIT = "model.vision_model."
HF_VQ = "model.vqmodel."

KEY_MAP: tuple[tuple[str, Replacement, str], ...] = (
    # ---- dropped ------------------------------------------------------------------------
    (VIT + r"attn_pool\.", None, "timm SigLIP's attention-pool head; Janus uses the patch features"),
    (VQ + r"quantize\.codebook_used$", None, "VQ codebook usage counter (a training statistic)"),
    (r"\.rotary_emb\.inv_freq$", None, "rotary frequencies: recomputed from the config"),
    # ---- understanding vision tower: timm SigLIP ViT -> JanusVisionModel -----------------
    (VIT + r"pos_embed$", HF_VIT + "embeddings.position_embedding.weight", "[1, N, D]; squeezed below"),
    (VIT + r"patch_embed\.proj\.", HF_VIT + "embeddings.patch_embedding.", "patchify conv"),
    (VIT + r"norm\.", HF_VIT + "post_layernorm.", "final LayerNorm"),
    (VIT + r"blocks\.(\d+)\.norm([12])\.", HF_VIT + r"encoder.layers.\1.layer_norm\2.", "pre-norms"),
    (VIT + r"blocks\.(\d+)\.attn\.qkv\.", HF_VIT + r"encoder.layers.\1.self_attn.qkv.", "fused; split below"),
    (VIT + r"blocks\.(\d+)\.attn\.proj\.", HF_VIT + r"encoder.layers.\1.self_attn.projection_layer.", "out"),
    (VIT + r"blocks\.(\d+)\.mlp\.(fc[12])\.", HF_VIT + r"encoder.layers.\1.mlp.\2.", "MLP"),
    # ---- aligners: MlpProjector (mlp_gelu) -> fc1 + hidden_layers ------------------------
    (r"^aligner\.layers\.0\.", "model.aligner.fc1.", "vision features -> LM width"),
    (r"^aligner\.layers\.(\d+)\.", _mlp_layer("model.aligner"), "later Linears (GELU between)"),
    (r"^gen_aligner\.layers\.0\.", "model.generation_aligner.fc1.", "VQ code embedding -> LM width"),
    (r"^gen_aligner\.layers\.(\d+)\.", _mlp_layer("model.generation_aligner"), "later Linears"),
    # ---- image generation head and code embedding ----------------------------------------
    (r"^gen_head\.output_mlp_projector\.", "model.generation_head.proj_out.", "LM hidden -> head width"),
    (r"^gen_head\.vision_head\.", "model.generation_head.vision_head.", "head width -> codebook logits"),
    (r"^gen_embed\.", "model.generation_embeddings.", "codebook index -> code embedding"),
    # ---- VQ tokenizer: conv_blocks/res/mid.i -> down|up/block/mid.block_1|attn_1|block_2 --
    (VQ + r"encoder\.conv_blocks\.(\d+)\.res\.", HF_VQ + r"encoder.down.\1.block.", "encoder resnets"),
    (VQ + r"encoder\.conv_blocks\.(\d+)\.(attn|downsample)\.", HF_VQ + r"encoder.down.\1.\2.", ""),
    (VQ + r"decoder\.conv_blocks\.(\d+)\.res\.", HF_VQ + r"decoder.up.\1.block.", "same order as HF"),
    (VQ + r"decoder\.conv_blocks\.(\d+)\.(attn|upsample)\.", HF_VQ + r"decoder.up.\1.\2.", ""),
    (VQ + r"(encoder|decoder)\.mid\.0\.", HF_VQ + r"\1.mid.block_1.", "mid = [resnet, attn, resnet]"),
    (VQ + r"(encoder|decoder)\.mid\.1\.", HF_VQ + r"\1.mid.attn_1.", ""),
    (VQ + r"(encoder|decoder)\.mid\.2\.", HF_VQ + r"\1.mid.block_2.", ""),
    (VQ + r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.", HF_VQ + r"\1.\2.", "unchanged names"),
    (VQ + r"quantize\.embedding\.weight$", HF_VQ + "quantize.embedding.weight", "codebook"),
    (VQ + r"(quant_conv|post_quant_conv)\.", HF_VQ + r"\1.", "latent <-> code projections"),
    # ---- language model: LlamaForCausalLM -----------------------------------------------
    (r"^language_model\.model\.", "model.language_model.", "LlamaModel body"),
    (r"^language_model\.lm_head\.weight$", "lm_head.weight", "text head (may be tied)"),
)
"""Ordered (regex on the original key, HF replacement or None to drop, why) rows."""

SPLITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\.qkv\.(weight|bias)$", ("q_proj", "k_proj", "v_proj")),
    (r"\.kv\.(weight|bias)$", ("k_proj", "v_proj")),  # Janus's only kv (attn_pool) is dropped
)
"""Fused projections (on the HF name): split into equal parts along dim 0, no head permutation."""

POS_EMBED = HF_VIT + "embeddings.position_embedding.weight"
LM_HEAD = "lm_head.weight"
EMBED = "model.language_model.embed_tokens.weight"

KNOWN_CLASSES = {
    "vision_config": ("CLIPVisionTower",),
    "aligner_config": ("MlpProjector",),
    "gen_vision_config": ("VQ-16",),
    "gen_aligner_config": ("MlpProjector",),
    "gen_head_config": ("vision_head",),
}
"""The ``cls`` each part has in Janus / Janus-Pro checkpoints (other layouts are not supported)."""

SIGLIP_HEADS = {
    "siglip_large_patch16_384": 16,
    "siglip_large_patch16_256": 16,
    "siglip_so400m_patch14_384": 16,
    "siglip_so400m_patch14_224": 16,
}
"""Attention heads of the named SigLIP towers (the head count cannot be read off the weights).
A checkpoint may instead give ``vision_config.params.num_heads`` (our extension)."""

CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}<|User|>: {% elif m['role'] == 'assistant' -%}<|Assistant|>: "
    "{%- endif -%}"
    "{%- if m['content'] is string -%}{{ m['content'] | trim }}{%- else -%}"
    "{%- for c in m['content'] -%}{%- if c['type'] == 'image' -%}<image_placeholder>"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if m['role'] == 'assistant' -%}<｜end▁of▁sentence｜>{%- else -%}{{ '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|Assistant|>:{%- endif -%}"
)
"""Janus's "deepseek" chat format: ``<|User|>: P\\n\\n<|Assistant|>:`` (system text + ``\\n\\n``)."""


# ----------------------------------------------------------------------------- key mapping


def map_key(key: str) -> str | None:
    """The HF name of one original weight name, or None if it is dropped.

    Raises ``KeyError`` if no row of ``KEY_MAP`` matches (collected into one ``ValueError``).
    """
    for pattern, replacement, _why in KEY_MAP:
        match = re.search(pattern, key)
        if match is None:
            continue
        if replacement is None:
            return None
        return re.sub(pattern, replacement, key, count=1)
    raise KeyError(key)


def _split(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    for pattern, parts in SPLITS:
        match = re.search(pattern, key)
        if match is None:
            continue
        if tensor.shape[0] % len(parts):
            raise ValueError(f"{key}: dim 0 of shape {tuple(tensor.shape)} is not divisible by {len(parts)}")
        chunks = tensor.chunk(len(parts), dim=0)  # each [out / n, ...]
        head = key[: match.start()]
        return {f"{head}.{part}.{match.group(1)}": c.contiguous() for part, c in zip(parts, chunks)}
    return {key: tensor}


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename, drop and split original-layout weights into HF Janus names.

    Raises ``ValueError`` naming every key no ``KEY_MAP`` row matches.
    """
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in state.items():
        try:
            new = map_key(key)
        except KeyError:
            unmapped.append(key)
            continue
        if new is None:
            continue
        if new == POS_EMBED and tensor.dim() == 3:
            tensor = tensor.squeeze(0)  # timm [1, N, D] -> [N, D]
        for name, value in _split(new, tensor).items():
            if name in out:
                raise ValueError(f"two source weights map to {name}; the checkpoint is not Janus-layout")
            out[name] = value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} weight(s) of the source checkpoint match no row of the key-mapping table "
            f"(reasongen.convert.KEY_MAP): {_names(unmapped)}"
        )
    return out


def _names(keys: list[str] | set[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ----------------------------------------------------------------------------- reading


def read_source_config(src: Path) -> dict[str, Any]:
    """The original ``config.json``; ``ValueError`` if it is missing or not ``multi_modality``."""
    path = src / "config.json"
    if not src.is_dir():
        raise ValueError(f"source checkpoint folder {src} does not exist")
    if not path.is_file():
        raise ValueError(f"{src} has no config.json, so it is not a Janus checkpoint folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    model_type = cfg.get("model_type")
    if model_type != "multi_modality":
        hint = (
            " (it is already in transformers' HF layout: load it directly)" if model_type == "janus" else ""
        )
        raise ValueError(
            f"{path} has model_type {model_type!r}; DeepSeek's original Janus layout has "
            f"'multi_modality'{hint}"
        )
    for part, classes in KNOWN_CLASSES.items():
        entry = cfg.get(part)
        if not isinstance(entry, dict) or "params" not in entry:
            raise ValueError(f"{path} lacks {part} with 'cls' and 'params'")
        if entry.get("cls") not in classes:
            raise ValueError(f"{path}: {part}.cls is {entry.get('cls')!r}; supported: {', '.join(classes)}")
    for part in ("aligner_config", "gen_aligner_config"):
        kind = cfg[part]["params"].get("projector_type", "mlp_gelu")
        if kind != "mlp_gelu":
            raise ValueError(f"{path}: {part} projector_type {kind!r} is not supported (only 'mlp_gelu')")
    if not isinstance(cfg.get("language_config"), dict):
        raise ValueError(f"{path} lacks language_config (a LLaMA config)")
    return cfg


def read_weights(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of the source checkpoint (single file or shards listed by an index json)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(src):
        if path.suffix == ".safetensors":
            part = load_file(str(path))
        else:
            try:
                part = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
                part = torch.load(path, map_location="cpu", weights_only=True)
        twice = set(part) & set(state)
        if twice:
            raise ValueError(f"{path.name} repeats weights of another shard: {_names(twice)}")
        state.update(part)
    return state


# ----------------------------------------------------------------------------- configs


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    """How many distinct indices the first group of ``pattern`` takes over the keys."""
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def _shape(state: dict[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"the source weights lack {key} ({what}), so this is not a Janus checkpoint")
    return tuple(int(n) for n in state[key].shape)


def _vision_config(cfg: dict[str, Any], state: dict[str, torch.Tensor]):
    from transformers import JanusVisionConfig

    params, aligner = cfg["vision_config"]["params"], cfg["aligner_config"]["params"]
    vit = "vision_model.vision_tower."
    patch = _shape(state, vit + "patch_embed.proj.weight", "SigLIP patchify conv")  # [hidden, C, p, p]
    hidden = patch[0]
    name = str(params.get("model_name", ""))
    heads = params.get("num_heads") or SIGLIP_HEADS.get(name)
    if heads is None:
        raise ValueError(
            f"cannot tell the attention heads of vision tower {name!r}; known: {', '.join(SIGLIP_HEADS)} "
            "(or set vision_config.params.num_heads in the source config.json)"
        )
    inter = _shape(state, vit + "blocks.0.mlp.fc1.weight", "first ViT MLP")[0]
    ratio = inter / hidden if int(hidden * (inter / hidden)) == inter else (inter + 0.5) / hidden
    image_size = int(params.get("image_size", 384))
    return JanusVisionConfig(
        hidden_size=hidden,
        num_hidden_layers=_count(state, re.escape(vit) + r"blocks\.(\d+)\."),
        num_attention_heads=int(heads),
        num_channels=patch[1],
        image_size=image_size,
        patch_size=patch[-1],
        mlp_ratio=ratio,
        attention_bias=vit + "blocks.0.attn.qkv.bias" in state,
        projection_dim=int(aligner["n_embed"]),
        depth=int(aligner.get("depth", 2)),
        num_image_tokens=(image_size // patch[-1]) ** 2,
    )


def _vq_config(cfg: dict[str, Any], state: dict[str, torch.Tensor]):
    from transformers import JanusVQVAEConfig

    gen, aligner = cfg["gen_vision_config"]["params"], cfg["gen_aligner_config"]["params"]
    head = cfg["gen_head_config"]["params"]
    enc = "gen_vision_model.encoder."
    conv_in = _shape(state, enc + "conv_in.weight", "VQ encoder input conv")  # [base, C, 3, 3]
    base = conv_in[0]
    levels = _count(state, re.escape(enc) + r"conv_blocks\.(\d+)\.")
    widths = [_shape(state, f"{enc}conv_blocks.{i}.res.0.conv1.weight", "VQ level")[0] for i in range(levels)]
    return JanusVQVAEConfig(
        embed_dim=int(gen["n_embed"]),
        num_embeddings=int(gen["image_token_size"]),
        latent_channels=_shape(state, enc + "conv_out.weight", "VQ encoder output conv")[0],
        in_channels=conv_in[1],
        out_channels=_shape(state, "gen_vision_model.decoder.conv_out.weight", "VQ decoder output")[0],
        base_channels=base,
        channel_multiplier=[w // base for w in widths],
        num_res_blocks=_count(state, re.escape(enc) + r"conv_blocks\.0\.res\.(\d+)\."),
        projection_dim=int(aligner["n_embed"]),
        num_hidden_layers=int(aligner.get("depth", 2)),
        image_token_embed_dim=int(head["image_token_embed"]),
    )


def _token_id(tokenizer, token: str, src: Path) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id):
        raise ValueError(f"the tokenizer in {src} lacks the Janus token {token!r}")
    return int(tid)


def build_config(cfg: dict[str, Any], state: dict[str, torch.Tensor], tokenizer, src: Path, added: int = 0):
    """A ``JanusConfig`` from the original config, sizes read off ``state``, ids from ``tokenizer``.

    ``added``: tokens the converter appended to the source tokenizer; only those may exceed the
    source's ``vocab_size`` (the model grows for them later, :func:`grow_embeddings`)."""
    from transformers import JanusConfig, LlamaConfig

    skip = {"model_type", "torch_dtype", "dtype", "architectures", "_name_or_path", "transformers_version"}
    lang = {k: v for k, v in cfg["language_config"].items() if k not in skip}
    tie = bool(lang.pop("tie_word_embeddings", False))
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    text = LlamaConfig(**{**lang, **ids, "pad_token_id": tokenizer.pad_token_id, "tie_word_embeddings": tie})
    if len(tokenizer) - added > text.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but language_config.vocab_size is {text.vocab_size}"
        )
    return JanusConfig(
        text_config=text,
        vision_config=_vision_config(cfg, state),
        vq_config=_vq_config(cfg, state),
        image_token_id=_token_id(tokenizer, IMAGE_PLACEHOLDER, src),
        tie_word_embeddings=tie,
    )


# ----------------------------------------------------------------------------- processor


def load_tokenizer(src: Path):
    """The source tokenizer with Janus's image tokens named; a pad token set if it lacks one."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(src), extra_special_tokens=dict(EXTRA_SPECIAL))
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load the tokenizer from {src}: {err}") from None
    for token in EXTRA_SPECIAL.values():
        _token_id(tok, token, src)
    if tok.pad_token is None:
        _token_id(tok, PAD, src)
        tok.pad_token = PAD
    present = [t for t in GOT_BOX_TOKENS if t in tok.get_vocab()]
    if present:
        log.info("keeping %d GoT box tokens: %s", len(present), ", ".join(present))
    return tok


BOX_TOKEN_MODES = ("auto", "add", "keep")


def wants_box_tokens(src: Path, tokenizer, mode: str) -> bool:
    """Whether conversion should make sure GoT-R1's four box tokens exist.

    ``"add"``: yes; ``"keep"``: no; ``"auto"``: when the tokenizer already holds some of them or
    the folder's name says GoT-R1 (``GoT-R1-7B``, as GoT-R1's own ``infer.py`` tells its
    checkpoints apart by path).
    """
    if mode not in BOX_TOKEN_MODES:
        raise ValueError(f"box_tokens must be one of {', '.join(BOX_TOKEN_MODES)}; got {mode!r}")
    if mode != "auto":
        return mode == "add"
    vocab = tokenizer.get_vocab()
    name = Path(os.path.abspath(src)).name  # as the user named it (a link is not followed)
    named = re.search(r"got[-_]?r1", name, flags=re.I) is not None
    return named or any(t in vocab for t in GOT_BOX_TOKENS)


def add_box_tokens(tokenizer) -> list[str]:
    """Append the GoT box tokens ``tokenizer`` lacks, in GoT-R1's order, as plain added tokens
    (what GoT-R1's ``get_processor`` does). Returns the tokens added."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in GOT_R1_TOKEN_ORDER if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing)
        log.info("added %d GoT box tokens: %s", len(missing), ", ".join(missing))
    return missing


@torch.no_grad()
def grow_embeddings(model, size: int) -> None:
    """Grow the word embeddings (and an untied LM head) to ``size`` rows; new rows are the mean
    of the old ones, so they are deterministic and on the scale of the trained rows."""
    old = model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
        w = emb.weight  # [size, hidden]
        w[old:] = w[:old].mean(0, keepdim=True)


def build_processor(src: Path, tokenizer, vision) -> Any:
    """A ``JanusProcessor``: image settings from ``preprocessor_config.json`` or the vision config."""
    from transformers import JanusImageProcessor, JanusProcessor

    path = src / "preprocessor_config.json"
    pre = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    size = int(pre.get("image_size", vision.image_size))
    kwargs: dict[str, Any] = {
        "size": {"height": size, "width": size},
        "image_mean": list(pre.get("image_mean", (0.5, 0.5, 0.5))),
        "image_std": list(pre.get("image_std", (0.5, 0.5, 0.5))),
    }
    for key in ("min_size", "rescale_factor", "do_normalize"):
        if key in pre:
            kwargs[key] = pre[key]
    return JanusProcessor(
        image_processor=JanusImageProcessor(**kwargs),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        use_default_system_prompt=True,
        num_image_tokens=vision.num_image_tokens,
    )


# ----------------------------------------------------------------------------- model


def _pick_dtype(dtype: str | None, cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> torch.dtype:
    if dtype is None:
        dtype = cfg.get("torch_dtype") or cfg["language_config"].get("torch_dtype")
        if dtype is None:
            floats = [t.dtype for t in state.values() if t.is_floating_point()]
            return floats[0] if floats else torch.float32
    return dtype_from_name(dtype)


def build_model(config, state: dict[str, torch.Tensor], dtype: torch.dtype):
    """Instantiate an empty HF Janus model and load ``state`` into it with ``strict=True``."""
    from accelerate import init_empty_weights
    from transformers import JanusForConditionalGeneration

    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    both = LM_HEAD in state and EMBED in state
    if config.tie_word_embeddings and both and not torch.equal(state[LM_HEAD], state[EMBED]):
        log.warning("language_config ties word embeddings but lm_head differs; keeping them untied")
        config.tie_word_embeddings = config.text_config.tie_word_embeddings = False
    if config.tie_word_embeddings and EMBED in state:
        state[LM_HEAD] = state[EMBED]
    with init_empty_weights(include_buffers=False):
        model = JanusForConditionalGeneration._from_config(config, dtype=dtype)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        parts = [f"missing in the converted weights: {_names(missing)}" if missing else "",
                 f"not in the HF model: {_names(unexpected)}" if unexpected else ""]  # fmt: skip
        raise ValueError(
            "converted weights do not fit the HF Janus model; " + "; ".join(p for p in parts if p)
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"converted weights do not fit the HF Janus model: {err}") from None
    if config.tie_word_embeddings:
        model.tie_weights()
    on_meta = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if on_meta:
        raise ValueError(f"these tensors were never loaded: {_names(on_meta)}")
    return model.eval()


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    dtype: str | None = None,
    *,
    overwrite: bool = False,
    box_tokens: str = "auto",
) -> Path:
    """Convert an original-layout Janus checkpoint folder ``src`` into an HF Janus folder ``dst``.

    ``dtype`` (float32/bfloat16/float16) defaults to the source's ``torch_dtype``. ``dst`` must
    not exist or be empty unless ``overwrite``. ``box_tokens`` (``auto``/``add``/``keep``, see
    :func:`wants_box_tokens`) decides whether GoT-R1's box tokens a tokenizer lacks are added.
    Returns ``dst``. Raises ``ValueError`` with a readable message for a missing config, a wrong
    model_type, unmapped or missing weights.
    """
    from .tiny import set_generation_defaults

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    cfg = read_source_config(src)
    if dst.resolve() == src.resolve():
        raise ValueError("destination must differ from the source folder")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise ValueError(f"destination {dst} exists and is not empty; choose a new folder")
    state = read_weights(src)
    torch_dtype = _pick_dtype(dtype, cfg, state)
    tokenizer = load_tokenizer(src)
    added = add_box_tokens(tokenizer) if wants_box_tokens(src, tokenizer, box_tokens) else []
    config = build_config(cfg, state, tokenizer, src, added=len(added))
    model = build_model(config, convert_state_dict(state), torch_dtype)
    del state
    grow_embeddings(model, len(tokenizer))
    set_generation_defaults(model, tokenizer)
    processor = build_processor(src, tokenizer, config.vision_config)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    log.info("converted %s -> %s (%s)", src, dst, torch_dtype)
    return dst
