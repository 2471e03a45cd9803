"""LoRA through peft (checkpoints load as plain HF models) and gradient checkpointing."""

from __future__ import annotations

import torch

from reasongen.loading import load_model, wrap_loaded
from reasongen.rewards import RewardOutput
from reasongen.tiny import build_tiny, save_tiny
from reasongen.types import SamplingSettings
from training.grpo import GRPOConfig, train
from training.logprobs import policy_logprobs
from training.run_setup import enable_checkpointing
from training.sft import SFTExample, example_to_sample, sft_loss


def low_tokens(samples) -> RewardOutput:
    scores = [sum(t < 32 for t in s.image_token_ids) / len(s.image_token_ids) for s in samples]
    return RewardOutput("low_tokens", scores, [{} for _ in samples])


def test_lora_grpo_trains_adapters_only_and_saves_a_merged_loadable_model(tmp_path) -> None:
    from reasongen.generation import generate

    model_dir = save_tiny(tmp_path / "tiny", seed=6)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue star\n")
    lm = load_model(model_dir, device="cpu")
    original = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = GRPOConfig(model=str(model_dir), prompts=str(prompts), out_dir=str(tmp_path / "run"),
                     recipe="got-r1", group_size=4, prompts_per_step=2, max_cot_tokens=3,
                     guidance=3.0, lr=2e-2, max_steps=2, save_every=0, device="cpu",
                     progress=False, tensorboard=False, rewards=["toy"], lora_rank=4,
                     lora_targets=["q_proj", "v_proj"])  # fmt: skip
    out = train(cfg, loaded=lm, reward_fn=low_tokens)
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = load_model(out, device="cpu")
    for k, v in merged.model.state_dict().items():  # only the LoRA-wrapped projections moved
        if "q_proj" in k or "v_proj" in k:
            continue
        assert torch.equal(v, original[k]), k
    assert any(not torch.equal(merged.model.state_dict()[k], original[k]) for k in original if "q_proj" in k)
    # The merged checkpoint computes what the live LoRA model computes.
    settings = SamplingSettings(guidance=3.0, max_cot_tokens=3, num_image_tokens=16)
    s = generate(merged, "a red circle", "got-r1", n=2, seed=1, settings=settings)
    with torch.no_grad():
        live = policy_logprobs(lm.model, s, lm.ids.bos, lm.ids.pad)
        saved = policy_logprobs(merged.model, s, lm.ids.bos, lm.ids.pad)
    assert torch.allclose(live.image, saved.image, atol=1e-4)
    assert torch.allclose(live.cot, saved.cot, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model, processor = build_tiny(seed=7)
    lm = wrap_loaded(model, processor, "tiny")
    ex = SFTExample("a red circle", "got-r1", "a red circle on the left", list(range(16)))
    s = example_to_sample(ex, lm)

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss, _ = sft_loss(model, [s], lm.ids.bos, lm.ids.pad, 1.0, 1.0)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = grads()
    enable_checkpointing(model)
    assert model.model.language_model.gradient_checkpointing
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[k], ckpt[k], atol=1e-6) for k in plain)


def test_flush_denormal_setting_is_applied_by_setup_run(tmp_path) -> None:
    """A run's ``flush_denormal`` decides whether float32 denormals survive arithmetic."""
    from training.config import RunConfig
    from training.run_setup import setup_run

    model_dir = save_tiny(tmp_path / "tiny", seed=6)
    tiny_value = torch.tensor([1 << 20], dtype=torch.int32).view(torch.float32)  # a denormal, by its bits
    try:
        for flush in (True, False):
            cfg = RunConfig(model=str(model_dir), out_dir=str(tmp_path / f"run-{flush}"), device="cpu",
                            progress=False, tensorboard=False, flush_denormal=flush)  # fmt: skip
            setup_run(cfg, loaded=load_model(model_dir, device="cpu"))
            survived = float((tiny_value * 1.0)[0]) != 0.0
            assert survived is not flush
    finally:
        torch.set_flush_denormal(False)
