"""Generate tab: prompt → streamed chain of thought → plan drawn → image filling in → reward scores.

One generator handler runs ``reasongen.generation.generate_stream`` ahead of the page
(``webui.streaming.RunAhead``) and yields coalesced frames at a bounded rate; images are sent only
when they change. Stop cancels a run, Enter generates, a prompt over the limit is refused.
Researchers can send the candidates of the last run to a study (once per study).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .common import (
    ANNOTATE_LIMIT,
    ANNOTATE_QUEUE,
    GENERATE_QUEUE,
    IMAGE_BUTTONS,
    client_address,
    require_researcher,
    scores_html,
    ui_errors,
    ui_errors_stream,
)
from .model_card import about_markdown, outside_language_notice
from .reasoning import cot_html
from .services import MAX_SLOTS, Scores, Services
from .streaming import RunAhead

PLAN_SIZE = 160
"""The plan's canvas: about its display size, so its labels (10 px at least) stay readable."""
SLOTS_PER_ROW = 4
CLEAR = object()
"""In a frame: empty this image (``None`` means: leave it as it is)."""
FRAME_INTERVAL_S = 0.1
"""Coalesced frames go to the page at most this often (plus one per image preview)."""
QUEUE_NOTE_S = 1.0
"""A wait in the queue at least this long is stated in the final status (shorter ones are
Gradio's own start-up of an event, a few hundred ms, not a queue)."""
LAST_RUN_TTL_S = 1800
"""A researcher's last run (kept to send to a study) is dropped after this long."""


def _round_robin_examples(examples: list[Any]) -> list[Any]:
    """Examples reordered so that each page of ``len(categories)`` rows shows every category once."""
    by_cat: dict[str, list[Any]] = {}
    for ex in examples:
        by_cat.setdefault(ex.category, []).append(ex)
    out: list[Any] = []
    for i in range(max((len(v) for v in by_cat.values()), default=0)):
        out += [v[i] for v in by_cat.values() if i < len(v)]
    return out


@dataclass
class Slot:
    """The components showing one candidate."""

    column: Any
    cot: Any
    plan: Any
    image: Any
    scores: Any


@dataclass
class GenerateTab:
    """Components other tabs and tests wire to."""

    prompt: Any
    run: Any
    status: Any
    slots: list[Slot]
    scores_json: Any
    last_run: Any
    send_group: Any
    study_choice: Any
    send_message: Any


def _frame(n: int, status: str, cots: list[str], plans: list[Any], images: list[Any],
           html: list[str] | None, table: Any, last: Any) -> list[Any]:  # fmt: skip
    """Outputs in the order ``GenerateTab.outputs``: status, per slot (cot, plan, image, scores),
    the scores JSON and the last-run state (passed through as given).

    Only the ``n`` shown slots carry values. A ``None`` plan or image means "unchanged" and is
    ``gr.skip()`` (nothing sent); ``CLEAR`` empties it. Texts are sent whole: Gradio sends a
    stream's text outputs as diffs, so an unchanged CoT costs nothing on the wire, whereas every
    ``gr.skip()`` makes Gradio rebuild that component's config (milliseconds each), so hidden
    slots get empty values rather than skips."""

    def img(values: list[Any], i: int) -> Any:
        v = values[i] if i < len(values) else None
        return gr.skip() if v is None else (None if v is CLEAR else v)

    out: list[Any] = [status]
    for i in range(MAX_SLOTS):
        if i >= n:
            out += ["", None, None, ""]
            continue
        out += [cots[i], img(plans, i), img(images, i), html[i] if html is not None else ""]
    out.append({} if table is None else table)
    out.append(last)
    return out


def _timing(elapsed_s: float, queued_s: float | None) -> str:
    """ "Done in 1.2 s" and, when known and noticeable, the time spent waiting in the queue."""
    msg = f"Done in {elapsed_s:.1f} s"
    if queued_s is not None and queued_s >= QUEUE_NOTE_S:
        msg += f" (after {queued_s:.1f} s in the queue)"
    return msg + "."


def check_request(services: Services, prompt: Any, recipe: str, n: int) -> str:
    """The prompt, checked (not empty, within the length limit: a longer one is refused, never
    cut), with the number of candidates and the recipe; raises ``gr.Error`` saying what is wrong."""
    from reasongen.generation import check_prompt
    from reasongen.recipes import get_recipe

    cfg = services.config
    if isinstance(prompt, str) and len(prompt) > cfg.max_prompt_chars:
        raise gr.Error(
            f"The prompt is {len(prompt)} characters long; the limit is {cfg.max_prompt_chars}.",
            title="Prompt too long",
        )
    prompt = check_prompt(prompt)
    if not 1 <= int(n) <= cfg.max_candidates:
        raise gr.Error(f"Number of candidates must be 1..{cfg.max_candidates}.")
    get_recipe(recipe)  # unknown recipe: a clear error before the rate limit is charged
    return prompt


def stream_generation(services: Services, prompt: str, recipe: str, n: int, guidance: float,
                      temperature: float, seed: int, client: str, keep: bool = False,
                      queued_s: float | None = None,
                      frame_interval_s: float = FRAME_INTERVAL_S) -> Iterator[list[Any]]:  # fmt: skip
    """The Generate handler's body (without Gradio's request plumbing, so it can be tested).

    The model runs ahead of the page (``RunAhead``): its events are coalesced into frames sent at
    most every ``frame_interval_s`` (plus one per image preview), and each frame carries only what
    changed since the previous one, so the number of frames does not grow with the number of
    tokens. ``queued_s`` (the time the request waited in the queue) is stated in the final status.

    A prompt that is one of the examples gets that example's GenEval metadata, so rewards that
    need it (``shapes``) can score it; a typed prompt in the shapes world's language gets the
    metadata read from it (``Services.prompt_metadata``); any other prompt is scored without
    metadata. With ``keep`` (a researcher's session) the samples are kept in the session to be
    sent to a study. Generations are limited per ``client`` (the client's address: ``rate_limit``
    per ``rate_window_s``), so fresh sessions from one address share the limit.
    """
    from reasongen.generation import generate_stream
    from reasongen.loading import settings_for
    from reasongen.plans import render_plan
    from reasongen.types import CotDelta, Done, ImageProgress, PlanReady

    cfg = services.config
    prompt = check_request(services, prompt, recipe, n)
    n = int(n)
    wait = services.limiter.check(client)
    if wait:
        raise gr.Error(
            f"Too many generations: at most {cfg.rate_limit} per {cfg.rate_window_s:.0f} s. "
            f"Try again in {wait:.0f} s.",
            title="Slow down",
        )
    loaded = services.loaded
    settings = settings_for(
        loaded, guidance=float(guidance), temperature=float(temperature), max_cot_tokens=cfg.max_cot_tokens
    )
    meta = services.prompt_metadata(prompt)
    notice = outside_language_notice(services, prompt)
    note = (lambda msg: f"{msg}\n\n⚠ {notice}") if notice else (lambda msg: msg)
    t0 = time.monotonic()
    clear = [CLEAR] * n
    cots = [""] * n
    chips = [""] * n  # the CoT with its boxes as chips, once the plan is ready
    yield _frame(n, note("Thinking…"), cots, clear, clear, chips, None, None)
    sent = list(cots)
    samples: list[Any] = [None] * n
    producer = RunAhead(
        lambda: generate_stream(loaded, prompt, recipe, n, int(seed), settings, metadata=meta)
    )
    drawn = lambda ev: isinstance(ev, ImageProgress)  # noqa: E731
    for batch in producer.batches(frame_interval_s, boundary=drawn):
        plans: list[Any] = [None] * n
        images: list[Any] = [None] * n
        status = None
        for ev in batch:
            if isinstance(ev, CotDelta):
                cots[ev.index] += ev.text
            elif isinstance(ev, PlanReady):
                plans[ev.index] = ev.plan
                chips[ev.index] = cot_html(cots[ev.index])
                status = f"Plan {ev.index + 1}: {len(ev.plan)} box(es)"
            elif isinstance(ev, ImageProgress):
                images = list(ev.previews)  # native size: the page enlarges them (PIXEL_CSS)
                done = ev.rows_done == ev.rows_total
                status = "Scoring…" if done else f"Drawing… {ev.rows_done}/{ev.rows_total} token rows"
            elif isinstance(ev, Done):
                samples[ev.sample.index] = ev.sample
        if cots == sent and all(x is None for x in [*plans, *images]):
            continue  # only Done events: nothing to show
        sent = list(cots)
        plans = [None if p is None else render_plan(p, PLAN_SIZE) for p in plans]
        status = status or f"Thinking… {time.monotonic() - t0:.1f} s"
        yield _frame(n, note(status), cots, plans, images, chips, None, gr.skip())
    scores = services.score(samples)
    rows = scores.table()
    html = [c + scores_html(r, scores.errors) for c, r in zip(chips, rows)]
    elapsed = time.monotonic() - t0
    last = {"samples": samples, "scores": scores, "metadata": meta, "sent": {}} if keep else None
    table = {"prompt": prompt, "recipe": recipe, "candidates": rows, "errors": scores.errors}
    yield _frame(n, note(_timing(elapsed, queued_s)), cots, [], [], html, table, last)


def send_to_study(services: Services, user: dict[str, Any] | None, last: dict[str, Any] | None,
                  study_name: str | None, new_study: str | None) -> tuple[str, Any, str, Any]:  # fmt: skip
    """Store the last run's candidates (with their reward scores) in a study as one task.

    Idempotent for the same samples: sending the same run to the same study again stores nothing
    and says which task already holds them (the run remembers, per study, the task it made).
    Returns the message, the study dropdown (the study picked), the emptied "new study" field and
    the run (with that memory)."""
    user = require_researcher(services.current_user(user))
    if not last or not last.get("samples"):
        raise gr.Error("Generate candidates first.")
    samples = last["samples"]
    if len(samples) < 2:
        raise gr.Error("A ranking task needs at least 2 candidates: generate 2 or more.")
    store = services.store
    new_study = (new_study or "").strip()
    if new_study:
        study = store.create_study(
            new_study,
            group_size=max(2, services.config.max_candidates, len(samples)),
            rankings_per_task=3,
            guidelines=services.default_guidelines,
            actor=int(user["id"]),
        )
    elif study_name:
        study = store.get_study(study_name)
    else:
        raise gr.Error("Pick a study or type a name for a new one.")
    sent = last.setdefault("sent", {})
    if study.id in sent:
        msg = f"These candidates are already task {sent[study.id]} in study **{study.name}**: nothing stored."
        return msg, study.name, "", last
    if len(samples) > study.group_size:
        raise gr.Error(f"Study {study.name!r} ranks at most {study.group_size} candidates per task.")
    scores: Scores = last["scores"]
    me = int(user["id"])  # the store checks the role again
    pid = store.add_prompts(
        study.id, [{"prompt": samples[0].prompt, "metadata": last.get("metadata")}], actor=me
    )[0]
    cids = store.add_candidates(pid, samples, rewards=scores.outputs, actor=me)
    task = store.create_task(study.id, cids, actor=me)
    sent[study.id] = task
    names = [s.name for s in store.list_studies()]
    msg = f"Stored {len(cids)} candidates as task {task} in study **{study.name}**."
    return msg, gr.Dropdown(choices=names, value=study.name), "", last


def counter_html(prompt: str, limit: int) -> str:
    """The character counter under the prompt (red, with a word of refusal, over the limit)."""
    n = len(prompt)
    if n > limit:
        return f"<span class='rg-count rg-over'>{n} / {limit} characters: too long, shorten it</span>"
    return f"<span class='rg-count'>{n} / {limit} characters</span>"


COUNTER_JS = """(p) => {
  const n = (p || '').length;
  return n > LIMIT
    ? `<span class='rg-count rg-over'>${n} / LIMIT characters: too long, shorten it</span>`
    : `<span class='rg-count'>${n} / LIMIT characters</span>`;
}"""
"""``counter_html`` in the browser (no server round trip per keystroke); LIMIT is replaced."""


def queue_wait_s(blocks: Any, request: Any) -> float | None:
    """How long this request waited in Gradio's queue before its handler started, read from the
    queue's record of the session's running event (``None`` when it cannot be found)."""
    try:
        session = request.session_hash
        events = [e for job in blocks._queue.active_jobs if job for e in job if e.session_hash == session]
        if not events:
            return None
        return max(0.0, time.monotonic() - max(e.enqueue_time for e in events))
    except Exception:  # a private structure of Gradio's: no figure rather than a failure
        return None


def _slot(i: int, image_size: int) -> Slot:
    """One candidate's column (inside the current row)."""
    with gr.Column(visible=i < 2, min_width=160) as col:
        cot = gr.Textbox(label=f"Candidate {i + 1}: chain of thought (raw)", lines=5, max_lines=12,
                         interactive=False, autoscroll=True, elem_id=f"rg-cot-{i}")  # fmt: skip
        plan = gr.Image(label="Plan", format="png", buttons=IMAGE_BUTTONS, interactive=False, height=200,
                        elem_id=f"rg-plan-{i}")  # fmt: skip
        size = f"{image_size}×{image_size} px"
        image = gr.Image(label=f"Image · {size}, enlarged", format="png",
                         elem_classes=["rg-pixel"],
                         buttons=IMAGE_BUTTONS, interactive=False, height=200,
                         elem_id=f"rg-image-{i}")  # fmt: skip
        scores = gr.HTML(elem_id=f"rg-scores-{i}")
    return Slot(col, cot, plan, image, scores)


STOP_SETTLE_S = 0.3
"""How long Stop waits before it writes its status: the cancelled run's last frames are already
on their way to the page, and one that lands after "Stopped." would overwrite it."""


def _stopped() -> str:
    """The status after Stop (see ``STOP_SETTLE_S``)."""
    time.sleep(STOP_SETTLE_S)
    return "Stopped."


@dataclass
class SendBox:
    """The researcher-only "send to a study" box under a run's candidates."""

    group: Any
    study_choice: Any
    message: Any


def send_box(services: Services, user_state: Any, last_run: Any, *, intro: str, button: str, elem_id: str,
             api_name: str) -> SendBox:  # fmt: skip
    """Lay out (hidden until a researcher logs in) and wire the box that sends ``last_run``'s
    candidates to a study with :func:`send_to_study`; used by the Generate and Compare tabs."""
    with gr.Group(visible=False) as group:
        gr.Markdown(intro)
        study_choice = gr.Dropdown(choices=[], label="Study", allow_custom_value=True)
        new_study = gr.Textbox(label="…or a new study named", max_length=200)
        send = gr.Button(button, elem_id=elem_id)
        message = gr.Markdown()

    @ui_errors
    def on_send(user: Any, last: Any, study: Any, new: Any) -> tuple[str, Any, str, Any]:
        return send_to_study(services, user, last, study, new)

    send.click(on_send, [user_state, last_run, study_choice, new_study],
               [message, study_choice, new_study, last_run], api_name=api_name,
               concurrency_id=ANNOTATE_QUEUE, concurrency_limit=ANNOTATE_LIMIT)  # fmt: skip
    return SendBox(group, study_choice, message)


def build_generate_tab(services: Services, user_state: Any) -> GenerateTab:
    """Lay out the Generate tab and wire its events (call inside a ``gr.Blocks``)."""
    from reasongen.recipes import RECIPES

    cfg = services.config
    loaded = services.loaded
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            prompt = gr.Textbox(
                label="Prompt (Enter generates, Shift+Enter starts a new line)",
                placeholder="a photo of a red circle left of a blue square",
                lines=1,
                max_lines=4,
                elem_id="rg-prompt",
            )
            counter = gr.HTML(counter_html("", cfg.max_prompt_chars), elem_id="rg-prompt-count")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="rg-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="rg-stop")
            recipe = gr.Dropdown(list(RECIPES), value=cfg.recipe, label="Recipe")
            n = gr.Slider(1, cfg.max_candidates, value=min(2, cfg.max_candidates), step=1,
                          label="Candidates", elem_id="rg-n")  # fmt: skip
            with gr.Accordion("Sampling", open=False):
                guidance = gr.Slider(0.0, 10.0, value=loaded.defaults.guidance, step=0.5,
                                     label="Guidance (CFG weight)")  # fmt: skip
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Image temperature")
                seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Accordion("About this model", open=False, elem_id="rg-about"):
                gr.Markdown(about_markdown(services, list(services.rewards)))
            if services.examples:
                examples = _round_robin_examples(services.examples)
                pick = gr.Dataset(
                    components=[gr.Textbox(visible=False), gr.Textbox(visible=False)],
                    headers=["category", "prompt"],
                    samples=[[ex.category, ex.prompt] for ex in examples],
                    samples_per_page=len({ex.category for ex in examples}),
                    label="Examples by category, GenEval and compositional (click one to use it)",
                    elem_id="rg-examples",
                )
                pick.click(lambda row: row[1], pick, prompt, api_visibility="private", queue=False)
            last_run = gr.State(None, time_to_live=LAST_RUN_TTL_S)
            box = send_box(services, user_state, last_run, intro="**Send these candidates to a study** "
                           "(researchers)", button="Send to study", elem_id="rg-send",
                           api_name="send_to_study")  # fmt: skip
        with gr.Column(scale=3):
            status = gr.Markdown("", elem_id="rg-status")
            slots = []
            for row in range(0, MAX_SLOTS, SLOTS_PER_ROW):
                with gr.Row(equal_height=False):
                    for i in range(row, min(row + SLOTS_PER_ROW, MAX_SLOTS)):
                        slots.append(_slot(i, int(getattr(loaded, "image_size", 0))))
            with gr.Accordion("Scores as JSON", open=False):
                scores_json = gr.JSON(label="Per-candidate rewards", elem_id="rg-scores-json")

    outputs = [status]
    for s in slots:
        outputs += [s.cot, s.plan, s.image, s.scores]  # columns: shown by the slider (n.change)
    outputs += [scores_json, last_run]

    blocks = gr.context.Context.root_block

    @ui_errors_stream
    def on_generate(p: str, r: str, k: float, g: float, t: float, sd: float, user: Any,
                    request: gr.Request) -> Iterator[list[Any]]:  # fmt: skip
        queued = queue_wait_s(blocks, request)
        user = services.current_user(user)
        keep = bool(user) and user.get("role") == "researcher"
        address = client_address(request)
        yield from stream_generation(services, p, r, int(k), g, t, int(sd or 0), address, keep, queued)

    inputs = [prompt, recipe, n, guidance, temperature, seed, user_state]
    # Progress and an error's badge go on the status line only: a refused request leaves the
    # candidates of the previous run as they were.
    gen_kw = {
        "concurrency_id": GENERATE_QUEUE,
        "concurrency_limit": cfg.concurrency,
        "show_progress_on": [status],
    }
    click = run.click(on_generate, inputs, outputs, api_name="generate", **gen_kw)
    submit = prompt.submit(on_generate, inputs, outputs, api_visibility="private", **gen_kw)
    stop.click(_stopped, None, status, cancels=[click, submit], queue=False, api_visibility="private")
    prompt.change(None, prompt, counter, js=COUNTER_JS.replace("LIMIT", str(cfg.max_prompt_chars)),
                 queue=False, api_visibility="private")  # fmt: skip
    n.change(lambda k: [gr.Column(visible=i < int(k)) for i in range(MAX_SLOTS)], n,
             [s.column for s in slots], queue=False, api_visibility="private")  # fmt: skip
    return GenerateTab(prompt, run, status, slots, scores_json, last_run, box.group, box.study_choice,
                       box.message)  # fmt: skip
