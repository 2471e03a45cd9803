"""Held-out pairwise accuracy of a reward model against rankings, and the human–human ceiling,
each with a bootstrap 95% interval clustered by task (pairs from one task are not independent).

Pairs are taken within each ranking, ties apart (a tied pair states no preference to agree with).
A model is right on a pair when it scores the preferred candidate higher (equal scores: ½). The
ceiling is each annotator against each other annotator of the same task, on the pairs both
ordered: what a reward that behaved like one more annotator would reach.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import combinations

import numpy as np

from .data import Ranking


def _strict_pairs(r: Ranking) -> Iterable[tuple[int, int]]:
    """``(better, worse)`` for every pair the ranking orders."""
    for (a, ra), (b, rb) in combinations(zip(r.candidates, r.ranks, strict=True), 2):
        if ra < rb:
            yield a, b
        elif rb < ra:
            yield b, a


def clustered_ci(
    hits: Mapping[int, tuple[float, int]], n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict[str, float]:
    """Rate Σ hits / Σ pairs over clusters (``task → (hits, pairs)``) with a percentile bootstrap
    interval that resamples whole clusters. NaN everywhere when there are no pairs."""
    sums = np.array([h for h, _ in hits.values()], dtype=float)
    cnts = np.array([n for _, n in hits.values()], dtype=float)
    total = cnts.sum() if len(cnts) else 0.0
    if total == 0:
        return {
            "value": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "pairs": 0,
            "tasks": 0,
        }
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), (n_boot, len(sums)))  # [n_boot, tasks]
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = sums[idx].sum(1) / cnts[idx].sum(1)  # [n_boot]
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2]) if len(boot) else (np.nan, np.nan)
    return {
        "value": float(sums.sum() / total),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "pairs": int(total),
        "tasks": int((cnts > 0).sum()),
    }


def pairwise_accuracy(
    rankings: Iterable[Ranking], scores: Mapping[int, float], n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """How often ``scores`` (candidate id → score) order a ranked pair as the annotator did."""
    hits: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for r in rankings:
        for better, worse in _strict_pairs(r):
            d = scores[better] - scores[worse]
            hits[r.task_id][0] += 1.0 if d > 0 else 0.5 if d == 0 else 0.0
            hits[r.task_id][1] += 1
    return clustered_ci({t: (h, n) for t, (h, n) in hits.items()}, n_boot, seed)


def human_ceiling(rankings: Iterable[Ranking], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Agreement of each annotator with each other annotator of the same task, on pairs both
    ordered (NaN when no task has two annotators)."""
    by_task: dict[int, dict[str, set[tuple[int, int]]]] = defaultdict(dict)
    for r in rankings:
        by_task[r.task_id].setdefault(r.annotator, set()).update(_strict_pairs(r))
    hits: dict[int, tuple[float, int]] = {}
    for task, who in by_task.items():
        agree, n = 0.0, 0
        for a, b in combinations(sorted(who), 2):
            pa, pb = who[a], who[b]
            same = len(pa & pb)
            flipped = sum((w, v) in pb for v, w in pa)
            agree, n = agree + 2 * same, n + 2 * (same + flipped)  # a against b and b against a
        if n:
            hits[task] = (agree, n)
    return clustered_ci(hits, n_boot, seed)
