"""Study planning by simulation: how many rankings give a 95% interval of a chosen width on the
win rate of one system over another, for a given true win rate (the effect).

The simulated study (labelled as such in every output) has tasks of ``group_size`` fresh
candidates, dealt alternately from systems A and B as ``study create --layout mixed`` deals them,
each ranked once. A candidate's quality is Thurstone-normal: A ~ N(μ, 1), B ~ N(0, 1) with
μ = √2 Φ⁻¹(effect), so a random A beats a random B with probability ``effect``; a ranking orders
its candidates by quality. The interval is the one the study will report:
:func:`annotation.stats.recipe_comparison` (win rate with a bootstrap over rankings). For each
number of rankings the median width over ``reps`` simulated studies is taken; the answer is the
fewest rankings whose median width is at most the target (doubling, then bisection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from annotation import stats
from annotation.errors import AnnotationError


@dataclass
class PlanConfig:
    """What the study must show and how it is built."""

    effect: float = field(default=0.6, metadata={"help": "True win rate of system A over B, in (0, 1)."})
    width: float = field(default=0.1, metadata={"help": "Wanted width of the 95% interval (high − low)."})
    group_size: int = field(default=4, metadata={"help": "Candidates per task (half from each system)."})
    reps: int = field(default=20, metadata={"help": "Simulated studies per number of rankings."})
    n_boot: int = field(default=300, metadata={"help": "Bootstrap resamples per interval."})
    seed: int = field(default=0, metadata={"help": "Seed of the simulation."})
    max_rankings: int = field(default=100_000, metadata={"help": "Give up above this many rankings."})

    def __post_init__(self) -> None:
        if not 0.0 < self.effect < 1.0:
            raise AnnotationError(f"--effect is a win rate strictly between 0 and 1, got {self.effect}")
        if not 0.0 < self.width < 1.0:
            raise AnnotationError(f"--width is an interval width in (0, 1), got {self.width}")
        if self.group_size < 2:
            raise AnnotationError(f"--group-size must be at least 2, got {self.group_size}")
        if self.reps < 1 or self.n_boot < 10:
            raise AnnotationError("--reps must be at least 1 and --n-boot at least 10")
        if self.max_rankings < 2:
            raise AnnotationError(f"--max-rankings must be at least 2, got {self.max_rankings}")


def simulated_rankings(n: int, effect: float, group_size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` simulated rankings (one task each) in the rankings-frame columns the statistics
    read; ``recipe`` is ``A`` or ``B``."""
    mu = np.sqrt(2.0) * sps.norm.ppf(effect)
    is_a = np.arange(group_size) % 2 == 0  # [G] dealt alternately, A first
    quality = rng.normal(size=(n, group_size)) + mu * is_a  # [N, G]
    rank = (-quality).argsort(1).argsort(1) + 1  # [N, G] 1 = best
    rid = np.repeat(np.arange(1, n + 1), group_size)
    return pd.DataFrame(
        {
            "ranking_id": rid,
            "task_id": rid,
            "annotator": "simulated",
            "candidate_id": np.arange(1, n * group_size + 1),
            "rank": rank.ravel(),
            "recipe": np.tile(np.where(is_a, "A", "B"), n),
            "is_control": False,
        }
    )


def interval_width(n: int, cfg: PlanConfig) -> tuple[float, float]:
    """Median 95% interval width of A's win rate over ``cfg.reps`` simulated studies of ``n``
    rankings, and the share of those intervals that contain the true win rate."""
    rng = np.random.default_rng([cfg.seed, n])
    widths, covered = [], []
    for r in range(cfg.reps):
        res = stats.recipe_comparison(
            simulated_rankings(n, cfg.effect, cfg.group_size, rng), n_boot=cfg.n_boot, seed=r
        ).iloc[0]
        widths.append(res["ci_high"] - res["ci_low"])
        covered.append(res["ci_low"] <= cfg.effect <= res["ci_high"])
    return float(np.median(widths)), float(np.mean(covered))


@dataclass
class PlanResult:
    """The answer and every point the search simulated (all simulated, none measured)."""

    rankings: int
    width: float
    coverage: float
    tried: pd.DataFrame


def plan_rankings(cfg: PlanConfig) -> PlanResult:
    """The fewest rankings whose median simulated 95% interval is at most ``cfg.width`` wide."""
    tried: dict[int, tuple[float, float]] = {}

    def width(n: int) -> float:
        if n not in tried:
            tried[n] = interval_width(n, cfg)
        return tried[n][0]

    hi = 8
    while width(hi) > cfg.width:
        if hi >= cfg.max_rankings:
            raise AnnotationError(
                f"even {cfg.max_rankings} rankings give a median interval {width(hi):.3f} wide; "
                "ask for a wider interval or raise --max-rankings"
            )
        hi = min(hi * 2, cfg.max_rankings)
    lo = hi // 2 if hi > 8 else 1
    while hi - lo > max(1, hi // 50):  # to 2%: the widths themselves are simulated
        mid = (lo + hi) // 2
        if width(mid) > cfg.width:
            lo = mid
        else:
            hi = mid
    table = pd.DataFrame(
        [(n, w, c) for n, (w, c) in sorted(tried.items())],
        columns=["rankings", "median_ci_width", "coverage"],
    )
    return PlanResult(hi, tried[hi][0], tried[hi][1], table)
