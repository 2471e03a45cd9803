"""Online GRPO for reasoning text-to-image models (T2I-R1 / GoT-R1 / ReasonGen-R1 style).

``python -m training.grpo --config training/recipes/shapes.yaml [--flag value ...]`` on one
device, ``accelerate launch -m training.grpo --config ...`` on several.

One optimizer step:

1. **Rollouts.** The step's ``prompts_per_step`` group slots are split over the processes (slot
   ``k`` goes to process ``k mod world``). A slot draws a prompt and generates a group of
   ``group_size`` samples; a process's slots are sampled together by one multi-prompt
   ``reasongen.generation.generate`` call (one random stream per prompt); prompt choice and
   rollout seed depend only on ``(seed, step, slot, attempt)``, so the global batch is the same
   for any number of processes and after a resume.
2. **Rewards** from the registry (``rewards``, combined by ``reward_mode`` with
   ``reward_weights``), or an injected callable. Group advantages ``(r − mean)/(std + eps)``;
   ``None`` rewards are left out. With ``dynamic_sampling`` a zero-spread group is redrawn up to
   ``max_resample`` times, then dropped; or (``dynamic_sampling_mode: batch``, ReasonGen-R1)
   whole batches are generated until the step has its full count of groups with spread
   (``training.batch_sampling``).
3. **Loss.** One forward per micro-batch over prompt + CoT + image tokens gives CoT log-probs (LM
   head) and image log-probs (generation head) under the trained distribution
   (``logprob_distribution``: the guided sampling one, or the conditional row's alone, whose
   behaviour log-probs come from the policy that drew the step when the rollouts were guided);
   PPO clip against the behaviour log-probs, optional k3 KL to the frozen initial model under the
   same distribution, token means (global over the batch and processes) per modality or jointly
   (``loss_aggregation``), and per-modality entropy bonuses (fixed, or adaptive towards targets as
   in ReasonGen-R1, moved once per step or after every micro-batch: ``entropy_update``). Each
   pass over the batch (``ppo_epochs``) takes ``mini_batches`` optimizer steps, each on its share
   of the groups.

Checkpoints (HF model + optimizer/scheduler/RNG + controllers) every ``save_every`` steps;
``--resume latest`` continues exactly. TensorBoard scalars: every reward family, advantages, KL,
entropies and their coefficients, clip fractions, CoT length, dropped groups.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasongen.config import parse_config
from reasongen.loading import settings_for
from reasongen.prompt_files import read_prompt_file
from reasongen.recipes import get_recipe
from reasongen.rewards.combine import MODES, check_mode, check_weights
from reasongen.shapes.compose import POOL_CATEGORIES
from reasongen.shapes.pools import prompt_pool
from reasongen.types import CATEGORIES, Sample, SamplingSettings

from .checkpoints import export_final, save_checkpoint
from .config import RunConfig, config_dict
from .errors import NoSignalError
from .grpo_loss import (
    AdaptiveEntropyCoefficient,
    LossSettings,
)
from .grpo_update import (
    behaviour_logprobs,
    controller_states,
    keep_zero_spread,
    merge_metrics,
    mini_batches,
    needs_behaviour,
    rank_state,
    update,
)
from .monitor import Monitor, MonitorFields
from .ptx import PtxFields, SupervisedMix, mean_metrics
from .rank_balance import balance_groups, balances
from .rollouts import Group, finite_rewards, pooled_redraws, rollout_slots, slot_rng  # noqa: F401  (re-exported)
from .run_setup import optimizer_step, setup_run

RewardFn = Callable[[list[Sample]], Any]  # returns a reasongen.rewards.RewardOutput
DISTRIBUTIONS = ("guided", "conditional")


@dataclass
class PolicyOptimConfig(RunConfig):
    """How groups of scored samples become updates, in online and human-ranking GRPO alike: groups
    per step, micro-batches, advantages, the clipped loss, KL and entropy bonuses."""

    prompts_per_step: int = field(default=4, metadata={"help": "Groups per optimizer step (global)."})
    micro_batch_groups: int = field(default=1, metadata={"help": "Groups per forward/backward."})
    adv_eps: float = field(default=1e-4, metadata={"help": "eps in (r - mean) / (std + eps)."})
    # ---- loss
    clip_low: float = field(default=0.2, metadata={"help": "PPO clip below (1 - clip_low)."})
    clip_high: float = field(default=0.2, metadata={"help": "PPO clip above (1 + clip_high)."})
    kl_coef: float = field(default=0.0, metadata={"help": "k3 KL weight to the reference (β)."})
    kl_reference: str = field(
        default="",
        metadata={"help": "Model folder the KL term holds the policy to; empty: the initial model. "
                  "A second GRPO stage can hold to the first stage's SFT parent."},
    )  # fmt: skip
    kl_clamp: float = field(
        default=10.0,
        metadata={"help": "Largest per-token k3 KL value, no gradient above it (verl's low_var_kl: "
                  "10); 0 = unclamped, as TRL's k3 (T2I-R1)."},
    )  # fmt: skip
    text_kl_scale: float = field(
        default=1.0,
        metadata={"help": "The CoT tokens' KL weight is kl_coef times this (the image tokens' is "
                  "kl_coef): above 1 holds the reasoning and plan nearer the reference than the "
                  "image, for a reward that cannot check what the plan says (a learned reward blind "
                  "to relations)."},
    )  # fmt: skip
    text_weight: float = field(default=1.0, metadata={"help": "Loss weight of CoT tokens."})
    image_weight: float = field(default=1.0, metadata={"help": "Loss weight of image tokens."})
    normalisation: str = field(default="token", metadata={"help": "'token' or 'sample' means."})
    ppo_epochs: int = field(default=1, metadata={"help": "Passes over each rollout batch."})
    mini_batches: int = field(
        default=1,
        metadata={"help": "Optimizer steps per pass, each on its share of the step's groups "
                  "(PPO mini-batches; ReasonGen-R1: 2)."},
    )  # fmt: skip
    logprob_distribution: str = field(
        default="guided",
        metadata={"help": "Which image distribution is trained: 'guided' (the sampling one, CFG "
                  "included; behaviour log-probs stored at sampling) or 'conditional' (the "
                  "conditional row only, no unconditional forward; T2I-R1). 'conditional' with "
                  "guided rollouts takes its behaviour log-probs from the policy before the "
                  "step's first update."},
    )  # fmt: skip
    loss_aggregation: str = field(
        default="per_modality",
        metadata={"help": "'joint' (one token mean over CoT and image tokens, as T2I-R1 and "
                  "ReasonGen-R1) or 'per_modality' (each modality's mean apart, summed)."},
    )  # fmt: skip
    zero_spread_groups: str = field(
        default="drop",
        metadata={"help": "Groups whose rewards do not spread: 'drop' (no token of them in the loss) "
                  "or 'keep' (advantage 0, their tokens still in the means and the KL term: "
                  "T2I-R1). Applies to what dynamic sampling leaves."},
    )  # fmt: skip
    detach_uncond: bool = field(default=False, metadata={"help": "No grad through CFG's uncond row."})
    balance_ranks: bool = field(
        default=True,
        metadata={"help": "With several processes, deal each redraw round's slots out evenly "
                  "(training.rollouts.pooled_redraws) and spread the step's kept samples over "
                  "them by tokens before the update (training.rank_balance): the same groups and "
                  "update up to reduction order, less waiting for the slowest process."},
    )  # fmt: skip
    text_entropy_coef: float = field(default=0.0, metadata={"help": "Fixed entropy bonus, text."})
    image_entropy_coef: float = field(default=0.0, metadata={"help": "Fixed entropy bonus, image."})
    adaptive_entropy: bool = field(default=False, metadata={"help": "Adaptive entropy bonuses."})
    text_entropy_target: float = field(default=2.0, metadata={"help": "Target entropy, text."})
    image_entropy_target: float = field(default=7.0, metadata={"help": "Target entropy, image."})
    entropy_lr: float = field(default=1e-3, metadata={"help": "Controller learning rate."})
    entropy_coef_max: float = field(default=1e-3, metadata={"help": "|coefficient| bound."})
    entropy_update: str = field(
        default="step",
        metadata={"help": "When the adaptive coefficients move: 'step' (once per step on the "
                  "step's global mean entropy) or 'micro_batch' (after every micro-batch on its "
                  "own token-mean entropy, each process its own controller: ReasonGen-R1)."},
    )  # fmt: skip
    # ---- logging
    sample_images_every: int = field(default=0, metadata={"help": "Log a group's images every K."})
    max_empty_steps: int = field(
        default=10,
        metadata={"help": "Stop with an error after this many consecutive steps that keep no group "
                  "(every reward missing, non-finite or equal within each group), and when a run "
                  "ends without having kept one; 0 = never stop for that."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompts_per_step < 1 or self.micro_batch_groups < 1 or self.ppo_epochs < 1:
            raise ValueError("prompts_per_step, micro_batch_groups and ppo_epochs must be >= 1")
        if self.mini_batches < 1:
            raise ValueError(f"mini_batches must be >= 1, got {self.mini_batches}")
        if self.logprob_distribution not in DISTRIBUTIONS:
            raise ValueError(f"logprob_distribution must be 'guided' or 'conditional', "
                             f"got {self.logprob_distribution!r}")  # fmt: skip
        if self.loss_aggregation not in ("joint", "per_modality"):
            raise ValueError(f"loss_aggregation must be 'joint' or 'per_modality', "
                             f"got {self.loss_aggregation!r}")  # fmt: skip
        if self.zero_spread_groups not in ("drop", "keep"):
            raise ValueError(f"zero_spread_groups must be 'drop' or 'keep', got {self.zero_spread_groups!r}")
        if self.entropy_update not in ("step", "micro_batch"):
            raise ValueError(f"entropy_update must be 'step' or 'micro_batch', got {self.entropy_update!r}")
        if self.max_empty_steps < 0:
            raise ValueError(f"max_empty_steps must be >= 0 (0 = never stop), got {self.max_empty_steps}")
        if self.adv_eps < 0:
            raise ValueError("adv_eps must be >= 0")
        self.loss_settings()

    def optimizer_steps(self) -> int:
        return self.max_steps * self.ppo_epochs * self.mini_batches

    def loss_settings(self) -> LossSettings:
        return LossSettings(self.clip_low, self.clip_high, self.kl_coef, self.text_weight,
                            self.image_weight, self.normalisation,  # type: ignore[arg-type]
                            self.loss_aggregation, self.kl_clamp,  # type: ignore[arg-type]
                            self.text_kl_scale)  # fmt: skip

    def logprob_mode(self) -> str:
        """The ``training.logprobs`` mode of the trained distribution."""
        return "sampling" if self.logprob_distribution == "guided" else "conditional"


@dataclass
class GRPOConfig(PtxFields, MonitorFields, PolicyOptimConfig):
    """Online GRPO: the update settings plus where prompts come from, how groups are sampled
    (rollouts), how they are scored (rewards), the periodic shapes benchmark, the
    over-optimisation monitor (``training.monitor``: rewards scored but not optimised) and the
    supervised mix (``training.ptx``)."""

    # ---- data and rollouts
    prompts: str = field(default="shapes", metadata={"help": "JSONL/TXT prompt file, or 'shapes'."})
    num_shapes_prompts: int = field(default=5000, metadata={"help": "Pool size for 'shapes'."})
    shapes_seed: int = field(
        default=7, metadata={"help": "Seed of the 'shapes' prompt pool (the benchmark uses 0)."}
    )
    holdout_benchmark: int = field(
        default=600,
        metadata={"help": "Leave out the texts of the shapes benchmark's first N prompts "
                  "(prompt_seed 0) from the 'shapes' pool, so the benchmark stays held out."},
    )  # fmt: skip
    shapes_categories: list[str] = field(
        default_factory=lambda: list(CATEGORIES),
        metadata={"help": "Categories the 'shapes' pool cycles through, in order; name one more "
                  "than once to weight it (counting twice doubles its share of the pool). "
                  "Compositional names (reasongen.shapes.compose) draw the whole language."},
    )  # fmt: skip
    shapes_cell: int = field(
        default=125, metadata={"help": "Cell-aligned scenes (the embedded model's world); 0 = free."}
    )
    recipe: str = field(default="got-r1", metadata={"help": "Generation recipe of the rollouts."})
    group_size: int = field(default=8, metadata={"help": "Samples per prompt (G)."})
    guidance: float | None = field(
        default=None, metadata={"help": "CFG weight of rollouts (None = the model's default)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Image-token temperature."})
    cot_temperature: float = field(default=1.0, metadata={"help": "CoT temperature."})
    max_cot_tokens: int = field(default=256, metadata={"help": "CoT length cap."})
    # ---- rewards
    rewards: list[str] = field(default_factory=lambda: ["shapes"], metadata={"help": "Reward names."})
    reward_weights: dict[str, float] = field(default_factory=dict, metadata={"help": "Per reward."})
    reward_mode: str = field(default="weighted_sum", metadata={"help": "|".join(MODES)})
    reward_options: dict[str, dict] = field(default_factory=dict, metadata={"help": "name: {opt: v}"})
    dynamic_sampling: bool = field(default=True, metadata={"help": "Redraw zero-spread groups."})
    dynamic_sampling_mode: str = field(
        default="slot",
        metadata={"help": "'slot' (a zero-spread group's slot is redrawn up to max_resample times, "
                  "then dropped) or 'batch' (whole batches are generated, up to max_gen_batches, "
                  "until the step has prompts_per_step groups with spread: ReasonGen-R1)."},
    )  # fmt: skip
    max_resample: int = field(default=2, metadata={"help": "Redraws of a zero-spread group."})
    max_gen_batches: int = field(
        default=8, metadata={"help": "Generation batches per step in 'batch' mode (ReasonGen-R1: 8)."}
    )
    # ---- evaluation
    eval_every: int = field(
        default=0, metadata={"help": "Run the shapes benchmark every K steps and at the start (0 = off)."}
    )
    eval_n: int = field(default=60, metadata={"help": "Benchmark prompts per evaluation (<= holdout)."})
    out_dir: str = field(default="runs/grpo", metadata={"help": "Run folder."})

    def __post_init__(self) -> None:
        super().__post_init__()
        get_recipe(self.recipe)
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: advantages compare samples of a group")
        if not self.rewards:
            raise ValueError("give at least one reward name (--rewards shapes)")
        check_mode(self.reward_mode, "reward_mode")
        check_weights(self.reward_weights, self.reward_mode, "reward_weights")
        for what, keys in (("reward_weights", self.reward_weights), ("reward_options", self.reward_options)):
            unknown = sorted(set(keys) - set(self.rewards))
            if unknown:
                raise ValueError(f"{what} names rewards not in this run: {', '.join(unknown)} "
                                 f"(rewards: {', '.join(self.rewards)})")  # fmt: skip
        unknown = sorted(set(self.shapes_categories) - set(POOL_CATEGORIES))
        if unknown or not self.shapes_categories:
            raise ValueError(
                f"shapes_categories must name some of {', '.join(POOL_CATEGORIES)}; got {unknown or 'none'}"
            )
        if self.eval_every and self.prompts != "shapes":
            raise ValueError("eval_every runs the shapes benchmark: use it with --prompts shapes")
        if self.eval_every and not 0 < self.eval_n <= max(self.holdout_benchmark, 1):
            raise ValueError("eval_n must be in 1..holdout_benchmark so evaluation prompts stay held out")
        if self.max_resample < 0:
            raise ValueError("max_resample must be >= 0")
        if self.dynamic_sampling_mode not in ("slot", "batch"):
            raise ValueError(f"dynamic_sampling_mode must be 'slot' or 'batch', "
                             f"got {self.dynamic_sampling_mode!r}")  # fmt: skip
        if self.max_gen_batches < 1:
            raise ValueError(f"max_gen_batches must be >= 1, got {self.max_gen_batches}")

    def sampling(self, loaded: Any) -> SamplingSettings:
        """The rollout settings for ``loaded`` (``guidance`` None: the model's)."""
        return settings_for(loaded, guidance=self.guidance, temperature=self.temperature,
                            cot_temperature=self.cot_temperature,
                            max_cot_tokens=self.max_cot_tokens)  # fmt: skip


# --------------------------------------------------------------------------- prompts, rewards


def load_prompts(cfg: GRPOConfig) -> list[tuple[str, dict[str, Any] | None]]:
    """(prompt, metadata) pairs from ``cfg.prompts``: 'shapes', or a prompt file (.txt, .jsonl or
    .json, ``reasongen.prompt_files``; metadata is a record's ``metadata`` key)."""
    if cfg.prompts == "shapes":
        return prompt_pool(cfg.num_shapes_prompts, cfg.shapes_seed, cfg.shapes_categories,
                           cfg.shapes_cell or None, cfg.holdout_benchmark)  # fmt: skip
    path = Path(cfg.prompts)
    if not path.is_file():
        from reasongen.prompt_files import missing_file_message  # says where a paper's file comes from

        raise ValueError(f"{missing_file_message(path)} (or use --prompts shapes)")
    return [(row["prompt"], row.get("metadata")) for row in read_prompt_file(path)]


def build_reward(cfg: GRPOConfig) -> Callable[[list[Sample]], tuple[list[float | None], dict[str, Any]]]:
    """The configured rewards (``make_reward``) combined by ``reward_mode``; returns
    ``fn(samples) -> (combined scores, per-family means)``."""
    from reasongen.rewards import CombinedReward, make_reward

    reward = make_reward(cfg.rewards, cfg.reward_mode, cfg.reward_weights, cfg.reward_options)
    assert isinstance(reward, CombinedReward)  # a combine mode is always given

    def score(samples: list[Sample]) -> tuple[list[float | None], dict[str, Any]]:
        outs = [p(samples) for p in reward.parts]
        return reward.combine(outs, samples).scores, {o.name: _mean(o.scores) for o in outs}

    return score


def wrap_reward_fn(fn: RewardFn) -> Callable[[list[Sample]], tuple[list[float | None], dict]]:
    """Adapt a plain ``reward(samples) -> RewardOutput`` (tests, custom rewards)."""

    def score(samples: list[Sample]) -> tuple[list[float | None], dict[str, Any]]:
        out = fn(samples)
        return list(out.scores), {out.name: _mean(out.scores)}

    return score


def _mean(xs: Sequence[float | None]) -> float:
    """Mean of the finite values (NaN if none)."""
    vals = [float(x) for x in xs if x is not None and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


# --------------------------------------------------------------------------- update


# --------------------------------------------------------------------------- loop


def _gather_stats(
    acc: Any, groups: list[Group], sums: dict[str, float], first: dict[str, float] | None = None
) -> dict[str, float]:
    """Global means for logging (sums over processes); rewards over every drawn group.

    ``sums`` are the last PPO epoch's metrics, ``first`` the first's (``{m}/clip_frac_first``:
    the clipped fraction before any update of the step, i.e. how far the behaviour log-probs are
    from the policy; 0 up to rounding when the policy sampled the groups itself)."""
    dropped = sum(g.dropped for g in groups)
    rewards = [r for g in groups for r in g.rewards if r is not None]
    missing = sum(r is None for g in groups for r in g.rewards)
    non_finite = sum(g.non_finite for g in groups)
    first = sums if first is None else first
    advs = [abs(a) for g in groups if not g.dropped for a, v in zip(g.advantages, g.valid) if v]
    cot_len = [len(s.cot_token_ids) for g in groups for s in g.samples]
    fam_names = sorted({k for g in groups for k in g.families})
    keys = ["text/pg_loss", "image/pg_loss", "text/kl", "image/kl", "text/entropy", "image/entropy",
            "text/clipped_tokens", "text/tokens", "image/clipped_tokens", "image/tokens",
            "text/kl_clamped_tokens", "image/kl_clamped_tokens"]  # fmt: skip
    vec = [sum(rewards), len(rewards), sum(r * r for r in rewards), sum(advs), len(advs),
           sum(cot_len), len(cot_len), float(dropped), float(len(groups) - dropped)]  # fmt: skip
    vec += [sums.get(k, 0.0) for k in keys]
    vec += [float(missing), float(non_finite)]
    vec += [first.get(f"{m}/{k}", 0.0) for m in ("text", "image") for k in ("clipped_tokens", "tokens")]
    t = acc.reduce(torch.tensor(vec, dtype=torch.float64, device=acc.device), reduction="sum").tolist()
    n = max(t[1], 1.0)
    stats = {
        "reward/mean": t[0] / n,
        "reward/std": math.sqrt(max(t[2] / n - (t[0] / n) ** 2, 0.0)),
        "adv/abs_mean": t[3] / max(t[4], 1.0),
        "cot/length": t[5] / max(t[6], 1.0),
        "groups/dropped": t[7],
        "groups/kept": t[8],
        "reward/count": t[1],
        "reward/missing": t[9 + len(keys)],
        "reward/non_finite": t[10 + len(keys)],
    }
    c0 = t[11 + len(keys) :]
    stats["text/clip_frac_first"] = c0[0] / max(c0[1], 1.0)
    stats["image/clip_frac_first"] = c0[2] / max(c0[3], 1.0)
    vals = dict(zip(keys, t[9:]))
    for m in ("text", "image"):
        stats[f"{m}/pg_loss"] = vals[f"{m}/pg_loss"]
        stats[f"{m}/kl"] = vals[f"{m}/kl"]
        stats[f"{m}/entropy"] = vals[f"{m}/entropy"]
        stats[f"{m}/clip_frac"] = vals[f"{m}/clipped_tokens"] / max(vals[f"{m}/tokens"], 1.0)
        if f"{m}/kl_clamped_tokens" in sums:  # KL on and clamped: tokens at the cap (no KL gradient)
            stats[f"{m}/kl_clamped_frac"] = vals[f"{m}/kl_clamped_tokens"] / max(vals[f"{m}/tokens"], 1.0)
    for name in fam_names:  # per-process family means (main process's view)
        stats[f"reward/{name}"] = _mean([g.families.get(name) for g in groups])
    return stats


def make_controllers(cfg: PolicyOptimConfig) -> dict[str, AdaptiveEntropyCoefficient]:
    if not cfg.adaptive_entropy:
        return {}
    kw = {"lr": cfg.entropy_lr, "min_coef": -cfg.entropy_coef_max, "max_coef": cfg.entropy_coef_max}
    return {
        "text": AdaptiveEntropyCoefficient(cfg.text_entropy_target, cfg.text_entropy_coef, **kw),
        "image": AdaptiveEntropyCoefficient(cfg.image_entropy_target, cfg.image_entropy_coef, **kw),
    }


def reference_model(cfg: PolicyOptimConfig, run: Any, loaded: Any | None) -> Any | None:
    """The frozen policy of the KL term: ``cfg.kl_reference`` when set, else the initial policy
    (reloaded from ``cfg.model`` on resume)."""
    if cfg.kl_coef <= 0:
        return None
    from reasongen.loading import load_model

    if cfg.kl_reference:
        ref = load_model(cfg.kl_reference, device=run.accelerator.device, dtype="float32").model
        mine = {k: tuple(v.shape) for k, v in run.loaded.model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        if mine != theirs:
            odd = sorted(set(mine.items()) ^ set(theirs.items()))[:3]
            raise ValueError(f"kl_reference {cfg.kl_reference} is not the policy's architecture "
                             f"(parameters differ, e.g. {odd}): the KL needs the same shapes")  # fmt: skip
    elif run.start_step == 0 and loaded is not None:
        ref = copy.deepcopy(run.loaded.model)
    else:
        ref = load_model(cfg.model or None, device=run.accelerator.device, dtype="float32").model
    return ref.requires_grad_(False).eval()


def shapes_eval(cfg: GRPOConfig, loaded: Any) -> dict[str, float]:
    """The shapes benchmark on its first ``eval_n`` prompts (prompt_seed 0, generation seed 0),
    one sample per prompt with the rollout settings: overall accuracy and per category."""
    from reasongen.eval.shapes_bench import benchmark_prompts, evaluate_shapes, model_generator, summarize

    prompts = benchmark_prompts(cfg.eval_n, seed=0, cell=cfg.shapes_cell or None)
    settings = cfg.sampling(loaded)
    gen = model_generator(loaded, cfg.recipe, 1, 0, settings)
    was_training = loaded.model.training
    loaded.model.eval()
    summary = summarize(evaluate_shapes(gen, prompts))
    loaded.model.train(was_training)
    out = {"eval/overall": float(summary["overall"])}
    out.update({f"eval/{c}": float(v) for c, v in summary["categories"].items()})
    return out


def _maybe_eval(cfg: GRPOConfig, run: Any, done: int, log_dir: Path) -> None:
    if not cfg.eval_every or done % cfg.eval_every or not run.accelerator.is_main_process:
        return
    stats = shapes_eval(cfg, run.loaded)
    run.logger.scalars(stats, done)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps({"step": done, **stats}) + "\n")


def _no_signal(cfg: PolicyOptimConfig, empty: int, done: int, streak: dict[str, float]) -> NoSignalError:
    """The error that stops a run whose last ``empty`` steps trained on nothing."""
    if streak["kept"] == 0:
        why = (f"no group was kept: of {streak['count'] + streak['missing']:.0f} rewards drawn, "
               f"{streak['missing']:.0f} were missing ({streak['non_finite']:.0f} of them NaN or inf) "
               "and no group had two different rewards. Check the rewards and their settings (the "
               "'shapes' reward scores only prompts with shapes metadata: --prompts shapes or a "
               "JSONL file with 'metadata'), reward_weights and reward_options")  # fmt: skip
    else:
        why = (f"{streak['skipped']:.0f} optimizer steps were skipped because their loss or "
               "gradients were NaN or inf (the other steps kept no group); lower lr or check the "
               "rewards")  # fmt: skip
    return NoSignalError(
        f"stopping at step {done}: {empty} consecutive steps trained on nothing; {why}. "
        f"(max_empty_steps={cfg.max_empty_steps} sets how many such steps are tolerated; no "
        "checkpoint of this step was written)"
    )


def run_loop(
    cfg: PolicyOptimConfig,
    run: Any,
    draw: Callable[[int], list[Group]],
    ref_model: Any | None,
    evaluate: Callable[[int], None] | None = None,
    after_step: Callable[[int, dict[str, float]], None] | None = None,
    supervised: Callable[[int, int], tuple[float, dict[str, float]]] | None = None,
) -> Path:
    """The optimizer loop shared by online and human-ranking GRPO.

    ``draw(step)`` returns this process's groups for ``step`` (dropped ones flagged);
    ``evaluate(done)``, if given, runs before the first step of a fresh run and after every step
    (``done`` = steps finished), before that step's checkpoint; ``after_step(done, stats)`` gets
    every step's global statistics; ``supervised(step, k)``, if given, adds the gradients of an
    extra loss before optimizer step ``k`` of the step (``training.ptx``) and returns its value (checked for
    NaN or inf with the GRPO loss) and its global metrics, logged as their means over the step.

    Each step takes ``ppo_epochs`` passes over its groups, each pass ``mini_batches`` optimizer
    steps (``grpo_update.update`` per mini-batch); with ``zero_spread_groups: keep`` groups
    without spread take part with advantage 0; with conditional log-probs of guided rollouts
    the behaviour log-probs are computed before the first optimizer step.

    A step trains on nothing when it keeps no group or every one of its optimizer steps is
    skipped (non-finite loss or gradients, see ``run_setup.optimizer_step``). After
    ``cfg.max_empty_steps`` such steps in a row, or at the end of a run that trained on nothing
    at all, it raises ``NoSignalError`` before that step's checkpoint (0 turns this off).
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    acc, lm = run.accelerator, run.loaded
    controllers = make_controllers(cfg)
    for name, state in rank_state(run.extra.get("controllers", {}), acc.process_index).items():
        controllers[name].load_state_dict(state)
    per_micro = controllers if cfg.entropy_update == "micro_batch" else None
    balance = balances(cfg.balance_ranks, acc.num_processes, cfg.entropy_update)
    fixed = {"text": cfg.text_entropy_coef, "image": cfg.image_entropy_coef}
    bar = tqdm(range(run.start_step, cfg.max_steps), disable=not (cfg.progress and acc.is_main_process))
    path = None
    if evaluate is not None and run.start_step == 0:
        evaluate(0)
    empty, streak = 0, dict.fromkeys(("kept", "count", "missing", "non_finite", "skipped"), 0.0)
    for step in bar:
        drawn = draw(step)
        if cfg.zero_spread_groups == "keep":
            drawn = [keep_zero_spread(g) for g in drawn]
        groups = [g for g in drawn if not g.dropped] or drawn[:1]  # keep one: DDP needs a forward
        shown = groups[0] if groups else None
        kept = acc.reduce(torch.tensor([float(sum(not g.dropped for g in drawn))], device=acc.device))
        sums: dict[str, float] = {}
        first: dict[str, float] | None = None
        applied = skipped = 0
        extras: list[dict[str, float]] = []
        signal = float(kept.sum()) > 0
        if signal and balance:
            groups = balance_groups(drawn, acc.process_index, acc.num_processes, gather_object)
        for g in drawn:
            g.behaviour = None  # behaviour log-probs belong to the policy that drew this step
        if signal and cfg.mini_batches > 1 and needs_behaviour(cfg, groups):
            behaviour_logprobs(run, cfg, groups)  # before the first of several optimizer steps
        for _ in range(cfg.ppo_epochs if signal else 0):  # no signal: no step
            parts = []
            for part in mini_batches(groups, cfg.mini_batches):
                coefs = {k: c.coef for k, c in controllers.items()} if controllers else fixed
                k_opt = applied + skipped  # this step's optimizer steps so far
                extra = supervised(step, k_opt) if supervised is not None else None
                parts.append(update(run, cfg, part, ref_model, coefs, per_micro))
                loss = parts[-1].get("loss")
                if extra is not None:
                    loss = (loss or 0.0) + extra[0]
                    extras.append(extra[1])
                result = optimizer_step(run, cfg.grad_clip, loss)
                applied, skipped = applied + result.applied, skipped + (not result.applied)
            sums = merge_metrics(parts)
            first = sums if first is None else first
        stats = _gather_stats(acc, drawn, sums, first)
        stats["steps/skipped"] = float(skipped)  # the same on every process (a global decision)
        stats.update(mean_metrics(extras))
        for name, ctl in controllers.items() if per_micro is None else ():
            if stats[f"{name}/entropy"] == stats[f"{name}/entropy"] and stats[f"{name}/entropy"] > 0:
                ctl.update(stats[f"{name}/entropy"])
        for name in ("text", "image"):
            stats[f"{name}/entropy_coef"] = controllers[name].coef if controllers else fixed[name]
        stats["lr"] = run.scheduler.get_last_lr()[0]
        done = step + 1
        if done % cfg.log_every == 0:
            run.logger.scalars({f"grpo/{k}": v for k, v in stats.items()}, done)
        if cfg.sample_images_every and done % cfg.sample_images_every == 0 and shown is not None:
            run.logger.images("samples", [s.image for s in shown.samples if s.image], done)
        bar.set_postfix(reward=f"{stats['reward/mean']:.3f}", dropped=int(stats["groups/dropped"]))
        if after_step is not None:
            after_step(done, stats)
        if applied:
            empty, streak = 0, dict.fromkeys(streak, 0.0)
        else:
            empty += 1
            streak["kept"] += stats["groups/kept"]
            streak["count"] += stats["reward/count"]
            streak["missing"] += stats["reward/missing"]
            streak["non_finite"] += stats["reward/non_finite"]
            streak["skipped"] += skipped
        ran = done - run.start_step
        if cfg.max_empty_steps and empty and (empty >= cfg.max_empty_steps or
                                              (done == cfg.max_steps and empty == ran)):  # fmt: skip
            run.logger.close()
            raise _no_signal(cfg, empty, done, streak)
        if evaluate is not None:
            evaluate(done)
        acc.wait_for_everyone()
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.max_steps:
            extra = {"step": done, "config": config_dict(cfg),
                     "controllers": controller_states(acc, controllers, per_micro is not None)}  # fmt: skip
            path = save_checkpoint(acc, run.model, lm.processor, cfg.out_dir, done, extra, cfg.keep_last)
    run.logger.close()
    if path is not None:
        export_final(acc, path, cfg.out_dir, cfg.average_last)
    return path or Path(cfg.out_dir)


def check_world(cfg: PolicyOptimConfig, run: Any) -> None:
    world = run.accelerator.num_processes
    if cfg.prompts_per_step % world:
        raise ValueError(f"prompts_per_step {cfg.prompts_per_step} must be a multiple of the "
                         f"{world} processes")  # fmt: skip


def train(cfg: GRPOConfig, loaded: Any | None = None, reward_fn: RewardFn | None = None) -> Path:
    """Run online GRPO; return the folder of the last checkpoint."""
    run = setup_run(cfg, loaded)
    check_world(cfg, run)
    lm, rank, world = run.loaded, run.accelerator.process_index, run.accelerator.num_processes
    prompts = load_prompts(cfg)
    score = wrap_reward_fn(reward_fn) if reward_fn is not None else build_reward(cfg)

    def total(t: torch.Tensor) -> torch.Tensor:
        return run.accelerator.reduce(t.to(run.accelerator.device), reduction="sum").cpu()

    from accelerate.utils import gather_object

    # pooled redraws can leave a process with no group of its own: only where run_loop balances
    share = (
        pooled_redraws(rank, world, gather_object)
        if balances(cfg.balance_ranks, world, cfg.entropy_update)
        else None
    )

    def draw(step: int) -> list[Group]:
        lm.model.eval()
        if cfg.dynamic_sampling and cfg.dynamic_sampling_mode == "batch":
            from .batch_sampling import rollout_batches

            drawn = rollout_batches(cfg, lm, prompts, score, step, rank, world, total)
        else:
            drawn = rollout_slots(
                cfg, lm, prompts, score, step, range(rank, cfg.prompts_per_step, world), share
            )
        lm.model.train()
        if monitor is not None:
            monitor.observe(drawn)
        return drawn

    def evaluate(done: int) -> None:
        _maybe_eval(cfg, run, done, Path(cfg.out_dir))
        if monitor is not None:
            monitor.heldout(done)

    monitor = Monitor(cfg, run, score) if cfg.monitor_rewards else None
    after = monitor.after_step if monitor is not None else None
    mix = SupervisedMix(cfg, run).accumulate if cfg.ptx_coef > 0 else None
    path = run_loop(cfg, run, draw, reference_model(cfg, run, loaded), evaluate, after, mix)
    if monitor is not None:
        monitor.finish()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2 (``cli_main``)."""
    from .errors import cli_main

    return cli_main(lambda: f"GRPO finished: {train(parse_config(GRPOConfig, argv))}")


if __name__ == "__main__":
    raise SystemExit(main())
