"""Write a GRPO run's supervised-mix scenes as SFT data, for the run's control.

``python -m training.ptx_dump --config GRPO.yaml --out FILE.jsonl [--flag value ...]``

The lines are every scene ``training.ptx`` would draw in a run of that config (``max_steps`` ×
``ppo_epochs`` × ``mini_batches`` batches of ``ptx_batch``, in order), as ``training.sft`` reads
them; training on them alone, at the run's learning rate and optimizer steps, is the control that
tells the supervised term's gain from the reward's (``training/README.md``). A separate module
because it needs ``GRPOConfig``, which imports ``training.ptx``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2 (``cli_main``)."""
    from reasongen.config import parse_config

    from .errors import cli_main
    from .grpo import GRPOConfig
    from .ptx import dump

    args = list(sys.argv[1:] if argv is None else argv)
    usage = dict(prog="python -m training.ptx_dump",
                 description="Write the supervised-mix scenes of a GRPO run as SFT JSONL. --out FILE.jsonl "
                 "(required): where they are written; every other flag is the GRPO run's.")  # fmt: skip
    if "-h" in args or "--help" in args:
        parse_config(GRPOConfig, ["--help"], **usage)  # prints and exits

    def body() -> str:
        if "--out" not in args or args.index("--out") + 1 >= len(args):
            raise ValueError("--out FILE.jsonl is required (where the scenes are written)")
        i = args.index("--out")
        out = args[i + 1]
        cfg = parse_config(GRPOConfig, args[:i] + args[i + 2 :], **usage)
        if cfg.prompts != "shapes":
            raise ValueError("the supervised mix draws shapes-world scenes: the config needs prompts: shapes")
        return f"wrote {dump(cfg, out)} scenes to {out}"

    return cli_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
