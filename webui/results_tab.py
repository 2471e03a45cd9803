"""Results tab (researchers only): Bradley–Terry ratings with CIs, win rates, agreement, per-recipe
comparison, each stored reward's agreement with the rankings beside the human–human ceiling
(``annotation.agreement``: a table and a plot), a per-annotator dashboard, a drill-down from a
system to its candidates and their ranks, and export downloads, all computed by
``annotation.stats`` / ``annotation.tables`` / ``annotation.export``. When there are no ratings
the tab says why (no rankings, all skipped, only controls, every annotator excluded by the
controls at the chosen pass-rate threshold, or no two systems compared).

Every handler checks the session's role on the server; a visitor or annotator gets an error
message and no data, whatever the page shows.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .common import ANNOTATE_LIMIT, ANNOTATE_QUEUE, require_researcher, ui_errors
from .services import Services

log = logging.getLogger("reasongen.app")
N_BOOT = 200
"""Bootstrap resamples for the CIs shown in the UI (exports use the same)."""
MIN_PASS_RATE = 0.75
"""The pass-rate threshold's starting value (``annotation.quota.MIN_PASS_RATE``, the quotas' rule)."""
LABEL_WIDTH = 28
"""Characters per line of a plot label; longer labels wrap (``LABEL_LINES`` lines at most)."""
LABEL_LINES = 2
GALLERY_MAX = 48
"""Candidates shown as images in the drill-down (the table lists them all)."""
COLUMNS = {
    "ratings": ["#", "item", "theta", "ci_low", "ci_high", "comparisons", "win_rate"],
    "recipes": ["a", "b", "win_rate_a", "ci_low", "ci_high", "pairs", "rankings", "p_value"],
    "agreement": ["annotator", "tasks", "mean_tau"],
    "controls": ["annotator", "controls", "passed", "pass_rate", "excluded"],
    "annotators": ["annotator", "rankings", "skipped", "controls", "pass_rate", "excluded",
                   "median_time_s", "mean_tau", "simulated"],
}  # fmt: skip
"""The headers of each table, shown even when it has no rows."""


def short_label(item: object) -> str:
    """``/long/path/to/model:recipe`` → ``model:recipe`` (plots have little room)."""
    text = str(item)
    model, sep, recipe = text.rpartition(":")
    return f"{Path(model).name or model}{sep}{recipe}" if sep else text


@dataclass
class ResultsTab:
    locked: Any
    body: Any
    study: Any
    compute: Any
    ratings: Any
    summary: Any
    export_file: Any


def plot_label(item: object, width: int = LABEL_WIDTH, lines: int = LABEL_LINES) -> str:
    """``short_label`` wrapped to ``width`` characters a line, at most ``lines`` lines; what does
    not fit ends in "…" (the tables next to the plot give the full label)."""
    parts = textwrap.wrap(short_label(item), width, break_long_words=True, break_on_hyphens=False)
    if len(parts) > lines:
        parts = [*parts[: lines - 1], parts[lines - 1][: width - 1] + "…"]
    return "\n".join(parts) or "?"


def _message_figure(text: str, size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, textwrap.fill(text, 60), ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def ratings_figure(ratings: pd.DataFrame | None, empty: str = "not enough comparisons yet") -> Any:
    """Bradley–Terry log-strengths with their CIs as a horizontal error-bar chart, numbered as in
    the ratings table. The figure grows with the number of systems and the label lines, so no
    label is hidden; ``empty`` is shown when there is nothing to plot."""
    from matplotlib.figure import Figure

    if ratings is None or ratings.empty:
        return _message_figure(empty, (7, 1.7))
    r = ratings.reset_index(drop=True).iloc[::-1]
    labels = [f"#{i + 1} {plot_label(x)}" for i, x in zip(r.index, r["item"], strict=True)]
    n_lines = max(x.count("\n") + 1 for x in labels)
    fig = Figure(figsize=(7.5, 1.2 + 0.28 * n_lines * len(r) + 0.15 * len(r)))
    ax = fig.add_subplot()
    y = list(range(len(r)))
    err = [r["theta"] - r["ci_low"], r["ci_high"] - r["theta"]]
    ax.errorbar(r["theta"], y, xerr=err, fmt="o", capsize=4, color="#2b59c3")
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, len(r) - 0.4)
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("Bradley–Terry log-strength (95% CI)")
    fig.tight_layout()
    return fig


def winrate_figure(matrix: pd.DataFrame | None, empty: str = "no comparisons yet") -> Any:
    """Win rate of the row system against the column system, as an annotated heatmap sized from
    the number of systems."""
    from matplotlib.figure import Figure

    if matrix is None or matrix.empty:
        return _message_figure(empty, (6, 1.7))
    k = len(matrix)
    fig = Figure(figsize=(max(6.0, 3.5 + 0.7 * k), max(5.0, 2.5 + 0.6 * k)))
    ax = fig.add_subplot()
    m = matrix.to_numpy(dtype=float)
    im = ax.imshow(m, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(m.shape[1]), [plot_label(c, 18) for c in matrix.columns], rotation=30, ha="right",
                  fontsize=8)  # fmt: skip
    ax.set_yticks(range(m.shape[0]), [plot_label(i, 24) for i in matrix.index], fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] == m[i, j]:  # not NaN
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="win rate (row vs column)")
    fig.tight_layout()
    return fig


def agreement_figure(table: pd.DataFrame | None, empty: str = "no rankings to compare with yet") -> Any:
    """Each reward's pairwise accuracy and Kendall τ-b with their 95% CIs (one row per reward,
    best first at the top), beside the human–human ceiling (a shaded band: its CI; a line: its
    value) and chance (accuracy ½, τ 0). The title says whose rankings they are."""
    from matplotlib.figure import Figure

    if table is None or table.empty:
        return _message_figure(empty, (7, 1.7))
    ceiling = table[table["kind"] == "ceiling"]
    rewards = table[table["kind"] == "reward"].reset_index(drop=True).iloc[::-1]
    if rewards.empty:
        return _message_figure(
            "No reward scores are stored for this study yet: score its candidates with "
            "'python -m annotation score --study NAME --rewards shapes,...' (or create it with --reward).",
            (7, 1.7),
        )
    labels = [plot_label(x, 22) for x in rewards["predictor"]]
    fig = Figure(figsize=(9.0, 2.2 + 0.45 * len(rewards)))
    y = list(range(len(rewards)))
    specs = (("accuracy", "acc_low", "acc_high", 0.5, "pairwise accuracy (human ties apart)"),
             ("tau_b", "tau_low", "tau_high", 0.0, "Kendall τ-b per task"))  # fmt: skip
    for k, (col, lo, hi, chance, title) in enumerate(specs):
        ax = fig.add_subplot(1, 2, k + 1)
        val = rewards[col].astype(float)
        err = [(val - rewards[lo].astype(float)).clip(lower=0).fillna(0),
               (rewards[hi].astype(float) - val).clip(lower=0).fillna(0)]  # fmt: skip
        ax.errorbar(val, y, xerr=err, fmt="o", capsize=4, color="#2b59c3", label="reward")
        if not ceiling.empty and ceiling[col].iloc[0] == ceiling[col].iloc[0]:
            c = ceiling.iloc[0]
            if c[lo] == c[lo]:
                ax.axvspan(float(c[lo]), float(c[hi]), color="#f4a259", alpha=0.3)
            ax.axvline(float(c[col]), color="#d1495b", lw=1.5, label="human–human ceiling")
        ax.axvline(chance, color="#999", lw=0.8, ls="--", label="chance")
        ax.set_yticks(y, labels if k == 0 else [""] * len(y), fontsize=9)
        ax.set_ylim(-0.6, len(rewards) - 0.4)
        ax.set_xlim(-0.05 if k == 0 else -1.05, 1.05)
        ax.set_title(title, fontsize=10)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    who = str(table["annotators"].iloc[0]) if "annotators" in table.columns else "people"
    fig.suptitle(f"Reward–human agreement (rankings of {who}; 95% CIs clustered by task)", fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    return fig


def reward_agreement_table(store: Any, study: Any, kept: pd.DataFrame) -> pd.DataFrame:
    """``annotation.agreement.reward_agreement`` of the counted rankings and the study's stored
    reward scores."""
    from annotation.agreement import reward_agreement
    from annotation.tables import reward_scores_frame

    return reward_agreement(kept, reward_scores_frame(store, study), n_boot=N_BOOT, seed=0)


def _safe(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (ValueError, KeyError, ZeroDivisionError) as err:
        log.info("results: %s not available: %s", what, err)
        return None


def study_results(
    services: Services,
    user: Any,
    study: Any,
    min_pass_rate: float = MIN_PASS_RATE,
    include_simulated: bool = False,
) -> dict[str, Any]:
    """Everything the tab shows for ``study`` (researchers only), after leaving out annotators
    whose control pass rate is below ``min_pass_rate`` and, unless ``include_simulated``,
    simulated annotators (named in ``simulated``). ``reason`` says why there are no ratings
    (None when there are); pieces without data are None."""
    from annotation import stats
    from annotation.tables import rankings_frame, select_annotators, simulated_annotators
    from annotation.workflow import progress

    require_researcher(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study.")
    if not 0.0 <= float(min_pass_rate) <= 1.0:
        raise ValueError(f"The pass-rate threshold must be in [0, 1], got {min_pass_rate}.")
    everyone = rankings_frame(services.store, study)
    simulated = simulated_annotators(everyone)
    rankings = select_annotators(everyone, bool(include_simulated))
    if everyone.empty:
        return {"rankings": 0, "reason": "No rankings yet."}
    if rankings.empty:
        reason = (f"Only simulated annotators ({', '.join(simulated)}) have ranked; tick "
                  "'Include simulated annotators' to see their statistics.")  # fmt: skip
        return {"rankings": 0, "reason": reason, "simulated": simulated}
    controls = _safe("controls", stats.control_results, rankings, min_pass_rate=min_pass_rate)
    kept = stats.exclude_annotators(rankings, controls) if controls is not None else rankings
    pairs = stats.pairwise_outcomes(kept, "system")
    reason = stats.why_no_ratings(rankings, controls, pairs)
    ok = reason is None
    out: dict[str, Any] = {
        "rankings": int(rankings["ranking_id"].nunique()),
        "reason": reason,
        "ratings": _safe("ratings", stats.bradley_terry, pairs, n_boot=N_BOOT, seed=0) if ok else None,
        "win_rates": _safe("win rates", stats.win_rate_matrix, pairs) if ok else None,
        "alpha": _safe("alpha", stats.ranking_alpha, kept),
        "agreement": _safe("agreement", stats.annotator_agreement, kept),
        "recipes": _safe("recipes", stats.recipe_comparison, kept, n_boot=N_BOOT, seed=0) if ok else None,
        "reward_agreement": _safe("reward agreement", reward_agreement_table, services.store, study, kept),
        "controls": controls,
        "annotators": _safe("annotators", stats.annotator_dashboard, rankings, min_pass_rate=min_pass_rate),
        "progress": progress(services.store, study, min_pass_rate=min_pass_rate),
        "simulated": simulated,
        "include_simulated": bool(include_simulated),
    }
    if ok and out["ratings"] is None:
        out["reason"] = "Not enough comparisons to fit ratings yet."
    return out


def system_drilldown(
    services: Services, user: Any, study: Any, system: Any
) -> tuple[pd.DataFrame, list[Any]]:
    """The candidates of ``system`` in ``study`` with their ranks (``annotation.tables.candidate_ranks``)
    and a gallery of their images (at most ``GALLERY_MAX``) captioned with prompt and ranks."""
    from annotation.tables import candidate_ranks, candidates_frame, rankings_frame

    require_researcher(services.current_user(user))
    if not study or not system:
        return pd.DataFrame(columns=["candidate_id"]), []
    cands = candidates_frame(services.store, study, with_sample=False)
    table = candidate_ranks(rankings_frame(services.store, study), cands, str(system))
    if table.empty:
        raise ValueError(f"Study {study!r} has no candidates of system {system!r}.")
    gallery = []
    for row in table.head(GALLERY_MAX).itertuples():
        if row.image_path:
            ranks = row.ranks or "not ranked yet"
            gallery.append(
                (
                    str(services.store.data_dir / row.image_path),
                    f"#{row.candidate_id} · {row.prompt} · {ranks}",
                )
            )
    return table.drop(columns=["image_path"]).round(3), gallery


def study_systems(services: Services, user: Any, study: Any) -> list[str]:
    """The systems (``model:recipe``) with candidates in ``study``, for the drill-down choice."""
    from annotation.tables import candidates_frame

    require_researcher(services.current_user(user))
    if not study:
        return []
    cands = candidates_frame(services.store, study, with_sample=False)
    return sorted(set(cands["system"])) if not cands.empty else []


def export_zip(services: Services, user: Any, study: Any, fmt: str, include_simulated: bool = False) -> str:
    """Export the study with ``annotation.export.export_study`` and zip it; return the zip path."""
    from annotation.export import export_study

    require_researcher(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study.")
    name = services.store.get_study(study).name
    tmp = Path(tempfile.mkdtemp(prefix="reasongen-export-"))
    folder = tmp / f"{name}-{fmt}"
    export_study(services.store, study, folder, fmt, n_boot=N_BOOT, actor=int(user["id"]),
                 include_simulated=bool(include_simulated))  # fmt: skip
    return shutil.make_archive(str(folder), "zip", root_dir=folder)


def _table(df: Any, kind: str) -> pd.DataFrame:
    """``df`` rounded for display, or an empty table with ``kind``'s real headers."""
    if isinstance(df, pd.DataFrame) and not df.empty:
        return df.round(3)
    if kind == "reward_agreement":
        from annotation.agreement import COLUMNS as AGREEMENT_COLUMNS

        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    return pd.DataFrame(columns=COLUMNS[kind])


def _numbered(ratings: Any) -> Any:
    """The ratings with a ``#`` column matching the plot's numbers."""
    if not isinstance(ratings, pd.DataFrame) or ratings.empty:
        return ratings
    return ratings.reset_index(drop=True).assign(**{"#": range(1, len(ratings) + 1)})[COLUMNS["ratings"]]


def summary_text(res: dict[str, Any], min_pass_rate: float) -> str:
    """The Markdown line above the plots: counts, progress, α and, without ratings, why."""
    reason = res.get("reason")
    if not res["rankings"]:
        return reason or "No rankings yet."
    p = res["progress"]
    alpha = res["alpha"]
    excluded = p.get("excluded") or []
    text = (
        f"**{p['study']}**: {res['rankings']} rankings, {p['rankings_done']}/{p['rankings_wanted']} "
        f"wanted ({100 * p['fraction_done']:.0f}%). Krippendorff's α (ordinal): "
        f"{'n/a' if alpha is None or alpha != alpha else f'{alpha:.3f}'}. "
        f"Excluded by the controls (pass rate below {min_pass_rate:.0%}): "
        f"{', '.join(excluded) if excluded else 'nobody'}."
    )
    simulated = res.get("simulated") or []
    if simulated:
        used = "included" if res.get("include_simulated") else "left out"
        text += f" Simulated annotators ({used}): {', '.join(simulated)}."
    return f"{text}\n\n**No ratings:** {reason}" if reason else text


def build_results_tab(services: Services, user_state: Any) -> ResultsTab:
    """Lay out the Results tab and wire its events (call inside a ``gr.Blocks``)."""
    locked = gr.Markdown("Results are for researchers: log in on the **Annotate** tab.", visible=True)
    with gr.Column(visible=False) as body:
        with gr.Row():
            study = gr.Dropdown(
                choices=[], label="Study", scale=3, elem_id="rg-results-study", allow_custom_value=True
            )
            pass_rate = gr.Slider(0.0, 1.0, MIN_PASS_RATE, step=0.05, scale=2, elem_id="rg-pass-rate",
                                  label="Control pass rate an annotator needs to be counted")  # fmt: skip
            with_sim = gr.Checkbox(False, label="Include simulated annotators", scale=1,
                                   elem_id="rg-include-simulated")  # fmt: skip
            compute = gr.Button("Compute", variant="primary", scale=1, elem_id="rg-compute")
        summary = gr.Markdown(elem_id="rg-results-summary")
        with gr.Row():
            bt_plot = gr.Plot(label="Bradley–Terry ratings with 95% CIs", elem_id="rg-bt-plot")
            wr_plot = gr.Plot(label="Win-rate matrix", elem_id="rg-wr-plot")
        ratings = gr.Dataframe(label="Ratings (full system names)", interactive=False, elem_id="rg-ratings")
        recipes = gr.Dataframe(label="Per-recipe comparison (head to head)", interactive=False)
        agreement = gr.Dataframe(label="Annotator agreement (Kendall τ with the others)", interactive=False)
        ag_plot = gr.Plot(label="Reward–human agreement", elem_id="rg-agreement-plot")
        reward_ag = gr.Dataframe(label="Reward–human agreement: each stored reward beside the human–human "
                                 "ceiling (each annotator against the others)", interactive=False,
                                 elem_id="rg-reward-agreement")  # fmt: skip
        controls = gr.Dataframe(label="Control tasks", interactive=False)
        annotators = gr.Dataframe(
            label="Annotators: rankings, skips, control pass rate, median seconds per ranking, agreement",
            interactive=False, elem_id="rg-annotators",
        )  # fmt: skip
        with gr.Accordion("A system's candidates and their ranks", open=False):
            system = gr.Dropdown(choices=[], label="System", allow_custom_value=True, elem_id="rg-system")
            gallery = gr.Gallery(label="Candidates", columns=6, height="auto", elem_id="rg-system-gallery")
            cand_table = gr.Dataframe(label="Candidates (ranks as rank/group size)", interactive=False)
        with gr.Row():
            fmt = gr.Radio(["csv", "parquet", "jsonl"], value="csv", label="Export format")
            export = gr.Button("Export", elem_id="rg-export")
        export_file = gr.File(label="Download", interactive=False)
    q = {"concurrency_id": ANNOTATE_QUEUE, "concurrency_limit": ANNOTATE_LIMIT}

    @ui_errors
    def on_compute(user: Any, st: Any, threshold: float = MIN_PASS_RATE, sim: bool = False) -> list[Any]:
        res = study_results(services, user, st, threshold, sim)
        text = summary_text(res, threshold)
        if not res["rankings"]:
            return (
                [text, ratings_figure(None, text), winrate_figure(None, text)]
                + [_table(None, k) for k in ("ratings", "recipes", "agreement", "controls")]
                + [agreement_figure(None, text), _table(None, "reward_agreement")]
            )
        reason = res["reason"] or ""
        return [text, ratings_figure(res["ratings"], reason), winrate_figure(res["win_rates"], reason),
                _table(_numbered(res["ratings"]), "ratings"), _table(res["recipes"], "recipes"),
                _table(res["agreement"], "agreement"), _table(res["controls"], "controls"),
                agreement_figure(res["reward_agreement"]),
                _table(res["reward_agreement"], "reward_agreement")]  # fmt: skip

    @ui_errors
    def on_annotators(user: Any, st: Any, threshold: float = MIN_PASS_RATE) -> list[Any]:
        from annotation.stats import annotator_dashboard
        from annotation.tables import rankings_frame, simulated_annotators

        require_researcher(services.current_user(user))
        if not st:
            raise gr.Error("Pick a study.")
        rankings = rankings_frame(services.store, st)
        dash = annotator_dashboard(rankings, min_pass_rate=threshold)
        if not dash.empty:  # every annotator is listed; simulated ones say so
            sim = set(simulated_annotators(rankings))
            dash = dash.assign(simulated=dash["annotator"].isin(sim))
        systems = study_systems(services, user, st)
        return [_table(dash, "annotators"), gr.Dropdown(choices=systems, value=None)]

    computed = compute.click(on_compute, [user_state, study, pass_rate, with_sim],
                             [summary, bt_plot, wr_plot, ratings, recipes, agreement, controls, ag_plot,
                              reward_ag],
                             api_name="study_results", **q)  # fmt: skip
    computed.success(on_annotators, [user_state, study, pass_rate], [annotators, system],
                     api_name="annotator_dashboard", **q)  # fmt: skip

    @ui_errors
    def on_system(user: Any, st: Any, sys_name: Any) -> list[Any]:
        table, images = system_drilldown(services, user, st, sys_name)
        return [images, table]

    system.change(
        on_system, [user_state, study, system], [gallery, cand_table], api_name="system_candidates", **q
    )

    @ui_errors
    def on_export(user: Any, st: Any, f: str, sim: bool = False) -> str:
        return export_zip(services, user, st, f, sim)

    export.click(on_export, [user_state, study, fmt, with_sim], export_file, api_name="export_study", **q)
    return ResultsTab(locked, body, study, compute, ratings, summary, export_file)
