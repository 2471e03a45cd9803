"""Every shipped YAML recipe parses into its entry point's config, and the accelerate configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reasongen.config import parse_config
from training.grpo import GRPOConfig
from training.sft import SFTConfig

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"
ACCELERATE = Path(__file__).resolve().parents[2] / "training" / "accelerate"


GRPO_RECIPES = [
    "t2i_r1",
    "got_r1",
    "reasongen_r1",
    "shapes",
    "shapes_full",
    "shapes_full_learned",
    "shapes_full_learned_r2",
    "shapes_full_mend",
]


@pytest.mark.parametrize("name", GRPO_RECIPES)
def test_grpo_recipes_parse(name: str) -> None:
    cfg = parse_config(GRPOConfig, ["--config", str(RECIPES / f"{name}.yaml"), "--max_steps", "7"])
    assert cfg.max_steps == 7  # the command line wins over the file
    raw = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    assert cfg.group_size == raw["group_size"] and cfg.rewards == raw["rewards"]


def test_learned_reward_recipe_is_the_loops_config_for_the_shipped_reward_model() -> None:
    """shapes_full_learned.yaml is shapes_full.yaml as training/human_loop.sh step 6 rewrites it,
    pointed at the shipped reward model (which must exist)."""
    base = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full.yaml")])
    cfg = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full_learned.yaml")])
    model = Path(cfg.reward_options["learned"]["model"])
    assert (RECIPES.parents[1] / model / "metrics.json").is_file()
    assert cfg.rewards == ["learned"] and cfg.monitor_rewards == ["shapes"]
    assert (cfg.adv_eps, cfg.kl_coef, cfg.monitor_every, cfg.monitor_n) == (1.0, 0.04, 25, 60)
    same = ["model", "recipe", "shapes_categories", "group_size", "prompts_per_step", "lr", "ppo_epochs",
            "max_steps", "seed", "clip_low", "clip_high", "max_cot_tokens", "dynamic_sampling"]  # fmt: skip
    assert {k: getattr(cfg, k) for k in same} == {k: getattr(base, k) for k in same}


def test_second_round_recipe_is_the_first_rounds_on_the_shipped_ensemble() -> None:
    """shapes_full_learned_r2.yaml differs from shapes_full_learned.yaml only in its reward, the
    ensemble of the two shipped reward models (both present, each with its card), and out_dir."""
    first = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full_learned.yaml")])
    cfg = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full_learned_r2.yaml")])
    models = cfg.reward_options["learned"]["model"]
    assert models == ["assets/models/shapes-reward-r2", "assets/models/shapes-reward"]
    for m in models:
        assert (RECIPES.parents[1] / m / "open_clip_model.safetensors").is_file()
        assert "SIMULATED" in (RECIPES.parents[1] / m / "README.md").read_text()
    differ = {"reward_options", "out_dir"}
    keys = [k for k in vars(first) if k not in differ]
    assert {k: getattr(cfg, k) for k in keys} == {k: getattr(first, k) for k in keys}
    assert cfg.out_dir != first.out_dir


def test_second_stage_recipe_starts_from_the_first_stage_and_keeps_its_benchmark_out() -> None:
    """shapes_full_mend.yaml (the default model's second stage) starts from the shipped first-stage
    model, holds to it with a KL term, and draws another pool with the benchmark's texts out."""
    base = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full.yaml")])
    cfg = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes_full_mend.yaml")])
    assert cfg.model == "assets/models/shapes-janus-full-r1"
    assert (RECIPES.parents[1] / cfg.model / "config.json").is_file()
    assert cfg.kl_coef > 0 and not cfg.kl_reference and cfg.lr == base.lr / 2
    assert cfg.shapes_seed != base.shapes_seed and cfg.holdout_benchmark == 600
    assert cfg.shapes_categories.count("colors") == 6 and set(cfg.shapes_categories) == set(
        base.shapes_categories
    )
    same = ["recipe", "reward_options", "group_size", "prompts_per_step", "ppo_epochs", "max_cot_tokens",
            "shapes_cell", "dynamic_sampling", "max_resample"]  # fmt: skip
    assert {k: getattr(cfg, k) for k in same} == {k: getattr(base, k) for k in same}


def test_paper_settings_are_the_papers() -> None:
    t2i = parse_config(GRPOConfig, ["--config", str(RECIPES / "t2i_r1.yaml")])
    assert (t2i.group_size, t2i.kl_coef, t2i.kl_clamp, t2i.lr) == (8, 0.01, 0.0, 1e-6)  # TRL's k3
    assert set(t2i.rewards) == {"hps", "gdino", "git_vqa", "orm"} and t2i.reward_mode == "weighted_sum"
    got = parse_config(GRPOConfig, ["--config", str(RECIPES / "got_r1.yaml")])
    assert got.group_size == 16 and got.reward_mode == "product" and "got_judge" in got.rewards
    rg = parse_config(GRPOConfig, ["--config", str(RECIPES / "reasongen_r1.yaml")])
    assert rg.adaptive_entropy and (rg.text_entropy_target, rg.image_entropy_target) == (2.0, 7.0)
    assert rg.kl_coef == 0.0 and rg.clip_low == 0.2 and rg.dynamic_sampling
    assert rg.rewards == ["binary_judge"]


def test_paper_objectives_and_hyper_parameters_are_the_released_ones() -> None:
    """Issue 20, items 5-7 and 9: each line cites the upstream file it was read from."""
    t2i = parse_config(GRPOConfig, ["--config", str(RECIPES / "t2i_r1.yaml")])
    # CaraJ7/T2I-R1 src/scripts/run_grpo.sh and open_r1/trainer/grpo_trainer.py
    assert (t2i.prompts_per_step, t2i.max_steps, t2i.save_every, t2i.guidance) == (16, 1600, 400, 5.0)
    assert (t2i.logprob_distribution, t2i.loss_aggregation) == ("conditional", "joint")
    assert (t2i.ppo_epochs, t2i.mini_batches, t2i.lr_scheduler) == (1, 1, "linear")
    assert (t2i.dynamic_sampling, t2i.zero_spread_groups) == (False, "keep")
    # Franklin-Zhang0/ReasonGen-R1 examples/janus_rl.sh and image_generation_trainer.yaml
    rg = parse_config(GRPOConfig, ["--config", str(RECIPES / "reasongen_r1.yaml")])
    assert (rg.lr, rg.prompts_per_step, rg.mini_batches, rg.max_steps) == (5e-6, 32, 2, 400)
    assert (rg.guidance, rg.logprob_distribution, rg.loss_aggregation) == (1.0, "conditional", "joint")
    assert (rg.entropy_lr, rg.entropy_coef_max, rg.entropy_update) == (5e-5, 5e-3, "micro_batch")
    assert (rg.lr_scheduler, rg.weight_decay, rg.grad_clip) == ("constant_with_warmup", 0.01, 1.0)
    assert rg.optimizer_steps() == 800  # two PPO mini-batches per rollout batch
    assert rg.adv_eps == 1e-6 and t2i.adv_eps == 1e-4  # core_algos.py / grpo_trainer.py
    assert (rg.dynamic_sampling, rg.dynamic_sampling_mode, rg.max_gen_batches) == (True, "batch", 8)
    got = parse_config(GRPOConfig, ["--config", str(RECIPES / "got_r1.yaml")])
    assert (got.guidance, got.loss_aggregation, got.max_steps) == (5.0, "joint", 1000)
    # The shapes recipe keeps today's objective unless the coordinator's measurement changes it.
    shapes = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes.yaml")])
    assert (shapes.logprob_distribution, shapes.loss_aggregation) == ("guided", "per_modality")
    assert (shapes.mini_batches, shapes.entropy_update, shapes.detach_uncond) == (1, "step", False)
    assert shapes.zero_spread_groups == "drop" and shapes.dynamic_sampling_mode == "slot"


def test_sft_recipe_parses() -> None:
    cfg = parse_config(SFTConfig, ["--config", str(RECIPES / "sft_shapes.yaml")])
    assert cfg.cond_dropout == 0.1 and cfg.data.endswith(".jsonl")


@pytest.mark.parametrize("name", ["fsdp", "deepspeed_zero2", "multi_gpu"])
def test_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))
    assert cfg.num_processes == 8 and cfg.mixed_precision == "bf16"


def test_human_recipe_parses() -> None:
    from training.human import HumanGRPOConfig

    cfg = parse_config(HumanGRPOConfig, ["--config", str(RECIPES / "human.yaml"), "--study", "x"])
    assert cfg.study == "x" and cfg.min_pass_rate == 0.75 and cfg.ppo_epochs == 2


def test_shapes_pool_holds_out_the_benchmark_prompts() -> None:
    from reasongen.eval.shapes_bench import benchmark_prompts
    from training.grpo import load_prompts

    cfg = parse_config(GRPOConfig, ["--config", str(RECIPES / "shapes.yaml"), "--num_shapes_prompts", "800"])
    pool = load_prompts(cfg)
    bench = {p.prompt for p in benchmark_prompts(600, seed=0, cell=125)}
    assert pool and not any(p in bench for p, _ in pool)
    assert all(meta and meta["prompt"] == p for p, meta in pool)


def test_shapes_categories_weight_the_pool_and_reject_unknown_names() -> None:
    from training.grpo import load_prompts

    base = ["--num_shapes_prompts", "600", "--holdout_benchmark", "0"]
    even = load_prompts(parse_config(GRPOConfig, base))
    tags = ["single_object", "two_object", "counting", "counting", "colors", "position", "color_attr"]
    weighted = load_prompts(parse_config(GRPOConfig, [*base, "--shapes_categories", *tags]))

    def share(pool: list) -> float:
        return sum(meta["tag"] == "counting" for _, meta in pool) / len(pool)

    assert share(even) == pytest.approx(1 / 6) and share(weighted) == pytest.approx(2 / 7, abs=0.01)
    only = load_prompts(parse_config(GRPOConfig, [*base, "--shapes_categories", "position"]))
    assert {meta["tag"] for _, meta in only} == {"position"}
    with pytest.raises(ValueError, match="shapes_categories"):
        GRPOConfig(shapes_categories=["counting", "juggling"])
    with pytest.raises(ValueError, match="shapes_categories"):
        GRPOConfig(shapes_categories=[])
