"""GRPO from human rankings: a study's ranked tasks are the groups, the ranking is the reward.

``python -m training.human --config training/recipes/human.yaml [--flag value ...]``
(``accelerate launch -m training.human ...`` on several processes).

Groups come from ``annotation.groups.ranked_groups``: every regular task with enough rankings
from annotators who pass the control tasks (control tasks themselves are left out); a
candidate's reward is the mean fraction of the group it beat (ties count ½, so tied candidates
get equal rewards). Advantages are computed per group as in online GRPO; groups whose rewards do
not spread (everyone tied) are dropped. The behaviour log-probs are those stored with each
candidate, so the PPO ratio is exact for candidates sampled by the model being trained; samples
of other models are refused when their token ids do not fit this model.

Each step draws ``prompts_per_step`` groups (seeded epochs over the kept groups, so a resumed
run sees the same batches) and takes ``ppo_epochs`` optimizer steps on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasongen.config import parse_config

from .grpo import Group, PolicyOptimConfig, check_world, reference_model, run_loop
from .grpo_loss import group_advantages
from .run_setup import setup_run
from .sft import batch_indices


@dataclass
class HumanGRPOConfig(PolicyOptimConfig):
    """The update settings of GRPO plus where the ranked groups come from (no rollouts, no
    reward models: the rankings are the rewards)."""

    study: str = field(default="", metadata={"help": "Study name or id whose rankings to train on."})
    db_url: str = field(default="", metadata={"help": "SQLAlchemy URL ('' = data_dir's SQLite)."})
    data_dir: str = field(default="data", metadata={"help": "Annotation data directory."})
    min_rankings: int = field(default=1, metadata={"help": "Rankings a task needs to be used."})
    min_pass_rate: float = field(
        default=0.75, metadata={"help": "Control pass rate below which an annotator is excluded."}
    )
    out_dir: str = field(default="runs/human_grpo", metadata={"help": "Run folder."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.study:
            raise ValueError("--study is required: the name or id of an annotation study")
        if self.min_rankings < 1 or not 0.0 <= self.min_pass_rate <= 1.0:
            raise ValueError("min_rankings must be >= 1 and min_pass_rate in [0, 1]")


def to_group(task_id: int, samples: list[Any], rewards: list[float], eps: float) -> Group:
    """A ranked task as a GRPO group: advantages from its human rewards (NaN-aware)."""
    import torch

    r = torch.tensor([rewards], dtype=torch.float64)  # [1, n]
    adv = group_advantages(r, eps=eps)
    keep = bool(adv.keep_group[0])
    return Group(
        samples=list(samples), rewards=[float(x) for x in rewards],
        families={"human": sum(rewards) / len(rewards)}, advantages=adv.advantages[0].tolist(),
        valid=adv.valid[0].tolist(), slot=int(task_id), attempts=1, dropped=not keep,
    )  # fmt: skip


def human_groups(cfg: HumanGRPOConfig) -> list[Group]:
    """Every usable ranked task of ``cfg.study`` as a group (zero-spread ones flagged dropped)."""
    from annotation.groups import ranked_groups
    from annotation.store import Store

    study: int | str = int(cfg.study) if cfg.study.isdigit() else cfg.study
    with Store(cfg.db_url or None, cfg.data_dir, migrate=False) as store:
        ranked = ranked_groups(store, study, min_rankings=cfg.min_rankings, min_pass_rate=cfg.min_pass_rate)
    return [to_group(g.task_id, g.samples, g.rewards, cfg.adv_eps) for g in ranked]


def train(cfg: HumanGRPOConfig, loaded: Any | None = None, groups: Sequence[Group] | None = None) -> Path:
    """Run human-ranking GRPO; return the folder of the last checkpoint."""
    pool = list(groups) if groups is not None else human_groups(cfg)
    kept = [g for g in pool if not g.dropped]
    if not kept:
        raise ValueError(
            f"study {cfg.study!r} has no ranked task whose candidates differ in reward "
            f"({len(pool)} tasks found with >= {cfg.min_rankings} rankings)"
        )
    run = setup_run(cfg, loaded)
    check_world(cfg, run)
    rank, world = run.accelerator.process_index, run.accelerator.num_processes

    def draw(step: int) -> list[Group]:
        idx = batch_indices(len(kept), cfg.prompts_per_step, step, cfg.seed)
        return [kept[i] for i in idx[rank::world]]

    return run_loop(cfg, run, draw, reference_model(cfg, run, loaded))


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(HumanGRPOConfig, argv)
    print(f"human-ranking GRPO finished: {train(cfg)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
