"""Tail averaging from the command line: a model whose weights are the element-wise mean of
several checkpoints' (``training.checkpoints.average_checkpoints`` describes the averaging).

    python -m training.averaging OUT_DIR RUN/checkpoint-325 RUN/checkpoint-350 ...
    python -m training.averaging OUT_DIR --run RUN --last 4

The trainers average through ``RunConfig.average_last``, which exports ``final/`` as the mean of
the run's last N checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .checkpoints import average_checkpoints, checkpoint_dirs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, help="folder to write the averaged model to")
    ap.add_argument("checkpoints", nargs="*", type=Path, help="checkpoint folders to average")
    ap.add_argument("--run", type=Path, default=None, help="a run folder: average its checkpoints")
    ap.add_argument("--last", type=int, default=0, help="with --run: only its newest N checkpoints")
    args = ap.parse_args(argv)
    if bool(args.run) == bool(args.checkpoints):
        ap.error("give either checkpoint folders or --run")
    sources = list(args.checkpoints)
    if args.run:
        sources = checkpoint_dirs(args.run)
        sources = sources[-args.last :] if args.last > 0 else sources
    try:
        out = average_checkpoints(sources, args.out_dir)
    except ValueError as err:
        ap.error(str(err))
    print(f"wrote {out}: mean of {', '.join(str(s) for s in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
