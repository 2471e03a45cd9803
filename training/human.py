"""GRPO from human rankings: a study's ranked tasks are the groups, the ranking is the reward.

``python -m training.human --config training/recipes/human.yaml [--flag value ...]``
(``accelerate launch -m training.human ...`` on several processes).

Groups come from ``annotation.groups.ranked_groups``: every regular task with enough rankings
from annotators who pass the control tasks (control tasks themselves are left out); a
candidate's reward is the mean fraction of the group it beat (ties count ½, so tied candidates
get equal rewards). Advantages are computed per group as in online GRPO; groups whose rewards do
not spread (everyone tied) are dropped. The behaviour log-probs are those stored with each
candidate, so the PPO ratio is exact only for candidates sampled by the model being trained: a
study whose candidates name another ``model_id`` is refused unless ``--allow_other_policy`` is
given (then the first step's clip fraction shows how far off-policy the data is; it is printed on
every run). Samples whose token ids do not fit this model are refused either way.

Errors of ``python -m training.human`` (bad settings, a missing database or study, a model that
cannot be loaded, a run that stops) are one line ``error: ...`` on stderr and exit status 2.

Each step draws ``prompts_per_step`` groups (seeded epochs over the kept groups, so a resumed
run sees the same batches) and takes ``ppo_epochs`` optimizer steps on them.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasongen.config import parse_config

from .grpo import PolicyOptimConfig, check_world, reference_model, run_loop
from .grpo_loss import group_advantages
from .grpo_update import needs_behaviour
from .rollouts import Group
from .run_setup import setup_run
from .sft import batch_indices


@dataclass
class HumanGRPOConfig(PolicyOptimConfig):
    """The update settings of GRPO plus where the ranked groups come from (no rollouts, no
    reward models: the rankings are the rewards)."""

    study: str = field(
        default="",
        metadata={"help": "Study whose rankings to train on: a name, or an id (name:X and id:N say which)."},
    )
    db_url: str = field(default="", metadata={"help": "SQLAlchemy URL ('' = data_dir's SQLite)."})
    data_dir: str = field(default="data", metadata={"help": "Annotation data directory."})
    min_rankings: int = field(default=1, metadata={"help": "Rankings a task needs to be used."})
    min_pass_rate: float = field(
        default=0.75, metadata={"help": "Control pass rate below which an annotator is excluded."}
    )
    allow_other_policy: bool = field(
        default=False,
        metadata={"help": "Train even if the candidates were sampled by another model than --model "
                  "(their stored log-probs are then off-policy; watch the printed clip fraction)."},
    )  # fmt: skip
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


def existing_database(db_url: str, data_dir: str) -> str:
    """The URL of the annotation database to read (``db_url``, else ``data_dir``'s SQLite file).

    A SQLite file that does not exist raises ``ValueError`` (opening it would create an empty
    one); nothing is created.
    """
    from sqlalchemy.engine import make_url

    from annotation.db import default_url

    url = db_url or default_url(data_dir)
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy.exc.ArgumentError
        raise ValueError("--db_url is not a database URL (e.g. sqlite:///data/reasongen.db)") from None
    db = parsed.database
    is_file = parsed.get_backend_name() == "sqlite" and db not in (None, "", ":memory:")
    if is_file and not db.startswith("file:"):
        path = Path(db).expanduser()
        if not path.is_file():
            where = f"--db_url {db_url}" if db_url else f"data dir {data_dir}"
            raise ValueError(f"no annotation database at {path} ({where}); create and fill one "
                             "with python -m annotation, or pass --db_url / --data_dir")  # fmt: skip
    return url


def human_groups(cfg: HumanGRPOConfig) -> list[Group]:
    """Every usable ranked task of ``cfg.study`` as a group (zero-spread ones flagged dropped)."""
    from sqlalchemy.engine import make_url

    from annotation.db import current_revision
    from annotation.groups import ranked_groups
    from annotation.store import Store

    url = existing_database(cfg.db_url, cfg.data_dir)
    with Store(url, cfg.data_dir, migrate=False) as store:
        if current_revision(store.engine) is None:
            shown = make_url(url).render_as_string(hide_password=True)
            raise ValueError(f"{shown} is not an annotation database (it has no tables)")
        study = store.find_study(cfg.study).id
        ranked = ranked_groups(store, study, min_rankings=cfg.min_rankings, min_pass_rate=cfg.min_pass_rate)
    return [to_group(g.task_id, g.samples, g.rewards, cfg.adv_eps) for g in ranked]


def _model_key(model_id: str) -> str:
    """A model id to compare by: a local folder's resolved path, else the id itself."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if model_id and path.exists() else model_id


def policy_model_id(cfg: HumanGRPOConfig, loaded: Any | None = None) -> str:
    """The model id of the policy ``train`` will train (``--model``, or the embedded model)."""
    if loaded is not None:
        return str(loaded.model_id)
    if cfg.model:
        return cfg.model
    from reasongen.loading import default_model_path

    path = default_model_path()
    return str(path) if path is not None else ""


def other_policies(groups: Sequence[Group], model_id: str) -> Counter[str]:
    """How many of the groups' candidates each model other than ``model_id`` sampled."""
    mine = _model_key(model_id)
    return Counter(s.model_id for g in groups for s in g.samples if _model_key(s.model_id) != mine)


def check_policy(cfg: HumanGRPOConfig, groups: Sequence[Group], model_id: str) -> str:
    """Refuse candidates sampled by another model than ``model_id`` unless
    ``cfg.allow_other_policy``; return a note on them ('' when every candidate is the model's)."""
    others = other_policies(groups, model_id)
    if not others:
        return ""
    total = sum(len(g.samples) for g in groups)
    names = ", ".join(f"{m} ({n})" for m, n in others.most_common(3))
    note = (f"{sum(others.values())} of the {total} candidates were sampled by another model than "
            f"the one being trained ({model_id}): {names}")  # fmt: skip
    if not cfg.allow_other_policy:
        raise ValueError(
            f"study {cfg.study!r}: {note}. Their stored log-probs are PPO's behaviour policy, so the "
            f"update would be off-policy (a high clip fraction). Train that model (--model "
            f"{others.most_common(1)[0][0]}), or pass --allow_other_policy to train anyway"
        )
    return note


def train(cfg: HumanGRPOConfig, loaded: Any | None = None, groups: Sequence[Group] | None = None) -> Path:
    """Run human-ranking GRPO; return the folder of the last checkpoint.

    Raises ``ValueError`` when the study has no usable group, when its candidates were sampled
    by another model and ``cfg.allow_other_policy`` is off, or when conditional log-probs are asked
    of candidates drawn with guidance (before any model is loaded).
    """
    pool = list(groups) if groups is not None else human_groups(cfg)
    kept = [g for g in pool if not g.dropped]
    if not kept:
        raise ValueError(
            f"study {cfg.study!r} has no ranked task whose candidates differ in reward "
            f"({len(pool)} tasks found with >= {cfg.min_rankings} rankings)"
        )
    if needs_behaviour(cfg, kept):
        raise ValueError(
            f"study {cfg.study!r}: --logprob_distribution conditional needs the sampler's conditional "
            "log-probs, and the candidates were drawn with guidance, so only their guided ones are "
            "stored; train the guided distribution (--logprob_distribution guided)"
        )
    note = check_policy(cfg, kept, policy_model_id(cfg, loaded))
    run = setup_run(cfg, loaded)
    check_world(cfg, run)
    rank, world = run.accelerator.process_index, run.accelerator.num_processes
    main_process = run.accelerator.is_main_process
    if note and main_process:
        print(f"warning: {note}; training on them anyway (--allow_other_policy)", file=sys.stderr)

    def draw(step: int) -> list[Group]:
        idx = batch_indices(len(kept), cfg.prompts_per_step, step, cfg.seed)
        return [kept[i] for i in idx[rank::world]]

    def report(done: int, stats: dict[str, float]) -> None:
        if done == run.start_step + 1 and main_process:
            print(f"step {done}: clip fraction before the update (how far the stored log-probs are "
                  f"from the policy): text {stats['text/clip_frac_first']:.3f}, image "
                  f"{stats['image/clip_frac_first']:.3f}")  # fmt: skip

    return run_loop(cfg, run, draw, reference_model(cfg, run, loaded), after_step=report)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is one line ``error: ...`` on stderr and exit status 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from .errors import cli_main

    return cli_main(lambda: f"human-ranking GRPO finished: {train(parse_config(HumanGRPOConfig, argv))}",
                    (SQLAlchemyError,))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
