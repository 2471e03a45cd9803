"""``learned``: a preference reward model trained on a study's rankings (``training.reward_model``).

The model is an open_clip image–text model (as HPS v2 and PickScore are): the score of an image
for a prompt is ``logit_scale × cos(image features, text features)``. A model folder is open_clip's
own local layout, so ``open_clip.create_model_and_transforms("local-dir:DIR")`` and
``open_clip.get_tokenizer("local-dir:DIR")`` read it as they are:

- ``open_clip_config.json`` — ``{"model_cfg": {...}, "preprocess_cfg": {...}}``, plus our own
  ``"reasongen": {"text": MODE}`` (open_clip ignores it): what the text side reads, ``prompt``
  (the default; HPS v2 and PickScore's way) or ``prompt_plan`` (the prompt and the sample's plan
  boxes as words, :func:`reward_text`, so a model can learn what a ranking based on the plan saw),
  and ``"image": MODE``, what the image side sees: ``image`` (the default), ``image_plan`` (the
  image with its plan drawn beside it, :func:`beside_plan`, for a vision tower configured for
  images twice as wide as high) or ``outlined_plan`` (the same, with the plan's boxes also
  outlined on the image, :func:`outline_plan`); :func:`model_picture` makes each;
- ``open_clip_model.safetensors`` — the weights;
- ``README.md`` — the model card (data, counts, simulated or not, held-out accuracy with its CI).

``--set learned.model=DIR`` picks a folder; a list of folders (``--set 'learned.model=["A","B"]'``,
or a YAML list in ``reward_options``) is an ensemble scored by the mean of the folders' scores
(:class:`LearnedReward`). The default is ``$REASONGEN_LEARNED_MODEL`` when set (for the app and
study creation, which pass no reward options), else the shapes world's reward model under
``assets/models/shapes-reward`` (budget 1000 of ``training/human_loop.sh``). A missing folder, a
folder without the config or weights, or weights that do not fit the config raise
``RewardModelUnavailable`` saying which path was tried and how to make one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..types import Box, Sample
from .base import ModelReward, ModelRewardConfig, RewardModelUnavailable, RewardOutput, batched, image_of

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "shapes-reward"
"""Where the shapes world's reward model is shipped (the default ``model``)."""
MODEL_ENV = "REASONGEN_LEARNED_MODEL"
"""Environment variable naming the default folder, for callers that pass no reward options (the
app's ``--rewards``, ``annotation study create --reward``)."""
NO_PLAN_NOTE = (
    "no plan, and the model reads one: scored as if its plan were empty (generate with a recipe "
    "that writes a plan, or score with a model that reads the image only)"
)
"""What a sample without a plan carries as ``details["no_plan"]`` when a member reads plans."""
log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
TRAIN_HINT = (
    "train one with `python -m training.reward_model --study STUDY --out DIR` (see training/README.md) "
    "and pass it as `--set learned.model=DIR` (get_reward('learned', model=DIR))"
)


TEXT_MODES = ("prompt", "prompt_plan")
"""What the scorer's text side reads: the prompt, or the prompt and the plan's boxes."""
PLAN_SEPARATOR = ". plan: "
"""Between the prompt and the plan's words in a ``prompt_plan`` text (:func:`reward_text`)."""
IMAGE_MODES = ("image", "image_plan", "outlined_plan")
"""What the scorer's image side sees (:func:`model_picture`): the image; the image with its plan
drawn beside it (:func:`beside_plan`); or that with the plan's boxes outlined on the image as well
(:func:`outline_plan`). The two plan modes take images twice as wide as high."""
PLAN_MODES = ("image_plan", "outlined_plan")
"""The image modes that draw the plan beside the image (a vision tower of ``[S, 2S]``)."""
PLAN_OUTLINE_RGB = (0, 220, 220)
"""The colour of :func:`outline_plan`'s rings (cyan: no colour of the shapes world)."""


def outline_plan(image: Any, boxes: Sequence[Any]) -> Any:
    """A copy of ``image`` (PIL) with a one-pixel ring just outside each plan box (GoT coordinates,
    0–1000; a box ``[x1, x2)`` covers pixels ``x1·W/1000 … x2·W/1000 − 1``). An object drawn on its
    box touches its ring from inside; one drawn a pixel or two off shows a gap on one side and
    crosses the ring on the other. Whether the image draws the plan's boxes then becomes a question
    each patch can answer about its own pixels (beside the plan, the same question needs the
    matching patch of the other half, half an image away). Empty boxes are skipped."""
    from PIL import ImageDraw

    out = image.convert("RGB")  # a copy, even of an RGB image
    w, h = out.size
    draw = ImageDraw.Draw(out)
    for b in boxes:
        x1, y1, x2, y2 = (round(b.x1 * w / 1000), round(b.y1 * h / 1000), round(b.x2 * w / 1000),
                          round(b.y2 * h / 1000))  # fmt: skip
        if x2 > x1 and y2 > y1:
            draw.rectangle((x1 - 1, y1 - 1, x2, y2), outline=PLAN_OUTLINE_RGB, width=1)
    return out


def model_picture(mode: str, image: Any, boxes: Sequence[Any]) -> Any:
    """The picture a scorer in image mode ``mode`` (``IMAGE_MODES``) sees for ``image`` (PIL) and
    its plan ``boxes``; ``ValueError`` for an unknown mode."""
    if mode == "image":
        return image
    if mode == "image_plan":
        return beside_plan(image, boxes)
    if mode == "outlined_plan":
        return beside_plan(outline_plan(image, boxes), boxes)
    raise ValueError(f"image mode must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")


def beside_plan(image: Any, boxes: Sequence[Any]) -> Any:
    """``image`` (PIL) with its plan drawn at the same size to its right: the plan read as the
    scene it asks for (``reasongen.shapes.render.render_plan``, the shapes world's labels; an empty
    plan is an empty canvas). Whether the image is right for the prompt, whether the plan is, and
    whether the image draws the plan's boxes are then all questions about one picture, which an
    image tower can learn as it learns the first (image mode ``image_plan``)."""
    from PIL import Image

    from ..shapes.render import render_plan

    image = image.convert("RGB")
    w, h = image.size
    plan = render_plan(boxes, size=max(16, max(w, h))).resize((w, h))
    both = Image.new("RGB", (2 * w, h))
    both.paste(image, (0, 0))
    both.paste(plan, (w, 0))
    return both


def reward_text(prompt: str, boxes: Sequence[Any], mode: str = "prompt") -> str:
    """The text a scorer in ``mode`` pairs with an image: the prompt, or (``prompt_plan``)
    ``"<prompt>. plan: red circle 125 750 375 1000; ..."`` with each box's label and GoT
    coordinates (``"plan: none"`` without boxes)."""
    if mode == "prompt":
        return prompt
    if mode != "prompt_plan":
        raise ValueError(f"text mode must be one of {', '.join(TEXT_MODES)}, got {mode!r}")
    words = "; ".join(f"{b.label} {b.x1} {b.y1} {b.x2} {b.y2}" for b in boxes)
    return f"{prompt}{PLAN_SEPARATOR}{words or 'none'}"


def plan_of_text(text: str) -> tuple[str, list[Box]]:
    """The prompt and plan boxes of a ``prompt_plan`` text: :func:`reward_text`'s inverse
    (``plan_of_text(reward_text(p, boxes, "prompt_plan")) == (p, list(boxes))``). ``ValueError``
    naming the text when it is not of that form (no ``". plan: "``, or an item that is not a
    label and four integers)."""
    prompt, sep, words = text.rpartition(PLAN_SEPARATOR)
    if not sep:
        raise ValueError(f"not a prompt_plan text (no {PLAN_SEPARATOR!r}): {text[:200]!r}")
    if words == "none":
        return prompt, []
    boxes = []
    for item in words.split("; "):
        parts = item.split()
        try:
            if len(parts) < 5:
                raise ValueError
            boxes.append(Box(" ".join(parts[:-4]), *(int(v) for v in parts[-4:])))
        except ValueError:
            msg = f"plan item {item!r} is not a label and four integers in {text[:200]!r}"
            raise ValueError(msg) from None
    return prompt, boxes


def _mode_of(config: dict[str, Any], side: str, modes: tuple[str, ...]) -> str:
    """The ``side`` mode (``text`` or ``image``) a config's ``reasongen`` mapping records; the first of
    ``modes`` when it records none. ``RewardModelUnavailable`` for a mode not in ``modes``."""
    mode = (config.get("reasongen") or {}).get(side, modes[0])
    if mode not in modes:
        raise RewardModelUnavailable(f"unknown {side} mode {mode!r} in the config; known: {', '.join(modes)}")
    return mode


def text_mode_of(config: dict[str, Any]) -> str:
    """The text mode an ``open_clip_config.json`` mapping records (``prompt`` when it says none)."""
    return _mode_of(config, "text", TEXT_MODES)


def image_mode_of(config: dict[str, Any]) -> str:
    """The image mode an ``open_clip_config.json`` mapping records (``image`` when it says none)."""
    return _mode_of(config, "image", IMAGE_MODES)


@dataclass
class LearnedConfig(ModelRewardConfig):
    """Settings of the learned preference reward."""

    model: str | list[str] = field(  # type: ignore[assignment]
        default_factory=lambda: os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL),
        metadata={"help": "Folder written by training.reward_model (open_clip local-dir layout), or a "
                  "list of such folders: an ensemble scored by the mean of its members' scores; "
                  f"default ${MODEL_ENV}, else the shipped shapes model."},
    )  # fmt: skip
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass."})

    def __post_init__(self) -> None:
        if isinstance(self.model, (list, tuple)):
            if not self.model or not all(isinstance(m, str) and m for m in self.model):
                raise ValueError(
                    f"LearnedConfig.model: a list of folders needs one or more paths, got {self.model!r}"
                )
            if len(set(self.model)) != len(self.model):
                raise ValueError(f"LearnedConfig.model names a folder twice: {self.model!r}")
            self.model = list(self.model)
        elif not isinstance(self.model, str):
            raise ValueError(f"LearnedConfig.model expects a folder or a list of folders, got {self.model!r}")
        super().__post_init__()

    def folders(self) -> list[str]:
        """The model folders: one, or an ensemble's members."""
        return list(self.model) if isinstance(self.model, list) else [self.model]


def check_model_folder(folder: str | Path) -> dict[str, Any]:
    """The parsed ``open_clip_config.json`` of a reward-model folder, after checking that the folder,
    its config (with ``model_cfg``) and its weights exist. Raises ``RewardModelUnavailable``."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise RewardModelUnavailable(f"no learned reward model at {str(path)!r}: {TRAIN_HINT}")
    if not path.is_dir():
        raise RewardModelUnavailable(
            f"learned reward model {str(path)!r} is a file; give the folder that holds {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} ({TRAIN_HINT})"
        )
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise RewardModelUnavailable(
            f"{str(path)!r} is not a learned reward model: it has no {CONFIG_FILE} ({TRAIN_HINT})"
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RewardModelUnavailable(f"{str(cfg_path)!r} is not valid JSON ({e})") from e
    model_cfg = cfg.get("model_cfg") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict) or not {"vision_cfg", "text_cfg"} <= set(model_cfg):
        raise RewardModelUnavailable(
            f"{str(cfg_path)!r} has no open_clip 'model_cfg' with 'vision_cfg' and 'text_cfg'"
        )
    if not (path / WEIGHTS_FILE).is_file():
        raise RewardModelUnavailable(
            f"{str(path)!r} has a config but no weights ({WEIGHTS_FILE} is missing); was the training "
            f"run interrupted? Rerun it ({TRAIN_HINT})"
        )
    return cfg


@dataclass
class Scorer:
    """An open_clip model with its preprocessing and tokenizer: ``score(images, prompts)`` gives
    ``logit_scale × cosine`` per pair. Training and the reward share this one definition."""

    model: Any
    preprocess: Callable[[Any], Any]
    """PIL image → ``[3, S, S]`` tensor (open_clip's validation transform)."""
    tokenizer: Callable[[Sequence[str]], Any]
    """Prompts → ``[B, context_length]`` token ids."""
    text_mode: str = "prompt"
    """What the text side reads (``TEXT_MODES``); :meth:`sample_text` applies it."""
    image_mode: str = "image"
    """What the image side sees (``IMAGE_MODES``); :meth:`model_image` applies it."""

    @property
    def reads_plan(self) -> bool:
        """Whether either side reads the sample's plan (text ``prompt_plan`` or a ``PLAN_MODES`` image)."""
        return self.text_mode == "prompt_plan" or self.image_mode in PLAN_MODES

    def sample_text(self, sample: Any) -> str:
        """The text this scorer pairs with ``sample``'s image (its prompt, and its plan if asked)."""
        plan = getattr(sample, "plan", None)
        return reward_text(sample.prompt, plan.boxes if plan is not None else (), self.text_mode)

    def model_image(self, image: Any, boxes: Sequence[Any] = ()) -> Any:
        """The picture the image side scores for ``image`` and its plan ``boxes``
        (:func:`model_picture` in this scorer's image mode)."""
        return model_picture(self.image_mode, image, boxes)

    def sample_image(self, sample: Any) -> Any:
        """:meth:`model_image` of ``sample``'s image and plan."""
        plan = getattr(sample, "plan", None)
        return self.model_image(image_of(sample), plan.boxes if plan is not None else ())

    def pixels(self, images: Sequence[Any]) -> Any:
        """``[B, 3, S, S]`` model inputs for PIL images (``[B, 3, S, 2S]`` for a model of a plan
        mode, ``PLAN_MODES``, given :meth:`model_image` pictures)."""
        import torch

        return torch.stack([self.preprocess(im.convert("RGB")) for im in images])

    def score_tensors(self, pixels: Any, tokens: Any, text_index: Any = None) -> Any:
        """Scores ``[B]`` for pixels ``[B, 3, S, S]`` and tokens ``[B, L]`` (differentiable); with
        ``text_index`` ``[B]``, tokens are ``[P, L]`` distinct prompts and image i pairs with
        prompt ``text_index[i]`` (each prompt is encoded once)."""
        img = self.model.encode_image(pixels, normalize=True)  # [B, D]
        txt = self.model.encode_text(tokens, normalize=True)  # [B or P, D]
        if text_index is not None:
            txt = txt[text_index]  # [B, D]
        return self.model.logit_scale.exp() * (img * txt).sum(-1)  # [B]

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One score per (image, text) pair, without gradients (texts as :meth:`sample_text` makes
        them)."""
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        param = next(self.model.parameters())
        with torch.no_grad():
            pixels = self.pixels(images).to(param.device, param.dtype)  # [B, 3, S, S]
            tokens = self.tokenizer(list(prompts)).to(param.device)  # [B, L]
            return [float(v) for v in self.score_tensors(pixels, tokens).float().tolist()]


def load_scorer(folder: str | Path, device: Any = "cpu", dtype: Any = None) -> Scorer:
    """Load a reward-model folder (or any open_clip local-dir folder) as a :class:`Scorer` in eval
    mode. Raises ``RewardModelUnavailable`` with the path tried when it cannot be loaded."""
    import open_clip

    config = check_model_folder(folder)
    mode, image_mode = text_mode_of(config), image_mode_of(config)
    ident = f"local-dir:{Path(folder).expanduser()}"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(ident, device=device)
        tokenizer = open_clip.get_tokenizer(ident)
    except (RuntimeError, ValueError, OSError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RewardModelUnavailable(
            f"could not load the learned reward model from {str(folder)!r} ({type(e).__name__}: {first}); "
            f"do its weights fit its {CONFIG_FILE}? ({TRAIN_HINT})"
        ) from e
    if dtype is not None:
        model = model.to(dtype=dtype)
    return Scorer(model.eval(), preprocess, tokenizer, mode, image_mode)


class LearnedReward(ModelReward):
    """A preference reward model: ``logit_scale × cos(image, prompt)`` of a trained open_clip model,
    or the mean of several such models' scores (``model`` a list of folders).

    An ensemble of reward models trained on the same rankings is the standard guard against a
    policy exploiting one model's errors (Coste et al., 2023, "Reward Model Ensembles Help Mitigate
    Overoptimization"); members may read different things (an image-only scorer beside an
    ``outlined_plan`` one), each with its own text and image mode. On the shapes world's budget-1000
    ceiling study the mean of those two agreed with the panel on 0.779 of the pairs, against 0.745
    and 0.757 for each alone (training/README.md). The mean of raw scores needs no calibration
    data: every member is ``logit_scale × cosine`` of the same family, and GRPO standardises each
    group's rewards anyway."""

    name = "learned"
    config_class = LearnedConfig
    config: LearnedConfig
    _warned_no_plan = False  # the no-plan warning is logged once per reward object

    def load(self) -> tuple[Scorer, ...]:
        """One :class:`Scorer` per model folder (an ensemble's members, in order)."""
        cfg = self.config
        device, dtype = cfg.torch_device(), cfg.torch_dtype()
        return tuple(load_scorer(folder, device, dtype) for folder in cfg.folders())

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        scorers: tuple[Scorer, ...] = self.bundle
        reads_plan = any(scorer.reads_plan for scorer in scorers)
        idx = [i for i, s in enumerate(samples) if s.image is not None]
        scores: list[float | None] = [None] * len(samples)
        details: list[dict[str, Any]] = [{"skipped": "no image"} for _ in samples]
        for chunk in batched(idx, self.config.batch_size):
            member_scores = [  # [members][len(chunk)]
                scorer.score([scorer.sample_image(samples[i]) for i in chunk],
                             [scorer.sample_text(samples[i]) for i in chunk])
                for scorer in scorers
            ]  # fmt: skip
            for j, i in enumerate(chunk):
                values = [m[j] for m in member_scores]
                scores[i] = sum(values) / len(values)
                details[i] = {"learned": scores[i]}
                if len(values) > 1:
                    details[i]["members"] = values
                if reads_plan and getattr(samples[i], "plan", None) is None:
                    details[i]["no_plan"] = NO_PLAN_NOTE
        unplanned = sum("no_plan" in d for d in details)
        if unplanned and not self._warned_no_plan:
            self._warned_no_plan = True
            log.warning("learned: %d of %d samples have no plan; %s", unplanned, len(samples), NO_PLAN_NOTE)
        return RewardOutput(self.name, scores, details)
