"""What every training entry point is configured with: ``RunConfig`` and its YAML-safe dict.

Configs are dataclasses with help text; ``reasongen.config.parse_config`` reads ``--config
recipe.yaml`` (a flat mapping of field names to values) and then command-line flags, which
override the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain, YAML-safe dict."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


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
                           "checkpoints (tail averaging, see training/checkpoints.py); 0 or 1 = "
                           "the last checkpoint as it is.", default=0)  # fmt: skip
    resume: str = _h("'' (fresh run), 'latest' (newest checkpoint in out_dir), or a folder.",
                     default="")  # fmt: skip
    log_every: int = _h("Log scalars every K steps.", default=1)
    tensorboard: bool = _h("Write TensorBoard logs under out_dir/tb.", default=True)
    progress: bool = _h("Show a tqdm progress bar.", default=True)
    torch_threads: int = _h("torch CPU threads (0 = leave torch's default).", default=0)
    flush_denormal: bool = _h("Flush float32 denormals (magnitudes below 1.2e-38) to zero on the "
                              "CPU (torch.set_flush_denormal). Softmax tails and their gradients "
                              "reach that range, and x86 arithmetic on denormals is many times "
                              "slower; flushing them changes values only below 1.2e-38 and made "
                              "the shapes recipe's step a fifth faster here (its backward by 40 percent). "
                              "Process-wide torch state. No effect on GPUs.", default=True)  # fmt: skip
    freeze_unused: bool = _h("Freeze the understanding tower and the VQ (unused by generation).",
                             default=True)  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
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
