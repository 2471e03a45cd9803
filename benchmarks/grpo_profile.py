"""Where a GRPO step's time goes: the shapes recipe for a few steps under cProfile, by phase.

    python benchmarks/grpo_profile.py --steps 8 [--threads 1] [--out runs/grpo_profile]

Runs ``training.grpo`` with ``training/recipes/shapes.yaml`` (its model, pool and reward; no
checkpoint but the last) and prints, per phase, the seconds spent inside it (cProfile's cumulative
time of the function that is the phase's entry point) and its share of the wall time of the
training loop. Phases nest: the rows under "rollouts" are parts of it. "other" is the loop's wall
time not inside any top-level phase (Python glue, statistics, tqdm). cProfile adds overhead to
every Python call, so shares are the figures to read, not seconds; compare runs of one machine.
With ``--device auto`` on a GPU, kernels run asynchronously and their time lands in whichever phase
next waits for them (a ``.tolist()``, the reward's pixels): read the seconds per step there.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (label, module path suffix, function name, top-level phase?)
PHASES = [
    ("rollouts (generate)", "reasongen/generation.py", "generate", True),
    ("  CoT decode loop", "reasongen/decode.py", "decode_text", False),
    ("  image decode loop", "reasongen/decode.py", "decode_image", False),
    ("  VQ decode to pixels", "reasongen/generation.py", "tokens_to_images", False),
    ("reward scoring", "reasongen/rewards/base.py", "__call__", True),
    ("update: policy forward (log-probs)", "training/logprobs.py", "run_policy", True),
    ("update: backward", "accelerate/accelerator.py", "backward", True),
    ("update: optimizer step", "training/run_setup.py", "optimizer_step", True),
    ("checkpoint / export", "training/checkpoints.py", "save_checkpoint", True),
    ("logging", "training/run_setup.py", "scalars", True),
]


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Cumulative seconds of every function called ``name`` defined in a file ending ``suffix``."""
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.replace("\\", "/").endswith(suffix):
            total += ct
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="rollout steps to profile")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the recipe's is 1)")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "auto"],
        help="the run config's device: the recipe's cpu, or auto (accelerate picks a GPU)",
    )
    ap.add_argument(
        "--flush_denormal",
        default="true",
        choices=["true", "false"],
        help="the run config's flush_denormal (compare both in one session)",
    )
    args = ap.parse_args(argv)

    from training import grpo

    out = args.out or tempfile.mkdtemp(prefix="grpo-profile-")
    flags = ["--config", str(ROOT / "training/recipes/shapes.yaml"), "--out_dir", out,
             "--max_steps", str(args.steps), "--save_every", str(args.steps), "--average_last", "0",
             "--torch_threads", str(args.threads), "--progress", "false",
             "--sample_images_every", "0", "--flush_denormal", args.flush_denormal,
             "--device", args.device]  # fmt: skip
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    code = grpo.main(flags)
    prof.disable()
    wall = time.perf_counter() - t0
    if code != 0:
        return code
    stats = pstats.Stats(prof)
    loop = cumulative(stats, "training/grpo.py", "run_loop")
    if loop <= 0:  # seen under Python 3.12 on a GPU machine: the profiler recorded no loop
        print(f"\ncProfile recorded no time in the training loop; {args.steps} steps took {wall:.1f} s "
              "in all (model loading included), so no breakdown is printed", file=sys.stderr)  # fmt: skip
        return 2
    print(f"\nGRPO shapes recipe, {args.steps} steps, torch threads {args.threads}: {wall:.1f} s in all, "
          f"{loop:.1f} s in the training loop ({loop / args.steps:.2f} s/step)\n")  # fmt: skip
    print(f"{'phase':38s} {'s':>8s} {'share':>7s}")
    top = 0.0
    for label, suffix, name, is_top in PHASES:
        sec = cumulative(stats, suffix, name)
        top += sec if is_top else 0.0
        print(f"{label:38s} {sec:8.2f} {sec / loop:7.1%}")
    print(f"{'other':38s} {loop - top:8.2f} {(loop - top) / loop:7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
