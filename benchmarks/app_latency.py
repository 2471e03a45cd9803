"""The app's overhead on a generation: ``generate_stream`` in the library against the same request
through the served app (``gradio_client``), to the final frame.

Serves the app in-process (the embedded model by default, no rewards, a throwaway database), then
for each round times one library run (every event consumed, as the app's producer does) and one
app run (``/generate`` until its last update), same prompt, recipe, candidates and seed. Prints
both, the difference, and the number of updates the app sent. Target: app ≤ library + 0.5 s, and
an update count that does not grow with the number of CoT tokens. Wall times.

    python benchmarks/app_latency.py                      # got-r1, 4 candidates, 3 rounds
    python benchmarks/app_latency.py --model DIR --recipe direct --n 2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

TARGET_S = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    from reasongen.loading import default_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    ap.add_argument("--prompt", default="a photo of a red circle left of a blue square")
    ap.add_argument("--recipe", default="got-r1")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch
    from gradio_client import Client

    from reasongen.generation import generate_stream
    from reasongen.loading import settings_for
    from webui import AppConfig, Services, build_demo, launch

    model = args.model or default_model_path()
    if model is None:
        print("no embedded model: pass --model DIR", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    with tempfile.TemporaryDirectory() as data:
        cfg = AppConfig(model=str(model), device=args.device, data_dir=data, rewards=(), rate_limit=10_000,
                        max_candidates=max(4, args.n))  # fmt: skip
        services = Services.build(cfg, rewards={})
        port = _free_port()
        demo = build_demo(services)
        launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        loaded = services.loaded
        settings = settings_for(loaded, guidance=loaded.defaults.guidance, temperature=1.0,
                                max_cot_tokens=cfg.max_cot_tokens)  # fmt: skip
        request = (args.prompt, args.recipe, args.n, loaded.defaults.guidance, 1.0, args.seed)
        print(f"model {loaded.model_id}; {args.recipe}, {args.n} candidates, seed {args.seed}; {args.device}")
        print(
            f"{'round':>5} {'library s':>10} {'app s':>8} {'app-lib s':>10} {'updates':>8} {'lib events':>10}"
        )
        diffs, updates = [], []
        try:
            list(client.submit(*request, api_name="/generate"))  # warm-up (first-call costs on both sides)
            for r in range(args.rounds):
                t0 = time.perf_counter()
                events = sum(
                    1 for _ in generate_stream(loaded, args.prompt, args.recipe, args.n, args.seed, settings)
                )
                lib = time.perf_counter() - t0
                t0 = time.perf_counter()
                job = client.submit(*request, api_name="/generate")
                frames = list(job)
                app = time.perf_counter() - t0
                if not str(frames[-1][0]).startswith("Done"):
                    print(f"app run failed: {frames[-1][0]!r} {job.exception()}", file=sys.stderr)
                    return 1
                diffs.append(app - lib)
                updates.append(len(frames))
                print(f"{r + 1:>5} {lib:10.2f} {app:8.2f} {app - lib:10.2f} {len(frames):>8} {events:>10}")
        finally:
            demo.close()
            services.close()
    ok = max(diffs) <= TARGET_S
    verdict = "met" if ok else "MISSED"
    print(f"app - library: {min(diffs):.2f}..{max(diffs):.2f} s (target <= {TARGET_S} s: {verdict}); "
          f"updates {min(updates)}..{max(updates)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
