"""Contrastive pre-training of a small shapes-world scorer on rendered image–caption pairs.

    python -m training.reward_model.pretrain --out runs/shapes-clip --steps 2000 [--resume]

Each step renders ``batch`` fresh scenes of the shapes world (``--language geneval``: GenEval's
six templates; ``full``: the whole language, ``reasongen.shapes.compose.FULL_LANGUAGE``, as the
full-language models and their GRPO pool; half on the embedded model's 8 × 8 cell grid, half free)
with their prompts as captions, and minimises CLIP's symmetric InfoNCE loss. Prompts of the shapes
benchmark (its first 600, prompt seed 0, of each suite the language draws from) are never drawn,
so the benchmark stays held out. The scenes of step ``k`` depend only on ``(seed, k)``, and
a checkpoint (weights, optimizer, step) is saved every ``save_every`` steps, so ``--resume``
continues a killed run where it stopped. The folder is an open_clip local-dir folder: pass it to
``python -m training.reward_model --init DIR``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reasongen.config import parse_config
from reasongen.rewards.learned import (
    IMAGE_MODES,
    PLAN_MODES,
    TEXT_MODES,
    image_mode_of,
    model_picture,
    reward_text,
    text_mode_of,
)
from reasongen.shapes.compose import RELATION_CATEGORIES
from reasongen.shapes.write_prompts import LANGUAGES

from .model import CONFIGS, for_image_mode, save_scorer, scorer_from_config
from .near_miss import swap_relation

STATE_FILE = "pretrain_state.pt"


def _h(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class PretrainConfig:
    """Contrastive pre-training on the shapes world's rendered image–caption pairs."""

    out: str = _h("Output folder (open_clip local-dir layout, plus pretrain_state.pt).", default="")
    arch: str = _h(f"Model config to build from scratch: {', '.join(CONFIGS)}.", default="shapes")
    context_length: int = _h(
        "Text context in tokens (0 = the config's; fine-tuning with --text prompt_plan needs ~128).",
        default=0,
    )
    steps: int = _h("Optimizer steps.", default=2000)
    batch: int = _h("Image–caption pairs per step (the in-batch negatives).", default=64)
    lr: float = _h("Peak learning rate (AdamW).", default=5e-4)
    weight_decay: float = _h("AdamW weight decay.", default=0.1)
    warmup_steps: int = _h("Linear warm-up; then cosine decay to zero.", default=100)
    seed: int = _h("Seed of the weights and of every step's scenes.", default=0)
    save_every: int = _h("Checkpoint every K steps (0 = only at the end).", default=250)
    resume: bool = _h("Continue from out/pretrain_state.pt when it is there.", default=False)
    holdout_benchmark: int = _h(
        "Never draw the texts of the shapes benchmark's first N prompts.", default=600
    )
    language: str = _h(
        "Captions: 'geneval' (GenEval's six templates) or 'full' (the whole shapes language; the "
        "compositional suite's benchmark texts are held out too).",
        default="geneval",
    )
    text: str = _h(
        "Captions: 'prompt', or 'prompt_plan' — the prompt and the scene's boxes as words, the text a "
        "reward model fine-tuned with --text prompt_plan reads (give --context_length ~128). Empty: "
        "the --init folder's, else 'prompt'.",
        default="",
    )
    image: str = _h(
        "What the image side sees: 'image'; 'image_plan' — each scene beside its plan drawn as the "
        "scene it asks for (reasongen.rewards.learned.beside_plan; the vision tower takes [S, 2S] "
        "images), with near misses on either side: the image edited, the plan edited, both, or one "
        "object drifted off its box; or 'outlined_plan' — the same with the plan's boxes also ringed "
        "on the image (reasongen.rewards.learned.outline_plan). Empty: the --init folder's, else "
        "'image'.",
        default="",
    )
    plan_dropout: float = _h(
        "With a plan image mode: chance that a pair shows its image beside an empty canvas (no plan), "
        "so that whether the image is right is learned from the image half too; such a pair's near "
        "miss edits the image.",
        default=0.0,
    )
    hard_negatives: float = _h(
        "Chance that a caption also brings a near-miss image — its scene edited once so the caption "
        "no longer holds (training/reward_model/near_miss.py) — as an extra negative (0 = plain CLIP).",
        default=0.0,
    )
    relation_mirror: float = _h(
        "Chance that a caption with a relation (left of, above, ...) brings its scene mirrored across "
        "the relation's axis as its near miss (near_miss.mirror_relation; with a plan image mode, "
        "plan and image mirrored alike) instead of a random edit: a scorer of bags of words orders "
        "such mirrors at chance, and random edits seldom are mirrors of relation prompts.",
        default=0.0,
    )
    relation_weight: int = _h(
        "Draw each relation category of --language (position, relation_attr) this many times as often "
        "as the language does (1 = as it does): with --relation_swap or --relation_mirror, more of "
        "each batch is the relation pairs those options are about.",
        default=1,
    )
    relation_swap: bool = _h(
        "Also give each image the caption with its relation reversed (left of <-> right of, above "
        "<-> below; near_miss.swap_relation) as an extra negative text, as NegCLIP's swapped "
        "captions: the text side must then tell the relation's direction, not just its words.",
        default=False,
    )
    plan_negatives: float = _h(
        "With --text prompt_plan: chance that a caption also brings its prompt with a worse plan as an "
        "extra negative text (of the image side only, as --relation_swap's): the plan of a near miss "
        "or with two boxes overlapping (wrong for the prompt, or not drawable: what the careful "
        "annotator's plan-faithfulness key asks), or with one box drifted part-way off the object "
        "the image draws (its plan-image IoU key). The image is the same, so only the plan's labels "
        "and numbers tell the captions apart.",
        default=0.0,
    )
    align_negatives: float = _h(
        "With a plan image mode: chance that a caption's positive is drawn tight on its plan (each "
        "object on its box, blurred as the others) and its near miss is the same scene drawn loosely "
        "(near_miss.loosen: each object a pixel or two off its box, IoU 0.6-0.92), in place of its "
        "other near miss. The careful annotator's IoU key orders exactly such pairs, which the usual "
        "positives (nudged to IoU >= 0.8) teach the scorer to treat alike.",
        default=0.0,
    )
    init: str = _h(
        "Start from this open_clip folder (a pre-trained or a fine-tuned reward model) instead of "
        "random weights; --text and --image default to its modes (given, they must be its modes), "
        "and its input size must be --arch's. Empty = from scratch.",
        default="",
    )
    workers: int = _h("Processes rendering the next batches while the model trains (0 = none).", default=0)
    device: str = _h("'auto' (CUDA when present), 'cpu' or 'cuda:0'.", default="auto")
    torch_threads: int = _h("torch CPU threads (0 = torch's default).", default=0)
    log_every: int = _h("Print the mean loss every K steps (0 = never).", default=50)

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("--out is required")
        if self.arch not in CONFIGS:
            raise ValueError(f"--arch must be one of {', '.join(CONFIGS)}")
        if self.context_length < 0:
            raise ValueError("--context_length must be >= 0")
        if not (self.text and self.image):
            text, image = init_modes(self.init)
            self.text, self.image = self.text or text, self.image or image
        if self.steps < 1 or self.batch < 2 or self.save_every < 0 or self.warmup_steps < 0:
            raise ValueError("steps must be >= 1, batch >= 2, save_every and warmup_steps >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.text not in TEXT_MODES:
            raise ValueError(f"--text must be one of {', '.join(TEXT_MODES)}, got {self.text!r}")
        if self.image not in IMAGE_MODES:
            raise ValueError(f"--image must be one of {', '.join(IMAGE_MODES)}, got {self.image!r}")
        if not 0.0 <= self.plan_dropout <= 1.0:
            raise ValueError(f"--plan_dropout is a probability in [0, 1], got {self.plan_dropout}")
        if self.plan_dropout and self.image not in PLAN_MODES:
            raise ValueError(
                f"--plan_dropout needs --image {' or '.join(PLAN_MODES)} (only then is a plan drawn)"
            )
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ValueError(f"--hard_negatives is a probability in [0, 1], got {self.hard_negatives}")
        if not 0.0 <= self.relation_mirror <= 1.0:
            raise ValueError(f"--relation_mirror is a probability in [0, 1], got {self.relation_mirror}")
        if self.relation_mirror and not self.hard_negatives:
            raise ValueError("--relation_mirror chooses among near misses: give --hard_negatives too")
        if self.language not in LANGUAGES:
            raise ValueError(f"--language must be one of {', '.join(LANGUAGES)}, got {self.language!r}")
        if not 0.0 <= self.plan_negatives <= 1.0:
            raise ValueError(f"--plan_negatives is a probability in [0, 1], got {self.plan_negatives}")
        if self.plan_negatives and self.text != "prompt_plan":
            raise ValueError("--plan_negatives edits the plan in the caption: give --text prompt_plan")
        if not 0.0 <= self.align_negatives <= 1.0:
            raise ValueError(f"--align_negatives is a probability in [0, 1], got {self.align_negatives}")
        if self.align_negatives and self.image not in PLAN_MODES:
            raise ValueError(
                f"--align_negatives needs --image {' or '.join(PLAN_MODES)} (only then is a plan drawn)"
            )
        if self.relation_weight < 1:
            raise ValueError(f"--relation_weight must be at least 1, got {self.relation_weight}")
        if self.relation_weight > 1 and not set(RELATION_CATEGORIES) & set(LANGUAGES[self.language]):
            raise ValueError(f"--language {self.language} has no relation category to weight")

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories captions are drawn from, cycling at random (named twice = twice as often):
        the language's, each relation category ``relation_weight`` times as often."""
        language = LANGUAGES[self.language]
        extra = [c for c in language if c in RELATION_CATEGORIES] * (self.relation_weight - 1)
        return (*language, *extra)

    @property
    def suites(self) -> tuple[str, ...]:
        """The benchmark suites whose texts are held out."""
        from reasongen.shapes.pools import held_out_suites

        return held_out_suites(self.categories)


def init_modes(init: str) -> tuple[str, str]:
    """The text and image modes an ``--init`` folder reads (its ``open_clip_config.json``, read by
    ``check_model_folder``); a plain scorer's (``prompt``, ``image``) when there is no folder or it
    is no reward-model folder — such an ``--init`` is refused later, by :func:`init_scorer`, with
    its own message."""
    from reasongen.rewards.learned import RewardModelUnavailable, check_model_folder

    try:
        config = check_model_folder(init) if init else {}
        return text_mode_of(config), image_mode_of(config)
    except RewardModelUnavailable:
        return text_mode_of({}), image_mode_of({})


def benchmark_texts(n: int, suites: Sequence[str] = ("geneval",)) -> set[str]:
    """The prompt texts of the first ``n`` prompts of the shapes benchmark's ``suites`` (either layout)."""
    from reasongen.shapes.codes import CELL
    from reasongen.shapes.pools import benchmark_texts as texts

    return texts(n, CELL, suites) | texts(n, None, suites)


def batch_scenes(
    step: int, seed: int, categories: Sequence[str], size: int, held: set[str]
) -> list[tuple[Any, int | None]]:
    """Step ``step``'s ``size`` scenes, each with its layout cell (``CELL`` for half of them, else
    None), a function of ``(seed, step)`` only: categories drawn at random from ``categories``, no
    text of ``held`` and no prompt twice. :func:`caption_batch` captions them;
    ``benchmarks/relation_binding.py`` draws its batches with it too."""
    from reasongen.shapes.codes import CELL
    from reasongen.shapes.scene_sampler import distinct_scenes

    rng = random.Random(seed * 1_000_003 + step)
    return distinct_scenes(rng, categories, size, held, lambda r: CELL if r.random() < 0.5 else None)


def caption_batch(step: int, cfg: PretrainConfig, held: set[str]) -> tuple[list[Any], list[str], list[Any]]:
    """Step ``step``'s rendered scenes, their captions (the prompts, or with ``text`` prompt_plan
    the prompts and plans) and the near-miss images (a function of ``(seed, step)`` only); no two
    pairs of a batch share a prompt, so each caption has one positive. Near misses come from
    their own random stream, so the scenes do not depend on ``hard_negatives``. With ``image``
    image_plan or outlined_plan every picture is a scene beside its plan (``model_picture``;
    :func:`plan_near_miss` for the misses). With ``relation_mirror``, a relation caption's near
    miss is, at that chance, its scene mirrored (plan and image alike). With ``align_negatives``, a
    caption is at that chance drawn tight on its plan, its near miss loosely (``near_miss.loosen``;
    the choice and the drawings from a stream of their own); the scenes and captions stay those of
    P = 0, the other pairs' drawings and near misses do not."""
    from reasongen.shapes import render_objects, render_scene

    from .near_miss import loosen, mirror_relation, near_miss

    edit_rng = random.Random(f"near-miss {cfg.seed} {step}")
    draw_rng = random.Random(f"drawn {cfg.seed} {step}")
    align_rng = random.Random(f"align {cfg.seed} {step}")
    with_plan = cfg.image in PLAN_MODES
    picture = partial(scorer_picture, cfg)
    images, captions, negatives = [], [], []
    for scene, cell in batch_scenes(step, cfg.seed, cfg.categories, cfg.batch, held):
        captions.append(reward_text(scene.prompt, scene.boxes, cfg.text))
        blank = with_plan and cfg.plan_dropout > 0 and draw_rng.random() < cfg.plan_dropout
        if not blank and cfg.align_negatives and align_rng.random() < cfg.align_negatives:
            loose = loosen(scene.objects, align_rng)
            if loose is not None:
                images.append(picture(blurred(scene.objects, align_rng), scene.boxes))
                negatives.append(picture(blurred(loose, align_rng), scene.boxes))
                continue
        images.append(
            picture(drawn(scene.objects, draw_rng, scene.metadata), () if blank else scene.boxes)
            if with_plan
            else render_scene(scene)
        )
        if cfg.hard_negatives and edit_rng.random() < cfg.hard_negatives:
            mirrored = mirror_relation(scene) if cfg.relation_mirror else None
            if mirrored is not None and edit_rng.random() < cfg.relation_mirror:
                boxes = () if blank else tuple(o.box for o in mirrored)
                negatives.append(
                    picture(drawn(mirrored, draw_rng), boxes) if with_plan else render_objects(mirrored)
                )
                continue
            if blank:
                edited = near_miss(scene, edit_rng, cell)
                if edited is not None:
                    negatives.append(picture(drawn(edited, draw_rng), ()))
                continue
            if with_plan:
                miss = plan_near_miss(scene, edit_rng, cell)
                if miss is not None:
                    negatives.append(picture(drawn(miss[0], draw_rng), miss[1]))
                continue
            edited = near_miss(scene, edit_rng, cell, plan=cfg.text == "prompt_plan")
            if edited is not None:
                negatives.append(render_objects(edited))
    return images, captions, negatives


def scorer_picture(cfg: PretrainConfig, image: Any, boxes: Any) -> Any:
    """What the scorer sees of a rendered scene ``image`` and plan ``boxes`` in ``cfg.image`` mode
    (``model_picture``). ``outlined_plan`` pictures are composed at the scorer's input side (the
    renderer draws 128 px; the shapes models and so the candidates draw 64), so that its rings are
    one pixel wide there as on a candidate, not half a pixel blurred by the resize; ``image_plan``
    pictures keep the renderer's size, as its measured runs did (:func:`rendered_picture`)."""
    return rendered_picture(cfg.image, image, boxes, CONFIGS[cfg.arch]["preprocess_cfg"]["size"])


def rendered_picture(mode: str, image: Any, boxes: Any, side: int) -> Any:
    """``model_picture(mode, image, boxes)`` of a rendered ``image``, which ``outlined_plan`` first
    resizes to the scorer's input ``side`` (one-pixel rings, as on a candidate)."""
    from PIL import Image

    if mode == "outlined_plan":
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return model_picture(mode, image, boxes)


def drawn(objects: Any, rng: random.Random, metadata: dict[str, Any] | None = None) -> Any:
    """``objects`` as a model might draw them beside their plan: each nudged a little
    (``near_miss.jitter``; kept as planned when the nudge would break ``metadata``'s prompt) and
    blurred by up to a pixel, as a VQ decoder softens edges. Without this the image half of every
    positive pair was a pixel copy of its plan half, and the scorer learned to ask only that: its
    agreement with the panel on real candidates fell from 0.648 at step 250 to 0.570 at step 500."""
    from .near_miss import jitter, satisfies

    moved = jitter(tuple(objects), rng)
    if metadata is not None and not satisfies(metadata, moved):
        moved = tuple(objects)
    return blurred(moved, rng)


def blurred(objects: Any, rng: random.Random) -> Any:
    """``objects`` rendered and blurred by up to a pixel (a radius drawn from ``rng``), as a VQ
    decoder softens edges; where they are is left as given."""
    from PIL import ImageFilter

    from reasongen.shapes import render_objects

    return render_objects(tuple(objects)).filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))


PLAN_MISSES = ("image", "plan", "both", "drift")
"""The kinds of image–plan near miss, drawn with equal chance (:func:`plan_near_miss`)."""


def plan_near_miss(scene: Any, rng: random.Random, cell: int | None) -> tuple[Any, tuple[Any, ...]] | None:
    """An image–plan pair the careful annotator ranks below ``scene`` beside its own boxes, as
    (objects to draw, plan boxes): ``image`` — the image edited (wrong for the prompt, or an object
    off its box), the plan kept; ``plan`` — the plan edited so it is wrong for the prompt, the image
    kept; ``both`` — one prompt edit drawn and planned alike; ``drift`` — one object drawn part-way
    off its box (``near_miss.drift``). None when the drawn edit could not be made."""
    from .near_miss import drift, near_miss

    kind = rng.choice(PLAN_MISSES)
    if kind == "drift":
        moved = drift(scene.objects, rng, cell)
        return None if moved is None else (moved, scene.boxes)
    edited = near_miss(scene, rng, cell, plan=kind == "image")
    if edited is None:
        return None
    boxes = tuple(o.box for o in edited)
    return {"image": (edited, scene.boxes), "plan": (scene.objects, boxes), "both": (edited, boxes)}[kind]


def plan_negative(scene: Any, rng: random.Random, cell: int | None) -> str | None:
    """``scene``'s prompt with a plan the careful annotator ranks below its own boxes, beside the
    image of ``scene``: ``unfaithful`` — the boxes of a near miss (``near_miss.near_miss``: wrong for
    the prompt); ``overlap`` — one box moved onto another (``near_miss.overlap``: a plan that cannot
    be drawn, which ``plan_faithfulness`` counts unfaithful; of the budget-300 ceiling study's 95
    unfaithful plans, 63 had overlapping boxes and 49 nothing else wrong); ``drift`` — one box
    shifted part-way off its object (``near_miss.drift``: IoU 0.25 to 0.75 with it), so the plan no
    longer lies on what the image draws. None when the edit could not be made (``overlap`` needs
    two objects)."""
    from .near_miss import WORSE_PLANS, worse_plan

    edited = worse_plan(rng.choice(WORSE_PLANS), scene, rng, cell)  # each kind at equal chance
    return None if edited is None else reward_text(scene.prompt, tuple(o.box for o in edited), "prompt_plan")


def negative_texts(step: int, cfg: PretrainConfig, held: set[str], captions: Sequence[str]) -> list[str]:
    """Step ``step``'s extra negative captions, of the image-to-caption direction only (``clip_loss``'s
    ``T`` texts): with ``relation_swap`` each relation caption of ``captions`` reversed, then with
    ``plan_negatives``, at that chance for each of the step's scenes, its prompt with a worse plan
    (:func:`plan_negative`; its own random stream, so the scenes and images do not depend on it)."""
    texts = [t for t in map(swap_relation, captions) if t is not None] if cfg.relation_swap else []
    if cfg.plan_negatives:
        rng = random.Random(f"plan negative {cfg.seed} {step}")
        for scene, cell in batch_scenes(step, cfg.seed, cfg.categories, cfg.batch, held):
            if rng.random() < cfg.plan_negatives and (text := plan_negative(scene, rng, cell)) is not None:
                texts.append(text)
    return texts


class CaptionSteps(torch.utils.data.Dataset):
    """Item ``k`` is step ``start + k``'s batch: pixels ``[B + H, 3, S, S]``, the ``B`` captions and
    the extra negative texts (:func:`negative_texts`); picklable, so DataLoader workers can render
    ahead."""

    def __init__(self, cfg: PretrainConfig, held: set[str], preprocess: Any, start: int) -> None:
        self.cfg, self.held, self.preprocess, self.start = cfg, held, preprocess, start

    def __len__(self) -> int:
        return self.cfg.steps - self.start

    def __getitem__(self, k: int) -> tuple[torch.Tensor, list[str], list[str]]:
        step = self.start + k
        images, captions, negatives = caption_batch(step, self.cfg, self.held)
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images + negatives])
        return pixels, captions, negative_texts(step, self.cfg, self.held, captions)


def clip_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pairs: int | None = None
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over normalised features: ``img`` ``[B + H, D]`` and ``txt``
    ``[B + T, D]``, whose first ``B = pairs`` rows (default: every text) are the matching pairs;
    the other ``H`` images (near misses) are only extra negatives of the caption-to-image
    direction, the other ``T`` texts (relation-swapped captions, worse plans) only of the
    image-to-caption one."""
    b = len(txt) if pairs is None else pairs
    logits = scale * img @ txt.T  # [B + H, B + T]
    target = torch.arange(b, device=img.device)  # [B]
    return 0.5 * (F.cross_entropy(logits[:b], target) + F.cross_entropy(logits[:, :b].T, target))


def pretrain(cfg: PretrainConfig, log: Any = None) -> Path:
    """Run (or resume) the pre-training; return the output folder."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    out = Path(cfg.out)
    config = copy.deepcopy(CONFIGS[cfg.arch])
    if cfg.context_length:
        config["model_cfg"]["text_cfg"]["context_length"] = cfg.context_length
    config = for_image_mode(config, cfg.image)
    config["reasongen"] = {"text": cfg.text, "image": cfg.image}  # a scorer of its captions and pictures
    if cfg.init:
        scorer, config = init_scorer(cfg, config)
        log(f"starting from {cfg.init}")
    else:
        scorer = scorer_from_config(config, seed=cfg.seed)
    model = scorer.model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (
            1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    start = 0
    if cfg.resume and (out / STATE_FILE).is_file():
        _check_same_captions(out, cfg)
        state = torch.load(out / STATE_FILE, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log(f"resumed at step {start}")
    held = benchmark_texts(cfg.holdout_benchmark, cfg.suites)
    losses: list[float] = []
    t0 = time.time()
    steps = CaptionSteps(cfg, held, scorer.preprocess, start)
    loader = torch.utils.data.DataLoader(steps, batch_size=None, shuffle=False, num_workers=cfg.workers)
    for step, (pixels, prompts, extra) in enumerate(loader, start=start):
        pixels = pixels.to(device)  # [B + H, 3, S, S or 2S]: the captions' images, then H near misses
        tokens = scorer.tokenizer(list(prompts) + list(extra)).to(device)  # [B + T, L]: T extra negatives
        img = model.encode_image(pixels, normalize=True)  # [B + H, D]
        txt = model.encode_text(tokens, normalize=True)  # [B + T, D]
        loss = clip_loss(img, txt, model.logit_scale.exp(), pairs=len(prompts))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))
        losses.append(float(loss.item()))
        done = step + 1
        if done == cfg.steps or (cfg.save_every and done % cfg.save_every == 0):
            _save(scorer, config, out, opt, sched, done, cfg, losses)
        if cfg.log_every and done % cfg.log_every == 0:
            mean = sum(losses[-cfg.log_every :]) / len(losses[-cfg.log_every :])
            log(f"step {done}/{cfg.steps}: contrastive loss {mean:.4f} ({time.time() - t0:.0f} s)")
    return out


def init_scorer(cfg: PretrainConfig, built: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The ``--init`` folder's scorer and config; ``ValueError`` unless it reads what this run's
    captions and pictures are (``built``: the config a from-scratch run of ``cfg`` would make) —
    the same text and image modes and the same input size."""
    from .model import initial_scorer

    if not Path(cfg.init).expanduser().is_dir():
        raise ValueError(f"--init {cfg.init!r}: give an open_clip folder (a pre-trained or reward model)")
    scorer, config, _ = initial_scorer(cfg.init, "", cfg.seed, cfg.context_length)
    have = (scorer.text_mode, scorer.image_mode, config["model_cfg"]["vision_cfg"].get("image_size"))
    want = (cfg.text, cfg.image, built["model_cfg"]["vision_cfg"].get("image_size"))
    if have != want:
        raise ValueError(
            f"--init {cfg.init} reads text {have[0]!r}, image {have[1]!r} at size {have[2]}; this run "
            f"draws text {want[0]!r}, image {want[1]!r} at size {want[2]}: give the matching --text, "
            "--image and --arch"
        )
    return scorer, config


def _check_same_captions(out: Path, cfg: PretrainConfig) -> None:
    """``ValueError`` when a run being resumed drew its captions otherwise (seed, language, held-out
    texts): the steps after the resume would not be the steps of one run. A folder written before
    ``language`` existed drew GenEval captions."""
    info = out / "pretrain.json"
    if not info.is_file():
        return
    saved = json.loads(info.read_text()).get("settings", {})
    saved.setdefault("language", "geneval")
    saved.setdefault("hard_negatives", 0.0)
    saved.setdefault("text", "prompt")
    saved.setdefault("image", "image")
    saved.setdefault("plan_dropout", 0.0)
    saved.setdefault("relation_mirror", 0.0)
    saved.setdefault("init", "")
    saved.setdefault("relation_swap", False)
    saved.setdefault("relation_weight", 1)
    saved.setdefault("plan_negatives", 0.0)
    saved.setdefault("align_negatives", 0.0)
    for key in ("seed", "language", "holdout_benchmark", "batch", "hard_negatives", "text", "image",
                "plan_dropout", "relation_mirror", "relation_swap", "relation_weight", "plan_negatives",
                "align_negatives", "init"):  # fmt: skip
        if key in saved and saved[key] != getattr(cfg, key):
            raise ValueError(
                f"{out} was pre-trained with {key}={saved[key]!r}, not {getattr(cfg, key)!r}: "
                "resume with the same settings, or write to a new --out"
            )


def _save(
    scorer: Any, config: dict[str, Any], out: Path, opt: Any, sched: Any, step: int, cfg: PretrainConfig,
    losses: list[float],
) -> None:  # fmt: skip
    save_scorer(scorer, config, out)
    state = {
        "model": scorer.model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
    }
    torch.save(state, out / (STATE_FILE + ".partial"))
    (out / (STATE_FILE + ".partial")).replace(out / STATE_FILE)
    info = {
        "step": step,
        "settings": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "recent_losses": losses[-50:],
    }
    (out / "pretrain.json").write_text(json.dumps(info, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; an error is ``error: ...`` on stderr and exit status 2 (``cli_main``)."""
    from training.errors import cli_main

    return cli_main(
        lambda: f"pre-trained shapes scorer written to {pretrain(parse_config(PretrainConfig, argv))}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
