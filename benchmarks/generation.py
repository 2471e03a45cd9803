"""Generation speed: ReasonGen's engine against transformers' own Janus ``generate``.

For every size it can run — the embedded model (or a shapes-sized random model when none is
shipped) on any device, and random-weight Janus-Pro-1B/7B configs on a GPU — it prints ms per
image token, seconds per image and per CoT + image, at each batch size, the ratio to transformers'
``generate(generation_mode="image")`` (and text ``generate`` for the CoT) on the same model in the
same run, and on a GPU the fraction of the bandwidth floor reached (one read of the weights per
token). Both sides include the VQ decode of the final images; its time alone is printed too
(``vq-decode``), since no decode loop can make the image call faster than ``ref / vq``. On the
CPU, times are the process's CPU time (robust to other load on a shared machine); on a GPU, wall
time.

    python benchmarks/generation.py                       # embedded model, batch 1 and 16
    python benchmarks/generation.py --sizes embedded,1b,7b --batches 1,16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reasongen.devices import resolve_device, resolve_dtype
from reasongen.generation import generate
from reasongen.loading import LoadedModel, default_model_path, load_model, settings_for, wrap_loaded
from reasongen.tiny import build_random

# Janus-Pro language models (DeepSeek-LLM): hidden, layers, heads, intermediate; 576 image tokens.
REAL_SIZES = {"1b": (2048, 24, 16, 5632), "7b": (4096, 30, 32, 11008)}
PROMPT = "a red circle"
"""The prompt every timed call draws."""
GUIDANCE = 5.0
"""The classifier-free guidance scale of every timed call, on both sides."""
# Datasheet HBM bandwidth (bytes/s) by the name torch gives the GPU; the floor column needs one.
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}


def gpu_bandwidth(name: str) -> float | None:
    """The datasheet bandwidth of the GPU called ``name`` (e.g. 'NVIDIA H200'), or None if unknown."""
    return next((bw for key, bw in BANDWIDTH.items() if key in name), None)


@dataclass
class Row:
    size: str
    batch: int
    what: str
    ours_s: float
    ref_s: float
    tokens: int
    bound: float = 0.0  # vq-decode rows: the reference's image time over the VQ decode time

    def line(self, weight_bytes: int, bandwidth: float | None) -> str:
        if self.what == "vq-decode":
            return (f"{self.size:>9} {self.batch:>5} {self.what:>12} {'':>9} {self.ours_s:9.2f} {'':>9}   "
                    f"(in both; speedup bound with a free decode loop: {self.bound:.1f}x)")  # fmt: skip
        ms_tok = 1000 * self.ours_s / self.tokens
        floor = ""
        if bandwidth:
            floor_s = self.tokens * weight_bytes / bandwidth
            floor = f"{floor_s / self.ours_s:8.1%}"
        return (f"{self.size:>9} {self.batch:>5} {self.what:>12} {ms_tok:9.2f} {self.ours_s:9.2f} "
                f"{self.ref_s:9.2f} {self.ref_s / self.ours_s:7.2f}x {floor:>8}")  # fmt: skip


def random_real_size(size: str, device: str) -> LoadedModel:
    """A Janus model of a real size with random weights (bf16 on GPU) and a tiny tokenizer."""
    hidden, layers, heads, inter = REAL_SIZES[size]
    dtype = resolve_dtype("auto", torch.device(device))
    model, processor = build_random(
        vocab_size=102400, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=inter,
        image_size=384, vq_downsample=16, codebook_size=16384, vq_base_channels=128,
        max_position_embeddings=4096, dtype=dtype, device=device,
    )  # fmt: skip
    return wrap_loaded(model, processor, model_id=f"random-{size}")


def shapes_sized(device: str) -> LoadedModel:
    """The embedded model if shipped, else a random model of its size (256 image tokens)."""
    path = default_model_path()
    if path is not None:
        return load_model(path, device=device, dtype="float32")
    model, processor = build_random(hidden_size=256, num_layers=6, num_heads=4, image_size=128,
                                    vq_downsample=8, codebook_size=512, device=device)  # fmt: skip
    return wrap_loaded(model, processor, model_id="random-shapes-size")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, repeats: int = 1) -> float:
    """Median seconds of ``repeats`` calls: wall time on a GPU; on the CPU the process's CPU time,
    which other load on a shared machine barely changes (run with --threads 1 for a fair
    comparison)."""
    clock = time.perf_counter if device == "cuda" else time.process_time
    times = []
    for _ in range(repeats):
        _sync(device)
        t = clock()
        fn()
        _sync(device)
        times.append(clock() - t)
    return statistics.median(times)


def _progress(what: str) -> None:
    """A timestamped line on stderr, so a run cut short by a time limit still says where it was."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def image_calls(
    loaded: LoadedModel, batch: int, prefix: torch.Tensor
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """The two image calls every comparison times: our engine's ``generate`` of ``batch`` images of
    the benchmark prompt (``direct``, ``GUIDANCE``) and transformers' image loop (then its VQ decode)
    on ``batch`` rows of that prompt's ``prefix`` (:func:`image_prefix`)."""
    settings = settings_for(loaded, guidance=GUIDANCE)
    ours = partial(generate, loaded, PROMPT, "direct", n=batch, settings=settings)
    return ours, partial(_reference_image, loaded.model, prefix.repeat(batch, 1))


def image_prefix(loaded: LoadedModel) -> torch.Tensor:
    """``[1, P]``: the token ids our engine puts before the image for the benchmark prompt, which
    transformers' loop is given as its input."""
    sample = generate(loaded, PROMPT, "direct", settings=settings_for(loaded, guidance=GUIDANCE))[0]
    return torch.tensor([sample.prefix_ids], device=loaded.device)


def vq_decode_time(loaded: LoadedModel, batch: int, device: str, repeats: int) -> float:
    """Median seconds (:func:`_time`) of the model's VQ decode of ``batch`` random token images, the
    module call both sides' image calls end with."""
    model = loaded.model
    tokens = torch.randint(0, model.config.vq_config.num_embeddings, (batch, loaded.num_image_tokens),
                           device=loaded.device)  # fmt: skip
    with torch.inference_mode():
        return _time(partial(model.decode_image_tokens, tokens), device, repeats)


def run_size(
    loaded: LoadedModel,
    size: str,
    batches: list[int],
    cot_tokens: int,
    device: str,
    repeats: int = 1,
    emit: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Time our engine and transformers' loops on one model at each batch size; ``emit`` is called
    with each row as soon as it is measured."""
    model, n_img = loaded.model, loaded.num_image_tokens
    image_only = settings_for(loaded, guidance=GUIDANCE)
    with_cot = settings_for(loaded, guidance=GUIDANCE, max_cot_tokens=cot_tokens)
    prefix = image_prefix(loaded)
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        if emit is not None:
            emit(row)

    for b in batches:
        _progress(f"{size} batch {b}: warm-up")
        generate(loaded, "warm up", "direct", n=b, seed=0, settings=image_only)  # allocations, kernels
        run_ours, run_ref = image_calls(loaded, b, prefix)
        _progress(f"{size} batch {b}: image, ours")
        ours = _time(run_ours, device, repeats)
        _progress(f"{size} batch {b}: image, transformers")
        ref = _time(run_ref, device, repeats)
        add(Row(size, b, "image", ours, ref, n_img))
        # CoT + image: exactly `cot_tokens` CoT tokens on both sides (stop tokens forbidden).
        handle = model.lm_head.register_forward_hook(_forbid([loaded.ids.boi, loaded.ids.eos]))
        try:
            run_ours = partial(generate, loaded, PROMPT, "got-r1", n=b, settings=with_cot)
            _progress(f"{size} batch {b}: CoT + image, ours")
            ours_c = _time(run_ours, device, repeats)
            _progress(f"{size} batch {b}: CoT + image, transformers")
            ref_c = _time(partial(_reference_cot_image, model, prefix.repeat(b, 1), cot_tokens), device,
                          repeats)  # fmt: skip
        finally:
            handle.remove()
        add(Row(size, b, f"cot{cot_tokens}+image", ours_c, ref_c, n_img + cot_tokens))
        # The VQ decode is the same module call on both sides: it bounds the image speedup.
        vq = vq_decode_time(loaded, b, device, repeats)
        add(Row(size, b, "vq-decode", vq, vq, n_img, bound=ref / vq))
    return rows


def _reference_image(model, prefix: torch.Tensor) -> None:
    """transformers' image loop with its own default (static) cache, then the VQ decode that ours
    includes too."""
    tokens = model.generate(prefix, attention_mask=torch.ones_like(prefix), generation_mode="image",
                            do_sample=True, guidance_scale=GUIDANCE)  # fmt: skip
    with torch.inference_mode():
        model.decode_image_tokens(tokens)


def _reference_cot_image(model, prefix: torch.Tensor, cot_tokens: int) -> None:
    """transformers' text generate for the CoT, then its image loop on prompt + CoT + BOI."""
    text = model.generate(prefix, attention_mask=torch.ones_like(prefix), max_new_tokens=cot_tokens,
                          min_new_tokens=cot_tokens, do_sample=True)  # fmt: skip
    _reference_image(model, torch.cat([text, prefix[:, -1:]], dim=1))


def _forbid(token_ids: list[int]):
    def hook(_module, _inputs, out):
        out = out.clone()
        out[..., token_ids] = -1e4
        return out

    return hook


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="embedded", help="comma list of embedded, 1b, 7b")
    p.add_argument("--batches", default="1,16", help="comma list of batch sizes")
    p.add_argument("--cot-tokens", type=int, default=128, help="CoT length for the CoT + image rows")
    p.add_argument("--device", default=str(resolve_device("auto")))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per figure (the median is shown)")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="GPU memory bandwidth in bytes/s for the floor column (default: the datasheet "
                        "figure for H200, H100 or A100 by the GPU's name)")  # fmt: skip
    args = p.parse_args()
    transformers.logging.set_verbosity_error()  # its generate warns about our explicit arguments
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    bandwidth = None
    if args.device == "cuda":
        name = torch.cuda.get_device_name()
        bandwidth = args.bandwidth or gpu_bandwidth(name)
        print(f"gpu={name} bandwidth={bandwidth or 'unknown (pass --bandwidth)'}")
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"median of {args.repeats} calls")  # fmt: skip
    print("reference: transformers JanusForConditionalGeneration.generate (image mode with its default "
          "static cache; text mode for the CoT), same model, same run")  # fmt: skip
    print(f"{'size':>9} {'batch':>5} {'what':>12} {'ms/token':>9} {'ours s':>9} {'ref s':>9} {'speedup':>8} "
          f"{'floor':>8}")  # fmt: skip
    for size in args.sizes.split(","):
        if size in REAL_SIZES and args.device != "cuda":
            print(f"{size:>9}  skipped: random {size} weights need a GPU")
            continue
        _progress(f"{size}: building")
        loaded = shapes_sized(args.device) if size == "embedded" else random_real_size(size, args.device)
        lm_params = loaded.model.model.language_model.parameters()
        weight_bytes = sum(p.numel() * p.element_size() for p in lm_params)

        def show(row: Row, weight_bytes: int = weight_bytes) -> None:
            print(row.line(weight_bytes, bandwidth), flush=True)

        run_size(loaded, size, batches, args.cot_tokens, args.device, args.repeats, emit=show)
        del loaded
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
