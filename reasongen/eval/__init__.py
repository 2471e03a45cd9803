"""Benchmarks: ``python -m reasongen.eval shapes ...`` (see ``reasongen.eval.shapes_bench``)."""

from .report import contact_sheet, write_outputs
from .shapes_bench import (
    BenchPrompt,
    ImageResult,
    benchmark_prompts,
    blank_generator,
    evaluate_shapes,
    format_table,
    judge,
    model_generator,
    oracle_generator,
    summarize,
)

__all__ = [
    "BenchPrompt", "ImageResult", "benchmark_prompts", "blank_generator", "contact_sheet",
    "evaluate_shapes", "format_table", "judge", "model_generator", "oracle_generator", "summarize",
    "write_outputs",
]  # fmt: skip
