"""Write shapes-world training prompts to a text file, one prompt per line.

    python -m reasongen.shapes.write_prompts --n 400 --seed 11 --language full --cell 125 \\
        --holdout 600 --out prompts.txt [--unique] [--force] [--exclude USED.txt ...]

The prompts are drawn exactly as the GRPO ``shapes`` pool draws them
(:func:`reasongen.shapes.pools.prompt_pool`): scenes cycling through the language's categories
(``geneval``: GenEval's six templates, :data:`reasongen.types.CATEGORIES`; ``full``: the whole
language, :data:`reasongen.shapes.compose.FULL_LANGUAGE`), from one seeded generator, with the
texts of the benchmark's first ``--holdout`` prompts (prompt seed 0; for ``full`` those of the
compositional suite too) left out, and so are the lines of every ``--exclude`` file (an earlier
round's prompts, say). The file holds the first ``--n`` texts that remain (with ``--unique``: the
first ``--n`` distinct ones, each at its first occurrence); more scenes are drawn until there are
that many. The draw is prefix-stable, so a smaller ``--n`` gives a prefix of a larger one for the
same other settings, and ``--exclude`` only removes texts from it: the rest keep their order.

Every line is a prompt the shapes parser reads (``reasongen.shapes.parse``), so ``python -m
annotation study create --prompts FILE --reward shapes`` recovers each prompt's metadata.
Errors (bad settings, an existing file without ``--force``, too few distinct texts) print one
``error: ...`` line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reasongen.types import CATEGORIES

from .compose import FULL_LANGUAGE
from .pools import BENCHMARK_SEED, prompt_pool

LANGUAGES: dict[str, tuple[str, ...]] = {"geneval": tuple(CATEGORIES), "full": tuple(FULL_LANGUAGE)}
"""The category lists a ``--language`` names (a category named twice is drawn twice as often)."""
CANVAS = 1000
"""Side of the shapes world's coordinate frame: a cell-aligned layout's cell must divide it."""
MAX_DRAW_FACTOR = 64
"""At most ``MAX_DRAW_FACTOR × n`` scenes are drawn before giving up (and at least 4096)."""


@dataclass(frozen=True)
class WritePromptsConfig:
    """Settings of ``python -m reasongen.shapes.write_prompts`` (see the module doc)."""

    n: int
    """Prompts to write (>= 1)."""
    seed: int
    """Prompt seed of the draw (not the benchmark's 0 while benchmark texts are held out)."""
    out: Path
    """The text file to write."""
    language: str = "full"
    """``geneval`` or ``full`` (:data:`LANGUAGES`)."""
    cell: int = 125
    """Cell side of cell-aligned scenes (a divisor of 1000; 0 = free layouts)."""
    holdout: int = 600
    """Leave out the texts of the benchmark's first ``holdout`` prompts (0 = none)."""
    unique: bool = False
    """Write ``n`` distinct texts (first occurrences) instead of the first ``n`` drawn."""
    force: bool = False
    """Overwrite ``out`` when it exists."""
    exclude: frozenset[str] = frozenset()
    """Texts never written (the lines of the ``--exclude`` files)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}")
        if self.language not in LANGUAGES:
            raise ValueError(f"--language must be one of {', '.join(LANGUAGES)}, got {self.language!r}")
        if self.cell < 0 or (self.cell and CANVAS % self.cell):
            raise ValueError(
                f"--cell must divide {CANVAS} (e.g. 125), or be 0 for free layouts; got {self.cell}"
            )
        if self.holdout < 0:
            raise ValueError(f"--holdout must be >= 0, got {self.holdout}")
        if self.seed == BENCHMARK_SEED and self.holdout:
            raise ValueError(
                f"--seed {BENCHMARK_SEED} is the benchmark's own prompt seed: training prompts drawn from it "
                "are the benchmark's prompts; choose another seed (the GRPO pool uses 7)"
            )


def draw_texts(cfg: WritePromptsConfig) -> list[str]:
    """The ``cfg.n`` prompt texts the file holds (see the module doc); ``ValueError`` when the
    language does not have that many (distinct) texts outside the benchmark's."""
    categories = LANGUAGES[cfg.language]
    cell = cfg.cell or None
    limit = max(MAX_DRAW_FACTOR * cfg.n, 4096)
    draw, found = max(2 * cfg.n, 64), -1
    while True:
        texts = [text for text, _ in prompt_pool(draw, cfg.seed, categories, cell, cfg.holdout)]
        texts = [text for text in texts if text not in cfg.exclude]
        if cfg.unique:
            texts = list(dict.fromkeys(texts))  # first occurrences, in order
        if len(texts) >= cfg.n:
            return texts[: cfg.n]
        saturated = len(texts) == found  # doubling the draw found no new text
        if saturated or draw >= limit:
            kind = "distinct " if cfg.unique else ""
            raise ValueError(
                f"only {len(texts)} {kind}prompt texts of the {cfg.language!r} language (cell {cfg.cell}) "
                f"lie outside the benchmark's first {cfg.holdout}"
                + (f" and the {len(cfg.exclude)} excluded texts" if cfg.exclude else "")
                + f" among the first {draw} scenes drawn; "
                f"lower --n (asked {cfg.n})" + ("" if cfg.language == "full" else " or use --language full")
            )
        found, draw = len(texts), min(2 * draw, limit)


def write_prompts(cfg: WritePromptsConfig) -> list[str]:
    """Draw the texts and write them to ``cfg.out``, one per line; return them. Refuses to
    replace an existing file unless ``cfg.force`` (``FileExistsError``)."""
    if cfg.out.exists() and not cfg.force:
        raise FileExistsError(f"{cfg.out} exists; pass --force to overwrite it")
    if cfg.out.exists() and not cfg.out.is_file():
        raise IsADirectoryError(f"{cfg.out} is not a file")
    texts = draw_texts(cfg)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    partial = cfg.out.with_name(cfg.out.name + ".partial")
    partial.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    partial.replace(cfg.out)  # a killed run leaves no half-written prompt file
    return texts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m reasongen.shapes.write_prompts", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--n", type=int, required=True, help="number of prompts to write (>= 1)")
    ap.add_argument(
        "--seed",
        type=int,
        required=True,
        help=f"prompt seed of the draw; {BENCHMARK_SEED} is the benchmark's and is refused with --holdout",
    )
    ap.add_argument(
        "--language",
        default="full",
        help="geneval (GenEval's six templates) or full (the whole shapes language) (default: full)",
    )
    ap.add_argument(
        "--cell", type=int, default=125, help="cell side of cell-aligned scenes, a divisor of 1000; 0 = free"
    )
    ap.add_argument(
        "--holdout",
        type=int,
        default=600,
        help="leave out the texts of the benchmark's first N prompts (prompt seed 0) (default: 600)",
    )
    ap.add_argument("--out", required=True, help="text file to write, one prompt per line")
    ap.add_argument(
        "--unique", action="store_true", help="write N distinct texts (first occurrences), drawing more"
    )
    ap.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    ap.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="a text file of prompts (one per line) never to write, e.g. an earlier round's; repeatable",
    )
    return ap


def read_excluded(paths: Sequence[str | Path]) -> frozenset[str]:
    """The lines of the ``--exclude`` files, stripped of surrounding white space (written prompts
    have none), blank ones skipped; ``OSError`` when one is unreadable."""
    lines: set[str] = set()
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        lines.update(line.strip() for line in text.splitlines() if line.strip())
    return frozenset(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = WritePromptsConfig(
            n=args.n, seed=args.seed, out=Path(args.out), language=args.language, cell=args.cell,
            holdout=args.holdout, unique=args.unique, force=args.force,
            exclude=read_excluded(args.exclude),
        )  # fmt: skip
        texts = write_prompts(cfg)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    excluded = f" ({len(cfg.exclude)} excluded texts left out)" if cfg.exclude else ""
    print(f"wrote {len(texts)} {'distinct ' if cfg.unique else ''}prompts to {cfg.out}{excluded}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
