"""Training a preference reward model on rankings: configuration, loop, held-out evaluation, output.

``train_reward_model(cfg)`` reads the rankings (a study or an export), splits them by prompt,
starts from ``cfg.init``, minimises the ranking loss over batches of rankings (AdamW, linear
warm-up then cosine decay, gradient clipping, ``logit_scale`` kept within CLIP's [0, ln 100]),
measures held-out pairwise accuracy (with its task-clustered bootstrap CI) before and after, and
writes the folder: weights, open_clip config, ``metrics.json`` and the model card.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reasongen.rewards.learned import TEXT_MODES, Scorer, reward_text
from reasongen.types import Box

from ..errors import TrainingError
from .data import PreferenceData, Ranking, read_export, read_studies, split_by_prompt
from .loss import LOSSES, ranking_loss
from .metrics import human_ceiling, pairwise_accuracy
from .model import CONFIGS, initial_scorer, save_scorer

MAX_LOGIT_SCALE = math.log(100.0)


def _h(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class RewardModelConfig:
    """``python -m training.reward_model``: a preference reward model from a study's rankings."""

    study: str = _h(
        "Study to learn from (name, or name:X / id:N); several, comma-separated, are pooled (each "
        "filtered by its own control tasks) — e.g. a first round's study and one of the policy's samples.",
        default="",
    )
    db: str = _h("SQLAlchemy URL of the annotation database ('' = data_dir's SQLite file).", default="")
    data_dir: str = _h("Annotation data directory (images and the default database).", default="data")
    export: str = _h(
        "Learn from an export instead: its folder or its rankings.<csv|parquet|jsonl>.", default=""
    )
    out: str = _h("Output folder: weights, open_clip config, metrics.json, README.md.", default="")
    init: str = _h(
        "Start from: an open_clip folder (open_clip_config.json + weights: CLIP, a "
        "pre-trained shapes model, a model of ours), a checkpoint file with --arch (HPS "
        f"v2.1), or a config from scratch: {', '.join(CONFIGS)}.",
        default="shapes",
    )
    arch: str = _h(
        "open_clip architecture of a checkpoint file given as --init: a name (HPS v2.1: ViT-H-14), "
        "or a .json file with an open_clip config.",
        default="",
    )
    text: str = _h(
        f"What the text side reads: {' or '.join(TEXT_MODES)} (the prompt and the candidate's "
        "plan boxes as words; for rankings that looked at the plan).",
        default="prompt",
    )
    context_length: int = _h(
        "Text context in tokens for a config from scratch (0 = the config's; prompt_plan needs ~128).",
        default=0,
    )
    loss: str = _h(f"Ranking loss: {' or '.join(LOSSES)} (both count ties).", default="plackett_luce")
    steps: int = _h("Optimizer steps.", default=400)
    batch_rankings: int = _h("Rankings per step.", default=32)
    lr: float = _h("Peak learning rate (AdamW). Lower it (~1e-6..1e-5) for a full-size CLIP.", default=1e-4)
    weight_decay: float = _h("AdamW weight decay.", default=0.01)
    warmup_steps: int = _h("Linear warm-up steps; then cosine decay to zero.", default=20)
    grad_clip: float = _h("Max gradient norm (0 = none).", default=1.0)
    held_out: float = _h("Fraction of prompts held out for evaluation (split by prompt).", default=0.2)
    validation: float = _h(
        "Fraction of the training prompts set aside to choose the step: their accuracy is measured at "
        "the start and every --eval_every steps, and the best weights are kept (the start's "
        "included, so fine-tuning that only overfits is undone); 0 = keep the last step.",
        default=0.0,
    )
    eval_every: int = _h("Steps between validation measurements (with --validation).", default=25)
    seed: int = _h("Seed of the split, the initial weights and the batch order.", default=0)
    min_pass_rate: float = _h(
        "Control pass rate below which an annotator's rankings are left out.", default=0.75
    )
    people_only: bool = _h(
        "Leave out simulated annotators' rankings (kept by default, and counted).", default=False
    )
    n_boot: int = _h("Bootstrap resamples (by task) for the 95% intervals.", default=1000)
    save_dtype: str = _h("Weights file dtype: float32, float16 or bfloat16.", default="float32")
    device: str = _h("'auto' (CUDA when present), 'cpu' or 'cuda:0'.", default="auto")
    torch_threads: int = _h("torch CPU threads (0 = torch's default).", default=0)
    cache_mb: int = _h(
        "Keep preprocessed images in memory up to this size (MB); beyond, each batch preprocesses its own.",
        default=2048,
    )
    log_every: int = _h("Print the mean loss every K steps (0 = never).", default=50)

    def __post_init__(self) -> None:
        if bool(self.study) == bool(self.export):
            raise ValueError("give exactly one of --study (a study in the database) or --export (an export)")
        if not self.out:
            raise ValueError("--out is required: the folder to write the reward model to")
        if self.text not in TEXT_MODES:
            raise ValueError(f"--text must be one of {', '.join(TEXT_MODES)}, got {self.text!r}")
        if self.context_length < 0:
            raise ValueError("--context_length must be >= 0")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.steps < 1 or self.batch_rankings < 1 or self.n_boot < 0 or self.warmup_steps < 0:
            raise ValueError("steps and batch_rankings must be >= 1, n_boot and warmup_steps >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.validation < 1.0 or self.eval_every < 1:
            raise ValueError("validation must be in [0, 1) and eval_every >= 1")
        if not 0.0 < self.held_out < 1.0 or not 0.0 <= self.min_pass_rate <= 1.0:
            raise ValueError("held_out must be in (0, 1) and min_pass_rate in [0, 1]")
        if self.save_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError("save_dtype must be float32, float16 or bfloat16")


@dataclass
class TrainResult:
    """What a run measured; ``metrics.json`` holds the same."""

    out: Path
    metrics: dict[str, Any]
    losses: list[float]


def read_data(cfg: RewardModelConfig) -> PreferenceData:
    kw = {"min_pass_rate": cfg.min_pass_rate, "people_only": cfg.people_only}
    if cfg.export:
        return read_export(cfg.export, **kw)
    return read_studies(cfg.study, cfg.db, cfg.data_dir, **kw)


def candidate_texts(data: PreferenceData, mode: str) -> dict[int, str]:
    """Candidate id → the text its image is scored against (``reward_text``: the prompt, or the
    prompt and its plan's boxes), as the ``learned`` reward will build it from a sample."""
    return {c: reward_text(p, data.plans.get(c, ()), mode) for c, p in data.prompts.items()}


class Images:
    """Preprocessed candidate images by id, all in memory when they fit ``cache_mb``; a scorer in
    image mode of ``PLAN_MODES`` sees each beside its plan (``plans``, candidate id → boxes; none
    stored is an empty plan), as the ``learned`` reward shows it a sample."""

    def __init__(
        self,
        scorer: Scorer,
        files: dict[int, Path],
        cache_mb: int,
        plans: dict[int, tuple[Box, ...]] | None = None,
    ) -> None:
        from PIL import Image

        self.scorer, self.files, self._open, self.plans = scorer, files, Image.open, plans or {}
        size = scorer.preprocess(Image.new("RGB", (8, 8))).numel() * 2 * len(files) / 2**20  # float16
        self.cache: dict[int, torch.Tensor] | None = None
        if size <= cache_mb:
            self.cache = {c: self._load(c).half() for c in files}

    def _load(self, c: int) -> torch.Tensor:
        with self._open(self.files[c]) as im:
            shown = self.scorer.model_image(im.convert("RGB"), self.plans.get(c, ()))
            return self.scorer.preprocess(shown.convert("RGB"))  # [3, S, S] ([3, S, 2S] with the plan)

    def batch(self, ids: list[int]) -> torch.Tensor:
        """``[B, 3, S, S]`` float32 pixels."""
        got = [self.cache[c] if self.cache is not None else self._load(c) for c in ids]
        return torch.stack(got).float()


def candidate_scores(
    scorer: Scorer,
    images: Images,
    texts: dict[int, str],
    ids: list[int],
    device: Any,
    grad: bool = False,
    batch: int = 256,
) -> torch.Tensor:
    """Scores ``[len(ids)]`` of candidates for their texts (``candidate_texts``; each distinct text
    encoded once)."""
    outs = []
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        distinct = sorted({texts[c] for c in chunk})
        where = {t: j for j, t in enumerate(distinct)}
        tokens = scorer.tokenizer(distinct).to(device)  # [P, L]
        index = torch.tensor([where[texts[c]] for c in chunk], device=device)  # [B]
        pixels = images.batch(chunk).to(device)  # [B, 3, S, S]
        with torch.set_grad_enabled(grad):
            outs.append(scorer.score_tensors(pixels, tokens, index))  # [B]
    return torch.cat(outs) if outs else torch.zeros(0, device=device)


def batch_loss(
    scorer: Scorer, images: Images, texts: dict[int, str], batch: list[Ranking], loss: str, device: Any
) -> torch.Tensor:
    """The ranking loss of a batch: each distinct candidate scored once, scattered into ``[R, N]``."""
    ids = sorted({c for r in batch for c in r.candidates})
    pos = {c: i for i, c in enumerate(ids)}
    s = candidate_scores(scorer, images, texts, ids, device, grad=True, batch=len(ids))  # [U]
    n = max(len(r.candidates) for r in batch)
    slot = torch.zeros(len(batch), n, dtype=torch.long, device=device)  # [R, N]
    ranks = torch.full((len(batch), n), float("inf"), device=device)  # [R, N]
    for i, r in enumerate(batch):
        slot[i, : len(r.candidates)] = torch.tensor([pos[c] for c in r.candidates])
        ranks[i, : len(r.ranks)] = torch.tensor(r.ranks, dtype=torch.float32)
    return ranking_loss(loss, s[slot], ranks)  # s[slot]: [R, N]


def evaluate(
    scorer: Scorer,
    images: Images,
    texts: dict[int, str],
    rankings: list[Ranking],
    device: Any,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """Pairwise accuracy of the scorer on ``rankings`` with its clustered bootstrap CI."""
    ids = sorted({c for r in rankings for c in r.candidates})
    was = scorer.model.training
    scorer.model.eval()
    values = candidate_scores(scorer, images, texts, ids, device).float().cpu().tolist()
    scorer.model.train(was)
    return pairwise_accuracy(rankings, dict(zip(ids, values, strict=True)), n_boot, seed)


def _schedule(cfg: RewardModelConfig) -> Any:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return factor


def _batches(n: int, size: int, seed: int) -> Any:
    """Endless seeded epochs of index batches over ``n`` rankings."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for i in range(0, n, size):
            yield order[i : i + size].tolist()


@dataclass
class Selection:
    """The step whose weights were kept, chosen on validation rankings (``curve``: step → accuracy)."""

    step: int
    accuracy: float
    curve: dict[int, float]


def fit(
    cfg: RewardModelConfig, scorer: Scorer, images: Images, texts: dict[int, str], rankings: list[Ranking],
    device: Any, log: Any, validation: list[Ranking] | None = None,
) -> tuple[list[float], Selection | None]:  # fmt: skip
    """``cfg.steps`` optimizer steps on batches of ``rankings``; returns each step's loss and, with
    ``validation`` rankings, the selection: the weights left in ``scorer`` are those of the step
    (0 = the start) with the best validation accuracy, the earliest on ties."""
    params = [p for p in scorer.model.parameters() if p.requires_grad]
    curve: dict[int, float] = {}  # validation step → accuracy
    best: tuple[int, dict[str, torch.Tensor]] | None = None  # the best step so far and its weights

    def check(step: int) -> None:
        nonlocal best
        curve[step] = evaluate(scorer, images, texts, validation, device, 0, cfg.seed)["value"]
        if best is None or curve[step] > curve[best[0]]:
            best = (step, {k: v.detach().clone() for k, v in scorer.model.state_dict().items()})

    if validation:
        check(0)
        if math.isnan(curve[0]):  # nothing to choose by: every validation pair is tied
            log("the validation rankings order no pair; keeping the last step")
            validation, best = None, None
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    batches = _batches(len(rankings), cfg.batch_rankings, cfg.seed)
    losses: list[float] = []
    t0 = time.time()
    for step in range(cfg.steps):
        batch = [rankings[i] for i in next(batches)]
        loss = batch_loss(scorer, images, texts, batch, cfg.loss, device)
        if not torch.isfinite(loss):
            raise TrainingError(f"step {step}: the loss is {loss.item()}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            scorer.model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
        losses.append(float(loss.item()))
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            mean = np.mean(losses[-cfg.log_every :])
            log(f"step {step + 1}/{cfg.steps}: loss {mean:.4f} ({time.time() - t0:.0f} s)")
        if validation and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            check(step + 1)
    if best is None:
        return losses, None
    step, state = best
    scorer.model.load_state_dict(state)
    log(f"kept step {step}: validation accuracy {curve[step]:.3f}")
    return losses, Selection(step, curve[step], curve)


def train_reward_model(
    cfg: RewardModelConfig, data: PreferenceData | None = None, log: Any = None
) -> TrainResult:
    """Train, evaluate and save; return the output folder, metrics and per-step losses."""
    from .card import write_card

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.device == "auto" else cfg.device)
    data = data if data is not None else read_data(cfg)
    train_set, test_set = split_by_prompt(data, cfg.held_out, cfg.seed)
    val_set = None
    if cfg.validation:
        train_set, val_set = split_by_prompt(train_set, cfg.validation, cfg.seed + 1)
    scorer, oc_config, start = initial_scorer(cfg.init, cfg.arch, cfg.seed, cfg.context_length)
    image_mode = scorer.image_mode  # the starting model's: its vision tower is sized for it
    oc_config = {**oc_config, "reasongen": {"text": cfg.text, "image": image_mode}}
    scorer.text_mode = cfg.text
    texts = candidate_texts(data, cfg.text)
    scorer.model.to(device).train()
    images = Images(scorer, data.images, cfg.cache_mb, data.plans)
    before = evaluate(scorer, images, texts, test_set.rankings, device, cfg.n_boot, cfg.seed)
    log(
        f"{len(train_set.rankings)} training / {len(test_set.rankings)} held-out rankings; held-out "
        f"accuracy at the start {before['value']:.3f}"
    )
    t0 = time.time()
    losses, selection = fit(
        cfg, scorer, images, texts, train_set.rankings, device, log, val_set.rankings if val_set else None
    )
    metrics = {
        "held_out_accuracy": evaluate(scorer, images, texts, test_set.rankings, device, cfg.n_boot, cfg.seed),
        "held_out_accuracy_at_start": before,
        "train_accuracy": evaluate(scorer, images, texts, train_set.rankings, device, cfg.n_boot, cfg.seed),
        "human_ceiling_held_out": human_ceiling(test_set.rankings, cfg.n_boot, cfg.seed),
        "data": data.counts(),
        "train": train_set.counts(),
        "held_out": test_set.counts(),
        "validation": None
        if selection is None
        else {
            **val_set.counts(),
            "selected_step": selection.step,
            "accuracy": selection.accuracy,
            "curve": {str(k): v for k, v in selection.curve.items()},
        },
        "source": data.source,
        "dropped_simulated_rankings": data.dropped_simulated,
        "init": start,
        "image_mode": image_mode,
        "loss_first_10": float(np.mean(losses[:10])),
        "loss_last_10": float(np.mean(losses[-10:])),
        "train_seconds": round(time.time() - t0, 1),
        "device": str(device),
        "logit_scale": float(scorer.model.logit_scale.exp().item()),
    }
    out = save_scorer(scorer, oc_config, cfg.out, cfg.save_dtype)
    write_card(out, cfg, metrics, losses)
    acc = metrics["held_out_accuracy"]
    log(
        f"held-out pairwise accuracy {acc['value']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}] over "
        f"{acc['pairs']} pairs in {acc['tasks']} tasks; wrote {out}"
    )
    return TrainResult(out, metrics, losses)
