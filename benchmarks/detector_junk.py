"""How often the shapes detector lets images that hold no shape pass a benchmark prompt.

Each junk kind draws one image per prompt of the shapes benchmark (``benchmark_prompts``, its
prompt seed and the embedded model's cell-aligned layout by default), and every image is judged
by the benchmark's own rules (``reasongen.eval.shapes_bench.judge``: the detector, then GenEval's
checks). A junk image "passes" when that verdict is correct. The ``clean`` row renders each
prompt's ground-truth scene instead (the oracle): it must stay at 100 %.

Kinds (each image seeded by its kind and prompt index, so a run is reproducible):

- ``blank``: one flat colour — background-ish tints, greys, white, black and every palette colour;
- ``gradient``: a linear gradient between two such colours at a random angle;
- ``noise``: i.i.d. uniform noise per channel, full range or a band around a random colour;
- ``blobs``: one to four palette-coloured discs on the background, Gaussian-blurred (σ 3–6 px at
  128 px) into smooth colour blobs;
- ``speckle``: the background with 5–50 % of its pixels set to random palette colours
  (salt-and-pepper);
- ``split``: the image cut in two along a random line, one colour on each side.

    python benchmarks/detector_junk.py                  # 300 prompts x every kind, plus clean
    python benchmarks/detector_junk.py --n 30 --kinds blobs,split --show 5
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reasongen.eval.shapes_bench import BenchPrompt, benchmark_prompts, judge
from reasongen.shapes.render import render_scene
from reasongen.shapes.scene import BACKGROUND, COLORS

KINDS: tuple[str, ...] = ("blank", "gradient", "noise", "blobs", "speckle", "split")
"""Junk kinds, in the order of the table."""

PALETTE = [np.array(c, dtype=np.float32) for c in COLORS.values()]
BACKGROUNDISH = [
    np.array(c, dtype=np.float32)
    for c in (BACKGROUND, (255, 255, 255), (230, 226, 214), (250, 236, 205), (214, 224, 238),
              (200, 200, 200), (128, 128, 128), (60, 60, 60), (0, 0, 0))
]  # fmt: skip
"""Flat colours that are not palette colours: tints of the background, greys, white, black."""
FLAT = BACKGROUNDISH + PALETTE


def _rng(kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([KINDS.index(kind), index])


def _pick(rng: np.random.Generator, colors: Sequence[np.ndarray]) -> np.ndarray:
    return colors[int(rng.integers(len(colors)))]


def _image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def junk_image(kind: str, index: int, size: int = 128) -> Image.Image:
    """The junk image of ``kind`` for prompt ``index`` (``size`` x ``size`` RGB)."""
    if kind not in KINDS:
        raise ValueError(f"unknown junk kind {kind!r}; choose from {', '.join(KINDS)}")
    rng = _rng(kind, index)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / (size - 1)  # [H, W] each, 0–1
    if kind == "blank":
        return _image(np.broadcast_to(FLAT[index % len(FLAT)], (size, size, 3)))
    if kind == "gradient":
        a, b = _pick(rng, FLAT), _pick(rng, FLAT)
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)  # [H, W]
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        return _image(a + t[..., None] * (b - a))
    if kind == "noise":
        if rng.random() < 0.5:
            lo, hi = np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
        else:
            centre, amp = _pick(rng, FLAT), rng.uniform(30, 120)
            lo, hi = centre - amp, centre + amp
        return _image(rng.uniform(lo, hi, (size, size, 3)))
    if kind == "blobs":
        canvas = np.broadcast_to(np.array(BACKGROUND, np.float32), (size, size, 3)).copy()
        for _ in range(int(rng.integers(1, 5))):
            r = rng.uniform(0.07, 0.2)
            cx, cy = rng.uniform(r, 1 - r, 2)
            canvas[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = _pick(rng, PALETTE)
        sigma = rng.uniform(3.0, 6.0) * size / 128
        return _image(canvas).filter(ImageFilter.GaussianBlur(sigma))
    if kind == "speckle":
        canvas = np.broadcast_to(np.array(BACKGROUND, np.float32), (size, size, 3)).copy()
        hit = rng.random((size, size)) < rng.uniform(0.05, 0.5)  # [H, W]
        colors = np.stack([*PALETTE, np.full(3, 255.0, np.float32)])  # [K, 3]
        canvas[hit] = colors[rng.integers(len(colors), size=int(hit.sum()))]
        return _image(canvas)
    # split: one colour on each side of a random line through the image
    a, b = _pick(rng, FLAT), _pick(rng, PALETTE)
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.25, 0.25)
    side = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5) > offset  # [H, W]
    return _image(np.where(side[..., None], b, a))


def run(
    kinds: Sequence[str] = KINDS,
    n: int = 300,
    prompt_seed: int = 0,
    cell: int | None = 125,
    clean: bool = True,
) -> dict[str, list[tuple[BenchPrompt, bool]]]:
    """Per kind (and ``clean``, the oracle renders), each prompt with whether its image passed."""
    prompts = benchmark_prompts(n, prompt_seed, cell)
    out: dict[str, list[tuple[BenchPrompt, bool]]] = {}
    for kind in kinds:
        out[kind] = [(p, judge(p, junk_image(kind, p.index)).correct) for p in prompts]
    if clean:
        out["clean"] = [(p, judge(p, render_scene(p.scene)).correct) for p in prompts]
    return out


def format_table(results: dict[str, list[tuple[BenchPrompt, bool]]]) -> str:
    """Passes per kind, overall and per category."""
    cats = list(dict.fromkeys(p.category for rows in results.values() for p, _ in rows))
    head = f"{'kind':<10}{'passed':>8}{'rate':>8}" + "".join(f"{c[:13]:>15}" for c in cats)
    lines = [head, "-" * len(head)]
    for kind, rows in results.items():
        passed = sum(ok for _, ok in rows)
        per_cat = "".join(
            f"{sum(ok for p, ok in rows if p.category == c):>8}/{sum(p.category == c for p, _ in rows):<6}"
            for c in cats
        )
        lines.append(f"{kind:<10}{passed:>8}{passed / len(rows):>8.3f}{per_cat}")
    junk = [ok for kind, rows in results.items() if kind != "clean" for _, ok in rows]
    if junk:
        lines.append("-" * len(head))
        lines.append(f"{'all junk':<10}{sum(junk):>8}{sum(junk) / len(junk):>8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="benchmark prompts per kind")
    parser.add_argument("--prompt-seed", type=int, default=0, help="the benchmark's prompt seed")
    parser.add_argument("--cell", type=int, default=125, help="cell-aligned layout (0: free)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated junk kinds")
    parser.add_argument("--no-clean", action="store_true", help="skip the oracle (clean) row")
    parser.add_argument("--show", type=int, default=0, help="print up to this many passes per kind")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or args.n < 1:
        print(f"error: unknown kind(s) {unknown}; choose from {', '.join(KINDS)}" if unknown
              else "error: --n must be at least 1", file=sys.stderr)  # fmt: skip
        return 2
    results = run(kinds, args.n, args.prompt_seed, args.cell or None, clean=not args.no_clean)
    print(format_table(results))
    for kind, rows in results.items():
        shown = [p for p, ok in rows if ok == (kind != "clean")][: args.show]
        for p in shown:
            print(f"  {kind} {'passed' if kind != 'clean' else 'failed'}: #{p.index} {p.prompt!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
