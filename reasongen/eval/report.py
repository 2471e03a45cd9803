"""Benchmark outputs: ``report.json``, per-image ``results.jsonl``, images and a contact sheet."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from reasongen.types import CATEGORIES

from .shapes_bench import ImageResult

PASS_RGB, FAIL_RGB = (30, 150, 60), (200, 30, 40)


def group_by_suite(reports: dict[str, dict[str, Any]]) -> dict[tuple[str, ...], list[str]]:
    """Report names grouped by their categories, in order (the GenEval suite's six, or the
    compositional suite's): each group is one table of side-by-side columns."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, report in reports.items():
        groups.setdefault(tuple(report.get("categories") or CATEGORIES), []).append(name)
    return groups


def pick_for_sheet(results: Sequence[ImageResult], max_images: int) -> list[ImageResult]:
    """Up to ``max_images`` results, round-robin over categories (first image of each prompt)."""
    by_cat: dict[str, list[ImageResult]] = {}
    for r in results:
        if r.image_index == 0 and r.image is not None:
            by_cat.setdefault(r.category, []).append(r)
    picked: list[ImageResult] = []
    queues = [list(v) for v in by_cat.values()]
    while len(picked) < max_images and any(queues):
        for q in queues:
            if q and len(picked) < max_images:
                picked.append(q.pop(0))
    return picked


def contact_sheet(
    results: Sequence[ImageResult], max_images: int = 48, columns: int = 8, cell: int = 160
) -> Image.Image:
    """A grid of images, each with its prompt and a PASS/FAIL mark (green / red frame)."""
    if columns < 1 or cell < 48 or max_images < 1:
        raise ValueError("contact sheet needs columns >= 1, cell >= 48 and max_images >= 1")
    picked = pick_for_sheet(results, max_images)
    if not picked:
        raise ValueError("no images to put on a contact sheet")
    font = ImageFont.load_default(size=max(9, cell // 14))
    text_h = 4 * (max(9, cell // 14) + 2) + 6
    cols = min(columns, len(picked))
    rows = (len(picked) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    pad = max(3, cell // 32)
    chars = max(10, int(cell / (0.55 * max(9, cell // 14))))
    for k, r in enumerate(picked):
        x, y = (k % cols) * cell, (k // cols) * (cell + text_h)
        color = PASS_RGB if r.correct else FAIL_RGB
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=color)
        thumb = r.image.convert("RGB").resize((cell - 2 * pad, cell - 2 * pad), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + pad, y + pad))
        mark = "PASS" if r.correct else "FAIL"
        label = f"{mark} [{r.category}]"
        lines = [label, *textwrap.wrap(r.prompt, chars)[:3]]
        for i, line in enumerate(lines):
            draw.text((x + 4, y + cell + 3 + i * (max(9, cell // 14) + 2)), line,
                      fill=color if i == 0 else (20, 20, 20), font=font)  # fmt: skip
    return sheet


def write_outputs(
    out_dir: str | Path,
    results: Sequence[ImageResult],
    report: dict[str, Any],
    save_images: bool = True,
    sheet_images: int = 48,
) -> dict[str, Path]:
    """Write ``report.json``, ``results.jsonl``, ``contact_sheet.png`` (and ``images/``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if save_images:
        (out / "images").mkdir(exist_ok=True)
        for r in results:
            if r.image is not None:
                name = f"images/{r.prompt_index:04d}_{r.image_index}.png"
                r.image.save(out / name)
                r.image_file = name
    paths = {
        "report": out / "report.json",
        "results": out / "results.jsonl",
        "contact_sheet": out / "contact_sheet.png",
    }
    with open(paths["results"], "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    contact_sheet(results, max_images=sheet_images).save(paths["contact_sheet"])
    report = {**report, "files": {k: p.name for k, p in paths.items()}}
    paths["report"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return paths
