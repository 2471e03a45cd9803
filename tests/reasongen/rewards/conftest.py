"""Tiny randomly initialised reward models, built once per session and saved like real checkpoints.

Each builder uses the real model and processor classes with miniature configs and locally built
tokenizers, and saves to a temporary folder, so the rewards load them through their real
``from_pretrained`` paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from reasongen.types import Plan, Sample, SamplingSettings

WORDS = [
    "a", "an", "the", "is", "are", "there", "of", "and", "this", "image", "does", "show", "picture",
    "red", "blue", "green", "yellow", "two", "three", "cat", "cats", "dog", "dogs", "car", "ball",
    "square", "squares", "circle", "circles", "triangle", "left", "right", "above", "below",
    "yes", "no", "?", ".", ",",
]  # fmt: skip


def bert_vocab() -> dict[str, int]:
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return {t: i for i, t in enumerate(toks)}


def make_sample(prompt: str, image: Image.Image | None, **kw) -> Sample:
    return Sample(
        prompt=prompt, recipe=kw.pop("recipe", "direct"), model_id="tiny", seed=0,
        settings=SamplingSettings(), prompt_ids=[1], cot_text=kw.pop("cot_text", ""),
        cot_token_ids=[], cot_logprobs=[], cot_end="none", prefix_ids=[1], image_token_ids=[],
        image_logprobs=[], image=image, **kw,
    )  # fmt: skip


@pytest.fixture(scope="session")
def sample_factory():
    return make_sample


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    out = []
    for i, color in enumerate(["red", "blue", "green"]):
        im = Image.new("RGB", (64 + 16 * i, 64), "white")
        ImageDraw.Draw(im).rectangle((8, 8, 40, 40), fill=color)
        out.append(im)
    return out


@pytest.fixture(scope="session")
def tiny_gdino_dir(tmp_path_factory) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    tok = BertTokenizer(vocab=bert_vocab())
    backbone = SwinConfig(
        image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        window_size=2, out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    text = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    cfg = GroundingDinoConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False,
        text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, num_queries=12, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32,
    )  # fmt: skip
    model = GroundingDinoForObjectDetection(cfg).eval()
    ip = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    d = tmp_path_factory.mktemp("gdino")
    model.save_pretrained(d)
    GroundingDinoProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_git_dir(tmp_path_factory) -> Path:
    from transformers import (
        BertTokenizer,
        CLIPImageProcessor,
        GitConfig,
        GitForCausalLM,
        GitProcessor,
        GitVisionConfig,
    )

    torch.manual_seed(0)
    tok = BertTokenizer(vocab=bert_vocab())
    vc = GitVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=16,
    )  # fmt: skip
    cfg = GitConfig(
        vision_config=vc.to_dict(), vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )  # fmt: skip
    d = tmp_path_factory.mktemp("git")
    GitForCausalLM(cfg).eval().save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}"
)


def _char_tokenizer():
    """A character-level BPE tokenizer (no merges) over printable ASCII: the text side of the
    tiny judge models below, each of which adds its own special and answer tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    chars = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"()[]{}\\/-_\n<>|=+*#&%$@~`^"
    )
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    return tk


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(0)
    tk = _char_tokenizer()
    specials = ["<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=specials,
    )  # fmt: skip
    tok.add_tokens(["Yes", "No", "yes", "no"])
    tok.chat_template = QWEN_CHAT_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    pad, eos = tok.pad_token_id, tok.eos_token_id
    text_cfg = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]},
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
    )  # fmt: skip
    vis = dict(
        depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[0],
        window_size=56,
    )  # fmt: skip
    cfg = Qwen2_5_VLConfig(
        text_config=text_cfg, vision_config=vis, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], bos_token_id=pad, eos_token_id=eos,
        pad_token_id=pad,
    )  # fmt: skip
    d = tmp_path_factory.mktemp("qwen")
    Qwen2_5_VLForConditionalGeneration(cfg).eval().save_pretrained(d)
    ip = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56 * 4)
    Qwen2_5_VLProcessor(
        image_processor=ip, video_processor=Qwen2VLVideoProcessor(), tokenizer=tok,
        chat_template=QWEN_CHAT_TEMPLATE,
    ).save_pretrained(d)  # fmt: skip
    return d


HPS_SMALL = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_hps_ckpt(tmp_path_factory) -> Path:
    from reasongen.rewards.hps import build_hps_model

    torch.manual_seed(0)
    model = build_hps_model(HPS_SMALL)
    d = tmp_path_factory.mktemp("hps")
    # HPS checkpoints keep the CLIP weights under "state_dict", saved from a DDP-wrapped model.
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 1}, d / "HPS_tiny.pt")
    (d / "config.json").write_text(json.dumps(HPS_SMALL))
    return d / "HPS_tiny.pt"


@pytest.fixture()
def plan_factory():
    def make(boxes) -> Plan:
        return Plan(boxes=tuple(boxes), text="")

    return make


@pytest.fixture(scope="session")
def tiny_llava_ov_dir(tmp_path_factory) -> Path:
    """A tiny random LLaVA-OneVision (Qwen2 text, SigLIP vision) with a character tokenizer that
    has whole ``yes``/``no`` tokens, saved in HF format: the ``orm`` reward's T2I-R1 backend."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        PreTrainedTokenizerFast,
    )

    tk = _char_tokenizer()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>", "<video>"],
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )  # fmt: skip
    tok.add_tokens(["yes", "no", "Yes", "No"])
    cfg = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        ),
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, image_size=28, patch_size=14,
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=[[28, 28]],
    )  # fmt: skip
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("llava_ov")
    LlavaOnevisionForConditionalGeneration(cfg).eval().save_pretrained(d)
    ip = LlavaOnevisionImageProcessor(
        size={"height": 28, "width": 28},
        crop_size={"height": 28, "width": 28},
        image_grid_pinpoints=[[28, 28]],
    )
    LlavaOnevisionProcessor(
        image_processor=ip, video_processor=LlavaOnevisionVideoProcessor(), tokenizer=tok,
        num_image_tokens=4, vision_feature_select_strategy="full",
    ).save_pretrained(d)  # fmt: skip
    return d
