"""Command line: ``python -m reasongen generate|convert ...``.

``generate`` consumes the same event stream as the app: it prints the chain of thought as it is
sampled, shows a progress bar over image token rows, and writes per sample ``NN.png``,
``NN.cot.txt`` and ``NN.json`` (the plan, log-prob summary and settings; ``--save-tokens`` adds
the full token ids and log-probs) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .recipes import RECIPES, released_cot_cap


def _generate_args(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate images for one prompt (CoT, plan, image)")
    p.add_argument("prompt", help="what the image should show")
    p.add_argument(
        "--model",
        default=None,
        help="HF-format folder or hub id (default: the embedded model under assets/models)",
    )
    p.add_argument("--recipe", default="got-r1", choices=list(RECIPES), help="prompt recipe")
    p.add_argument("--n", type=int, default=4, help="samples of the prompt, drawn as one batch")
    p.add_argument("--seed", type=int, default=0, help="random seed of the batch")
    p.add_argument("--guidance", type=float, default=None, help="CFG weight (default: the model's, 5)")
    p.add_argument("--temperature", type=float, default=1.0, help="image-token temperature (0 = greedy)")
    p.add_argument("--cot-temperature", type=float, default=1.0, help="CoT temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=None, help="image-token top-k")
    p.add_argument("--top-p", type=float, default=None, help="image-token top-p")
    p.add_argument(
        "--max-cot-tokens", type=int, default=None,
        help="cap on CoT length (default: the recipe's released cap, e.g. got-r1 600; else 256)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on GPU)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--save-tokens", action="store_true", help="also store token ids and log-probs")
    p.add_argument("--quiet", action="store_true", help="do not print the CoT while it streams")


def _convert_args(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a DeepSeek-layout Janus checkpoint to HF format")
    p.add_argument("src", type=Path, help="folder in DeepSeek's original Janus layout")
    p.add_argument("dst", type=Path, help="output folder (HF layout)")
    p.add_argument("--dtype", default=None, help="save in this dtype (default: as stored)")
    p.add_argument(
        "--box-tokens", choices=("auto", "add", "keep"), default="auto",
        help="GoT-R1's four box tokens when the tokenizer lacks them: add (GoT-R1's order), keep, "
        "or auto (add for a folder named like GoT-R1 or one holding some of them)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasongen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _generate_args(sub)
    _convert_args(sub)
    return parser


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .generation import generate_stream
    from .loading import load_model, settings_for
    from .types import CotDelta, Done, ImageProgress, PlanReady

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    settings = settings_for(
        loaded,
        guidance=args.guidance,  # None: the model's
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        cot_temperature=args.cot_temperature,
        max_cot_tokens=(
            released_cot_cap(args.recipe) if args.max_cot_tokens is None else args.max_cot_tokens
        ),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    bar = None
    stream = generate_stream(loaded, args.prompt, args.recipe, args.n, args.seed, settings,
                             preview_every_rows=1)  # fmt: skip
    for event in stream:
        if isinstance(event, CotDelta) and event.index == 0 and not args.quiet:
            print(event.text, end="", flush=True)
        elif isinstance(event, PlanReady) and event.index == 0 and not args.quiet:
            print(f"\n[plan: {len(event.plan)} boxes, {len(event.plan.errors)} skipped]", flush=True)
        elif isinstance(event, ImageProgress):
            if bar is None:
                bar = tqdm(total=event.rows_total, desc="image rows", unit="row", file=sys.stderr)
            bar.update(event.rows_done - bar.n)
        elif isinstance(event, Done):
            _write_sample(args.out, event.sample, args.save_tokens)
    if bar is not None:
        bar.close()
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _write_sample(out: Path, sample, save_tokens: bool) -> None:
    stem = out / f"{sample.index:02d}"
    sample.image.save(stem.with_suffix(".png"))
    stem.with_suffix(".cot.txt").write_text(sample.cot_text, encoding="utf-8")
    record = sample.to_dict()
    if not save_tokens:
        for key in ("prompt_ids", "cot_token_ids", "cot_logprobs", "prefix_ids",
                    "image_token_ids", "image_logprobs"):  # fmt: skip
            record.pop(key)
        record["cot_logprob_sum"] = float(sum(sample.cot_logprobs))
        record["image_logprob_sum"] = float(sum(sample.image_logprobs))
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")


def run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    dst = convert_checkpoint(args.src, args.dst, args.dtype, box_tokens=args.box_tokens)
    print(f"converted {args.src} -> {dst}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .loading import ModelLoadError

    try:
        return run_generate(args) if args.command == "generate" else run_convert(args)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
