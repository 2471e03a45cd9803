"""A supervised term mixed into online GRPO on the shapes world (InstructGPT's "PPO-ptx").

A learned reward is blind to some of what the supervised data taught (the shapes world's scorers
cannot tell "left of" from "right of", ``training/README.md``), and GRPO on it lets those skills
drift. With ``ptx_coef > 0`` every optimizer step of ``training.grpo`` adds

``ptx_coef · (mean NLL of the CoT tokens + mean NLL of the image tokens)``

over ``ptx_batch`` freshly drawn scenes of the world, each laid out as an SFT example of the
rollout recipe (prompt → the world's own CoT and box plan → the scene's image tokens;
``training.sft.example_to_sample``), the same data the SFT model learned from. The scenes come
from the run's ``shapes_categories`` on its layout (``shapes_cell``), never with a text of the
held-out benchmark (the rule of ``reasongen.shapes.pools.benchmark_texts``, as the prompt pool),
and are a function of ``(seed, step, optimizer step within the step)`` only, so a resumed run
draws the same ones. The term uses no reward: a gain it brings must be told apart from the
reward's, and :func:`dump` (``python -m training.ptx_dump``) writes a run's whole stream of scenes
(every optimizer step's, in order) as ``training.sft`` data, for the control: supervised training
alone on the same scenes at the same learning rate.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasongen.types import Sample


@dataclass
class PtxFields:
    """Config fields of the supervised mix; a mixin of ``GRPOConfig`` (checked in ``__post_init__``)."""

    ptx_coef: float = field(
        default=0.0,
        metadata={"help": "Weight of a supervised loss (CoT + image NLL) on freshly drawn shapes-world "
                  "scenes added to every optimizer step (InstructGPT's PPO-ptx): holds what the SFT "
                  "data taught where the reward is blind. 0 = off; needs prompts: shapes."},
    )  # fmt: skip
    ptx_batch: int = field(
        default=8, metadata={"help": "Scenes of the supervised term per optimizer step (global)."}
    )

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        check_ptx(self)


def check_ptx(cfg: Any) -> None:
    """Refuse settings the supervised mix cannot honour, naming the field."""
    if not cfg.ptx_coef >= 0:  # also NaN
        raise ValueError(f"ptx_coef must be >= 0, got {cfg.ptx_coef}")
    if cfg.ptx_batch < 1:
        raise ValueError(f"ptx_batch must be >= 1, got {cfg.ptx_batch}")
    if cfg.ptx_coef > 0 and cfg.prompts != "shapes":
        raise ValueError("ptx_coef draws shapes-world scenes: use it with --prompts shapes")


def held_texts(cfg: Any) -> set[str]:
    """The texts the mix never draws: the held-out benchmark's, by the prompt pool's rule."""
    from reasongen.shapes.pools import benchmark_texts, held_out_suites

    suites = held_out_suites(cfg.shapes_categories)
    return benchmark_texts(cfg.holdout_benchmark, cfg.shapes_cell or None, suites)


def ptx_scenes(cfg: Any, step: int, k: int, held: set[str]) -> list[Any]:
    """The ``ptx_batch`` scenes of optimizer step ``k`` of GRPO step ``step``: categories drawn
    from ``shapes_categories``, no text of ``held``, no prompt twice in the batch."""
    from reasongen.shapes.scene_sampler import distinct_scenes

    rng = random.Random(f"ptx {cfg.seed} {step} {k}")
    cell = cfg.shapes_cell or None
    drawn = distinct_scenes(rng, cfg.shapes_categories, cfg.ptx_batch, held, lambda _: cell)
    return [scene for scene, _ in drawn]


def scene_example(scene: Any, recipe: str) -> Any:
    """``scene`` as a ``training.sft.SFTExample`` of ``recipe``: its CoT with the box plan, its codes."""
    from reasongen.shapes import write_cot
    from reasongen.shapes.codes import scene_codes

    from .sft import SFTExample

    return SFTExample(scene.prompt, recipe, write_cot(scene), [int(c) for c in scene_codes(scene)])


def scene_sample(scene: Any, loaded: Any, recipe: str) -> Sample:
    """``scene`` laid out as a sample of ``loaded``, as SFT lays out its examples."""
    from .sft import example_to_sample

    return example_to_sample(scene_example(scene, recipe), loaded)


class SupervisedMix:
    """Adds the supervised term's gradients before each GRPO optimizer step (see module doc)."""

    def __init__(self, cfg: Any, run: Any) -> None:
        from reasongen.shapes.codes import NUM_BACKGROUND, NUM_CODES

        codebook = int(run.loaded.model.config.vq_config.num_embeddings)
        if run.loaded.num_image_tokens != NUM_BACKGROUND or codebook < NUM_CODES:
            raise ValueError(f"ptx_coef needs a shapes-world model (image tokens = the world's "
                             f"{NUM_BACKGROUND} cell codes of {NUM_CODES}, e.g. "
                             f"assets/models/shapes-janus-full); {cfg.model or 'this model'} draws "
                             f"{run.loaded.num_image_tokens} tokens of a {codebook}-code book")  # fmt: skip
        if run.accelerator.num_processes > cfg.ptx_batch or cfg.ptx_batch % run.accelerator.num_processes:
            raise ValueError(f"ptx_batch {cfg.ptx_batch} must be a multiple of the "
                             f"{run.accelerator.num_processes} processes")  # fmt: skip
        self.cfg, self.run = cfg, run
        self.held = held_texts(cfg)

    def samples(self, step: int, k: int) -> list[Sample]:
        """This process's share of optimizer step ``k``'s scenes, laid out as samples."""
        acc = self.run.accelerator
        scenes = ptx_scenes(self.cfg, step, k, self.held)[acc.process_index :: acc.num_processes]
        return [scene_sample(s, self.run.loaded, self.cfg.recipe) for s in scenes]

    def accumulate(self, step: int, k: int) -> tuple[float, dict[str, float]]:
        """Backward of ``ptx_coef ×`` the term on the scenes of optimizer step ``k`` of ``step``,
        without a gradient all-reduce (the GRPO update that follows synchronises the sum).
        Returns this process's weighted loss and the global mean NLLs (``ptx/text_nll``,
        ``ptx/image_nll``)."""
        from .sft import global_denominators, sft_loss

        acc, ids = self.run.accelerator, self.run.loaded.ids
        samples = self.samples(step, k)
        dens = global_denominators(acc, samples, "token")
        with acc.no_sync(self.run.model):
            with acc.autocast():
                loss, m = sft_loss(self.run.model, samples, ids.bos, ids.pad, 1.0, 1.0, "token", dens)
            acc.backward(self.cfg.ptx_coef * loss * acc.num_processes)  # DDP averages; means are global
        t = acc.reduce(torch.tensor([m["text_nll"], m["image_nll"]], dtype=torch.float64, device=acc.device),
                       "sum").tolist()  # fmt: skip
        return float(self.cfg.ptx_coef * loss.detach()), {"ptx/text_nll": t[0], "ptx/image_nll": t[1]}


def mean_metrics(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over a step's optimizer steps."""
    keys = {k for p in parts for k in p}
    return {k: sum(p.get(k, 0.0) for p in parts) / max(len(parts), 1) for k in sorted(keys)}


def dump(cfg: Any, path: str | Path) -> int:
    """Write the scenes of every optimizer step a run of ``cfg`` plans (``max_steps`` ×
    ``ppo_epochs`` × ``mini_batches`` batches of ``ptx_batch``, in the order the run draws them;
    a run draws none of a step that keeps no group) as SFT JSONL (``training.sft``'s fields);
    returns the number of lines."""
    held = held_texts(cfg)
    n = 0
    with Path(path).open("w") as f:
        for step in range(cfg.max_steps):
            for k in range(cfg.ppo_epochs * cfg.mini_batches):
                for s in ptx_scenes(cfg, step, k, held):
                    f.write(json.dumps(dataclasses.asdict(scene_example(s, cfg.recipe))) + "\n")
                    n += 1
    return n
