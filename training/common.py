"""What SFT and GRPO share: config parsing, freezing, LoRA, checkpoints, logging.

Configs are dataclasses with help text. ``parse_config`` reads ``--config recipe.yaml`` (a flat
mapping of field names to values) and then command-line flags, which override the file.
Checkpoints are folders ``<out_dir>/checkpoint-<step>/`` holding an HF-format model (loadable by
``reasongen.loading.load_model``), its processor, and ``trainer_state/`` written by accelerate
(optimizer, scheduler, RNG states of every process) plus our own ``extra.pt`` (step, entropy
controllers, anything else the entry point needs to continue exactly).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

T = TypeVar("T")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
UNUSED_FOR_GENERATION = ("model.vision_model", "model.aligner", "model.vqmodel")
"""Janus modules text-to-image training never runs (the understanding tower and the VQ)."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML recipe as a flat dict; raises ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option: value")
    return data


def parse_config(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Build ``cls`` from ``--config FILE.yaml`` and command-line overrides (flags win).

    Unknown keys in the YAML raise ``ValueError`` listing the accepted ones.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(cls)
    parser.add_argument("--config", default=None, help="YAML recipe; command-line flags override it")
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        data = load_yaml(pre.config)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{pre.config}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
            )
        parser.set_defaults(**data)
    # Outputs: the config, a namespace holding --config, and the strings nobody claimed.
    outs = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if outs[-1]:
        raise ValueError(f"unrecognised arguments: {' '.join(outs[-1])}")
    return outs[0]


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain, YAML-safe dict."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


# --------------------------------------------------------------------------- model surgery


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


# --------------------------------------------------------------------------- checkpoints


def merged_lora_state_dict(base: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's state dict with every LoRA delta folded in, computed out of place.

    ``base`` is a peft model's base model (LoRA layers injected). Keys lose peft's
    ``base_layer.`` infix and the ``lora_*`` tensors, so ``from_pretrained`` of the plain class
    loads the result; the live model and its adapters are left untouched.
    """
    from peft.tuners.lora import LoraLayer

    deltas: dict[str, torch.Tensor] = {}
    for name, mod in base.named_modules():
        if isinstance(mod, LoraLayer) and hasattr(mod, "get_delta_weight"):
            for adapter in mod.active_adapters:
                d = mod.get_delta_weight(adapter).detach()
                key = f"{name}.weight"
                deltas[key] = deltas[key] + d if key in deltas else d
    out: dict[str, torch.Tensor] = {}
    for key, val in base.state_dict().items():
        if ".lora_" in key:
            continue
        clean = key.replace(".base_layer.", ".")
        out[clean] = (val + deltas[clean].to(val.dtype)) if clean in deltas else val
    return out


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state" / "extra.pt").is_file()]


def resolve_resume(resume: str, out_dir: str | Path) -> Path | None:
    """``""`` → None; ``"latest"`` → newest complete checkpoint (None if none); else that folder."""
    if not resume:
        return None
    if resume == "latest":
        found = checkpoint_dirs(out_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "trainer_state" / "extra.pt").is_file():
        raise ValueError(f"{path} is not a complete checkpoint (no trainer_state/extra.pt)")
    return path


def save_checkpoint(
    accelerator: Any,
    model: torch.nn.Module,
    processor: Any,
    out_dir: str | Path,
    step: int,
    extra: dict[str, Any],
    keep_last: int = 0,
) -> Path:
    """Write ``checkpoint-<step>/`` (HF model + processor + resumable state); return its path.

    ``extra`` is pickled with ``torch.save`` last, so a folder without it is incomplete and
    ignored by ``resume``. ``keep_last > 0`` deletes older checkpoints beyond that many.
    """
    path = Path(out_dir) / f"checkpoint-{step}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path / "trainer_state"))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped = getattr(unwrapped, "inner", unwrapped)  # JanusPolicy → Janus / peft model
        if hasattr(unwrapped, "peft_config"):
            unwrapped.save_pretrained(path / "adapter")  # the LoRA adapters alone
            base = unwrapped.get_base_model()
            base.save_pretrained(path, state_dict=merged_lora_state_dict(base), safe_serialization=True)
        else:
            unwrapped.save_pretrained(path, safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(path)
        torch.save(extra, path / "trainer_state" / "extra.pt")
        if keep_last > 0:
            for old in checkpoint_dirs(out_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore model/optimizer/scheduler/RNG state from ``path``; return its ``extra`` dict."""
    path = Path(path)
    accelerator.load_state(str(path / "trainer_state"))
    return torch.load(path / "trainer_state" / "extra.pt", weights_only=False)


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

        arr = np.stack([np.asarray(im.convert("RGB")) for im in images])  # (n, H, W, 3)
        self.writer.add_images(tag, arr, step, dataformats="NHWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------- shared run set-up


def _h(text: str, **kw: Any) -> Any:
    return dataclasses.field(metadata={"help": text}, **kw)


@dataclasses.dataclass
class RunConfig:
    """Options every training entry point shares."""

    model: str = _h("Model folder or hub id (HF Janus format); '' = the embedded model.", default="")
    out_dir: str = _h("Run folder: checkpoints, TensorBoard logs, final model.", default="runs/train")
    max_steps: int = _h("Training steps to run (GRPO: rollout batches, each ppo_epochs optimizer steps).",
                        default=100)  # fmt: skip
    lr: float = _h("Peak learning rate.", default=1e-5)
    optimizer: str = _h("'adamw' or 'sgd' (plain SGD, mostly for exactness tests).", default="adamw")
    weight_decay: float = _h("AdamW weight decay.", default=0.0)
    adam_betas: list[float] = dataclasses.field(
        default_factory=lambda: [0.9, 0.999], metadata={"help": "AdamW betas."}
    )
    warmup_steps: int = _h("Linear warm-up, in optimizer steps.", default=0)
    lr_scheduler: str = _h("transformers scheduler name: constant_with_warmup, cosine, linear.",
                           default="constant_with_warmup")  # fmt: skip
    grad_clip: float = _h("Max gradient norm (0 = no clipping).", default=1.0)
    seed: int = _h("Seed for data order, dropout choices and rollouts.", default=0)
    freeze: list[str] = dataclasses.field(
        default_factory=list, metadata={"help": "Parameter-name prefixes or globs to freeze."}
    )
    lora_rank: int = _h("LoRA rank through peft (0 = full fine-tuning).", default=0)
    lora_alpha: float = _h("LoRA alpha.", default=16.0)
    lora_targets: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names LoRA wraps."},
    )
    gradient_checkpointing: bool = _h("Recompute LM activations in backward (saves memory).",
                                      default=False)  # fmt: skip
    mixed_precision: str = _h("'no', 'bf16' or 'fp16' (accelerate autocast; GPU).", default="no")
    device: str = _h("'auto' (accelerate decides), or 'cpu'.", default="auto")
    save_every: int = _h("Save a checkpoint every K optimizer steps (0 = only at the end).",
                         default=50)  # fmt: skip
    keep_last: int = _h("Keep only the newest K checkpoints (0 = keep all).", default=0)
    average_last: int = _h("Export final/ as the mean of the weights of the run's newest N "
                           "checkpoints (tail averaging, see training/averaging.py); 0 or 1 = "
                           "the last checkpoint as it is.", default=0)  # fmt: skip
    resume: str = _h("'' (fresh run), 'latest' (newest checkpoint in out_dir), or a folder.",
                     default="")  # fmt: skip
    log_every: int = _h("Log scalars every K steps.", default=1)
    tensorboard: bool = _h("Write TensorBoard logs under out_dir/tb.", default=True)
    progress: bool = _h("Show a tqdm progress bar.", default=True)
    torch_threads: int = _h("torch CPU threads (0 = leave torch's default).", default=0)
    freeze_unused: bool = _h("Freeze the understanding tower and the VQ (unused by generation).",
                             default=True)  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError("mixed_precision must be 'no', 'bf16' or 'fp16'")
        if self.device not in ("auto", "cpu"):
            raise ValueError("device must be 'auto' or 'cpu' (use accelerate launch for GPUs)")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if len(self.adam_betas) != 2:
            raise ValueError("adam_betas takes two numbers, e.g. --adam_betas 0.9 0.999")
        if self.save_every < 0 or self.log_every < 1:
            raise ValueError("save_every must be >= 0 and log_every >= 1")
        if self.average_last < 0:
            raise ValueError(f"average_last must be >= 0, got {self.average_last}")
        if self.average_last > 1 and not self.save_every:
            raise ValueError("average_last needs checkpoints to average: set save_every > 0")
        if self.average_last > 1 and 0 < self.keep_last < self.average_last:
            raise ValueError(f"keep_last {self.keep_last} keeps fewer checkpoints than "
                             f"average_last {self.average_last} averages")  # fmt: skip

    def optimizer_steps(self) -> int:
        """Optimizer (and scheduler) steps in the whole run: the length of the lr schedule."""
        return self.max_steps


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


def optimizer_step(run: Run, grad_clip: float) -> float:
    """Clip, step optimizer and scheduler, zero grads; return the gradient norm (or NaN)."""
    norm = float("nan")
    if grad_clip > 0:
        norm = float(run.accelerator.clip_grad_norm_(run.model.parameters(), grad_clip))
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return norm


def export_final(
    accelerator: Any, checkpoint: str | Path, out_dir: str | Path, average_last: int = 0
) -> Path:
    """Write ``<out_dir>/final``: the HF model + processor of ``checkpoint`` (not its trainer
    state), or with ``average_last > 1`` the mean of the newest ``average_last`` checkpoints in
    ``out_dir`` up to ``checkpoint`` (fewer if the run saved fewer; a warning says so)."""
    src, dst = Path(checkpoint), Path(out_dir) / "final"
    if accelerator.is_main_process:
        if dst.exists():
            shutil.rmtree(dst)
        found = [p.resolve() for p in checkpoint_dirs(out_dir)]
        upto = found[: found.index(src.resolve()) + 1] if src.resolve() in found else [src]
        sources = upto[-average_last:] if average_last > 1 else [src]
        if len(sources) < max(average_last, 1):
            print(f"warning: average_last is {average_last} but the run has {len(sources)} "
                  f"checkpoints up to {src.name}; final/ averages those", file=sys.stderr)  # fmt: skip
        if len(sources) > 1:
            from training.averaging import average_checkpoints

            average_checkpoints(sources, dst)
        else:
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("trainer_state"))
    accelerator.wait_for_everyone()
    return dst
