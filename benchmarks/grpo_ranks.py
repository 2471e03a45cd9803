"""Two-process GRPO with and without spreading the kept samples over the processes.

    python benchmarks/grpo_ranks.py [--config training/recipes/shapes.yaml] [--steps 40] [--rounds 2] \
        [-- --model assets/models/shapes-janus-r1 ...]

Runs ``torchrun --standalone --nproc_per_node 2 -m training.grpo --config CONFIG --max_steps N``
with ``--balance_ranks true`` and with ``--balance_ranks false`` (the reference), alternating,
``--rounds`` times each, and prints each run's wall time (start-up and the final save included)
and the ratio of each pair, with the mean number of groups dropped per step (a process
whose groups were all dropped is where balancing saves most). Flags after ``--`` go to
``training.grpo`` (starting from the recipe's own result, ``--model``, shows the late steps of a
run, where more groups are dropped). Both arms compute the same update up to reduction order, so their
logged rewards agree for the first steps and drift apart slowly. Run it alone on the machine:
other load moves these timings more than the difference being measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from training.run_logs import run_scalars  # noqa: E402


def run_once(config: str, steps: int, balance: bool, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of one two-process run of ``steps`` steps, and its mean groups dropped per step."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.grpo", "--config", config, "--max_steps", str(steps),
           "--save_every", str(steps), "--average_last", "0", "--sample_images_every", "0",
           "--progress", "false", "--balance_ranks", "true" if balance else "false",
           "--out_dir", str(out), *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"run failed (exit {done.returncode}): {' '.join(cmd)}")
    dropped = [v for *_, v in run_scalars(out, "grpo/groups/dropped", steps)]
    return seconds, sum(dropped) / max(1, len(dropped))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--config", default="training/recipes/shapes.yaml", help="GRPO recipe")
    ap.add_argument("--steps", type=int, default=40, help="steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="pairs of runs")
    ap.add_argument("extra", nargs="*", help="flags for training.grpo (after --)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        ap.error("--steps and --rounds must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            times = {}
            for balance in order:
                out = Path(tmp) / f"r{r}-{balance}"
                times[balance], dropped = run_once(args.config, args.steps, balance, out, args.extra)
                name = "balanced" if balance else "reference (unbalanced)"
                print(f"round {r + 1}: {name}: {times[balance]:.1f} s for {args.steps} steps "
                      f"({dropped:.2f} groups dropped per step)", flush=True)  # fmt: skip
            print(f"round {r + 1}: reference / balanced = {times[False] / times[True]:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
