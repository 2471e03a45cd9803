"""Reward–human agreement: how well each automatic reward predicts people's rankings, beside how
well people predict each other (the human–human ceiling). Pure, seeded functions of the rankings
frame (:func:`annotation.tables.rankings_frame`) and a long table of reward scores
(:func:`annotation.tables.reward_scores_frame`: ``candidate_id``, ``reward``, ``score``).

Only regular tasks with answered rankings count (control tasks mix prompts, and a reward scores a
candidate against its own prompt). Two measures, each with a 95% bootstrap interval that resamples
whole tasks (pairs and rankings within one task are not independent):

- **pairwise accuracy**: over every pair of candidates an annotator ranked strictly (human ties
  are left apart and counted in ``human_tie_pairs``), the share the predictor orders the same
  way; a predictor's own tie counts ½ (``predictor_ties`` gives how often it tied);
- **Kendall τ-b** (``scipy.stats.kendalltau``) between each ranking and the predictor's scores on
  that task's candidates, averaged within a task, then over tasks (a ranking or predictor that
  ties everything has no τ and is left out).

The human–human ceiling uses the same measures with each annotator as the one predicted and each
*other* annotator of the same task, one at a time, as the predictor (averaged over the others):
the agreement to expect from a single person, the bar a reward is held to.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

CEILING = "human–human ceiling"
"""The ``predictor`` name of the ceiling row."""
COLUMNS = ["predictor", "kind", "annotators", "tasks", "pairs", "accuracy", "acc_low", "acc_high",
           "predictor_ties", "human_tie_pairs", "tau_b", "tau_low", "tau_high",
           "candidates_scored"]  # fmt: skip
"""The columns of :func:`reward_agreement`, in order."""


def regular_rankings(rankings: pd.DataFrame) -> pd.DataFrame:
    """The ranked rows of regular tasks (control tasks left out): ``ranking_id``, ``task_id``,
    ``annotator``, ``candidate_id`` (int) and ``rank`` (float), one row per ranked candidate."""
    df = rankings[rankings["rank"].notna()]
    if "is_control" in df.columns:
        df = df[~df["is_control"].astype(bool)]
    out = df[["ranking_id", "task_id", "annotator", "candidate_id", "rank"]].copy()
    out["candidate_id"] = out["candidate_id"].astype(int)
    out["rank"] = out["rank"].astype(float)
    return out


def _human_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Every pair (a < b) within each ranking with ``h`` = +1 (a better), -1 (b better), 0 (tie)."""
    m = df.merge(df, on=["ranking_id", "task_id", "annotator"], suffixes=("_a", "_b"))
    m = m[m["candidate_id_a"] < m["candidate_id_b"]]
    h = np.sign(m["rank_b"].to_numpy() - m["rank_a"].to_numpy())  # lower rank = better
    return pd.DataFrame(
        {
            "ranking_id": m["ranking_id"].to_numpy(),
            "task_id": m["task_id"].to_numpy(),
            "annotator": m["annotator"].to_numpy(),
            "a": m["candidate_id_a"].to_numpy(),
            "b": m["candidate_id_b"].to_numpy(),
            "h": h,
        }
    )


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall τ-b, NaN when either side is constant (no order to compare)."""
    if len(x) < 2 or len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(x, y).statistic)


def _bootstrap(
    per_task: pd.DataFrame, n_boot: int, seed: int, ci: float
) -> tuple[float, float, float, float]:
    """Intervals of accuracy (Σ correct / Σ pairs) and of mean τ over tasks, resampling tasks.
    ``per_task`` has ``correct``, ``pairs``, ``tau`` (NaN allowed) per task."""
    if per_task.empty or n_boot <= 0:
        return (float("nan"),) * 4
    rng = np.random.default_rng(seed)
    correct = per_task["correct"].to_numpy(float)
    pairs = per_task["pairs"].to_numpy(float)
    tau = per_task["tau"].to_numpy(float)
    has_tau = ~np.isnan(tau)
    idx = rng.integers(0, len(per_task), (n_boot, len(per_task)))  # [B, T]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct[idx].sum(1) / pairs[idx].sum(1)  # [B]
        tau_b = np.where(has_tau[idx], tau[idx], 0.0).sum(1) / has_tau[idx].sum(1)  # [B]
    lo, hi = (1 - ci) / 2, (1 + ci) / 2

    def q(x: np.ndarray) -> tuple[float, float]:
        x = x[~np.isnan(x)]
        return (float(np.quantile(x, lo)), float(np.quantile(x, hi))) if len(x) else (np.nan, np.nan)

    return (*q(acc), *q(tau_b))


def _row(
    name: str, kind: str, per_task: pd.DataFrame, extra: dict, n_boot: int, seed: int, ci: float
) -> dict:
    pairs = float(per_task["pairs"].sum()) if len(per_task) else 0.0
    taus = per_task["tau"].dropna() if len(per_task) else pd.Series(dtype=float)
    acc_lo, acc_hi, tau_lo, tau_hi = _bootstrap(per_task[per_task["pairs"] > 0], n_boot, seed, ci)
    return {
        "predictor": name,
        "kind": kind,
        "tasks": int((per_task["pairs"] > 0).sum()) if len(per_task) else 0,
        "pairs": int(pairs),
        "accuracy": float(per_task["correct"].sum()) / pairs if pairs else float("nan"),
        "acc_low": acc_lo,
        "acc_high": acc_hi,
        "tau_b": float(taus.mean()) if len(taus) else float("nan"),
        "tau_low": tau_lo,
        "tau_high": tau_hi,
        **extra,
    }


def _finite_scores(scores: pd.Series) -> pd.Series:
    """``scores`` as numbers, without the candidates whose score is missing or not finite."""
    scores = pd.to_numeric(scores, errors="coerce").dropna()
    return scores[np.isfinite(scores.to_numpy(float))]


def _credit(strict: pd.DataFrame, scores: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per strict human pair (``a``, ``b``, ``h``): the predictor's order ``sign`` and its credit
    (1 same order as the person, ½ a predictor tie, 0 opposite)."""
    sign = np.sign(scores.reindex(strict["a"]).to_numpy() - scores.reindex(strict["b"]).to_numpy())
    return sign, np.where(sign == strict["h"].to_numpy(), 1.0, np.where(sign == 0, 0.5, 0.0))


def _check_score_columns(scores: pd.DataFrame) -> None:
    for col in ("candidate_id", "reward", "score"):
        if col not in scores.columns:
            raise ValueError(f"reward scores need columns candidate_id, reward, score; {col!r} is missing")


def reward_accuracy(
    rankings: pd.DataFrame,
    scores: pd.Series,
    name: str = "reward",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """One reward's agreement with the rankings: a row of :data:`COLUMNS`.

    ``scores`` maps candidate id → score (higher = better); candidates without a finite score are
    left out of every pair and ranking they are in."""
    scores = _finite_scores(scores)
    df = regular_rankings(rankings)
    df = df[df["candidate_id"].isin(scores.index)]
    pairs = _human_pairs(df)
    strict = pairs[pairs["h"] != 0]
    s, credit = _credit(strict, scores)
    acc = pd.DataFrame({"task_id": strict["task_id"].to_numpy(), "correct": credit, "one": 1.0})
    per_task = acc.groupby("task_id").agg(correct=("correct", "sum"), pairs=("one", "sum"))
    taus = [
        (tid, _tau(-g["rank"].to_numpy(), scores.reindex(g["candidate_id"]).to_numpy()))
        for (tid, _rid), g in df.groupby(["task_id", "ranking_id"], sort=True)
    ]
    tau = pd.DataFrame(taus, columns=["task_id", "tau"]).groupby("task_id")["tau"].mean()
    per_task = per_task.join(tau, how="outer").fillna({"correct": 0.0, "pairs": 0.0})
    extra = {
        "predictor_ties": float((s == 0).mean()) if len(s) else float("nan"),
        "human_tie_pairs": int((pairs["h"] == 0).sum()),
        "candidates_scored": int(len(scores)),
        "annotators": annotators_label(rankings),
    }
    return _row(name, "reward", per_task.reset_index(), extra, n_boot, seed, ci)


def _others_predict(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each strict human pair against every other annotator's answer on the same task and pair
    (``credit`` 1 same, ½ their tie, 0 opposite), and per strict pair the ``mean`` credit over
    the others: each pair weighs 1, shared among the other annotators who ranked the task."""
    m = pairs.merge(pairs, on=["task_id", "a", "b"], suffixes=("", "_o"))
    m = m[(m["annotator"] != m["annotator_o"]) & (m["h"] != 0)]
    m = m.assign(credit=np.where(m["h_o"] == m["h"], 1.0, np.where(m["h_o"] == 0, 0.5, 0.0)))
    per_pair = m.groupby(["task_id", "ranking_id", "annotator", "a", "b"])["credit"].agg(["mean", "count"])
    return m, per_pair.reset_index()


def annotator_ceiling(rankings: pd.DataFrame) -> pd.DataFrame:
    """Each annotator against the others, one row per annotator: ``pairs`` (their strict pairs on
    tasks someone else ranked too) and ``accuracy`` (how often another annotator of the task
    orders such a pair the same way; ties ½). The ceiling of :func:`human_ceiling`, split by the
    one predicted: a spammer sits near ½, careful annotators near the top."""
    _, per_pair = _others_predict(_human_pairs(regular_rankings(rankings)))
    out = per_pair.groupby("annotator")["mean"].agg(pairs="size", accuracy="mean").reset_index()
    return out.astype({"pairs": int}).sort_values("annotator").reset_index(drop=True)


def human_ceiling(rankings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """The human–human ceiling: each annotator's strict pairs predicted by each other annotator of
    the same task in turn (their tie ½), averaged over the others; τ-b of each ranking with each
    other ranking of the task. A row of :data:`COLUMNS` (NaN without a task ranked twice)."""
    df = regular_rankings(rankings)
    pairs = _human_pairs(df)
    m, per_pair = _others_predict(pairs)
    per_task = per_pair.groupby("task_id").agg(correct=("mean", "sum"), pairs=("mean", "size"))
    per_task = per_task.astype(float)
    taus = []
    for tid, g in df.groupby("task_id", sort=True):
        ranks = g.pivot_table(index="candidate_id", columns="ranking_id", values="rank", aggfunc="first")
        rids = list(ranks.columns)
        # One ranking per annotator and task (the store's rule), so any two are two people.
        vals = [
            _tau(-ranks[r1].to_numpy(), -ranks[r2].to_numpy())
            for i, r1 in enumerate(rids)
            for r2 in rids[i + 1 :]
        ]
        vals = [x for x in vals if x == x]
        taus.append((tid, float(np.mean(vals)) if vals else float("nan")))
    tau = pd.DataFrame(taus, columns=["task_id", "tau"]).set_index("task_id")["tau"]
    per_task = per_task.join(tau, how="outer").fillna({"correct": 0.0, "pairs": 0.0})
    extra = {
        "predictor_ties": float((m["h_o"] == 0).mean()) if len(m) else float("nan"),
        "human_tie_pairs": int((pairs["h"] == 0).sum()),
        "candidates_scored": int(df["candidate_id"].nunique()),
        "annotators": annotators_label(rankings),
    }
    return _row(CEILING, "ceiling", per_task.reset_index(), extra, n_boot, seed, ci)


def annotators_label(rankings: pd.DataFrame) -> str:
    """Whose rankings a statistic is on: ``people``, ``simulated`` or ``people + simulated``
    (from ``annotator_simulated``; ``people`` when the column is absent), so a table that
    includes simulated annotators says so on every row."""
    if "annotator_simulated" not in rankings.columns or rankings.empty:
        return "people"
    sim = rankings.drop_duplicates("annotator")["annotator_simulated"].astype(bool)
    return "simulated" if sim.all() else "people + simulated" if sim.any() else "people"


def reward_agreement(
    rankings: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The human–human ceiling, then one row per reward in ``scores`` (a long table with
    ``candidate_id``, ``reward``, ``score``), sorted by accuracy, best first. Columns
    :data:`COLUMNS`; ``annotators`` (:func:`annotators_label`) says whose rankings they are.
    Statistics of rewards are on the candidates each reward scored."""
    _check_score_columns(scores)
    rows = [human_ceiling(rankings, n_boot=n_boot, seed=seed, ci=ci)]
    reward_rows = []
    for name, g in scores.groupby("reward", sort=True):
        series = pd.Series(g["score"].to_numpy(), index=g["candidate_id"].astype(int).to_numpy())
        reward_rows.append(reward_accuracy(rankings, series, str(name), n_boot=n_boot, seed=seed, ci=ci))
    reward_rows.sort(key=lambda r: -r["accuracy"] if r["accuracy"] == r["accuracy"] else 1.0)
    return pd.DataFrame(rows + reward_rows, columns=COLUMNS)


def agreement_by_basis(
    rankings: pd.DataFrame,
    scores: pd.DataFrame,
    keys: dict[int, tuple[float, ...]],
    basis_names: tuple[str, ...],
) -> pd.DataFrame:
    """Each reward's pairwise accuracy split by what separates the two candidates of a pair.

    ``keys`` gives each candidate a tuple ordered by importance (for the shapes world's careful
    annotator: correct, plan-faithful, plan–image IoU, ``annotation.simulate.ShapesJudge``); a
    strict human pair's *basis* is the name of the first component in which its two candidates
    differ, ``"equal"`` when none does (``"unknown"`` when a candidate has no key). A reward
    that orders pairs decided by a coarse component but not those decided by a fine one is blind
    to that component — a ceiling on its agreement with people who rank by it. One row per
    (predictor, basis): ``pairs``, ``accuracy`` (ties ½), the human–human ceiling on the same
    pairs where a task was ranked twice (``ceiling``, ``ceiling_pairs``). No intervals: a
    diagnostic of where agreement is lost, beside :func:`reward_agreement`'s table.
    """
    if len(basis_names) == 0:
        raise ValueError("basis_names needs one name per key component")
    _check_score_columns(scores)
    pairs = _human_pairs(regular_rankings(rankings))
    strict = pairs[pairs["h"] != 0].copy()

    def basis(a: int, b: int) -> str:
        ka, kb = keys.get(int(a)), keys.get(int(b))
        if ka is None or kb is None:
            return "unknown"
        if len(ka) != len(basis_names) or len(kb) != len(basis_names):
            raise ValueError(f"keys have {len(ka)} components, basis_names {len(basis_names)}")
        for name, x, y in zip(basis_names, ka, kb):
            if x != y:
                return name
        return "equal"

    strict["basis"] = [basis(a, b) for a, b in zip(strict["a"], strict["b"])]
    order = [*basis_names, "equal", "unknown"]
    rows = []
    _, per_pair = _others_predict(pairs)
    ceiling = per_pair.merge(strict[["ranking_id", "a", "b", "basis"]], on=["ranking_id", "a", "b"])
    for name, g in scores.groupby("reward", sort=True):
        s = _finite_scores(pd.Series(g["score"].to_numpy(), index=g["candidate_id"].astype(int)))
        for b in order:
            part = strict[(strict["basis"] == b) & strict["a"].isin(s.index) & strict["b"].isin(s.index)]
            if part.empty:
                continue
            _, credit = _credit(part, s)
            ceil = ceiling[ceiling["basis"] == b]["mean"]
            rows.append({
                "predictor": str(name), "basis": b, "pairs": len(part), "accuracy": float(credit.mean()),
                "ceiling": float(ceil.mean()) if len(ceil) else float("nan"), "ceiling_pairs": len(ceil),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["predictor", "basis", "pairs", "accuracy", "ceiling", "ceiling_pairs"])
