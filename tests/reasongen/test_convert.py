"""Round trip: a tiny HF Janus model written in DeepSeek's original layout converts back exactly.

The helper below writes the original layout from our own reading of DeepSeek's module names
(the inverse of ``reasongen.convert.KEY_MAP``, written independently of it): fused ``qkv`` in the
SigLIP blocks, a ``[1, N, D]`` ``pos_embed``, ``MlpProjector`` indices, VQ ``conv_blocks``/``res``/
``mid.i``, an ``attn_pool`` head and a ``codebook_used`` buffer that must be dropped, a
``multi_modality`` config.json, a DeepSeek-style tokenizer config and GoT's four box tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import JanusForConditionalGeneration

from reasongen.convert import convert_checkpoint
from reasongen.loading import load_model
from reasongen.tiny import (
    _TINY_CORPUS,
    CHAT_ROLE_TOKENS,
    build_tiny,
    janus_config,
    make_processor,
    set_generation_defaults,
)
from reasongen.tokenizer import (
    BOI,
    BOS,
    EOI,
    EOS,
    GOT_BOX_TOKENS,
    GOT_R1_TOKEN_ORDER,
    IMAGE_PLACEHOLDER,
    PAD,
    wrap_tokenizer,
)

IMAGE_SIZE = 32
CODEBOOK = 64

HV, OV = r"^model\.vision_model\.", "vision_model.vision_tower."
HQ, OQ = r"^model\.vqmodel\.", "gen_vision_model."
TO_ORIGINAL = (
    (HV + r"embeddings\.position_embedding\.weight$", OV + "pos_embed"),
    (HV + r"embeddings\.patch_embedding\.", OV + "patch_embed.proj."),
    (HV + r"post_layernorm\.", OV + "norm."),
    (HV + r"encoder\.layers\.(\d+)\.layer_norm(\d)\.", OV + r"blocks.\1.norm\2."),
    (HV + r"encoder\.layers\.(\d+)\.self_attn\.qkv\.", OV + r"blocks.\1.attn.qkv."),
    (HV + r"encoder\.layers\.(\d+)\.self_attn\.projection_layer\.", OV + r"blocks.\1.attn.proj."),
    (HV + r"encoder\.layers\.(\d+)\.mlp\.", OV + r"blocks.\1.mlp."),
    (r"^model\.aligner\.fc1\.", "aligner.layers.0."),
    (r"^model\.aligner\.hidden_layers\.(\d+)\.", lambda m: f"aligner.layers.{2 * int(m[1]) + 2}."),
    (r"^model\.generation_aligner\.fc1\.", "gen_aligner.layers.0."),
    (
        r"^model\.generation_aligner\.hidden_layers\.(\d+)\.",
        lambda m: f"gen_aligner.layers.{2 * int(m[1]) + 2}.",
    ),
    (r"^model\.generation_head\.proj_out\.", "gen_head.output_mlp_projector."),
    (r"^model\.generation_head\.vision_head\.", "gen_head.vision_head."),
    (r"^model\.generation_embeddings\.", "gen_embed."),
    (HQ + r"encoder\.down\.(\d+)\.block\.", OQ + r"encoder.conv_blocks.\1.res."),
    (HQ + r"encoder\.down\.(\d+)\.", OQ + r"encoder.conv_blocks.\1."),
    (HQ + r"decoder\.up\.(\d+)\.block\.", OQ + r"decoder.conv_blocks.\1.res."),
    (HQ + r"decoder\.up\.(\d+)\.", OQ + r"decoder.conv_blocks.\1."),
    (HQ + r"(encoder|decoder)\.mid\.block_1\.", OQ + r"\1.mid.0."),
    (HQ + r"(encoder|decoder)\.mid\.attn_1\.", OQ + r"\1.mid.1."),
    (HQ + r"(encoder|decoder)\.mid\.block_2\.", OQ + r"\1.mid.2."),
    (HQ, OQ),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
)
"""HF name -> DeepSeek original name (first match wins); q/k/v are fused into qkv beforehand."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread on the shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(tied: bool, seed: int = 0, processor=None) -> tuple[JanusForConditionalGeneration, object]:
    """A tiny Janus whose parts are not all trivial: 2 ViT blocks, a 2-Linear vision aligner,
    VQ levels of different widths (so the level order and nin_shortcut matter)."""
    if processor is None:
        _, processor = build_tiny(seed=seed)
    tok = processor.tokenizer
    cfg = janus_config(vocab_size=len(tok), image_size=IMAGE_SIZE, vq_downsample=8, codebook_size=CODEBOOK)
    cfg.vision_config.num_hidden_layers = 2
    cfg.vision_config.depth = 2
    cfg.vq_config.channel_multiplier = [1, 2, 2, 1]
    cfg.vq_config.num_res_blocks = 2
    cfg.image_token_id = tok.convert_tokens_to_ids(tok.image_token)
    cfg.tie_word_embeddings = cfg.text_config.tie_word_embeddings = tied
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # random non-zero biases/norms so a misplaced tensor shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    set_generation_defaults(model, tok)
    return model, processor


def to_original_state(model) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight")  # safetensors stores a tied tensor once
    for key in [k for k in sd if ".self_attn.q_proj." in k and k.startswith("model.vision_model.")]:
        parts = [sd.pop(key.replace("q_proj", name)) for name in ("q_proj", "k_proj", "v_proj")]
        sd[key.replace("q_proj", "qkv")] = torch.cat(parts, dim=0)  # [3 * D, ...]
    out = {}
    for key, value in sd.items():
        for pattern, repl in TO_ORIGINAL:
            if re.search(pattern, key):
                out[re.sub(pattern, repl, key, count=1)] = value
                break
        else:
            raise AssertionError(f"test helper cannot place {key}")
    vit = "vision_model.vision_tower."
    out[vit + "pos_embed"] = out[vit + "pos_embed"].unsqueeze(0)  # timm [1, N, D]
    d = out[vit + "patch_embed.proj.weight"].shape[0]
    out[vit + "attn_pool.latent"] = torch.randn(1, 1, d)
    out[vit + "attn_pool.q.weight"] = torch.randn(d, d)
    out[vit + "attn_pool.kv.weight"] = torch.randn(2 * d, d)
    out[vit + "attn_pool.kv.bias"] = torch.randn(2 * d)
    out[vit + "attn_pool.mlp.fc1.weight"] = torch.randn(4 * d, d)
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(CODEBOOK)
    return out


def original_config(model, tied: bool) -> dict:
    cfg, text = model.config, model.config.text_config
    hidden = text.hidden_size
    return {
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "vision_config": {"cls": "CLIPVisionTower", "params": {
            "image_size": IMAGE_SIZE, "model_name": "siglip_tiny_test", "num_heads": 2,
            "select_feature": "same", "select_layer": -1}},
        "aligner_config": {"cls": "MlpProjector", "params": {
            "depth": 2, "input_dim": cfg.vision_config.hidden_size, "n_embed": hidden,
            "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "params": {"image_token_size": CODEBOOK, "n_embed": 8}},
        "gen_aligner_config": {"cls": "MlpProjector", "params": {
            "depth": 2, "input_dim": 8, "n_embed": hidden, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "params": {
            "image_token_embed": hidden, "image_token_size": CODEBOOK, "n_embed": hidden}},
        "language_config": {
            "model_type": "llama", "hidden_size": hidden, "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads, "vocab_size": text.vocab_size,
            "max_position_embeddings": text.max_position_embeddings, "torch_dtype": "float32",
            **({"tie_word_embeddings": True} if tied else {})},
    }  # fmt: skip


def write_tokenizer(tokenizer, path: Path) -> None:
    """DeepSeek's files: a LlamaTokenizerFast config, a special_tokens_map, box tokens non-special."""
    tokenizer.save_pretrained(path)
    (path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token, "unk_token": None,
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 16384,
        "tokenizer_class": "LlamaTokenizerFast"}))  # fmt: skip
    (path / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token,
        "additional_special_tokens": ["<image_placeholder>", "<|User|>", "<|Assistant|>"]}))  # fmt: skip
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    for entry in data["added_tokens"]:  # GoT-R1 added them with tokenizer.add_tokens
        if entry["content"] in GOT_BOX_TOKENS:
            entry["special"] = False
    (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def write_original(model, processor, path: Path, *, sharded: bool, tied: bool) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    state = to_original_state(model)
    if sharded:
        keys = sorted(state)
        shards = {
            "model-00001-of-00002.safetensors": keys[::2],
            "model-00002-of-00002.safetensors": keys[1::2],
        }
        for name, part in shards.items():
            save_file({k: state[k].contiguous() for k in part}, str(path / name))
        index = {"metadata": {}, "weight_map": {k: n for n, part in shards.items() for k in part}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        torch.save(state, path / "pytorch_model.bin")
    (path / "config.json").write_text(json.dumps(original_config(model, tied)))
    (path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "VLMImageProcessor", "image_size": IMAGE_SIZE, "min_size": 14,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255,
        "do_normalize": True, "background_color": [127, 127, 127]}))  # fmt: skip
    write_tokenizer(processor.tokenizer, path)
    return path


@torch.no_grad()
def outputs(model) -> dict[str, torch.Tensor]:
    """Text logits, generation-head logits, vision features and VQ decode on fixed inputs."""
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.text_config.vocab_size, (2, 6), generator=gen)  # [B, T]
    codes = torch.randint(0, CODEBOOK, (2, 16), generator=gen)  # [B, 16] = 4x4 grid
    pixels = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen) * 2 - 1  # [B, 3, H, W]
    inner = model.model
    image_embeds = inner.generation_aligner(inner.generation_embeddings(codes))  # [B, 16, hidden]
    embeds = torch.cat([inner.get_input_embeddings()(ids), image_embeds], dim=1)  # [B, T + 16, hidden]
    hidden = inner.language_model(inputs_embeds=embeds).last_hidden_state
    return {
        "text_logits": model(input_ids=ids).logits,  # [B, T, vocab]
        "gen_logits": inner.generation_head(hidden),  # [B, T + 16, codebook]
        "vision": inner.get_image_features(pixels).pooler_output,  # [B, 16, hidden]
        "decoded": model.decode_image_tokens(codes),  # [B, H, W, 3]
    }


@pytest.fixture(scope="module", params=["tied-sharded-safetensors", "untied-bin"])
def converted(request, tmp_path_factory):
    tied = request.param.startswith("tied")
    model, processor = tiny_model(tied=tied)
    base = tmp_path_factory.mktemp(request.param)
    src = write_original(model, processor, base / "src", sharded=tied, tied=tied)
    dst = convert_checkpoint(src, base / "dst")
    return model, processor, load_model(dst, device="cpu", dtype="float32"), tied


def test_converted_model_matches_original_exactly(converted):
    model, _, loaded, tied = converted
    want, got = outputs(model), outputs(loaded.model)
    for name in want:
        assert want[name].shape == got[name].shape, name
        assert torch.equal(want[name], got[name]), f"{name} differs after conversion"
    assert loaded.model.config.tie_word_embeddings is tied
    same = (
        loaded.model.lm_head.weight.data_ptr()
        == loaded.model.model.language_model.embed_tokens.weight.data_ptr()
    )
    assert same is tied
    assert loaded.model.config.image_token_id == model.config.image_token_id
    assert loaded.num_image_tokens == 16 and loaded.image_size == IMAGE_SIZE


def test_tokenizer_box_tokens_and_generation_config_survive(converted):
    _, processor, loaded, _ = converted
    tok, src_tok = loaded.tokenizer, processor.tokenizer
    for token in GOT_BOX_TOKENS:
        assert tok.convert_tokens_to_ids(token) == src_tok.convert_tokens_to_ids(token)
    assert len(loaded.ids.box_tokens) == 4
    plan = "a cat <|obj_start|>cat<|obj_end|><|box_start|>(12,340),(560,999)<|box_end|>"
    assert tok(plan).input_ids == src_tok(plan).input_ids
    gen = loaded.model.generation_config
    assert gen.guidance_scale == 5
    assert gen.generation_kwargs == {"boi_token_id": src_tok.convert_tokens_to_ids("<begin_of_image>")}
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (
        src_tok.bos_token_id, src_tok.eos_token_id, src_tok.pad_token_id)  # fmt: skip
    assert loaded.processor.image_processor.size["height"] == IMAGE_SIZE
    chat = [{"role": "user", "content": [{"type": "text", "text": "a red circle"}]}]
    text = loaded.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == "<|User|>: a red circle\n\n<|Assistant|>:"


def test_dtype_is_applied(tmp_path):
    model, processor = tiny_model(tied=False, seed=1)
    src = write_original(model, processor, tmp_path / "src", sharded=False, tied=False)
    dst = convert_checkpoint(src, tmp_path / "dst", dtype="bfloat16")
    with safe_open(str(dst / "model.safetensors"), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (not a dict)
    assert dtypes == {"BF16"}
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        convert_checkpoint(src, tmp_path / "dst2", dtype="int3")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model, processor = tiny_model(tied=True, seed=2)
    return write_original(model, processor, tmp_path_factory.mktemp("err") / "src", sharded=False, tied=True)


def _copy_with(source: Path, dst: Path, edit_state=None, edit_config=None) -> Path:
    import shutil

    shutil.copytree(source, dst)
    if edit_state is not None:
        state = torch.load(dst / "pytorch_model.bin", weights_only=True)
        edit_state(state)
        torch.save(state, dst / "pytorch_model.bin")
    if edit_config is not None:
        cfg = json.loads((dst / "config.json").read_text())
        edit_config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_missing_config_is_a_clear_error(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match=r"has no config\.json"):
        convert_checkpoint(tmp_path / "src", tmp_path / "dst")
    with pytest.raises(ValueError, match="does not exist"):
        convert_checkpoint(tmp_path / "nowhere", tmp_path / "dst")


def test_wrong_model_type_is_a_clear_error(source, tmp_path):
    src = _copy_with(source, tmp_path / "src", edit_config=lambda c: c.update(model_type="janus"))
    with pytest.raises(ValueError, match=r"model_type 'janus'.*already in transformers' HF layout"):
        convert_checkpoint(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_unexpected_key_is_named(source, tmp_path):
    def add(state):
        state["vision_model.vision_tower.head.weight"] = torch.zeros(3)

    src = _copy_with(source, tmp_path / "src", edit_state=add)
    with pytest.raises(ValueError, match=r"match no row .*vision_model\.vision_tower\.head\.weight"):
        convert_checkpoint(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_missing_key_is_named(source, tmp_path):
    src = _copy_with(source, tmp_path / "src", edit_state=lambda s: s.pop("gen_head.vision_head.bias"))
    missing = r"missing in the converted weights: model\.generation_head\.vision_head\.bias"
    with pytest.raises(ValueError, match=missing):
        convert_checkpoint(src, tmp_path / "dst")
    key = "vision_model.vision_tower.patch_embed.proj.weight"
    src = _copy_with(source, tmp_path / "src2", edit_state=lambda s: s.pop(key))
    with pytest.raises(ValueError, match=f"lack {re.escape(key)}"):
        convert_checkpoint(src, tmp_path / "dst")


def test_unknown_parts_and_nonempty_destination_are_refused(source, tmp_path):
    def sam(cfg):
        cfg["vision_config"]["cls"] = "SamViTEncoder"

    src = _copy_with(source, tmp_path / "src", edit_config=sam)
    with pytest.raises(ValueError, match=r"vision_config\.cls is 'SamViTEncoder'"):
        convert_checkpoint(src, tmp_path / "dst")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        convert_checkpoint(source, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------- GoT-R1 without its box tokens (issue 20)


def tokenizer_without_box_tokens():
    """A Janus-style BPE like a released checkpoint's before GoT-R1's ``get_processor`` runs: the
    Janus special tokens and chat roles, but none of the four box tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=350, special_tokens=[BOS, EOS, PAD, IMAGE_PLACEHOLDER, BOI, EOI],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    tok.add_tokens(list(CHAT_ROLE_TOKENS))
    wrapped = wrap_tokenizer(tok)
    assert not any(t in wrapped.get_vocab() for t in GOT_BOX_TOKENS)
    return wrapped


@pytest.fixture(scope="module")
def no_box_source(tmp_path_factory):
    tok = tokenizer_without_box_tokens()
    model, processor = tiny_model(tied=False, seed=2, processor=make_processor(tok, IMAGE_SIZE, 16))
    assert model.config.text_config.vocab_size == len(tok)  # no spare rows: conversion must grow
    src = write_original(model, processor, tmp_path_factory.mktemp("nobox") / "GoT-R1-tiny", sharded=False,
                         tied=False)  # fmt: skip
    return model, tok, src


def test_got_r1_checkpoint_without_box_tokens_gets_them_in_got_r1s_order(no_box_source, tmp_path):
    model, tok, src = no_box_source
    n = len(tok)
    dst = convert_checkpoint(src, tmp_path / "dst")  # auto: the folder is named like GoT-R1
    loaded = load_model(dst, device="cpu", dtype="float32")
    new = loaded.tokenizer
    # GoT-R1's get_processor: add_tokens([box_start, box_end, obj_start, obj_end]) after the vocab
    assert [new.convert_tokens_to_ids(t) for t in GOT_R1_TOKEN_ORDER] == [n, n + 1, n + 2, n + 3]
    assert len(loaded.ids.box_tokens) == 4
    plan = "<|obj_start|>cat<|obj_end|><|box_start|>(12,340),(560,999)<|box_end|>"
    ids = new.encode(plan, add_special_tokens=False)
    assert ids[0] == n + 2 and ids[-1] == n + 1 and n + 3 in ids and n in ids
    assert new.decode(ids) == plan  # the plan survives decoding, so it can be parsed
    # embeddings and LM head grew by four rows; the old rows are untouched, the new the mean
    emb = loaded.model.model.language_model.embed_tokens.weight
    head = loaded.model.lm_head.weight
    assert emb.shape[0] == head.shape[0] == n + 4 == loaded.model.config.text_config.vocab_size
    old_emb = model.model.language_model.embed_tokens.weight
    assert torch.equal(emb[:n], old_emb) and torch.equal(head[:n], model.lm_head.weight)
    assert torch.allclose(emb[n:], old_emb.mean(0, keepdim=True).expand(4, -1))
    assert torch.allclose(head[n:], model.lm_head.weight.mean(0, keepdim=True).expand(4, -1))
    ids = torch.tensor([[3, 5, 7]])
    assert torch.equal(loaded.model(input_ids=ids).logits[..., :n], model(input_ids=ids).logits)


def test_box_tokens_keep_and_explicit_add(no_box_source, tmp_path):
    _, tok, src = no_box_source
    kept = load_model(convert_checkpoint(src, tmp_path / "kept", box_tokens="keep"), device="cpu")
    assert len(kept.tokenizer) == len(tok) and kept.ids.box_tokens == ()
    renamed = tmp_path / "plain-janus"
    renamed.symlink_to(src, target_is_directory=True)
    plain = load_model(convert_checkpoint(renamed, tmp_path / "plain"), device="cpu")
    assert plain.ids.box_tokens == ()  # auto leaves a folder not named like GoT-R1 alone
    added = load_model(convert_checkpoint(renamed, tmp_path / "added", box_tokens="add"), device="cpu")
    assert len(added.ids.box_tokens) == 4
    with pytest.raises(ValueError, match="box_tokens must be one of auto, add, keep"):
        convert_checkpoint(src, tmp_path / "bad", box_tokens="maybe")
