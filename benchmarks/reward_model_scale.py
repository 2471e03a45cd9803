"""What a bigger shapes scorer costs: seconds per pre-training step of ``--arch shapes-p4`` against
``shapes``, measured by the real ``training.reward_model.pretrain`` in the same run.

The reward model's two open problems are below its patch size and its text tower's width: the
panel orders a third of its pairs by plan-image IoU, a pixel or two in a 64 px picture cut in 8 px
patches, and no scorer here tells "A left of B" from its reverse (training/README.md, "The
human-feedback loop, measured" and "Why position falls"). ``shapes-p4``
(``training.reward_model.model.SHAPES_P4_CONFIG``: 4 px patches, wider and deeper towers) is the
scorer those findings ask for. This prints, per architecture, parameters, patch tokens, the median
and interquartile range of the seconds per step (rendering included, as a real run pays it), the
ratio against ``shapes`` and what ``--project`` steps would take at that pace::

    python benchmarks/reward_model_scale.py                       # CPU: ~20 min (shapes-p4 ~90 s a step)
    python benchmarks/reward_model_scale.py --steps 6 --skip 1    # the README's figures, ~9 min
    python benchmarks/reward_model_scale.py --device cuda --steps 30 --threads 8

Each architecture runs ``--steps`` steps from scratch with ``--image outlined_plan``, near misses at
rate 1 and the pre-training's batch of 64; the first ``--skip`` steps (allocation, warm-up) are
left out. A timing, not a training: the loss is not read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from training.reward_model.model import CONFIGS, for_image_mode, scorer_from_config
from training.reward_model.pretrain import PretrainConfig, pretrain


def step_times(arch: str, steps: int, device: str, threads: int, out: str) -> list[float]:
    """Wall seconds of each of ``steps`` pre-training steps of ``arch`` (from the per-step log)."""
    stamps: list[float] = []

    def log(msg: str) -> None:
        if msg.startswith("step "):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    cfg = PretrainConfig(out=out, arch=arch, steps=steps, warmup_steps=1, save_every=0, log_every=1,
                         language="full", image="outlined_plan", hard_negatives=1.0, device=device,
                         torch_threads=threads)  # fmt: skip
    pretrain(cfg, log=log)
    if len(stamps) != steps:
        raise RuntimeError(f"expected {steps} step logs, got {len(stamps)}")
    return [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="shapes,shapes-p4", help="architectures; the first is the reference")
    ap.add_argument("--steps", type=int, default=12, help="steps timed per architecture")
    ap.add_argument("--skip", type=int, default=2, help="first steps left out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--project", type=int, default=20000, help="steps of the run to project")
    args = ap.parse_args(argv)
    if args.steps - args.skip < 2:
        ap.error("time at least two steps (--steps minus --skip)")
    archs = [a for a in args.archs.split(",") if a]
    rows = []
    for arch in archs:
        scorer = scorer_from_config(for_image_mode(CONFIGS[arch], "outlined_plan"))
        params = sum(p.numel() for p in scorer.model.parameters())
        grid = scorer.model.visual.grid_size
        with tempfile.TemporaryDirectory() as tmp:
            times = step_times(arch, args.steps, args.device, args.threads, tmp)[args.skip :]
        q = statistics.quantiles(times, n=4)
        rows.append((arch, params, grid[0] * grid[1], statistics.median(times), q[0], q[2]))
    ref = rows[0][3]
    print(f"device {args.device}, {args.threads} threads, {args.steps - args.skip} steps timed each, "
          f"batch 64 + 64 near misses, outlined_plan")  # fmt: skip
    print("| arch | parameters | patch tokens | s / step (median, IQR) | vs " + archs[0]
          + f" | {args.project} steps |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for arch, params, tokens, med, lo, hi in rows:
        print(f"| {arch} | {params / 1e6:.1f} M | {tokens} | {med:.2f} ({lo:.2f}–{hi:.2f}) | "
              f"{med / ref:.1f}× | {med * args.project / 3600:.1f} h |")  # fmt: skip


if __name__ == "__main__":
    main()
