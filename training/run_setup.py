"""A training run's set-up: accelerator, model surgery (freezing, LoRA, activation checkpointing),
optimizer and schedule, resume state, TensorBoard logging, and the optimizer step.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_checkpoint, resolve_resume
from .config import RunConfig

UNUSED_FOR_GENERATION = ("model.vision_model", "model.aligner", "model.vqmodel")
"""Janus modules text-to-image training never runs (the understanding tower and the VQ)."""


def freeze_modules(model: torch.nn.Module, patterns: Sequence[str]) -> int:
    """Turn off gradients of parameters whose name matches a pattern; return how many were frozen.

    A pattern is a parameter-name prefix (``model.vision_model``) or an ``fnmatch`` glob
    (``*.vqmodel.*``). A pattern that matches nothing raises ``ValueError`` (a typo must not
    silently train everything).
    """
    frozen = 0
    for pat in patterns:
        hit = 0
        for name, p in model.named_parameters():
            if name == pat or name.startswith(pat + ".") or fnmatch.fnmatchcase(name, pat):
                p.requires_grad_(False)
                hit += 1
        if hit == 0:
            raise ValueError(f"freeze pattern {pat!r} matches no parameter of the model")
        frozen += hit
    return frozen


def apply_lora(model: torch.nn.Module, rank: int, alpha: float, targets: Sequence[str]) -> torch.nn.Module:
    """Wrap ``model`` with peft LoRA adapters on modules named in ``targets``."""
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"lora_rank must be >= 1, got {rank}")
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
    return get_peft_model(model, cfg)


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute the LM's activations in backward (transformers' non-reentrant checkpointing)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x spelling
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters left: check the freeze list")
    return params


class ScalarLogger:
    """TensorBoard scalars and images on the main process (a no-op elsewhere or when off)."""

    def __init__(self, log_dir: str | Path, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if v is not None and v == v:  # skip None and NaN
                self.writer.add_scalar(k, float(v), step)

    def images(self, tag: str, images: Sequence[Any], step: int) -> None:
        if self.writer is None or not images:
            return
        import numpy as np

        arr = np.stack([np.asarray(im.convert("RGB")) for im in images])  # [n, H, W, 3]
        self.writer.add_images(tag, arr, step, dataformats="NHWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclasses.dataclass
class Run:
    """Everything a loop needs after set-up."""

    accelerator: Any
    loaded: Any  # reasongen.loading.LoadedModel (its .model is the unwrapped module)
    model: Any  # the prepared (possibly DDP-wrapped) model
    optimizer: Any
    scheduler: Any
    logger: ScalarLogger
    start_step: int
    extra: dict[str, Any]


def setup_run(cfg: RunConfig, loaded: Any | None = None) -> Run:
    """Accelerator, model (frozen parts, LoRA, checkpointing), AdamW, scheduler, resume state.

    ``loaded`` may be passed in (tests); otherwise ``load_model(cfg.model)`` in float32.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from reasongen.loading import load_model, wrap_loaded

    from .logprobs import JanusPolicy, base_janus

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.set_flush_denormal(cfg.flush_denormal)  # returns False where the CPU cannot flush
    # Our steps are global (a batch is split over the processes), so the prepared scheduler must
    # step once per optimizer step; by default accelerate steps it once per process.
    acc = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision,
                      step_scheduler_with_optimizer=False)  # fmt: skip
    set_seed(cfg.seed)
    if loaded is None:
        loaded = load_model(cfg.model or None, device=acc.device, dtype="float32")
    model = loaded.model
    if cfg.freeze_unused:
        freeze_modules(model, UNUSED_FOR_GENERATION)
    if cfg.freeze:
        freeze_modules(model, cfg.freeze)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.lora_rank > 0:
        model = apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
        loaded = wrap_loaded(base_janus(model), loaded.processor, loaded.model_id)
    policy = JanusPolicy(model).train()
    params = trainable_parameters(policy)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                weight_decay=cfg.weight_decay)  # fmt: skip
    sched = get_scheduler(cfg.lr_scheduler, opt, cfg.warmup_steps, cfg.optimizer_steps())
    prepared, opt, sched = acc.prepare(policy, opt, sched)
    start, extra = 0, {}
    path = resolve_resume(cfg.resume, cfg.out_dir)
    if path is not None:
        extra = load_checkpoint(acc, path)
        start = int(extra["step"])
    logger = ScalarLogger(Path(cfg.out_dir) / "tb", cfg.tensorboard and acc.is_main_process)
    return Run(acc, loaded, prepared, opt, sched, logger, start, extra)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What :func:`optimizer_step` did: the gradient norm and whether the update was applied."""

    grad_norm: float  # total gradient norm before clipping (non-finite when the step was skipped)
    applied: bool  # False: loss or gradients were not finite, the parameters were left alone


def _grad_norm(run: Run, grad_clip: float) -> float:
    """The total gradient norm, clipping to ``grad_clip`` when it is positive (after DDP's
    all-reduce the gradients, and so the norm, are the same on every process)."""
    if grad_clip > 0:
        return float(run.accelerator.clip_grad_norm_(run.model.parameters(), grad_clip))
    grads = [p.grad for p in run.model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def optimizer_step(run: Run, grad_clip: float, loss: float | None = None) -> StepResult:
    """Clip, step optimizer and scheduler, zero grads; a non-finite update is never applied.

    When ``loss`` (this process's) or the gradient norm is NaN or ±inf on any process, the
    optimizer does not step (parameters and optimizer state stay as they were) and the gradients
    are dropped; the result says ``applied=False`` for the caller to count. The scheduler steps
    either way, so the learning rate stays a function of the step number: a skipped step uses up
    its place in the schedule (the run still ends where its schedule ends, and a resumed run
    lines up). With fp16 the gradient scaler makes the same decision (and lowers its scale).
    """
    acc = run.accelerator
    bad_loss = loss is not None and not math.isfinite(loss)
    if loss is not None and acc.num_processes > 1:
        flag = torch.tensor([float(bad_loss)], device=acc.device)
        bad_loss = float(acc.reduce(flag, reduction="sum")[0]) > 0
    norm = _grad_norm(run, grad_clip)
    applied = not bad_loss and math.isfinite(norm)
    if getattr(acc, "scaler", None) is not None and not bad_loss:
        # fp16: the gradient scaler checks the (unscaled) gradients, skips a non-finite step and
        # lowers its scale; it must see every such step, so it decides.
        run.optimizer.step()
        applied = not run.optimizer.step_was_skipped
    elif applied:
        run.optimizer.step()
    with warnings.catch_warnings():  # torch warns when the first optimizer step was skipped
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
        run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return StepResult(norm, applied)
