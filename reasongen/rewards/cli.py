"""``python -m reasongen.rewards score --rewards shapes,hps --images DIR [--prompts FILE]``.

Scores every image in ``DIR`` with the named rewards and prints one row per image (a JSON line
per image with ``--json``). Prompts come from ``--prompts``: a ``.jsonl`` file whose lines hold
``file_name`` (or ``file``/``image``), ``prompt`` and optionally ``metadata`` (GenEval shape),
``cot_text`` and ``recipe``; or another prompt file (``reasongen.prompt_files``: a text file with
one prompt per line, or a ``.json`` list), one prompt per image in sorted file-name order.
Without ``--prompts``, ``DIR/metadata.jsonl`` is used when present (the layout our exports and
``datasets``' image folders share). Reward options: ``--set hps.model=/path/HPS_v2.1_compressed.pt``
(value parsed as JSON when it can be, then checked against the option's type).

Bad input (an unreadable image, a malformed prompt record, a repeated reward, ``--weights``
without ``--combine``) is a one-line error with exit status 2; ``--json`` writes a score that is
not a finite number as ``null``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ..prompt_files import iter_json_lines, read_prompt_file
from ..t2i_r1_data import metadata_from_record
from ..types import Sample, SamplingSettings, validate_metadata
from .base import Reward, RewardModelUnavailable, RewardOutput
from .combine import MODES, CombinedReward
from .registry import list_rewards, make_reward

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        name, dot, opt = key.partition(".")
        if not eq or not dot or not name or not opt:
            raise ValueError(f"--set takes REWARD.OPTION=VALUE (e.g. hps.model=/x.pt), got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(name, {})[opt] = value
    return out


def _records(images_dir: Path, prompts: Path | None, files: list[Path]) -> dict[str, dict[str, Any]]:
    """File name → {prompt, metadata, cot_text, recipe} from the prompts file (or none)."""
    if prompts is None and (images_dir / "metadata.jsonl").is_file():
        prompts = images_dir / "metadata.jsonl"
    if prompts is None:
        return {}
    if not prompts.is_file():
        raise ValueError(f"--prompts file {prompts} does not exist")
    out: dict[str, dict[str, Any]] = {}
    if prompts.suffix == ".jsonl":
        for n, rec in iter_json_lines(prompts):
            if not isinstance(rec, dict):
                raise ValueError(f"{prompts}:{n}: a record is a JSON object, got a {type(rec).__name__}")
            name = rec.get("file_name") or rec.get("file") or rec.get("image")
            if not isinstance(name, str):
                raise ValueError(f"{prompts}:{n}: needs a 'file_name' (or 'file'/'image') string")
            meta = rec.get("metadata")
            if meta is None:
                meta = metadata_from_record(rec)  # T2I-R1's data fields, if the record has them
                if meta is not None:
                    rec["metadata"] = meta
            if meta is not None:
                try:
                    validate_metadata(meta)
                except ValueError as e:
                    raise ValueError(f"{prompts}:{n}: {e}") from e
            out[Path(name).name] = rec
        return out
    lines = [rec["prompt"] for rec in read_prompt_file(prompts)]
    if len(lines) != len(files):
        raise ValueError(f"{prompts} has {len(lines)} prompts for {len(files)} images; give one per image")
    return {f.name: {"prompt": p} for f, p in zip(files, lines)}


def load_samples(images_dir: Path, prompts: Path | None = None) -> list[tuple[str, Sample]]:
    """(file name, Sample) for every image in ``images_dir``, sorted by name."""
    from ..plans import parse_plan

    if not images_dir.is_dir():
        raise ValueError(f"--images {images_dir} is not a folder")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    recs = _records(images_dir, prompts, files)
    images, unreadable = {}, []
    for f in files:
        try:
            with Image.open(f) as im:
                images[f.name] = im.convert("RGB")  # decodes the whole file
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
            why = (str(e).splitlines() or [type(e).__name__])[0]
            why = "a folder" if f.is_dir() else "an empty file" if f.stat().st_size == 0 else why
            unreadable.append(f"{f.name} ({why.replace(str(f), f.name)})")
    if unreadable:
        raise ValueError(f"cannot read {len(unreadable)} image(s) in {images_dir}: {'; '.join(unreadable)}")
    out = []
    for f in files:
        rec = recs.get(f.name, {})
        cot = str(rec.get("cot_text", "") or "")
        plan = parse_plan(cot) if cot else None
        image = images[f.name]
        out.append(
            (
                f.name,
                Sample(
                    prompt=str(rec.get("prompt", "")),
                    recipe=str(rec.get("recipe", "direct")),
                    model_id="external",
                    seed=0,
                    settings=SamplingSettings(),
                    prompt_ids=[],
                    cot_text=cot,
                    cot_token_ids=[],
                    cot_logprobs=[],
                    cot_end="none",
                    prefix_ids=[],
                    image_token_ids=[],
                    image_logprobs=[],
                    plan=plan if plan and plan.boxes else None,
                    image=image,
                    metadata=rec.get("metadata"),
                ),
            )
        )
    return out


def _finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in lists and dicts too) replaced by ``None``,
    so that ``--json`` writes ``null`` and stays valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_table(names: list[str], prompts: list[str], columns: dict[str, list[float | None]]) -> str:
    """A plain-text table: one row per image, one column per reward."""
    header = ["image", "prompt", *columns]
    rows = [
        [n, (p[:37] + "...") if len(p) > 40 else p, *(_fmt(c[i]) for c in columns.values())]
        for i, (n, p) in enumerate(zip(names, prompts))
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m reasongen.rewards", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score", help="score a folder of images")
    sc.add_argument("--rewards", required=True, help=f"comma-separated: {', '.join(list_rewards())}")
    sc.add_argument("--images", required=True, type=Path, help="folder of images")
    sc.add_argument("--prompts", type=Path, default=None, help=".jsonl records or one prompt per line")
    sc.add_argument("--set", action="append", default=[], metavar="REWARD.OPTION=VALUE")
    sc.add_argument("--combine", choices=MODES, default=None, help="also print a combined score")
    sc.add_argument("--weights", default="", help="with --combine: weights, e.g. hps=1,gdino=2")
    sc.add_argument("--json", action="store_true", help="one JSON line per image with details")
    sub.add_parser("list", help="list reward names")
    return ap


def _parse_weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in (w.strip() for w in text.split(",") if w.strip()):
        name, eq, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--weights takes NAME=NUMBER pairs, got {item!r}") from None
        if not eq or not math.isfinite(out[name.strip()]):
            raise ValueError(f"--weights takes NAME=NUMBER pairs (finite numbers), got {item!r}")
    return out


def _build_reward(args: argparse.Namespace) -> Reward:
    """``--rewards`` with their ``--set`` options and ``--combine``/``--weights``, built by
    ``make_reward``; the checks here only say which flag is at fault."""
    names = [n.strip() for n in args.rewards.split(",") if n.strip()]
    if not names:
        raise ValueError("--rewards needs at least one name")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--rewards names {', '.join(twice)} more than once")
    sets = _parse_sets(args.set)
    unused = set(sets) - set(names)
    if unused:
        raise ValueError(f"--set given for rewards not requested: {', '.join(sorted(unused))}")
    weights = _parse_weights(args.weights)
    if weights and not args.combine:
        raise ValueError("--weights only weighs a combination: add --combine MODE")
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"--weights given for rewards not requested: {', '.join(sorted(unknown))}")
    return make_reward(names, args.combine, weights, sets)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input, 3 for unavailable weights)."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(list_rewards()))
        return 0
    try:
        reward = _build_reward(args)
        rewards = reward.parts if isinstance(reward, CombinedReward) else [reward]
        named = load_samples(args.images, args.prompts)
        samples = [s for _, s in named]
        if not any(s.prompt for s in samples):
            print("note: no prompts found; prompt-dependent rewards see empty prompts", file=sys.stderr)
        outs, failed = [], []
        for r in rewards:
            try:
                outs.append(r(samples))
            except RewardModelUnavailable as e:  # show the others, report this one
                print(f"error: {r.name}: {e}", file=sys.stderr)
                failed.append(r.name)
                outs.append(RewardOutput(r.name, [None] * len(samples), [{"error": str(e)}] * len(samples)))
        if args.combine and isinstance(reward, CombinedReward):
            outs.append(reward.combine(outs, samples))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        for i, (name, s) in enumerate(named):
            row = {"image": name, "prompt": s.prompt}
            row.update({o.name: {"score": o.scores[i], "details": o.details[i]} for o in outs})
            print(json.dumps(_finite_or_null(row), default=str, allow_nan=False))
    else:
        cols = {o.name: o.scores for o in outs}
        print(format_table([n for n, _ in named], [s.prompt for _, s in named], cols))
    return 3 if failed else 0
