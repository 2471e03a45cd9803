"""Two-step reasoning generation with streaming: CoT → plan → image.

``generate_stream`` is the one entry point every caller uses (CLI, app, studies, GRPO rollouts);
it yields ``CotDelta`` while the chain of thought is sampled, ``PlanReady`` the moment a row's CoT
ends, ``ImageProgress`` with decoded previews every few token rows, and ``Done`` per sample.
``generate`` runs the same stream and returns the samples.
"""

from __future__ import annotations

from collections.abc import Iterator
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

MAX_PROMPT_CHARS = 2000
MAX_PROMPT_TOKENS = 1024
MAX_GROUP = 64
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
        pixels = loaded.model.decode_image_tokens(tokens.to(loaded.device))  # [B, H, W, 3]
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
    prompt = check_prompt(prompt)
    rec = get_recipe(recipe)
    settings = settings_for(loaded, settings)
    check_settings(settings, n)
    ids, dev, s, tok = loaded.ids, loaded.device, settings, loaded.tokenizer
    p_ids = prompt_ids(tok, ids, rec, prompt)
    if len(p_ids) > MAX_PROMPT_TOKENS:
        raise ValueError(f"prompt is {len(p_ids)} tokens long; the limit is {MAX_PROMPT_TOKENS}")
    gen = torch.Generator(device=dev).manual_seed(int(seed))

    cot_ids: list[list[int]] = [[] for _ in range(n)]
    cot_lps: list[list[float]] = [[] for _ in range(n)]
    ends: list[CotEnd] = ["none"] * n
    texts = [""] * n
    if rec.has_cot:
        ends = ["length"] * n
        streamers = [_CotStreamer(loaded.tokenizer) for _ in range(n)]
        x, m = left_pad([p_ids] * n, ids.pad, dev)  # [n, L]
        steps = decode_text(loaded.model, x, m, s, ids, gen)
        for step in steps:
            toks, lps = step.tokens.tolist(), step.logprobs.tolist()
            for i in range(n):
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
        for i in range(n):
            if ends[i] == "length":
                if delta := streamers[i].flush():
                    yield CotDelta(i, delta)
                texts[i] = streamers[i].text()
                yield PlanReady(i, parse_plan(texts[i]))

    prefixes = [image_prefix(tok, ids, rec, prompt, p_ids, cot_text_ids(cot_ids[i], ends[i]), texts[i])
                for i in range(n)]  # fmt: skip
    x, m = left_pad(prefixes, ids.pad, dev)  # [n, L]
    grid = loaded.grid
    every = grid // 4 if preview_every_rows is None else preview_every_rows
    tokens: list[torch.Tensor] = []  # per step [n]; stacked when needed (no per-token copy)
    lps: list[torch.Tensor] = []
    steps = decode_image(loaded.model, x, m, s, ids, gen)
    for j, step in enumerate(steps):
        tokens.append(step.tokens)
        lps.append(step.logprobs)
        rows = (j + 1) // grid
        if every and (j + 1) % grid == 0 and rows % every == 0 and rows < grid:
            yield ImageProgress(rows, grid, _previews(loaded, torch.stack(tokens, dim=1), rows))
    image_tokens = torch.stack(tokens, dim=1)  # [n, N]
    image_lps = torch.stack(lps, dim=1)  # [n, N], float32 (sampling_logprobs)

    images = tokens_to_images(loaded, image_tokens)
    yield ImageProgress(grid, grid, images)
    for i in range(n):
        sample = Sample(
            prompt=prompt,
            recipe=rec.name,
            model_id=loaded.model_id,
            seed=int(seed),
            settings=s,
            prompt_ids=p_ids,
            cot_text=texts[i],
            cot_token_ids=cot_ids[i],
            cot_logprobs=cot_lps[i],
            cot_end=ends[i],
            prefix_ids=prefixes[i],
            image_token_ids=image_tokens[i].tolist(),
            image_logprobs=image_lps[i].tolist(),
            plan=parse_plan(texts[i]) if rec.has_cot else None,
            image=images[i],
            metadata=metadata,
            index=i,
        )
        yield Done(sample)


def generate(
    loaded: LoadedModel,
    prompt: str,
    recipe: str = "got-r1",
    n: int = 1,
    seed: int = 0,
    settings: SamplingSettings | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Sample]:
    """Generate ``n`` samples of ``prompt`` (one batch) and return them in index order."""
    events = generate_stream(loaded, prompt, recipe, n, seed, settings, metadata, preview_every_rows=0)
    return [e.sample for e in events if isinstance(e, Done)]
