"""Two-step reasoning generation with streaming: CoT → plan → image.

``generate_stream`` is the one entry point every caller uses (CLI, app, studies, GRPO rollouts);
it yields ``CotDelta`` while the chain of thought is sampled, ``PlanReady`` the moment a row's CoT
ends, ``ImageProgress`` with decoded previews every few token rows, and ``Done`` per sample.
``generate`` runs the same stream and returns the samples; given a list of prompts it decodes them
together (one random stream per prompt, so a prompt's samples do not depend on its batch-mates).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .decode import decode_image, decode_text
from .layout import cot_text_ids, image_prefix, left_pad, prompt_ids
from .loading import LoadedModel, settings_for
from .plans import parse_plan
from .recipes import get_recipe
from .tokenizer import BOI, BOS, EOS, PAD
from .types import (
    CotDelta,
    CotEnd,
    Done,
    ImageProgress,
    PlanReady,
    Sample,
    SamplingSettings,
    StreamEvent,
)
from .vq_decode import decode_tokens

MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 1024
MAX_GROUP = 64
MAX_BATCH = 256  # rows decoded together by a multi-prompt ``generate``
_CONTROL_STRINGS = (BOS, EOS, PAD, BOI)


def check_prompt(prompt: Any) -> str:
    """Return the prompt with whitespace normalised; raise ``ValueError`` if it is unusable."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    cleaned = " ".join(prompt.split())
    if not cleaned:
        raise ValueError("prompt is empty: type what the image should show")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(cleaned)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return cleaned


def check_settings(settings: SamplingSettings, n: int) -> None:
    """Raise ``ValueError`` for settings or group sizes that cannot be sampled."""
    if not isinstance(n, int) or not 1 <= n <= MAX_GROUP:
        raise ValueError(f"n (samples per prompt) must be an integer in 1..{MAX_GROUP}, got {n!r}")
    s = settings
    if s.guidance < 0:
        raise ValueError(f"guidance must be >= 0, got {s.guidance}")
    for name in ("temperature", "cot_temperature"):
        if getattr(s, name) < 0:
            raise ValueError(f"{name} must be >= 0 (0 = greedy), got {getattr(s, name)}")
    for name in ("top_p", "cot_top_p"):
        v = getattr(s, name)
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {v}")
    for name in ("top_k", "cot_top_k"):
        v = getattr(s, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if s.max_cot_tokens < 1:
        raise ValueError(f"max_cot_tokens must be >= 1, got {s.max_cot_tokens}")


def clean_cot(text: str) -> str:
    """Decoded CoT text without control tokens (box tokens are kept: they are the plan)."""
    for t in _CONTROL_STRINGS:
        text = text.replace(t, "")
    return text


def tokens_to_images(loaded: LoadedModel, tokens: torch.Tensor) -> list[Image.Image]:
    """Decode image tokens ``[B, N]`` with the VQ decoder into PIL images."""
    with torch.inference_mode():
        pixels = decode_tokens(loaded.model, tokens.to(loaded.device))  # [B, H, W, 3]
    proc = loaded.processor.image_processor
    mean = torch.tensor(proc.image_mean, device=pixels.device)
    std = torch.tensor(proc.image_std, device=pixels.device)
    arr = ((pixels.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def _previews(loaded: LoadedModel, done: torch.Tensor, rows: int) -> list[Image.Image]:
    """Decode the first ``rows`` token rows; the undrawn part is shown grey."""
    b, k = done.shape
    full = torch.zeros((b, loaded.num_image_tokens), dtype=torch.long, device=done.device)
    full[:, :k] = done
    images = tokens_to_images(loaded, full)
    cut = round(images[0].height * rows / loaded.grid)
    for im in images:
        if cut < im.height:
            im.paste((128, 128, 128), (0, cut, im.width, im.height))
    return images


class _CotStreamer:
    """Incremental text for one row: emits only stable text (no half-decoded UTF-8)."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def text(self) -> str:
        return clean_cot(self.tok.decode(self.ids, skip_special_tokens=False))

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.text()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def flush(self) -> str:
        """All text not emitted yet, held-back partial characters included."""
        text = self.text()
        if not text.startswith(self.emitted):
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta


def generate_stream(
    loaded: LoadedModel,
    prompt: str,
    recipe: str = "got-r1",
    n: int = 1,
    seed: int = 0,
    settings: SamplingSettings | None = None,
    metadata: dict[str, Any] | None = None,
    preview_every_rows: int | None = None,
) -> Iterator[StreamEvent]:
    """Generate ``n`` samples of one prompt as one batch, yielding stream events.

    Order: ``CotDelta``s (interleaved across rows), one ``PlanReady`` per row as its CoT ends (CoT
    recipes only), ``ImageProgress`` every ``preview_every_rows`` token rows (default: four
    previews per image; 0 turns previews off), then one ``Done`` per sample, in index order.
    """
    return _batch_events(loaded, [prompt], recipe, n, [seed], settings, [metadata], preview_every_rows)


def generate(
    loaded: LoadedModel,
    prompt: str | Sequence[str],
    recipe: str = "got-r1",
    n: int = 1,
    seed: int | Sequence[int] = 0,
    settings: SamplingSettings | None = None,
    metadata: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
    max_batch: int = MAX_BATCH,
) -> list[Sample]:
    """Generate ``n`` samples of each prompt; return them prompt-major (prompt 0's ``n`` samples
    in index order, then prompt 1's, ...).

    ``prompt`` is one prompt or a list. With a list, prompts are decoded together in batches of at
    most ``max_batch`` rows (``n`` rows per prompt), ``seed`` is one seed per prompt or a base
    (prompt ``k`` gets ``seed + k``), and ``metadata`` is ``None`` or one entry per prompt. Each
    prompt draws from its own random stream, so its samples are those of
    ``generate(loaded, prompt_k, recipe, n, seed_k, ...)`` whatever else shares the batch (up to
    floating-point rounding of the padded batch).
    """
    if isinstance(prompt, str):
        if not isinstance(seed, numbers.Integral) or isinstance(metadata, Sequence):
            raise ValueError("one prompt takes one integer seed and one metadata dict (or None)")
        prompts, seeds, metas = [prompt], [seed], [metadata]
    else:
        prompts = list(prompt)
        if not prompts:
            raise ValueError("no prompts to generate")
        base = isinstance(seed, numbers.Integral)
        seeds = [int(seed) + k for k in range(len(prompts))] if base else list(seed)  # type: ignore[arg-type, operator]
        metas = [None] * len(prompts) if metadata is None else list(metadata)  # type: ignore[arg-type]
        if len(seeds) != len(prompts) or len(metas) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts need as many seeds and metadata entries; got "
                             f"{len(seeds)} seeds and {len(metas)} metadata entries")  # fmt: skip
    if isinstance(n, int) and max_batch < n:
        raise ValueError(f"max_batch ({max_batch}) must hold at least the n = {n} rows of one prompt")
    per = max(1, max_batch // max(n, 1))  # n itself is checked with the settings
    out: list[Sample] = []
    for k in range(0, len(prompts), per):
        chunk = slice(k, k + per)
        events = _batch_events(loaded, prompts[chunk], recipe, n, seeds[chunk], settings, metas[chunk], 0)
        out.extend(e.sample for e in events if isinstance(e, Done))
    return out


def _batch_events(
    loaded: LoadedModel,
    prompts: list[str],
    recipe: str,
    n: int,
    seeds: list[int],
    settings: SamplingSettings | None,
    metadata: list[dict[str, Any] | None],
    preview_every_rows: int | None,
) -> Iterator[StreamEvent]:
    """The stream of ``generate_stream`` for ``n`` samples of each of ``len(prompts)`` prompts in
    one batch: row ``r = k·n + i`` is sample ``i`` of prompt ``k``, drawn from prompt ``k``'s own
    generator (``decode``'s per-block streams). Events name rows by ``r``; ``Done`` samples carry
    their index ``i`` within their prompt's group."""
    prompts = [check_prompt(p) for p in prompts]
    rec = get_recipe(recipe)
    settings = settings_for(loaded, settings)
    check_settings(settings, n)
    for sd in seeds:
        if isinstance(sd, bool) or not isinstance(sd, numbers.Integral):
            raise ValueError(f"seeds must be integers, got {sd!r}")
    ids, dev, s, tok = loaded.ids, loaded.device, settings, loaded.tokenizer
    p_ids = [prompt_ids(tok, ids, rec, p) for p in prompts]
    for x in p_ids:
        if len(x) > MAX_PROMPT_TOKENS:
            raise ValueError(f"prompt is {len(x)} tokens long; the limit is {MAX_PROMPT_TOKENS}")
    gens = [torch.Generator(device=dev).manual_seed(int(sd)) for sd in seeds]
    gen: torch.Generator | list[torch.Generator] = gens[0] if len(gens) == 1 else gens
    rows = len(prompts) * n
    owner = [r // n for r in range(rows)]  # row -> prompt

    cot_ids: list[list[int]] = [[] for _ in range(rows)]
    cot_lps: list[list[float]] = [[] for _ in range(rows)]
    ends: list[CotEnd] = ["none"] * rows
    texts = [""] * rows
    if rec.has_cot:
        ends = ["length"] * rows
        streamers = [_CotStreamer(loaded.tokenizer) for _ in range(rows)]
        x, m = left_pad([p_ids[owner[r]] for r in range(rows)], ids.pad, dev)  # [R, L]
        steps = decode_text(loaded.model, x, m, s, ids, gen)
        for step in steps:
            toks, lps = step.tokens.tolist(), step.logprobs.tolist()
            for i in range(rows):
                if step.was_finished[i]:
                    continue
                cot_ids[i].append(toks[i])
                cot_lps[i].append(lps[i])
                if toks[i] in (ids.boi, ids.eos):
                    ends[i] = "boi" if toks[i] == ids.boi else "eos"
                    if delta := streamers[i].flush():
                        yield CotDelta(i, delta)
                    texts[i] = streamers[i].text()
                    yield PlanReady(i, parse_plan(texts[i]))
                elif delta := streamers[i].push(toks[i]):
                    yield CotDelta(i, delta)
        for i in range(rows):
            if ends[i] == "length":
                if delta := streamers[i].flush():
                    yield CotDelta(i, delta)
                texts[i] = streamers[i].text()
                yield PlanReady(i, parse_plan(texts[i]))

    prefixes = [image_prefix(tok, ids, rec, prompts[owner[i]], p_ids[owner[i]],
                             cot_text_ids(cot_ids[i], ends[i]), texts[i])
                for i in range(rows)]  # fmt: skip
    x, m = left_pad(prefixes, ids.pad, dev)  # [R, L]
    grid = loaded.grid
    every = grid // 4 if preview_every_rows is None else preview_every_rows
    tokens: list[torch.Tensor] = []  # per step [R]; stacked when needed (no per-token copy)
    lps: list[torch.Tensor] = []
    steps = decode_image(loaded.model, x, m, s, ids, gen)
    for j, step in enumerate(steps):
        tokens.append(step.tokens)
        lps.append(step.logprobs)
        done_rows = (j + 1) // grid
        if every and (j + 1) % grid == 0 and done_rows % every == 0 and done_rows < grid:
            yield ImageProgress(done_rows, grid, _previews(loaded, torch.stack(tokens, dim=1), done_rows))
    image_tokens = torch.stack(tokens, dim=1)  # [R, N]
    image_lps = torch.stack(lps, dim=1)  # [R, N], float32 (sampling_logprobs)

    images = tokens_to_images(loaded, image_tokens)
    yield ImageProgress(grid, grid, images)
    for r in range(rows):
        k = owner[r]
        sample = Sample(
            prompt=prompts[k],
            recipe=rec.name,
            model_id=loaded.model_id,
            seed=int(seeds[k]),
            settings=s,
            prompt_ids=p_ids[k],
            cot_text=texts[r],
            cot_token_ids=cot_ids[r],
            cot_logprobs=cot_lps[r],
            cot_end=ends[r],
            prefix_ids=prefixes[r],
            image_token_ids=image_tokens[r].tolist(),
            image_logprobs=image_lps[r].tolist(),
            plan=parse_plan(texts[r]) if rec.has_cot else None,
            image=images[r],
            metadata=metadata[k],
            index=r - k * n,
        )
        yield Done(sample)
