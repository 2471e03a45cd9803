"""Compare tab: one prompt and seed through two systems side by side, with both sides' scores.

A system is a model and a recipe: recipe against recipe on one model ("what thinking buys you":
``direct`` against ``got-r1``) or model against model (the app's model against another shipped
model, e.g. ``shapes-janus`` against ``shapes-janus-r1``). Both sides are scored in one call, so
their numbers are comparable; a researcher can send the pair to a study as one ranking task
(``generate_tab.send_to_study``: once per study).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .common import (
    GENERATE_QUEUE,
    IMAGE_BUTTONS,
    client_address,
    model_label,
    ui_errors,
)
from .generate_tab import LAST_RUN_TTL_S, check_request, send_box
from .services import Services

MAX_PER_SIDE = 4


def _mean(values: list[float | None]) -> float | None:
    nums = [v for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None


def side_html(title: str, rows: list[dict[str, float | None]], errors: dict[str, str]) -> str:
    """One side's scores: the mean of each score over its candidates, then one row per candidate."""
    import html as _html

    names = list(rows[0]) if rows else []
    head = "".join(f"<th>{_html.escape(n)}</th>" for n in names)

    def cell(v: float | None) -> str:
        return "<td class='rg-num'>n/a</td>" if v is None else f"<td class='rg-num'>{v:.3f}</td>"

    means = "".join(cell(_mean([r[n] for r in rows])) for n in names)
    body = [f"<tr class='rg-combined'><td>mean</td>{means}</tr>"]
    body += [f"<tr><td>#{i + 1}</td>{''.join(cell(r[n]) for n in names)}</tr>" for i, r in enumerate(rows)]
    err = "".join(
        f"<p class='rg-err'>{_html.escape(k)} unavailable: {_html.escape(v[:200])}</p>"
        for k, v in errors.items()
    )
    return (
        f"<h4>{_html.escape(title)}</h4><table class='rg-scores'><tr><th></th>{head}</tr>"
        + "".join(body)
        + f"</table>{err}"
    )


class ModelPool:
    """The app's model plus other shipped models, loaded on first use and kept (small models)."""

    def __init__(self, services: Services) -> None:
        from reasongen.loading import ASSETS, EMBEDDED_MODELS

        self._services = services
        own = str(getattr(services.loaded, "model_id", ""))
        self.own = model_label(own)
        self._paths = {self.own: own}
        for name in EMBEDDED_MODELS:
            path = ASSETS / name
            if (path / "config.json").is_file() and str(path) != own and name not in self._paths:
                self._paths[name] = str(path)
        self._loaded: dict[str, Any] = {self.own: services.loaded}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._paths)

    def get(self, name: str) -> Any:
        """The loaded model called ``name`` (loads it once); ``ValueError`` for an unknown name."""
        if name not in self._paths:
            raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(self._paths)}")
        with self._lock:
            if name not in self._loaded:
                from reasongen.loading import load_model

                self._loaded[name] = load_model(self._paths[name], device=self._services.config.device)
            return self._loaded[name]


@dataclass
class CompareTab:
    """Components tests and other tabs wire to."""

    run: Any
    status: Any
    send_group: Any
    study_choice: Any


def compare(services: Services, pool: ModelPool, prompt: str, model_a: str, recipe_a: str, model_b: str,
            recipe_b: str, n: int, seed: int, client: str, keep: bool = False) -> list[Any]:  # fmt: skip
    """Generate ``n`` candidates per side for the same prompt and seed, score both sides in one
    call, and return [status, gallery A, scores A, gallery B, scores B, last run (or None)]."""
    from reasongen.generation import generate
    from reasongen.loading import settings_for

    n = int(n)
    if not 1 <= n <= MAX_PER_SIDE:
        raise gr.Error(f"Candidates per side must be 1..{MAX_PER_SIDE}.")
    prompt = check_request(services, prompt, recipe_a, 1)
    check_request(services, prompt, recipe_b, 1)
    if (model_a, recipe_a) == (model_b, recipe_b):
        raise gr.Error("Pick two different systems (another recipe or another model).")
    loaded_a, loaded_b = pool.get(model_a), pool.get(model_b)
    wait = services.limiter.check(client)
    if wait:
        raise gr.Error(f"Too many generations. Try again in {wait:.0f} s.", title="Slow down")
    meta = services.prompt_metadata(prompt)
    t0 = time.monotonic()
    sides = []
    for loaded, recipe in ((loaded_a, recipe_a), (loaded_b, recipe_b)):
        settings = settings_for(loaded, max_cot_tokens=services.config.max_cot_tokens)
        sides.append(generate(loaded, prompt, recipe, n=n, seed=int(seed), settings=settings, metadata=meta))
    samples = sides[0] + sides[1]
    scores = services.score(samples)
    rows = scores.table()
    out: list[Any] = [f"Done in {time.monotonic() - t0:.1f} s: seed {int(seed)}, {n} candidate(s) per side."]
    for k, (name, recipe) in enumerate(((model_a, recipe_a), (model_b, recipe_b))):
        part = rows[k * n : (k + 1) * n]
        gallery = [
            (
                s.image,
                f"#{i + 1} combined {r.get('combined'):.3f}"
                if r.get("combined") is not None
                else f"#{i + 1}",
            )
            for i, (s, r) in enumerate(zip(sides[k], part))
        ]
        out += [gallery, side_html(f"{'AB'[k]}: {name} · {recipe}", part, scores.errors)]
    out.append({"samples": samples, "scores": scores, "metadata": meta, "sent": {}} if keep else None)
    return out


def build_compare_tab(services: Services, user_state: Any) -> CompareTab:
    """Lay out the Compare tab and wire its events (call inside a ``gr.Blocks``)."""
    from reasongen.recipes import RECIPES

    cfg = services.config
    pool = ModelPool(services)
    recipes = list(RECIPES)
    gr.Markdown(
        "Run one prompt and seed through two systems and compare: recipe against recipe "
        "(*what thinking buys you*: `direct` against `got-r1`) or model against model."
    )
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=1, max_lines=4, scale=3, elem_id="rg-cmp-prompt",
                            placeholder="a photo of a red circle left of a blue square")  # fmt: skip
        n = gr.Slider(1, MAX_PER_SIDE, value=2, step=1, label="Candidates per side", scale=1)
        seed = gr.Number(value=0, precision=0, label="Seed", scale=1)
    with gr.Row():
        model_a = gr.Dropdown(pool.names, value=pool.own, label="A: model")
        recipe_a = gr.Dropdown(
            recipes, value="direct" if "direct" in recipes else recipes[0], label="A: recipe"
        )
        model_b = gr.Dropdown(pool.names, value=pool.own, label="B: model")
        recipe_b = gr.Dropdown(recipes, value=cfg.recipe, label="B: recipe")
    run = gr.Button("Compare", variant="primary", elem_id="rg-cmp-run")
    status = gr.Markdown(elem_id="rg-cmp-status")
    with gr.Row():
        with gr.Column():
            gallery_a = gr.Gallery(label="A", columns=2, height=260, buttons=IMAGE_BUTTONS,
                                   elem_id="rg-cmp-a", elem_classes=["rg-pixel"])  # fmt: skip
            scores_a = gr.HTML(elem_id="rg-cmp-scores-a")
        with gr.Column():
            gallery_b = gr.Gallery(label="B", columns=2, height=260, buttons=IMAGE_BUTTONS,
                                   elem_id="rg-cmp-b", elem_classes=["rg-pixel"])  # fmt: skip
            scores_b = gr.HTML(elem_id="rg-cmp-scores-b")
    last_run = gr.State(None, time_to_live=LAST_RUN_TTL_S)
    intro = "**Send the pair to a study** (researchers): one task with both sides' candidates"
    box = send_box(services, user_state, last_run, intro=intro, button="Send pair to study",
                   elem_id="rg-cmp-send", api_name="send_pair_to_study")  # fmt: skip

    @ui_errors
    def on_compare(p: str, ma: str, ra: str, mb: str, rb: str, k: float, sd: float, user: Any,
                   request: gr.Request) -> list[Any]:  # fmt: skip
        user = services.current_user(user)
        keep = bool(user) and user.get("role") == "researcher"
        return compare(services, pool, p, ma, ra, mb, rb, int(k), int(sd or 0), client_address(request), keep)

    inputs = [prompt, model_a, recipe_a, model_b, recipe_b, n, seed, user_state]
    outputs = [status, gallery_a, scores_a, gallery_b, scores_b, last_run]
    kw = {
        "concurrency_id": GENERATE_QUEUE,
        "concurrency_limit": cfg.concurrency,
        "show_progress_on": [status],
    }
    run.click(on_compare, inputs, outputs, api_name="compare", **kw)
    prompt.submit(on_compare, inputs, outputs, api_visibility="private", **kw)
    return CompareTab(run, status, box.group, box.study_choice)
