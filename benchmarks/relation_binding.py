"""Does a scorer that reads text and image together learn which way a relation points?

Every ``learned`` reward here is a dual encoder (``logit_scale x cos``), and all of them order a
relation scene against its mirror, or its caption against the caption with the relation reversed,
at chance (training/README.md, "Why position falls"). The README names the next scorer: one that
reads text and image together. This trains the smallest such model open_clip has, a CoCa (towers
of the shapes scorer's depth at width 96, plus a 2-layer decoder that cross-attends to the image's
patch tokens), on the shapes world's rendered captions, relation captions oversampled, and prints
every ``--every`` steps how often it prefers

- the true caption to its relation-reversed one (``text-swap``), and
- a scene to its relation mirror under the same caption (``image-mirror``),

on 200 held-out relation scenes drawn as a model draws them (``pretrain.drawn``) and on a batch of
the training distribution that no step draws (``train-dist``: does it fit what it trains on?), by
two scores: the caption's log-likelihood given the image
(``caption``), and with ``--itm`` an image-text-matching head on the decoder's last state, trained
with the reversed captions and the mirrors as negatives (BLIP's ITM, ``itm``). 0.5 is blind.

    python benchmarks/relation_binding.py --steps 2000 --out runs/rel/coca.pt          # ~15 min, 2 threads
    python benchmarks/relation_binding.py --steps 1500 --itm --init runs/rel/coca.pt --out runs/rel/itm.pt
    python benchmarks/relation_binding.py --steps 20000 --itm --width 256 --patch 4 --decoder_layers 4 \
        --batch 256 --device cuda --out runs/rel/big.pt                      # the scale a GPU allows

``--binding colour`` is the control: the negatives exchange the two colours of a two-object
caption ("a red star and a blue circle"), in the words and on the objects, a binding of attribute
to object instead of position to word order.

Measured here (2 CPU threads): chance throughout, for the caption score over 2,000 steps and for
the ITM head over 1,500 more (training/README.md has the figures); the model learns the relation's
axis (left/right against above/below) but not its direction, while the colour control, in 600
steps, orders 0.765 of its held-out pairs right. A resumable spike, not a product
scorer: ``--out`` holds weights, optimiser, step and size (``--width``, ``--*_layers``, ``--patch``;
resuming at another size is refused).

open_clip 3.3 builds the CoCa decoder's ``text_projection`` with ``torch.empty`` and never runs its
``init_parameters`` (which would fail: it reads ``self.transformer``; open_clip issue #554), so a
small decoder starts from whatever memory held (logits of 1e30, a NaN loss at step 1);
:func:`init_decoder` initialises it as that method means to.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import torch
import torch.nn.functional as F

from reasongen.shapes.compose import RELATION_CATEGORIES as RELATIONS


@dataclass(frozen=True)
class Size:
    """The CoCa's size; the default is the shapes scorer's depth at width 96 (1.0 M parameters)."""

    width: int = 96  # of every tower: the decoder cross-attends to the vision tokens at its own width
    vision_layers: int = 4
    text_layers: int = 3
    decoder_layers: int = 2
    patch: int = 8  # pixels of a 64 px image: 8 -> an 8 x 8 grid of tokens, 4 -> 16 x 16


def coca_config(vocab_size: int, size: Size = Size()) -> dict[str, Any]:
    """An open_clip CoCa for 64 px images in ``size.patch`` px patches, fixed 2-D sin-cos
    positions, the patch tokens (no attentional pooler) as the decoder's memory; heads of 32."""
    w, heads = size.width, size.width // 32
    return {
        "model_cfg": {
            "embed_dim": 64,
            "vision_cfg": {"image_size": 64, "patch_size": size.patch, "width": w,
                           "layers": size.vision_layers, "head_width": 32, "mlp_ratio": 2.0,
                           "output_tokens": True, "pos_embed_type": "sin_cos_2d"},
            "text_cfg": {"context_length": 32, "vocab_size": vocab_size, "width": w, "heads": heads,
                         "layers": size.text_layers, "mlp_ratio": 2.0, "embed_cls": True,
                         "output_tokens": True},
            "multimodal_cfg": {"context_length": 32, "vocab_size": vocab_size, "width": w, "heads": heads,
                               "layers": size.decoder_layers, "mlp_ratio": 2.0},
            "custom_text": True,
        },
        "preprocess_cfg": {"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic",
                           "resize_mode": "shortest"},
    }  # fmt: skip


def init_decoder(decoder: Any) -> None:
    """The initialisation open_clip's ``MultimodalTransformer.init_parameters`` means (CLIP's)."""
    proj_std = decoder.width**-0.5 * (2 * decoder.layers) ** -0.5
    attn_std, fc_std = decoder.width**-0.5, (2 * decoder.width) ** -0.5
    for block in [*decoder.resblocks, *decoder.cross_attn]:
        torch.nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        torch.nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        torch.nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        torch.nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
    torch.nn.init.normal_(decoder.text_projection, std=attn_std)


def language_ids(clip_tokenizer: Any, categories: tuple[str, ...], held: set[str]) -> list[int]:
    """The CLIP token ids the shapes language uses (sampled captions, their reversed relations, the
    held-out benchmark texts), with padding, start and end: the model's vocabulary, so that its
    caption head scores ~50 words, not 49,408."""
    from reasongen.shapes import sample_scene
    from training.reward_model.near_miss import swap_relation

    rng = random.Random("vocabulary")
    texts = set(held) | {sample_scene(rng.choice(categories), rng, None).prompt for _ in range(5000)}
    texts |= {s for s in map(swap_relation, list(texts)) if s}
    ids = {0, clip_tokenizer.sot_token_id, clip_tokenizer.eot_token_id}
    for text in texts:
        ids.update(clip_tokenizer.encode(text))
    return sorted(ids)


def swap_colours(caption: str) -> str | None:
    """``caption`` with its two colour words exchanged ("a red star and a blue circle" -> "a blue
    star and a red circle"); None unless it names exactly two different colours."""
    from reasongen.shapes import COLORS

    found = [m for m in re.finditer(r"\b(" + "|".join(COLORS) + r")\b", caption)]
    if len(found) != 2 or found[0].group() == found[1].group():
        return None
    a, b = found
    return caption[: a.start()] + b.group() + caption[a.end() : b.start()] + a.group() + caption[b.end() :]


def false_text(caption: str, binding: str) -> str | None:
    """``caption`` made false by ``binding``: its relation reversed, or its two colours exchanged."""
    from training.reward_model.near_miss import swap_relation

    return swap_relation(caption) if binding == "relation" else swap_colours(caption)


def counterparts(scene: Any, binding: str) -> tuple[str | None, Any]:
    """The caption made false by ``binding`` and the objects made false alike: for ``relation`` the
    reversed relation and the scene mirrored across its axis; for ``colour`` (the control) the two
    colours exchanged, in the words and on the two objects. (None, None) when it does not apply."""
    from dataclasses import replace

    from training.reward_model.near_miss import mirror_relation

    if binding == "relation":
        return false_text(scene.prompt, binding), mirror_relation(scene)
    text = false_text(scene.prompt, binding)
    if text is None or len(scene.objects) != 2:
        return None, None
    one, two = scene.objects
    return text, (replace(one, color=two.color), replace(two, color=one.color))


def training_batch(
    step: int, seed: int, categories: tuple[str, ...], held: set[str], size: int, binding: str = "relation"
) -> tuple:
    """Step ``step``'s rendered scenes and captions (the scenes pre-training would draw:
    ``pretrain.batch_scenes``), the captions made false by ``binding`` (index, text) and their
    scenes made false alike (index, image): :func:`counterparts`."""
    from reasongen.shapes import render_objects, render_scene
    from training.reward_model.pretrain import batch_scenes

    scenes = [scene for scene, _ in batch_scenes(step, seed, categories, size, held)]
    made = [counterparts(s, binding) for s in scenes]
    swaps = [(i, t) for i, (t, _) in enumerate(made) if t is not None]
    mirrors = [(i, render_objects(o)) for i, (_, o) in enumerate(made) if o is not None]
    return [render_scene(s) for s in scenes], [s.prompt for s in scenes], swaps, mirrors


class Spike:
    """The CoCa, its token map and the optional ITM head."""

    def __init__(
        self, held: set[str], categories: tuple[str, ...], seed: int, size: Size = Size(), device: str = "cpu"
    ) -> None:
        import open_clip

        clip_tok = open_clip.get_tokenizer("ViT-B-32")
        ids = language_ids(clip_tok, categories, held)
        self.lut = torch.full((49408,), len(ids), dtype=torch.long)  # unknown -> the last id
        self.lut[torch.tensor(ids)] = torch.arange(len(ids))
        self.eot = int(self.lut[clip_tok.eot_token_id])
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "open_clip_config.json").write_text(json.dumps(coca_config(len(ids) + 1, size)))
            torch.manual_seed(seed)
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp}")
        init_decoder(self.model.text_decoder)
        self.clip_tok, self.device = clip_tok, torch.device(device)
        self.model.to(self.device)
        self.itm = torch.nn.Linear(size.width, 1).to(self.device)
        self._state: dict[str, torch.Tensor] = {}
        self.model.text_decoder.ln_final.register_forward_hook(lambda m, i, o: self._state.update(h=o))

    def tokens(self, texts: list[str]) -> torch.Tensor:
        return self.lut[self.clip_tok(texts, context_length=32)].to(self.device)  # [B, 32]

    def pixels(self, images: list[Any]) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images])  # [B, 3, 64, 64]
        return pixels.to(self.device)

    def decode(self, img_tokens: torch.Tensor, txt_tokens: torch.Tensor, ids: torch.Tensor) -> tuple:
        """Caption logits ``[N, L-1, V]`` and ITM logits ``[N]`` of N (image, text) pairs."""
        logits = self.model.text_decoder(img_tokens, txt_tokens[:, :-1])
        eot = (ids == self.eot).float().argmax(1)  # [N]: the end token's position
        rows = torch.arange(len(ids), device=ids.device)
        return logits, self.itm(self._state["h"][rows, eot]).squeeze(-1)

    @torch.no_grad()
    def scores(self, images: list[Any], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption log-likelihood ``[B]`` and ITM logit ``[B]`` of each (image, text)."""
        self.model.eval()
        ids = self.tokens(texts)
        _, img = self.model._encode_image(self.pixels(images))
        _, txt = self.model._encode_text(ids)
        logits, itm = self.decode(img, txt, ids)
        self.model.train()
        ll = -F.cross_entropy(logits.permute(0, 2, 1), ids[:, 1:], ignore_index=0, reduction="none").sum(1)
        return ll, itm


def accuracy(better: torch.Tensor, worse: torch.Tensor) -> float:
    return ((better > worse).float() + 0.5 * (better == worse).float()).mean().item()


def report(spike: Spike, step: int, held_pairs: tuple, sample: tuple, heads: tuple[str, ...]) -> None:
    """Print the held-out and training-distribution accuracies of each score in ``heads``."""
    (shown, texts, false_texts, false_images), (images, captions, swaps, mirs) = held_pairs, sample
    true = spike.scores(shown, texts)
    swap = spike.scores(shown, false_texts)
    mirror = spike.scores(false_images, texts)
    own = spike.scores(images, captions)
    own_swap = spike.scores([images[i] for i, _ in swaps], [t for _, t in swaps])
    own_mirror = spike.scores([m for _, m in mirs], [captions[i] for i, _ in mirs])
    si, mi = [i for i, _ in swaps], [i for i, _ in mirs]
    for k, name in enumerate(("caption", "itm")):
        if name not in heads:
            continue
        held_out = (
            f"text-swap {accuracy(true[k], swap[k]):.3f} image-mirror {accuracy(true[k], mirror[k]):.3f}"
        )
        own_acc = (
            f"text-swap {accuracy(own[k][si], own_swap[k]):.3f} "
            f"image-mirror {accuracy(own[k][mi], own_mirror[k]):.3f}"
        )
        print(f"step {step} {name}: held-out {held_out} | train-dist {own_acc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from open_clip.loss import CoCaLoss

    from reasongen.shapes import sample_scene
    from reasongen.shapes.parse import parse_prompt
    from training.reward_model.pretrain import PretrainConfig, benchmark_texts, drawn
    from training.reward_model.probe import probe_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="checkpoint file (resumed when it exists)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250, help="report and checkpoint every K steps")
    ap.add_argument(
        "--itm", action="store_true", help="also train the ITM head on reversed captions and mirrors"
    )
    ap.add_argument("--init", default="", help="start from this checkpoint's model (a fresh optimiser)")
    ap.add_argument("--relation_weight", type=int, default=8, help="extra draws of each relation category")
    ap.add_argument(
        "--binding",
        choices=("relation", "colour"),
        default="relation",
        help="what the negatives reverse: the relation, or (a control) which object has which colour",
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda:0'")
    ap.add_argument("--width", type=int, default=Size.width, help="width of every tower (a multiple of 32)")
    ap.add_argument("--vision_layers", type=int, default=Size.vision_layers)
    ap.add_argument("--text_layers", type=int, default=Size.text_layers)
    ap.add_argument("--decoder_layers", type=int, default=Size.decoder_layers)
    ap.add_argument("--patch", type=int, choices=(4, 8, 16), default=Size.patch, help="patch side in pixels")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.every < 1 or args.batch < 4:
        ap.error("--steps and --every must be >= 1, --batch >= 4")
    size = Size(args.width, args.vision_layers, args.text_layers, args.decoder_layers, args.patch)
    if (
        size.width < 32
        or size.width % 32
        or min(size.vision_layers, size.text_layers, size.decoder_layers) < 1
    ):
        ap.error("--width must be a multiple of 32, every --*_layers >= 1")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    base = PretrainConfig(out="-", language="full")
    categories = (
        base.categories
        + (RELATIONS if args.binding == "relation" else ("color_attr",)) * args.relation_weight
    )
    held = benchmark_texts(base.holdout_benchmark, base.suites)
    spike = Spike(held, categories, args.seed, size, device)
    params = [*spike.model.parameters(), *spike.itm.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
    )
    out, start = Path(args.out), 0
    if out.is_file():
        state = torch.load(out, map_location=spike.device, weights_only=True)
        if state.get("size", asdict(Size())) != asdict(size):
            ap.error(f"{out} holds a model of size {state.get('size', asdict(Size()))}, not {asdict(size)}")
        spike.model.load_state_dict(state["model"])
        spike.itm.load_state_dict(state["itm"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = int(state["step"])
        print(f"resumed at step {start}", flush=True)
    elif args.init:
        state = torch.load(args.init, map_location=spike.device, weights_only=True)
        spike.model.load_state_dict(state["model"])  # the ITM head starts fresh
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random("eval")  # held-out scenes, drawn as a model draws
    if args.binding == "relation":  # the probe's relation scenes (benchmark texts the training never saw)
        pairs = probe_pairs("mirror_relation", 200, "full", 0)
    else:  # the control: fresh colour scenes (texts the training may have seen; other drawings)
        scenes = [sample_scene("color_attr", rng, None) for _ in range(200)]
        pairs = [(s.prompt, s.objects, counterparts(s, "colour")[1]) for s in scenes]
    held_pairs = (
        [drawn(o, rng, parse_prompt(p)) for p, o, _ in pairs],
        [p for p, _, _ in pairs],
        [false_text(p, args.binding) for p, _, _ in pairs],
        [drawn(e, rng) for _, _, e in pairs],
    )
    sample = training_batch(10**7, args.seed, categories, held, args.batch, args.binding)  # no step's
    caption_loss = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0)
    heads = ("caption", "itm") if args.itm else ("caption",)
    report(spike, start, held_pairs, sample, heads)
    t0, recent = time.time(), []
    for step in range(start, args.steps):
        images, captions, swaps, mirrors = training_batch(
            step, args.seed, categories, held, args.batch, args.binding
        )
        n = len(captions)
        x = spike.pixels(images + [m for _, m in mirrors])  # [B + M, 3, 64, 64]: scenes, then mirrors
        ids = spike.tokens(captions + [t for _, t in swaps])  # [B + S, 32]: captions, then reversed
        img_latent, img_tokens = spike.model._encode_image(x)
        txt_latent, txt_tokens = spike.model._encode_text(ids)
        logits, pos = spike.decode(img_tokens[:n], txt_tokens[:n], ids[:n])
        scale = spike.model.logit_scale.exp()
        parts = caption_loss(img_latent[:n], txt_latent[:n], logits, ids[:n, 1:], scale, output_dict=True)
        loss = parts["contrastive_loss"] + parts["caption_loss"]
        if args.itm:  # negatives: reversed captions, mirrored scenes, a quarter of the batch mismatched
            r = torch.arange(n)
            img_i = torch.cat(
                [torch.tensor([i for i, _ in swaps]), n + torch.arange(len(mirrors)), r[: n // 4]]
            )
            txt_i = torch.cat(
                [n + torch.arange(len(swaps)), torch.tensor([i for i, _ in mirrors]), (r[: n // 4] + 1) % n]
            )
            _, neg = spike.decode(img_tokens[img_i], txt_tokens[txt_i], ids[txt_i])
            weight = torch.cat([torch.full_like(pos, len(neg) / n), torch.ones_like(neg)])  # classes balanced
            target = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            loss = loss + F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), target, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            spike.model.logit_scale.clamp_(0, math.log(100))
        if not math.isfinite(loss.item()):
            print(f"step {step + 1}: non-finite loss", file=sys.stderr)
            return 1
        recent.append(loss.item())
        if (step + 1) % 50 == 0:
            print(
                f"step {step + 1}: loss {sum(recent[-50:]) / 50:.3f} ({time.time() - t0:.0f} s)", flush=True
            )
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            report(spike, step + 1, held_pairs, sample, heads)
            state = {"model": spike.model.state_dict(), "itm": spike.itm.state_dict(), "size": asdict(size)}
            state.update(opt=opt.state_dict(), sched=sched.state_dict(), step=step + 1)
            torch.save(state, out.with_suffix(".partial"))
            out.with_suffix(".partial").replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
