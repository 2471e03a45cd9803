"""Supervised fine-tuning: prompt → CoT (+ plan) → image tokens, with separate text/image weights.

``python -m training.sft --config training/recipes/sft.yaml [--flag value ...]``
(or ``accelerate launch -m training.sft ...`` for several processes).

Data: a JSONL file, one example per line: ``{"prompt": str, "recipe": str (default: the
config's), "cot": str (ignored by recipes without CoT), "image_tokens": [int, ...]}`` or, instead
of ``image_tokens``, ``"image": "path.png"`` (relative to the file), encoded once with the model's
own VQ encoder. Each example becomes a :class:`reasongen.types.Sample` laid out exactly as
generation lays out its samples (``prompt_ids`` = BOS + formatted prompt; CoT tokens end with
``<begin_of_image>`` so the model learns to stop; ``prefix_ids`` = prompt + CoT + BOI, or the
re-wrapped step-2 conversation for T2I-R1), and the loss is

``text_weight · mean NLL(CoT tokens) + image_weight · mean NLL(image tokens)``

through the LM head and the generation head respectively. Prompt tokens carry no loss. With
probability ``cond_dropout`` an example is replaced by its unconditional row (BOS + pads +
``<begin_of_image>``, image loss only), which is what classifier-free guidance needs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasongen.config import parse_config
from reasongen.layout import encode_text, image_prefix, prompt_ids, unconditional_prefix
from reasongen.loading import settings_for
from reasongen.prompt_files import iter_json_lines
from reasongen.recipes import get_recipe
from reasongen.types import Sample

from .checkpoints import export_final, save_checkpoint
from .config import RunConfig, config_dict
from .errors import NoSignalError
from .grpo_loss import masked_mean
from .logprobs import run_policy
from .run_setup import optimizer_step, setup_run


@dataclass
class SFTExample:
    """One supervised example (already tokenised image)."""

    prompt: str
    recipe: str
    cot: str
    image_tokens: list[int]


@dataclass
class SFTConfig(RunConfig):
    data: str = field(default="", metadata={"help": "JSONL file of SFT examples (see module doc)."})
    recipe: str = field(default="got-r1", metadata={"help": "Recipe for lines that name none."})
    batch_size: int = field(default=8, metadata={"help": "Examples per optimizer step (global)."})
    text_weight: float = field(default=1.0, metadata={"help": "Loss weight of CoT tokens."})
    image_weight: float = field(default=1.0, metadata={"help": "Loss weight of image tokens."})
    normalisation: str = field(default="token", metadata={"help": "'token' or 'sample' mean."})
    cond_dropout: float = field(
        default=0.0, metadata={"help": "Probability of training an example unconditionally."}
    )
    micro_batch_size: int = field(
        default=0, metadata={"help": "Examples per forward/backward on a process (0 = all)."}
    )
    out_dir: str = field(default="runs/sft", metadata={"help": "Run folder."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.text_weight < 0 or self.image_weight < 0:
            raise ValueError("text_weight and image_weight must be non-negative")
        if self.text_weight == 0 and self.image_weight == 0:
            raise ValueError("text_weight and image_weight are both 0: nothing would be learned")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.normalisation not in ("token", "sample"):
            raise ValueError("normalisation must be 'token' or 'sample'")
        if self.micro_batch_size < 0:
            raise ValueError("micro_batch_size must be >= 0 (0 = the whole local batch)")
        get_recipe(self.recipe)


# --------------------------------------------------------------------------- data


def encode_images(loaded: Any, paths: Sequence[str | Path]) -> list[list[int]]:
    """VQ-encode image files with the model's own processor and VQ encoder."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    proc = loaded.processor.image_processor
    pixels = proc(images, return_tensors="pt")["pixel_values"].to(loaded.device)  # [n, 3, H, W]
    with torch.no_grad():
        out = loaded.model.model.vqmodel.encode(pixels)
    return out.image_tokens.view(len(images), -1).tolist()  # [n, N]


def load_sft_jsonl(path: str | Path, loaded: Any, default_recipe: str) -> list[SFTExample]:
    """Read SFT examples; a malformed line raises ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"SFT data file {path} does not exist")
    rows: list[dict[str, Any]] = []
    for n, row in iter_json_lines(path):
        if not isinstance(row, dict) or not str(row.get("prompt", "")).strip():
            raise ValueError(f"{path}:{n}: needs a non-empty 'prompt'")
        if "image_tokens" not in row and "image" not in row:
            raise ValueError(f"{path}:{n}: needs 'image_tokens' or 'image'")
        get_recipe(row.get("recipe", default_recipe))
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no examples")
    need = [i for i, r in enumerate(rows) if "image_tokens" not in r]
    if need:
        codes = encode_images(loaded, [path.parent / rows[i]["image"] for i in need])
        for i, c in zip(need, codes):
            rows[i]["image_tokens"] = c
    n_img = loaded.num_image_tokens
    out = []
    for r in rows:
        toks = [int(t) for t in r["image_tokens"]]
        if len(toks) != n_img:
            raise ValueError(f"{path}: an example has {len(toks)} image tokens, the model uses {n_img}")
        out.append(SFTExample(r["prompt"], r.get("recipe", default_recipe), r.get("cot", ""), toks))
    return out


def example_to_sample(ex: SFTExample, loaded: Any, unconditional: bool = False) -> Sample:
    """Lay an example out like a generated sample (see the module docstring)."""
    tok, ids = loaded.tokenizer, loaded.ids
    rec = get_recipe(ex.recipe)
    p_ids = prompt_ids(tok, ids, rec, ex.prompt)
    cot_text = encode_text(tok, ex.cot.strip()) if rec.has_cot else []
    cot_ids = [*cot_text, ids.boi] if rec.has_cot else []  # the CoT ends with BOI, as sampled
    prefix = image_prefix(tok, ids, rec, ex.prompt, p_ids, cot_text, ex.cot)
    if unconditional:
        prefix = unconditional_prefix(prefix, ids.bos, ids.pad)
        p_ids, cot_ids = [ids.bos], []
    n = len(ex.image_tokens)
    return Sample(
        prompt=ex.prompt, recipe=rec.name, model_id=loaded.model_id, seed=0,
        settings=settings_for(loaded, guidance=1.0, num_image_tokens=n), prompt_ids=p_ids,
        cot_text=ex.cot, cot_token_ids=cot_ids, cot_logprobs=[0.0] * len(cot_ids),
        cot_end="boi" if cot_ids else "none", prefix_ids=prefix,
        image_token_ids=list(ex.image_tokens), image_logprobs=[0.0] * n,
    )  # fmt: skip


# --------------------------------------------------------------------------- loss


def sft_loss(
    model: Any,
    samples: Sequence[Sample],
    bos_id: int,
    pad_id: int,
    text_weight: float,
    image_weight: float,
    normalisation: str = "token",
    denominators: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted NLL of CoT tokens (LM head) and image tokens (generation head); prompt excluded.

    ``model`` is a Janus model or a (wrapped) ``JanusPolicy``. ``denominators`` (``"text"``,
    ``"image"``) replace the local token counts, so micro-batch losses sum to the batch mean.
    """
    dens = denominators or {}
    lp = run_policy(model, samples, bos_id, pad_id, mode="plain")
    text_nll = -masked_mean(lp.cot, lp.cot_mask, normalisation, dens.get("text"))  # type: ignore[arg-type]
    image_nll = -masked_mean(lp.image, lp.image_mask, normalisation, dens.get("image"))  # type: ignore[arg-type]
    loss = text_weight * text_nll + image_weight * image_nll
    return loss, {
        "loss": float(loss.detach()),
        "text_nll": float(text_nll.detach()),
        "image_nll": float(image_nll.detach()),
        "text_tokens": float(lp.cot_mask.sum()),
    }


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Global indices of step ``step``'s batch: epochs are seeded permutations (resume-exact)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    if n < batch_size:
        return [order[i % n] for i in range(batch_size)]
    return order[k * batch_size : (k + 1) * batch_size]


# --------------------------------------------------------------------------- loop


def global_denominators(acc: Any, samples: Sequence[Sample], normalisation: str) -> dict[str, float]:
    """Token (or sample) counts of CoT and image targets summed over every process."""
    n_cot = [len(s.cot_token_ids) for s in samples]
    n_img = [len(s.image_token_ids) for s in samples]
    if normalisation == "sample":
        n_cot, n_img = [int(n > 0) for n in n_cot], [int(n > 0) for n in n_img]
    t = acc.reduce(torch.tensor([float(sum(n_cot)), float(sum(n_img))], device=acc.device), "sum")
    return {"text": float(t[0]), "image": float(t[1])}


def accumulate(run: Any, cfg: SFTConfig, samples: list[Sample]) -> dict[str, float]:
    """Gradients of the batch's SFT loss over micro-batches; returns global metrics."""
    acc, ids, world = run.accelerator, run.loaded.ids, run.accelerator.num_processes
    dens = global_denominators(acc, samples, cfg.normalisation)
    size = cfg.micro_batch_size or len(samples)
    chunks = [samples[i : i + size] for i in range(0, len(samples), size)]
    sums = torch.zeros(2, dtype=torch.float64, device=acc.device)  # text, image NLL
    for c, chunk in enumerate(chunks):
        ctx = acc.no_sync(run.model) if c < len(chunks) - 1 else contextlib.nullcontext()
        with ctx:
            with acc.autocast():
                loss, m = sft_loss(run.model, chunk, ids.bos, ids.pad, cfg.text_weight,
                                   cfg.image_weight, cfg.normalisation, dens)  # fmt: skip
            acc.backward(loss * world)  # DDP averages over processes; the means are global
        sums += torch.tensor([m["text_nll"], m["image_nll"]], dtype=torch.float64, device=acc.device)
    text, image = acc.reduce(sums, "sum").tolist()
    return {"loss": cfg.text_weight * text + cfg.image_weight * image, "text_nll": text,
            "image_nll": image, "text_tokens": dens["text"]}  # fmt: skip


def train(cfg: SFTConfig, loaded: Any | None = None) -> Path:
    """Run SFT; return the folder of the final checkpoint."""
    from tqdm.auto import tqdm

    run = setup_run(cfg, loaded)
    acc, lm = run.accelerator, run.loaded
    data = load_sft_jsonl(cfg.data, lm, cfg.recipe)
    rank, world = acc.process_index, acc.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by {world} processes")
    bar = tqdm(range(run.start_step, cfg.max_steps), disable=not (cfg.progress and acc.is_main_process))
    path, applied = None, 0
    for step in bar:
        glob = batch_indices(len(data), cfg.batch_size, step, cfg.seed)
        # The dropout draw depends on (seed, step, position in the global batch) only.
        drop = [random.Random(f"{cfg.seed}:{step}:{k}").random() < cfg.cond_dropout for k in range(len(glob))]
        mine = list(range(len(glob)))[rank::world]
        samples = [example_to_sample(data[glob[k]], lm, drop[k]) for k in mine]
        metrics = accumulate(run, cfg, samples)
        result = optimizer_step(run, cfg.grad_clip, metrics["loss"])
        applied += result.applied
        metrics["grad_norm"] = result.grad_norm
        metrics["skipped"] = float(not result.applied)  # NaN/inf loss or gradients: not applied
        metrics["lr"] = run.scheduler.get_last_lr()[0]
        done = step + 1
        if done % cfg.log_every == 0:
            run.logger.scalars({f"sft/{k}": v for k, v in metrics.items()}, done)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if done == cfg.max_steps and not applied:
            run.logger.close()
            raise NoSignalError(f"every one of the run's {done - run.start_step} optimizer steps was "
                                "skipped: the loss or gradients were NaN or inf (check the data "
                                "and lower lr); no final model was written")  # fmt: skip
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.max_steps:
            extra = {"step": done, "config": config_dict(cfg)}
            path = save_checkpoint(acc, run.model, lm.processor, cfg.out_dir, done, extra, cfg.keep_last)
    run.logger.close()
    if path is not None:
        export_final(acc, path, cfg.out_dir, cfg.average_last)
    return path or Path(cfg.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2 (``cli_main``)."""
    from .errors import cli_main

    def body() -> str:
        cfg = parse_config(SFTConfig, argv)
        if not cfg.data:
            raise ValueError("--data is required (a JSONL file of SFT examples)")
        return f"SFT finished: {train(cfg)}"

    return cli_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
