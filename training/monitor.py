"""The over-optimisation monitor of online GRPO: rewards that score but are not optimised.

GRPO climbs its (proxy) reward; whether the images get better by a measure it does not optimise
(a gold reward, e.g. the shapes world's exact detector while training on a learned reward model)
is what tells improvement from reward hacking. With ``monitor_rewards`` set, the trainer

- scores every step's rollouts with each monitor reward (each process its own groups, global
  means logged as ``monitor/<name>`` beside ``monitor/proxy``, the optimised reward on the same
  rollouts);
- every ``monitor_every`` steps, at the start of a fresh run and at the last step, samples a
  fixed held-out prompt set on the main process (the rollout settings, one sample per prompt,
  prompt ``k`` seeded ``k`` every time, so evaluations differ only by the policy) and logs
  ``monitor_heldout/<name>`` and ``monitor_heldout/proxy`` (plus each optimised reward's own
  mean, ``monitor_heldout/proxy/<family>``) with standard errors;
- logs the seconds it spends (``monitor/seconds``, ``monitor_heldout/seconds``, and the share
  of the run's wall time, ``monitor/share``);
- writes the same records to ``monitor.jsonl`` in the run folder and draws the proxy-versus-gold
  plot (``monitor.png``: proxy and gold against steps and, when the run has a KL term, against
  √KL to the initial model, the picture of reward-hacking studies) after every held-out
  evaluation and at the end; ``training.grpo_card`` draws it again and summarises it.

Rewards that need metadata (``shapes``) score ``None`` for prompts without it; those are counted
(``monitor/<name>_missing``), never a crash. The held-out set for ``prompts: shapes`` is the
shapes benchmark's validation stream (prompt seed 1, as training/README.md chooses recipes on)
with the benchmark's own prompt texts (seed 0, the first ``holdout_benchmark``) and repeats
removed; for other prompt files it is ``monitor_prompts`` (a prompt file).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

VALIDATION_SEED = 1
"""Prompt seed of the shapes validation set (the benchmark is prompt seed 0)."""
RECORDS = "monitor.jsonl"
PLOT = "monitor.png"
ScoreFn = Callable[[list[Any]], tuple[list[float | None], dict[str, Any]]]


@dataclass
class MonitorFields:
    """Config fields of the monitor; a mixin of ``GRPOConfig`` (checked in ``__post_init__``)."""

    monitor_rewards: list[str] = field(
        default_factory=list,
        metadata={"help": "Registry rewards that score the rollouts (and the held-out set) without "
                  "being optimised, e.g. 'shapes' while training on 'learned'; must not be in "
                  "rewards. Logged as monitor/<name> and monitor_heldout/<name>."},
    )  # fmt: skip
    monitor_options: dict[str, dict] = field(
        default_factory=dict, metadata={"help": "Options of the monitor rewards: name: {opt: v}."}
    )
    monitor_every: int = field(
        default=0,
        metadata={"help": "Score the held-out prompt set every K steps, at the start and at the "
                  "last step (0 = rollouts only)."},
    )  # fmt: skip
    monitor_n: int = field(default=60, metadata={"help": "Held-out prompts per monitor evaluation."})
    monitor_prompts: str = field(
        default="",
        metadata={"help": "Held-out prompts: '' (with prompts: shapes, the validation set: prompt "
                  "seed 1 without the benchmark's texts), 'validation' (that set whatever the "
                  "training prompts), or a JSONL/TXT prompt file (its first monitor_n records)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        check_monitor(self)


def check_monitor(cfg: Any) -> None:
    """Raise ``ValueError`` when the monitor fields of ``cfg`` cannot work (see MonitorFields)."""
    from reasongen.rewards import list_rewards

    names = list(cfg.monitor_rewards)
    unknown = sorted(set(names) - set(list_rewards()))
    if unknown:
        raise ValueError(f"monitor_rewards: unknown reward {', '.join(unknown)}; choose from "
                         f"{', '.join(list_rewards())}")  # fmt: skip
    if len(set(names)) != len(names):
        raise ValueError(f"monitor_rewards names a reward twice: {names}")
    optimised = sorted(set(names) & set(getattr(cfg, "rewards", [])))
    if optimised:
        raise ValueError(f"monitor_rewards {', '.join(optimised)} also in rewards: a monitor must be "
                         "a reward the run does not optimise (remove it from one of the two)")  # fmt: skip
    extra = sorted(set(cfg.monitor_options) - set(names))
    if extra:
        raise ValueError(f"monitor_options names rewards not in monitor_rewards: {', '.join(extra)}")
    if cfg.monitor_every < 0 or cfg.monitor_n < 1:
        raise ValueError(f"monitor_every must be >= 0 and monitor_n >= 1; got {cfg.monitor_every}, "
                         f"{cfg.monitor_n}")  # fmt: skip
    if cfg.monitor_every and not names:
        raise ValueError("monitor_every scores a held-out set with monitor_rewards: name them "
                         "(--monitor_rewards shapes)")  # fmt: skip
    if cfg.monitor_every and not cfg.monitor_prompts and getattr(cfg, "prompts", "shapes") != "shapes":
        raise ValueError("monitor_every with a prompt file needs held-out prompts: --monitor_prompts "
                         "FILE (prompts not trained on), or 'validation' for the shapes world's")  # fmt: skip


# --------------------------------------------------------------------------- held-out prompts


def validation_prompts(n: int, cell: int | None, holdout: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``n`` distinct prompts of the shapes validation stream (benchmark sampler,
    prompt seed 1) whose text is not one of the benchmark's first ``holdout`` prompts (seed 0)."""
    from reasongen.eval.shapes_bench import benchmark_prompts
    from reasongen.shapes.pools import benchmark_texts

    bench = benchmark_texts(holdout, cell)
    draw = 4 * n
    for _ in range(6):
        seen: set[str] = set()
        out = []
        for p in benchmark_prompts(draw, seed=VALIDATION_SEED, cell=cell):
            if p.prompt not in bench and p.prompt not in seen:
                seen.add(p.prompt)
                out.append((p.prompt, p.metadata))
        if len(out) >= n:
            return out[:n]
        draw *= 4
    raise ValueError(f"the shapes validation stream has only {len(out)} prompts outside the "
                     f"benchmark's; lower monitor_n (got {n})")  # fmt: skip


def heldout_prompts(cfg: Any) -> tuple[list[tuple[str, dict[str, Any] | None]], str]:
    """The monitor's held-out ``(prompt, metadata)`` list and a line saying where it came from."""
    if cfg.monitor_prompts in ("", "validation"):
        cell = cfg.shapes_cell or None
        source = (f"shapes validation set (prompt seed {VALIDATION_SEED}, cell {cell}) without the "
                  f"benchmark's first {cfg.holdout_benchmark} prompt texts")  # fmt: skip
        return validation_prompts(cfg.monitor_n, cell, cfg.holdout_benchmark), source
    from reasongen.prompt_files import read_prompt_file

    path = Path(cfg.monitor_prompts)
    if not path.is_file():
        raise ValueError(f"monitor_prompts: no file {path} (a JSONL/TXT prompt file, or 'validation')")
    rows = read_prompt_file(path)[: cfg.monitor_n]
    if not rows:
        raise ValueError(f"monitor_prompts: {path} holds no prompts")
    return [(r["prompt"], r.get("metadata")) for r in rows], f"the first {len(rows)} prompts of {path}"


# --------------------------------------------------------------------------- scoring


def _stats(values: Sequence[float | None]) -> tuple[float, float, int, int]:
    """(mean, standard error, count, missing) of the finite values; NaN mean when none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n, missing = len(vals), len(values) - len(vals)
    if not n:
        return math.nan, math.nan, 0, missing
    mean = sum(vals) / n
    var = sum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n), n, missing


def _clean(x: Any) -> Any:
    """JSON-safe value: NaN and ±inf become None."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


class Monitor:
    """Scores rollouts and the held-out set with the monitor rewards; logs, records and plots.

    ``score`` is the run's optimised reward (``fn(samples) -> (scores, family means)``, as
    ``training.grpo.build_reward`` gives). Call :meth:`observe` with each step's drawn groups (on
    every process), :meth:`after_step` from the loop's ``after_step`` hook (every process: it
    reduces), :meth:`heldout` from its ``evaluate`` hook and :meth:`finish` at the end.
    """

    def __init__(self, cfg: Any, run: Any, score: ScoreFn) -> None:
        from reasongen.rewards import get_reward

        self.cfg, self.run, self.score = cfg, run, score
        self.rewards = {n: get_reward(n, **cfg.monitor_options.get(n, {})) for n in cfg.monitor_rewards}
        self.dir = Path(cfg.out_dir)
        self.main = run.accelerator.is_main_process
        self.pending: list[float] = []
        self.spent = 0.0  # seconds in the monitor since the run (or resume) began
        self.started = time.perf_counter()
        self.prompts: list[tuple[str, dict[str, Any] | None]] = []
        source = ""
        if cfg.monitor_every:
            self.prompts, source = heldout_prompts(cfg)
        if self.main:
            self._reset_records(run.start_step)
            if run.start_step == 0:
                setup = {"kind": "setup", "rewards": list(cfg.rewards), "monitor_rewards": list(self.rewards)}
                if cfg.monitor_every:
                    cats = Counter(str((m or {}).get("tag", "untagged")) for _, m in self.prompts)
                    setup.update(source=source, prompts=len(self.prompts), categories=dict(cats))
                self._write(setup)

    # ---- rollouts (every process)

    def observe(self, groups: Sequence[Any]) -> None:
        """Score this process's drawn groups; the sums wait for :meth:`after_step`."""
        t0 = time.perf_counter()
        samples = [s for g in groups for s in g.samples]
        proxy = [r for g in groups for r in g.rewards]
        vec = []
        for reward in self.rewards.values():
            scores = list(reward(samples).scores)
            vals = [float(v) for v in scores if v is not None and math.isfinite(v)]
            vec += [sum(vals), float(len(vals)), float(len(scores) - len(vals))]
        vals = [float(v) for v in proxy if v is not None and math.isfinite(v)]
        vec += [sum(vals), float(len(vals))]
        seconds = time.perf_counter() - t0
        self.pending = [*vec, seconds]
        self.spent += seconds

    def after_step(self, done: int, stats: dict[str, float]) -> None:
        """Global rollout means of step ``done``: TensorBoard scalars and a ``monitor.jsonl`` line."""
        acc = self.run.accelerator
        k = 3 * len(self.rewards)
        vec = self.pending or [0.0] * (k + 3)
        t = acc.reduce(torch.tensor(vec, dtype=torch.float64, device=acc.device), reduction="sum").tolist()
        out: dict[str, float] = {}
        for i, name in enumerate(self.rewards):
            total, n, missing = t[3 * i : 3 * i + 3]
            out[f"monitor/{name}"] = total / n if n else math.nan
            out[f"monitor/{name}_missing"] = missing
        out["monitor/proxy"] = t[k] / t[k + 1] if t[k + 1] else math.nan
        out["monitor/seconds"] = t[k + 2] / acc.num_processes
        elapsed = time.perf_counter() - self.started
        out["monitor/share"] = self.spent / elapsed if elapsed > 0 else 0.0
        measured = getattr(self.cfg, "kl_coef", 0.0) > 0  # KL to the initial model is computed
        for m in ("text", "image"):
            out[f"kl/{m}"] = stats.get(f"{m}/kl", math.nan) if measured else math.nan
        self.pending = []
        self.run.logger.scalars({k_: v for k_, v in out.items() if not k_.startswith("kl/")}, done)
        if self.main:
            self._write({"kind": "rollouts", "step": done, **out})

    # ---- held-out set (main process)

    def due(self, done: int) -> bool:
        every = self.cfg.monitor_every
        return bool(every) and (done % every == 0 or done == self.cfg.max_steps)

    def heldout(self, done: int) -> dict[str, float] | None:
        """Score the held-out set after ``done`` steps when due (main process); return the values."""
        if not self.due(done) or not self.main:
            return None
        t0 = time.perf_counter()
        samples = self.sample_heldout(self.run.loaded)
        out = self.score_heldout(samples)
        out["monitor_heldout/seconds"] = time.perf_counter() - t0
        self.spent += out["monitor_heldout/seconds"]
        self.run.logger.scalars(out, done)
        self._write({"kind": "heldout", "step": done, **out})
        self.plot()
        return out

    def sample_heldout(self, loaded: Any) -> list[Any]:
        """One sample per held-out prompt with the rollout settings, prompt ``k`` seeded ``k``,
        decoded in batches as large as a process's rollout batch."""
        from reasongen.generation import generate

        world = self.run.accelerator.num_processes
        batch = max(1, self.cfg.prompts_per_step // world) * self.cfg.group_size
        was_training = loaded.model.training
        loaded.model.eval()
        try:
            with torch.no_grad():
                return generate(loaded, [p for p, _ in self.prompts], self.cfg.recipe, n=1,
                                seed=list(range(len(self.prompts))), settings=self.cfg.sampling(loaded),
                                metadata=[m for _, m in self.prompts], max_batch=batch)  # fmt: skip
        finally:
            loaded.model.train(was_training)

    def score_heldout(self, samples: list[Any]) -> dict[str, float]:
        """Monitor and optimised rewards of held-out samples: means, standard errors, missing."""
        out: dict[str, float] = {}
        for name, reward in self.rewards.items():
            mean, se, _, missing = _stats(reward(samples).scores)
            out[f"monitor_heldout/{name}"], out[f"monitor_heldout/{name}_se"] = mean, se
            out[f"monitor_heldout/{name}_missing"] = float(missing)
        scores, families = self.score(samples)
        mean, se, _, missing = _stats(scores)
        out["monitor_heldout/proxy"], out["monitor_heldout/proxy_se"] = mean, se
        out["monitor_heldout/proxy_missing"] = float(missing)
        for fam, value in families.items():
            out[f"monitor_heldout/proxy/{fam}"] = float(value)
        return out

    def finish(self) -> None:
        """Draw the plot at the end of the run (main process)."""
        if self.main:
            self.plot()

    def plot(self) -> Path | None:
        return plot_proxy_gold(read_records(self.dir), self.dir / PLOT)

    # ---- records

    def _reset_records(self, start_step: int) -> None:
        """A fresh run starts ``monitor.jsonl`` anew; a resumed one drops what a killed run wrote
        after its checkpoint (steps > ``start_step``)."""
        path = self.dir / RECORDS
        if not path.is_file():
            return
        keep = [r for r in read_records(self.dir) if start_step and r.get("step", 0) <= start_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def _write(self, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / RECORDS).open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_records(run_dir: str | Path, upto: int | None = None) -> list[dict[str, Any]]:
    """The records of a run's ``monitor.jsonl`` (empty if none), steps ``<= upto`` if given."""
    path = Path(run_dir) / RECORDS
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if upto is None or r.get("step", 0) <= upto]


# --------------------------------------------------------------------------- summary and plot


def _series(records: Sequence[dict[str, Any]], kind: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of ``key`` in records of ``kind``, missing and None values left out."""
    return [(r["step"], float(r[key])) for r in records
            if r.get("kind") == kind and r.get(key) is not None]  # fmt: skip


def gold_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """The monitor rewards named in the records."""
    names: list[str] = []
    for r in records:
        for k in r:
            if k.startswith(("monitor/", "monitor_heldout/")):
                name = k.split("/", 1)[1]
                if "/" not in name and name != "proxy" and not name.endswith(("_missing", "_se"))\
                        and name not in ("seconds", "share") and name not in names:  # fmt: skip
                    names.append(name)
    return names


def summarise(records: Sequence[dict[str, Any]], window: int = 5) -> dict[str, Any]:
    """Numbers a card shows: per gold reward, held-out proxy and gold at the first and last
    evaluation and at the gold's best one; rollout means over the first and last ``window``
    steps; the monitor's seconds and share of the run's wall time."""
    out: dict[str, Any] = {"gold": {}, "seconds": 0.0, "share": math.nan}
    roll = [r for r in records if r.get("kind") == "rollouts"]
    if roll:
        out["seconds"] = sum(r.get("monitor/seconds") or 0.0 for r in roll)
        out["share"] = roll[-1].get("monitor/share") or math.nan
    held = [r for r in records if r.get("kind") == "heldout"]
    out["seconds"] += sum(r.get("monitor_heldout/seconds") or 0.0 for r in held)

    def mean(pairs: list[tuple[int, float]]) -> float:
        return sum(v for _, v in pairs) / len(pairs) if pairs else math.nan

    for name in gold_names(records):
        g: dict[str, Any] = {}
        gold = _series(held, "heldout", f"monitor_heldout/{name}")
        proxy = dict(_series(held, "heldout", "monitor_heldout/proxy"))
        if gold:
            best = max(gold, key=lambda p: p[1])
            points = (("first", gold[0]), ("best", best), ("last", gold[-1]))
            g["heldout"] = {label: {"step": s, "gold": v, "proxy": proxy.get(s, math.nan)}
                            for label, (s, v) in points}  # fmt: skip
            se = {r["step"]: r.get(f"monitor_heldout/{name}_se") or 0.0 for r in held}
            drop = best[1] - gold[-1][1]
            g["fell"] = drop > 2 * math.hypot(se.get(best[0], 0.0), se.get(gold[-1][0], 0.0)) and drop > 0
        rg, rp = _series(roll, "rollouts", f"monitor/{name}"), _series(roll, "rollouts", "monitor/proxy")
        if rg:
            w = max(1, min(window, len(rg) // 2 or 1))
            g["rollouts"] = {"window": w, "gold": (mean(rg[:w]), mean(rg[-w:])),
                             "proxy": (mean(rp[:w]), mean(rp[-w:]))}  # fmt: skip
        out["gold"][name] = g
    return out


def _smooth(values: list[float], width: int) -> list[float]:
    """Trailing running mean over ``width`` points."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - width] if i >= width else 0.0)
        out.append(acc / min(i + 1, width))
    return out


def _kl_by_step(records: Sequence[dict[str, Any]]) -> dict[int, float]:
    """√KL per image token to the initial model by step (0 at step 0), where the run measured it."""
    kl = {0: 0.0}
    for r in records:
        if r.get("kind") == "rollouts" and r.get("kl/image") is not None:
            kl[r["step"]] = math.sqrt(max(float(r["kl/image"]), 0.0))
    return kl if len(kl) > 1 else {}


def plot_proxy_gold(records: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Draw proxy (optimised) and gold (monitor) rewards into ``path`` (PNG); None if there is
    nothing to draw. One row per gold reward: against steps (rollouts smoothed, held-out
    evaluations as points) and, when the run has a KL term, held-out values against √KL."""
    names = gold_names(records)
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kl = _kl_by_step(records)
    cols = 2 if kl else 1
    fig, axes = plt.subplots(len(names), cols, figsize=(6.0 * cols, 3.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        ax = axes[row][0]
        gax = ax.twinx()
        rp = _series(records, "rollouts", "monitor/proxy")
        rg = _series(records, "rollouts", f"monitor/{name}")
        w = max(1, len(rp) // 20)
        if rp:
            ax.plot([s for s, _ in rp], _smooth([v for _, v in rp], w), color="tab:blue", alpha=0.5,
                    label=f"proxy, rollouts (mean of {w})")  # fmt: skip
        if rg:
            gax.plot([s for s, _ in rg], _smooth([v for _, v in rg], w), color="tab:orange", alpha=0.5,
                     label=f"gold, rollouts (mean of {w})")  # fmt: skip
        hp = _series(records, "heldout", "monitor_heldout/proxy")
        hg = _series(records, "heldout", f"monitor_heldout/{name}")
        if hp:
            ax.plot(*zip(*hp), "o-", color="tab:blue", label="proxy, held-out")
        if hg:
            gax.plot(*zip(*hg), "s-", color="tab:orange", label="gold, held-out")
        ax.set_xlabel("step")
        ax.set_ylabel("proxy (optimised reward)", color="tab:blue")
        gax.set_ylabel(f"gold: {name}", color="tab:orange")
        lines = ax.get_legend_handles_labels()
        glines = gax.get_legend_handles_labels()
        ax.legend(lines[0] + glines[0], lines[1] + glines[1], fontsize=7, loc="lower right")
        ax.set_title(f"proxy vs gold ({name})")
        if kl:
            ax = axes[row][1]
            gax = ax.twinx()
            hp_kl = [(kl[s], v) for s, v in hp if s in kl]
            hg_kl = [(kl[s], v) for s, v in hg if s in kl]
            if hp_kl:
                ax.plot(*zip(*hp_kl), "o-", color="tab:blue", label="proxy, held-out")
            if hg_kl:
                gax.plot(*zip(*hg_kl), "s-", color="tab:orange", label="gold, held-out")
            ax.set_xlabel("√KL to the initial model (k3, per image token, rollouts)")
            ax.set_ylabel("proxy", color="tab:blue")
            gax.set_ylabel(f"gold: {name}", color="tab:orange")
            ax.set_title("against distance from the start")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
