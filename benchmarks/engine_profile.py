"""Where our batch-B image call spends its time, and how fast any loop could make it.

Both sides of ``benchmarks/generation.py`` run the same arithmetic for most of an image: the
language model's matrix products and attention over the same cache, and the same VQ decoder
module. A faster loop can only remove what lies around that arithmetic (Python, cache
bookkeeping, sampling glue). This script profiles our engine's image call (``torch.profiler``,
self CPU time per aten op, grouped), times the VQ decode alone and transformers' image call
without the profiler, and prints the bound

    ref_s / shared_s,   shared_s = ours_s × (share of our profile in matmuls + attention + VQ decode)

the ratio against transformers that our engine would reach if everything else in its call took
no time at all. A target above it cannot be met without changing the arithmetic (another dtype,
fewer operations) — on this machine, at this batch size.

    python benchmarks/engine_profile.py --batch 16 --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.generation import _time, image_calls, image_prefix, shapes_sized, vq_decode_time
from reasongen.loading import LoadedModel

GROUPS = {
    "matmul": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul"),
    "attention": ("scaled_dot_product", "flash_attention"),
    "convolution": ("convolution",),
    "sampling": ("exponential", "multinomial", "softmax", "argmax", "topk", "sort", "cumsum"),
}
"""Op-name fragments of each group (the first match wins); every other op is ``other``."""
SHARED = ("matmul", "attention")
"""The language model's groups (outside the VQ decode) that transformers' loop computes identically."""


def group_of(op: str) -> str:
    """The ``GROUPS`` key whose fragment occurs in ``op`` (an aten op name), else ``other``."""
    return next((g for g, parts in GROUPS.items() if any(p in op for p in parts)), "other")


VQ = "vq decode"
"""The group of every op under the VQ decoder (``post_quant_conv`` and ``decoder``), on either side."""


def profile_groups(fn, repeats: int, model: Any) -> dict[str, float]:
    """Self CPU seconds per group, per call, over ``repeats`` profiled calls of ``fn``: every op
    run inside ``model``'s VQ decoder counts as ``VQ``, the rest by :func:`group_of`."""
    vq = model.model.vqmodel
    open_ranges: list[Any] = []

    def enter(_module: Any, _inputs: Any) -> None:
        open_ranges.append(torch.autograd.profiler.record_function(VQ).__enter__())

    def leave(_module: Any, _inputs: Any, _output: Any) -> None:
        open_ranges.pop().__exit__(None, None, None)

    hooks = [vq.post_quant_conv.register_forward_pre_hook(enter), vq.decoder.register_forward_hook(leave)]
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                fn()
    finally:
        for h in hooks:
            h.remove()
    totals: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        up, in_vq = ev, False
        while up is not None and not in_vq:
            in_vq, up = up.name == VQ, up.cpu_parent
        totals[VQ if in_vq else group_of(ev.name)] += ev.self_cpu_time_total / 1e6 / repeats
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


@dataclass
class Bound:
    """One batch size's profile and bound (seconds are per call, process CPU time)."""

    ours_s: float
    ref_s: float
    vq_s: float
    groups: dict[str, float]
    """Our call's profiled self CPU seconds per group."""
    ref_groups: dict[str, float]
    """transformers' call's, the same way."""
    share_vq: float
    """The decode's share of our profiled call."""
    share_lm: float
    """The language model's shared matmuls and attention's share of our profiled call."""

    @property
    def shared_s(self) -> float:
        return self.ours_s * (self.share_vq + self.share_lm)

    @property
    def bound(self) -> float:
        """The ratio against transformers with everything but the shared arithmetic free."""
        return self.ref_s / self.shared_s


def measure(loaded: LoadedModel, batch: int, repeats: int, profiled: int = 2) -> Bound:
    """Time (``repeats`` calls, median) and profile (``profiled`` calls) both sides' image call at
    ``batch`` images and the VQ decode alone."""
    model = loaded.model
    ours_fn, ref_fn = image_calls(loaded, batch, image_prefix(loaded))
    ours_fn()  # warm-up: allocations, kernels
    ours, ref = _time(ours_fn, "cpu", repeats), _time(ref_fn, "cpu", repeats)
    vq = vq_decode_time(loaded, batch, "cpu", repeats)
    groups, ref_groups = profile_groups(ours_fn, profiled, model), profile_groups(ref_fn, profiled, model)
    # One profile of our call (the profiler's per-op cost inflates the many small ops around the
    # shared arithmetic most, so these shares err low and the bound errs high): the decode, and the
    # language model's matmuls and attention; where transformers computes a group faster, its time
    # is the one any loop could reach.
    whole = sum(groups.values())
    lm = sum(min(groups.get(g, 0.0), ref_groups.get(g, 0.0)) for g in SHARED)
    return Bound(ours, ref, vq, groups, ref_groups, groups.get(VQ, 0.0) / whole, lm / whole)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16, help="images per call")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per figure (median)")
    args = p.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    r = measure(shapes_sized("cpu"), args.batch, args.repeats)
    whole = sum(r.groups.values())
    threads = torch.get_num_threads()
    print(f"threads={threads} batch={args.batch} median of {args.repeats} calls (process CPU time)")
    print(f"ours {r.ours_s:.3f} s   transformers {r.ref_s:.3f} s   ratio {r.ref_s / r.ours_s:.2f}x   "
          f"VQ decode {r.vq_s:.3f} s")  # fmt: skip
    print("self CPU time per call, profiled (ours, transformers):")
    for g, t in r.groups.items():
        print(f"  {g:>12} {t:7.3f} s {t / whole:6.1%}   {r.ref_groups.get(g, 0.0):7.3f} s")
    print(f"shared arithmetic: VQ decode {r.share_vq:.1%} + LM matmuls and attention {r.share_lm:.1%} = "
          f"{r.shared_s:.3f} s")  # fmt: skip
    print(f"bound with everything else free: {r.bound:.2f}x (ratio now {r.ref_s / r.ours_s:.2f}x)")


if __name__ == "__main__":
    main()
