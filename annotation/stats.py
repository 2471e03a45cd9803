"""Human-study statistics: pure, seeded functions of a long rankings table.

The input (see :func:`annotation.tables.rankings_frame`) has one row per (ranking, candidate)
with at least ``ranking_id``, ``task_id``, ``annotator``, ``candidate_id``, ``rank`` (1 = best,
equal = tie; NaN for a skipped ranking) and an item column (``system`` = ``model:recipe``, or
``recipe``). Control-task columns ``is_control`` and ``control_best_id`` are used where present.

Chain: rankings → pairwise outcomes (win 1, tie ½, loss 0) → Bradley–Terry strengths by maximum
likelihood with a cluster bootstrap over rankings for 95% intervals; win-rate matrix;
Krippendorff's α and each annotator's agreement with the others' consensus; control pass rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

PAIR_COLUMNS = [
    "ranking_id",
    "task_id",
    "annotator",
    "candidate_a",
    "candidate_b",
    "item_a",
    "item_b",
    "score_a",
]


def _ranked(rankings: pd.DataFrame, drop_controls: bool = True) -> pd.DataFrame:
    df = rankings[rankings["rank"].notna()]
    if drop_controls and "is_control" in df.columns:
        df = df[~df["is_control"].astype(bool)]
    return df


def pairwise_outcomes(
    rankings: pd.DataFrame, item_col: str = "system", *, drop_controls: bool = True
) -> pd.DataFrame:
    """Every pair of candidates within each ranking: ``score_a`` = 1 (a ranked better), ½ (tie),
    0 (b better). Skipped rankings and (by default) control tasks are left out."""
    df = _ranked(rankings, drop_controls)[
        ["ranking_id", "task_id", "annotator", "candidate_id", "rank", item_col]
    ]
    m = df.merge(df, on=["ranking_id", "task_id", "annotator"], suffixes=("_a", "_b"))
    m = m[m["candidate_id_a"] < m["candidate_id_b"]]
    score = np.where(m["rank_a"] < m["rank_b"], 1.0, np.where(m["rank_a"] > m["rank_b"], 0.0, 0.5))
    out = pd.DataFrame(
        {
            "ranking_id": m["ranking_id"].to_numpy(),
            "task_id": m["task_id"].to_numpy(),
            "annotator": m["annotator"].to_numpy(),
            "candidate_a": m["candidate_id_a"].to_numpy(),
            "candidate_b": m["candidate_id_b"].to_numpy(),
            "item_a": m[f"{item_col}_a"].to_numpy(),
            "item_b": m[f"{item_col}_b"].to_numpy(),
            "score_a": score,
        }
    )
    return out.sort_values(["ranking_id", "candidate_a", "candidate_b"]).reset_index(drop=True)


def _bt_fit(wins: np.ndarray, prior: float, x0: np.ndarray | None = None) -> np.ndarray:
    """Maximum-likelihood log-strengths for a win matrix (``wins[i, j]`` = score of i over j),
    with a Gaussian prior of precision ``prior`` for identifiability; returned centred."""
    k = wins.shape[0]

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        diff = theta[:, None] - theta[None, :]  # [K, K]
        logp = -np.logaddexp(0.0, -diff)  # log σ(θi − θj)
        p = np.exp(logp)
        f = -(wins * logp).sum() + 0.5 * prior * theta @ theta
        g = -((wins * (1.0 - p)).sum(1) - (wins.T * (1.0 - p.T)).sum(1)) + prior * theta
        return float(f), g

    res = optimize.minimize(nll, np.zeros(k) if x0 is None else x0, jac=True, method="BFGS")
    theta = res.x
    return theta - theta.mean()


def bradley_terry(
    pairs: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    prior: float = 0.01,
) -> pd.DataFrame:
    """Bradley–Terry log-strengths (centred, natural-log odds scale) per item with bootstrap CIs.

    ``P(a beats b) = σ(θ_a − θ_b)``; ties count half a win to each side. The bootstrap resamples
    whole rankings (the pairs from one ranking are not independent) and reports percentile
    intervals. Pairs of two candidates of the same item are ignored. Returns columns ``item``,
    ``theta``, ``ci_low``, ``ci_high``, ``comparisons``, ``win_rate``, sorted best first.
    """
    p = pairs[pairs["item_a"] != pairs["item_b"]]
    items = sorted(set(p["item_a"]) | set(p["item_b"]), key=str)
    if len(items) < 2:
        raise ValueError("Bradley–Terry needs comparisons between at least two items")
    index = {it: i for i, it in enumerate(items)}
    ia = p["item_a"].map(index).to_numpy()
    ib = p["item_b"].map(index).to_numpy()
    s = p["score_a"].to_numpy(dtype=float)
    clusters, r = np.unique(p["ranking_id"].to_numpy(), return_inverse=True)
    k = len(items)

    def wins_for(weight: np.ndarray) -> np.ndarray:
        w = np.zeros((k, k))
        np.add.at(w, (ia, ib), weight * s)
        np.add.at(w, (ib, ia), weight * (1.0 - s))
        return w

    theta = _bt_fit(wins_for(np.ones(len(s))), prior)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, k))
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, len(clusters), len(clusters)), minlength=len(clusters))
        boots[b] = _bt_fit(wins_for(counts[r].astype(float)), prior, x0=theta)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1 - alpha], axis=0) if n_boot else (theta, theta)
    n_cmp = np.bincount(ia, minlength=k) + np.bincount(ib, minlength=k)
    won = np.bincount(ia, weights=s, minlength=k) + np.bincount(ib, weights=1 - s, minlength=k)
    out = pd.DataFrame(
        {
            "item": items,
            "theta": theta,
            "ci_low": lo,
            "ci_high": hi,
            "comparisons": n_cmp,
            "win_rate": won / np.maximum(n_cmp, 1),
        }
    )
    return out.sort_values("theta", ascending=False).reset_index(drop=True)


def win_rate_matrix(pairs: pd.DataFrame) -> pd.DataFrame:
    """Mean score of the row item against the column item (ties ½); NaN where never compared."""
    both = pd.concat(
        [
            pd.DataFrame({"row": pairs["item_a"], "col": pairs["item_b"], "s": pairs["score_a"]}),
            pd.DataFrame({"row": pairs["item_b"], "col": pairs["item_a"], "s": 1 - pairs["score_a"]}),
        ]
    )
    both = both[both["row"] != both["col"]]
    items = sorted(set(both["row"]), key=str)
    mat = both.groupby(["row", "col"])["s"].mean().unstack("col")
    return mat.reindex(index=items, columns=items)


def krippendorff_alpha(reliability_data: Any, level: str = "ordinal") -> float:
    """Krippendorff's α for a coders × units matrix (NaN = missing) at the given level of
    measurement (``nominal``, ``ordinal``, ``interval`` or ``ratio``).

    Built from the coincidence matrix (Krippendorff, *Computing Krippendorff's Alpha-Reliability*,
    2011): α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck over pairable values only (units with at
    least two values). NaN when there is no variation to judge agreement against.
    """
    data = np.asarray(reliability_data, dtype=float)  # [coders, units]
    if data.ndim != 2:
        raise ValueError("reliability data must be a 2-D coders × units matrix")
    values = np.unique(data[~np.isnan(data)])
    if len(values) < 2:
        return float("nan")
    counts = np.stack([(data == val).sum(0) for val in values], axis=1)  # [units, V]
    m_u = counts.sum(1)
    counts = counts[m_u >= 2].astype(float)
    m_u = m_u[m_u >= 2].astype(float)
    if len(values) < 2 or len(m_u) == 0:
        return float("nan")
    pair = counts[:, :, None] * counts[:, None, :]  # [units, V, V]
    pair[:, np.arange(len(values)), np.arange(len(values))] -= counts
    o = (pair / (m_u - 1)[:, None, None]).sum(0)  # [V, V] coincidences
    n_c = o.sum(1)
    delta2 = _distance(values, n_c, level)
    n = n_c.sum()
    expected = (np.outer(n_c, n_c) * delta2).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1) * (o * delta2).sum() / expected)


def _distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "ordinal":
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - cum[lo] + n_c[lo]  # Σ_{g=c..k} n_g
        return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ratio":
        total = np.add.outer(values, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(total == 0, 0.0, np.subtract.outer(values, values) / total)
        return d**2
    raise ValueError(f"level must be nominal, ordinal, interval or ratio; got {level!r}")


def ranking_alpha(rankings: pd.DataFrame, level: str = "ordinal") -> float:
    """Krippendorff's α of the ranks: units are (task, candidate), coders are annotators."""
    df = _ranked(rankings)
    table = df.pivot_table(
        index="annotator", columns=["task_id", "candidate_id"], values="rank", aggfunc="first"
    )
    return krippendorff_alpha(table.to_numpy(dtype=float), level)


def annotator_agreement(rankings: pd.DataFrame) -> pd.DataFrame:
    """Each annotator's mean Kendall τ-b with the leave-one-out consensus (mean rank given by the
    other annotators of the same task). Columns ``annotator``, ``tasks``, ``mean_tau``."""
    df = _ranked(rankings)[["task_id", "annotator", "candidate_id", "rank"]]
    total = df.groupby(["task_id", "candidate_id"])["rank"].agg(["sum", "count"])
    df = df.join(total, on=["task_id", "candidate_id"])
    df = df[df["count"] >= 2]
    df = df.assign(consensus=(df["sum"] - df["rank"]) / (df["count"] - 1))
    rows = []
    for (annotator, _task), g in df.groupby(["annotator", "task_id"], sort=True):
        tau = stats.kendalltau(g["rank"], g["consensus"]).statistic
        rows.append((annotator, tau))
    taus = pd.DataFrame(rows, columns=["annotator", "tau"])
    out = taus.groupby("annotator")["tau"].agg(tasks="count", mean_tau="mean").reset_index()
    return out


def control_results(
    rankings: pd.DataFrame, *, min_pass_rate: float = 0.75, min_controls: int = 1
) -> pd.DataFrame:
    """Per annotator: control tasks answered, passed (the known best ranked first, alone),
    pass rate, and ``excluded`` (pass rate below ``min_pass_rate`` over at least
    ``min_controls`` controls). Skipped controls are not counted."""
    ctl = rankings[rankings["is_control"].astype(bool) & rankings["rank"].notna()]
    rows = []
    for (annotator, _rid), g in ctl.groupby(["annotator", "ranking_id"], sort=True):
        best = g["control_best_id"].iloc[0]
        firsts = g.loc[g["rank"] == g["rank"].min(), "candidate_id"].tolist()
        rows.append((annotator, firsts == [best]))
    res = pd.DataFrame(rows, columns=["annotator", "passed"])
    n_ctl = res.groupby("annotator")["passed"].count()
    n_ok = res.groupby("annotator")["passed"].sum()
    names = pd.Series(sorted(rankings["annotator"].dropna().unique()), dtype=object)
    out = pd.DataFrame(
        {
            "annotator": names,
            "controls": names.map(n_ctl).fillna(0).astype(int),
            "passed": names.map(n_ok).fillna(0).astype(int),
        }
    )
    out["pass_rate"] = out["passed"] / out["controls"].where(out["controls"] > 0)
    out["excluded"] = (out["controls"] >= min_controls) & (out["pass_rate"] < min_pass_rate)
    return out


def exclude_annotators(rankings: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """Rankings without the annotators ``control_results`` marked as excluded."""
    bad = set(controls.loc[controls["excluded"], "annotator"])
    return rankings[~rankings["annotator"].isin(bad)].reset_index(drop=True)


def recipe_comparison(
    rankings: pd.DataFrame,
    *,
    item_col: str = "recipe",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Head-to-head comparison of each pair of recipes (e.g. CoT vs direct) over candidates of
    different recipes ranked together: win rate of ``a`` over ``b`` (ties ½) with a cluster
    bootstrap CI and a two-sided Wilcoxon signed-rank p-value of the per-ranking mean score
    against ½."""
    pairs = pairwise_outcomes(rankings, item_col)
    pairs = pairs[pairs["item_a"] != pairs["item_b"]]
    flip = pairs["item_a"].astype(str) > pairs["item_b"].astype(str)
    a = np.where(flip, pairs["item_b"], pairs["item_a"])
    b = np.where(flip, pairs["item_a"], pairs["item_b"])
    score = np.where(flip, 1 - pairs["score_a"], pairs["score_a"])
    df = pd.DataFrame({"a": a, "b": b, "s": score, "r": pairs["ranking_id"].to_numpy()})
    rng = np.random.default_rng(seed)
    rows = []
    for (ra, rb), g in df.groupby(["a", "b"], sort=True):
        per = g.groupby("r")["s"].agg(["sum", "count"])
        sums, cnts = per["sum"].to_numpy(), per["count"].to_numpy()
        idx = rng.integers(0, len(per), (n_boot, len(per)))
        boot = sums[idx].sum(1) / cnts[idx].sum(1)
        means = sums / cnts - 0.5
        if np.any(means != 0):
            p = stats.wilcoxon(means, zero_method="zsplit").pvalue
        else:
            p = 1.0
        lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2]) if n_boot else (np.nan, np.nan)
        rows.append((ra, rb, sums.sum() / cnts.sum(), lo, hi, int(cnts.sum()), len(per), p))
    return pd.DataFrame(
        rows, columns=["a", "b", "win_rate_a", "ci_low", "ci_high", "pairs", "rankings", "p_value"]
    )


def study_summary(
    rankings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, min_pass_rate: float = 0.75
) -> dict[str, Any]:
    """Everything a study report needs, computed after excluding annotators who fail controls."""
    controls = control_results(rankings, min_pass_rate=min_pass_rate)
    kept = exclude_annotators(rankings, controls)
    pairs = pairwise_outcomes(kept, "system")
    out: dict[str, Any] = {
        "controls": controls,
        "pairs": pairs,
        "excluded": sorted(controls.loc[controls["excluded"], "annotator"]),
    }
    has_items = len(pairs) and (pairs["item_a"] != pairs["item_b"]).any()
    out["ratings"] = bradley_terry(pairs, n_boot=n_boot, seed=seed) if has_items else None
    out["win_rates"] = win_rate_matrix(pairs)
    out["alpha_ordinal"] = ranking_alpha(kept)
    out["agreement"] = annotator_agreement(kept)
    out["recipes"] = recipe_comparison(kept, n_boot=n_boot, seed=seed)
    return out


def annotator_dashboard(rankings: pd.DataFrame, *, min_pass_rate: float = 0.75) -> pd.DataFrame:
    """One row per annotator: ``rankings`` (regular tasks ranked), ``skipped``, ``controls``
    answered, ``pass_rate`` and ``excluded`` (as :func:`control_results`), ``median_time_s``
    (median time per answered ranking, controls included) and ``mean_tau`` (mean Kendall τ-b with
    the other annotators' consensus, :func:`annotator_agreement`, over every annotator; NaN
    without a task shared with others)."""
    columns = ["annotator", "rankings", "skipped", "controls", "pass_rate", "excluded", "median_time_s",
               "mean_tau"]  # fmt: skip
    if rankings.empty:
        return pd.DataFrame(columns=columns)
    per = rankings.drop_duplicates("ranking_id")
    answered = per[~per["skipped"].astype(bool)]
    regular = answered[~answered["is_control"].astype(bool)]
    ctl = control_results(rankings, min_pass_rate=min_pass_rate).set_index("annotator")
    tau = annotator_agreement(rankings).set_index("annotator")["mean_tau"]
    names = sorted(per["annotator"].dropna().unique())
    out = pd.DataFrame({"annotator": names})
    out["rankings"] = out["annotator"].map(regular.groupby("annotator").size()).fillna(0).astype(int)
    out["skipped"] = out["annotator"].map(per[per["skipped"].astype(bool)].groupby("annotator").size())
    out["skipped"] = out["skipped"].fillna(0).astype(int)
    out["controls"] = out["annotator"].map(ctl["controls"]).fillna(0).astype(int)
    out["pass_rate"] = out["annotator"].map(ctl["pass_rate"]).astype(float)
    out["excluded"] = out["annotator"].map(ctl["excluded"]).fillna(False).astype(bool)
    times = answered.groupby("annotator")["time_taken_s"].median()
    out["median_time_s"] = out["annotator"].map(times).astype(float)
    out["mean_tau"] = out["annotator"].map(tau).astype(float)
    return out[columns]


def why_no_ratings(
    rankings: pd.DataFrame, controls: pd.DataFrame | None, pairs: pd.DataFrame, item_col: str = "system"
) -> str | None:
    """Why no ratings can be computed from ``rankings`` after the control exclusions
    (``controls`` from :func:`control_results`, ``pairs`` the kept pairwise outcomes), in words;
    None when ratings can be computed (two items compared at least once)."""
    if rankings.empty:
        return "No rankings yet."
    per = rankings.drop_duplicates("ranking_id")
    answered = per[~per["skipped"].astype(bool)]
    if answered.empty:
        return f"All {len(per)} ranking(s) so far were skipped: nothing to compare."
    regular = answered[~answered["is_control"].astype(bool)]
    if regular.empty:
        return (
            f"Only control tasks have been ranked so far ({len(answered)} ranking(s)); ratings come "
            "from the regular tasks."
        )
    bad = set() if controls is None else set(controls.loc[controls["excluded"], "annotator"])
    rankers = set(regular["annotator"])
    if rankers <= bad:
        return (
            f"Control tasks exclude every annotator who ranked regular tasks ({', '.join(sorted(rankers))}: "
            "control pass rate below the threshold); lower the threshold to include them."
        )
    compared = pairs[pairs["item_a"] != pairs["item_b"]] if len(pairs) else pairs
    if compared.empty:
        kept = regular[~regular["annotator"].isin(bad)]
        items = sorted(set(rankings.loc[rankings["ranking_id"].isin(kept["ranking_id"]), item_col].dropna()))
        shown = ", ".join(map(str, items[:3])) or "none"
        return (
            f"Too few comparisons: the counted rankings never put two different {item_col}s side by side "
            f"({len(items)} {item_col}(s) ranked: {shown})."
        )
    return None
