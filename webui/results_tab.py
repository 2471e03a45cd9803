"""Results tab (researchers only): Bradley–Terry ratings with CIs, win rates, agreement, per-recipe
comparison and export downloads, all computed by ``annotation.stats`` / ``annotation.export``.

Every handler checks the session's role on the server; a visitor or annotator gets an error
message and no data, whatever the page shows.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
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


def ratings_figure(ratings: pd.DataFrame | None) -> Any:
    """Bradley–Terry log-strengths with their CIs as a horizontal error-bar chart."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 1.2 + 0.5 * max(1, 0 if ratings is None else len(ratings))))
    ax = fig.add_subplot()
    if ratings is None or ratings.empty:
        ax.text(0.5, 0.5, "not enough comparisons yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    r = ratings.iloc[::-1]
    y = range(len(r))
    err = [r["theta"] - r["ci_low"], r["ci_high"] - r["theta"]]
    ax.errorbar(r["theta"], list(y), xerr=err, fmt="o", capsize=4, color="#2b59c3")
    ax.set_yticks(list(y), [short_label(x) for x in r["item"]])
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("Bradley–Terry log-strength (95% CI)")
    fig.tight_layout()
    return fig


def winrate_figure(matrix: pd.DataFrame | None) -> Any:
    """Win rate of the row system against the column system, as an annotated heatmap."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if matrix is None or matrix.empty:
        ax.text(0.5, 0.5, "no comparisons yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    m = matrix.to_numpy(dtype=float)
    im = ax.imshow(m, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(m.shape[1]), [short_label(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]), [short_label(i) for i in matrix.index])
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] == m[i, j]:  # not NaN
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="win rate (row vs column)")
    fig.tight_layout()
    return fig


def _safe(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (ValueError, KeyError, ZeroDivisionError) as err:
        log.info("results: %s not available: %s", what, err)
        return None


def study_results(services: Services, user: Any, study: Any) -> dict[str, Any]:
    """Everything the tab shows for ``study`` (researchers only); pieces without data are None."""
    from annotation import stats
    from annotation.tables import rankings_frame
    from annotation.workflow import progress

    require_researcher(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study.")
    rankings = rankings_frame(services.store, study)
    if rankings.empty or rankings["rank"].notna().sum() == 0:
        return {"rankings": 0}
    controls = _safe("controls", stats.control_results, rankings)
    kept = stats.exclude_annotators(rankings, controls) if controls is not None else rankings
    pairs = stats.pairwise_outcomes(kept, "system")
    differs = len(pairs) and bool((pairs["item_a"] != pairs["item_b"]).any())
    out: dict[str, Any] = {
        "rankings": int(rankings["ranking_id"].nunique()),
        "ratings": _safe("ratings", stats.bradley_terry, pairs, n_boot=N_BOOT, seed=0) if differs else None,
        "win_rates": _safe("win rates", stats.win_rate_matrix, pairs) if differs else None,
        "alpha": _safe("alpha", stats.ranking_alpha, kept),
        "agreement": _safe("agreement", stats.annotator_agreement, kept),
        "recipes": _safe("recipes", stats.recipe_comparison, kept, n_boot=N_BOOT, seed=0),
        "controls": controls,
        "progress": progress(services.store, study),
    }
    return out


def export_zip(services: Services, user: Any, study: Any, fmt: str) -> str:
    """Export the study with ``annotation.export.export_study`` and zip it; return the zip path."""
    from annotation.export import export_study

    require_researcher(services.current_user(user))
    if not study:
        raise gr.Error("Pick a study.")
    name = services.store.get_study(study).name
    tmp = Path(tempfile.mkdtemp(prefix="reasongen-export-"))
    folder = tmp / f"{name}-{fmt}"
    export_study(services.store, study, folder, fmt, n_boot=N_BOOT, actor=int(user["id"]))
    return shutil.make_archive(str(folder), "zip", root_dir=folder)


def _table(df: Any) -> Any:
    return df.round(3) if isinstance(df, pd.DataFrame) else pd.DataFrame()


def build_results_tab(services: Services, user_state: Any) -> ResultsTab:
    """Lay out the Results tab and wire its events (call inside a ``gr.Blocks``)."""
    locked = gr.Markdown("Results are for researchers: log in on the **Annotate** tab.", visible=True)
    with gr.Column(visible=False) as body:
        with gr.Row():
            study = gr.Dropdown(
                choices=[], label="Study", scale=3, elem_id="rg-results-study", allow_custom_value=True
            )
            compute = gr.Button("Compute", variant="primary", scale=1, elem_id="rg-compute")
        summary = gr.Markdown(elem_id="rg-results-summary")
        with gr.Row():
            bt_plot = gr.Plot(label="Bradley–Terry ratings with 95% CIs", elem_id="rg-bt-plot")
            wr_plot = gr.Plot(label="Win-rate matrix", elem_id="rg-wr-plot")
        ratings = gr.Dataframe(label="Ratings", interactive=False)
        recipes = gr.Dataframe(label="Per-recipe comparison (head to head)", interactive=False)
        agreement = gr.Dataframe(label="Annotator agreement (Kendall τ with the others)", interactive=False)
        controls = gr.Dataframe(label="Control tasks", interactive=False)
        with gr.Row():
            fmt = gr.Radio(["csv", "parquet", "jsonl"], value="csv", label="Export format")
            export = gr.Button("Export", elem_id="rg-export")
        export_file = gr.File(label="Download", interactive=False)
    q = {"concurrency_id": ANNOTATE_QUEUE, "concurrency_limit": ANNOTATE_LIMIT}

    @ui_errors
    def on_compute(user: Any, st: Any) -> list[Any]:
        res = study_results(services, user, st)
        if not res["rankings"]:
            empty = pd.DataFrame()
            return ["No rankings yet.", None, None, empty, empty, empty, empty]
        p = res["progress"]
        alpha = res["alpha"]
        text = (
            f"**{p['study']}**: {res['rankings']} rankings, {p['rankings_done']}/{p['rankings_wanted']} "
            f"wanted ({100 * p['fraction_done']:.0f}%). Krippendorff's α (ordinal): "
            f"{'n/a' if alpha is None or alpha != alpha else f'{alpha:.3f}'}."
        )
        return [text, ratings_figure(res["ratings"]), winrate_figure(res["win_rates"]),
                _table(res["ratings"]), _table(res["recipes"]), _table(res["agreement"]),
                _table(res["controls"])]  # fmt: skip

    compute.click(on_compute, [user_state, study],
                  [summary, bt_plot, wr_plot, ratings, recipes, agreement, controls],
                  api_name="study_results", **q)  # fmt: skip

    @ui_errors
    def on_export(user: Any, st: Any, f: str) -> str:
        return export_zip(services, user, st, f)

    export.click(on_export, [user_state, study, fmt], export_file, api_name="export_study", **q)
    return ResultsTab(locked, body, study, compute, ratings, summary, export_file)
