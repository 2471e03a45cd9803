"""Command line of the benchmarks: ``python -m reasongen.eval shapes ... --out DIR``.

``shapes`` draws a fixed, category-balanced prompt set (``--suite geneval`` or ``compositional``,
``--n``, ``--prompt-seed``), generates
``--batch`` samples per prompt with the model (one batch per prompt, seeded ``--seed`` + prompt
index), judges every image with the shapes detector by GenEval's rules, prints a table and writes
``DIR/report.json`` (``overall``, ``categories``, counts, model, recipe, seeds, settings, timing),
``DIR/results.jsonl`` (one line per image), ``DIR/images/`` and ``DIR/contact_sheet.png``.
``--oracle`` renders the ground-truth scenes instead of generating (the detector's ceiling).
``--config FILE.yaml`` supplies any of the settings; flags given on the command line win.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from reasongen.recipes import RECIPES

from .shapes_bench import SUITES

MAX_BATCH = 64


@dataclass
class ShapesBenchConfig:
    """Settings of ``python -m reasongen.eval shapes``."""

    out: str = field(default="", metadata={"help": "output folder (required)"})
    model: str | None = field(
        default=None,
        metadata={"help": "HF-format Janus folder or hub id (default: the embedded model under "
                  "assets/models, e.g. assets/models/shapes-janus)"},
    )  # fmt: skip
    suite: str = field(
        default="geneval",
        metadata={"help": "prompt suite: geneval (GenEval's six templates) or compositional (the rest "
                  "of the shapes language: 7 categories on the cell layout, 8 with textures on free "
                  "layouts; held-out prompt seeds)"},
    )  # fmt: skip
    n: int = field(default=600, metadata={"help": "number of prompts (balanced over the suite's categories)"})
    seed: int = field(default=0, metadata={"help": "generation seed (prompt i uses seed + i)"})
    prompt_seed: int = field(default=0, metadata={"help": "seed of the prompt set (keep fixed)"})
    exclude_benchmark: int = field(
        default=0,
        metadata={"help": "a validation set: leave out every prompt whose text is among the "
                  "benchmark's first N prompts of the suite (prompt seed 0), keeping the "
                  "categories balanced; use with --prompt-seed 1 or above (0 = off)"},
    )  # fmt: skip
    cell: int = field(
        default=125,
        metadata={"help": "cell side of cell-aligned scenes (the embedded model's layout: no "
                  "textures); 0 = free layouts"},
    )  # fmt: skip
    image_size: int = field(default=128, metadata={"help": "render size of --oracle images"})
    recipe: str = field(default="got-r1", metadata={"help": f"one of {', '.join(RECIPES)}"})
    batch: int = field(default=1, metadata={"help": "samples per prompt, drawn as one batch"})
    guidance: float | None = field(default=None, metadata={"help": "CFG weight (default: model's)"})
    temperature: float = field(default=1.0, metadata={"help": "image-token temperature"})
    cot_temperature: float = field(default=1.0, metadata={"help": "CoT temperature (0 = greedy)"})
    top_k: int | None = field(default=None, metadata={"help": "image-token top-k"})
    top_p: float | None = field(default=None, metadata={"help": "image-token top-p"})
    max_cot_tokens: int = field(default=256, metadata={"help": "cap on CoT length"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ..."})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16, float16"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads"})
    oracle: bool = field(
        default=False, metadata={"help": "render the ground-truth scenes instead of generating"}
    )
    no_images: bool = field(default=False, metadata={"help": "do not save every image"})
    sheet_images: int = field(default=48, metadata={"help": "images on the contact sheet"})

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("--out DIR is required: the folder for report.json and the images")
        if self.suite not in SUITES:
            raise ValueError(f"unknown --suite {self.suite!r}; choose one of {', '.join(SUITES)}")
        if self.n < 1:
            raise ValueError(f"--n must be at least 1, got {self.n}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"--batch (samples per prompt) must be in 1..{MAX_BATCH}, got {self.batch}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown --recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.sheet_images < 1:
            raise ValueError(f"--sheet-images must be at least 1, got {self.sheet_images}")
        if self.cell < 0 or (self.cell and 1000 % self.cell):
            raise ValueError(f"--cell must be 0 (free layout) or divide 1000, e.g. 125; got {self.cell}")
        if self.image_size < 16:
            raise ValueError(f"--image-size must be at least 16 pixels, got {self.image_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")


def config_from_args(argv: list[str]) -> ShapesBenchConfig:
    """The ``shapes`` command's flags (after the command name): dataclass defaults < the
    ``--config`` YAML file < flags; unknown YAML keys are an error."""
    from reasongen.config import parse_config

    return parse_config(ShapesBenchConfig, argv, prog="python -m reasongen.eval shapes")


def build_parser() -> argparse.ArgumentParser:
    """The command names; each command parses its own flags (``config_from_args``)."""
    parser = argparse.ArgumentParser(prog="python -m reasongen.eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("shapes", help="GenEval-style benchmark on the shapes world", add_help=False)
    return parser


def _settings(cfg: ShapesBenchConfig, loaded: Any) -> Any:
    from reasongen.loading import settings_for

    return settings_for(
        loaded,
        guidance=cfg.guidance,  # None: the model's
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        cot_temperature=cfg.cot_temperature,
        max_cot_tokens=cfg.max_cot_tokens,
    )


def run_shapes(cfg: ShapesBenchConfig) -> dict[str, Any]:
    """Run the benchmark of ``cfg``, write its files, print the table; return the report."""
    from .report import write_outputs
    from .shapes_bench import (
        benchmark_prompts,
        evaluate_shapes,
        format_table,
        model_generator,
        oracle_generator,
        summarize,
        timed,
    )

    t_start = time.perf_counter()
    prompts = benchmark_prompts(cfg.n, cfg.prompt_seed, cfg.cell or None, cfg.suite, cfg.exclude_benchmark)
    settings = None
    if cfg.oracle:
        model_id, recipe = "oracle (ground-truth renders)", "oracle"
        generator = oracle_generator(cfg.image_size)
    else:
        import torch

        from reasongen.loading import load_model

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
        settings = _settings(cfg, loaded)
        model_id, recipe = loaded.model_id, cfg.recipe
        generator = model_generator(loaded, cfg.recipe, cfg.batch, cfg.seed, settings)
    generator, clock = timed(generator)
    results = evaluate_shapes(generator, prompts, progress=True)
    summary = summarize(results)
    wall = time.perf_counter() - t_start
    report: dict[str, Any] = {
        "benchmark": "shapes",
        "suite": cfg.suite,
        **summary,
        "n_prompts": len(prompts),
        "samples_per_prompt": 1 if cfg.oracle else cfg.batch,
        "n_images": len(results),
        "model": model_id,
        "recipe": recipe,
        "seed": cfg.seed,
        "prompt_seed": cfg.prompt_seed,
        "exclude_benchmark": cfg.exclude_benchmark,
        "layout": f"cell {cfg.cell}" if cfg.cell else "free",
        "settings": settings.to_dict() if settings is not None else None,
        "timing": {
            "wall_s": round(wall, 2),
            "generation_s": round(clock["generation_s"], 2),
            "seconds_per_image": round(clock["generation_s"] / len(results), 4),
        },
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg),
    }
    paths = write_outputs(cfg.out, results, report, save_images=not cfg.no_images,
                          sheet_images=cfg.sheet_images)  # fmt: skip
    print(f"shapes benchmark ({cfg.suite}): {model_id}, recipe {recipe}, {len(prompts)} prompts, "
          f"{len(results)} images")  # fmt: skip
    print(format_table(summary))
    print(f"wrote {paths['report']}, {paths['results'].name}, {paths['contact_sheet'].name}")
    return report


def main(argv: list[str] | None = None) -> int:
    _, rest = build_parser().parse_known_args(argv)
    try:
        cfg = config_from_args(rest)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_shapes(cfg)
    except Exception as err:
        if not cfg.oracle:  # the model path imports torch; the oracle path does not need to
            from reasongen.loading import ModelLoadError

            if isinstance(err, ModelLoadError):
                print(f"error: {err}", file=sys.stderr)
                return 2
        raise
    return 0
