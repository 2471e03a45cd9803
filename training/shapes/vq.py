"""Training the shapes model's VQ decoder (transformers' ``JanusVQVAE``) on semantic codes.

The world's codes are exact (``reasongen.shapes.codes``): each cell of a cell-aligned scene has a
known code, and each code a fixed unit codebook vector. Only the decoder path that
``JanusVQVAE.decode`` uses (``post_quant_conv`` + ``decoder``) is trained, to draw the rendered
scene from its code grid. The encoder is left untrained; ``scene_codes`` is the encoder.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import JanusVQVAE

from reasongen.shapes import COLORS, SHAPES, SIZES, ShapeObject, render_objects
from reasongen.shapes.codes import CELL, GRID_CELLS, SIZE_CELLS, codebook_vectors, scene_codes
from reasongen.types import Box

from .stage_state import (
    StageCheckpoints,
    StageClock,
    StageRun,
    restore_training_state,
    stop_reason,
    training_state,
)


def warmup_cosine(
    opt: torch.optim.Optimizer, steps: int, warmup_frac: float = 0.05,
    max_seconds: float | None = None, clock: StageClock | None = None,
):  # fmt: skip
    """Linear warm-up over ``warmup_frac`` of ``steps``, then cosine decay to 5% of the peak.

    With ``max_seconds`` the decay follows whichever is further along, the steps or the clock
    (so a time-limited run still ends annealed; it is then no longer bit-reproducible). The clock
    is ``clock`` (a resumed stage's counts its earlier sessions), else one started now.
    """
    warm = max(1, int(steps * warmup_frac))
    clock = clock or StageClock()

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, steps - warm))
        if max_seconds:
            progress = max(progress, min(1.0, clock.elapsed() / max_seconds))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def dense_objects(rng: random.Random, max_objects: int = 7) -> tuple[ShapeObject, ...]:
    """Up to ``max_objects`` random cell-aligned objects one cell apart (decoder training data)."""
    placed: list[ShapeObject] = []
    for _ in range(max_objects * 6):
        if len(placed) >= max_objects:
            break
        size = rng.choice(SIZES)
        n = SIZE_CELLS[size]
        r, c = rng.randint(0, GRID_CELLS - n), rng.randint(0, GRID_CELLS - n)
        box = Box("x", c * CELL, r * CELL, (c + n) * CELL, (r + n) * CELL)
        if all(
            box.x2 + CELL <= o.box.x1 or o.box.x2 + CELL <= box.x1
            or box.y2 + CELL <= o.box.y1 or o.box.y2 + CELL <= box.y1
            for o in placed
        ):  # fmt: skip
            shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
            placed.append(ShapeObject(shape, color, size, None, box))
    return tuple(placed)


def set_codebook(vq: JanusVQVAE) -> None:
    """Install the world's fixed unit codebook vectors (not trained)."""
    book = torch.from_numpy(codebook_vectors())
    if tuple(vq.quantize.embedding.weight.shape) != tuple(book.shape):
        raise ValueError(f"VQ codebook {tuple(vq.quantize.embedding.weight.shape)} != {book.shape}")
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(book)
    vq.quantize.embedding.weight.requires_grad_(False)


def decode_train(vq: JanusVQVAE, codes: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` codes -> ``[B, 3, H, W]`` pixels, differentiable (same maths as ``decode``)."""
    return vq.decoder(vq.post_quant_conv(vq.quantize.get_codebook_entry(codes)))


def _batch(rng: random.Random, size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    objs = [dense_objects(rng, rng.randint(1, 7)) for _ in range(batch_size)]
    codes = torch.from_numpy(np.stack([scene_codes(o) for o in objs]))  # [B, N]
    imgs = np.stack([np.asarray(render_objects(o, size=size)) for o in objs])  # [B, H, W, 3]
    px = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 3, H, W]
    return codes, px


def train_decoder(
    vq: JanusVQVAE, image_size: int, steps: int, batch_size: int, lr: float, seed: int,
    device: torch.device, max_seconds: float | None = None,
    checkpoints: StageCheckpoints | None = None, resume: bool = False, stop_at: float | None = None,
) -> StageRun:  # fmt: skip
    """Train the decoder to draw rendered dense scenes from their codes; returns what it did
    (``record``: the loss of each step).

    Loss: L1 + L2 on pixels in [-1, 1], with object pixels weighted 4× (background dominates).
    ``max_seconds`` stops early, counting the stage's earlier sessions; ``stop_at`` (wall-clock
    time) ends this session without touching the schedule. With ``checkpoints`` the state is
    saved every ``checkpoints.every`` steps and when the stage stops; ``resume`` continues from
    the newest one exactly (same batches, same weights as a run never stopped).
    """
    set_codebook(vq)
    vq.train().to(device)
    params = [*vq.post_quant_conv.parameters(), *vq.decoder.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = random.Random(seed)
    saved = checkpoints.latest() if checkpoints is not None and resume else None
    clock = StageClock(saved["seconds"] if saved else 0.0)
    sched = warmup_cosine(opt, steps, max_seconds=max_seconds, clock=clock)
    losses: list[float] = []
    start = 0
    if saved:
        restore_training_state(saved, vq, opt, sched, rng)
        losses, start = list(saved["record"]), saved["step"]
        print(f"VQ decoder: resumed at step {start} of {steps} from {saved['path']}", flush=True)
    done = start
    # A fresh stage does at least one step, a session at least one; a resumed stage may be done.
    stop = stop_reason(done, steps, clock, max_seconds if saved else None, None)
    bar = tqdm(total=steps, initial=start, desc="VQ decoder", mininterval=5.0)
    while stop is None:
        codes, px = _batch(rng, image_size, batch_size)
        codes, px = codes.to(device), px.to(device)
        rec = decode_train(vq, codes)  # [B, 3, H, W]
        weight = 1.0 + 4.0 * (px.std(dim=1, keepdim=True) > 0.02).float()  # [B, 1, H, W]
        err = (rec - px).abs() + (rec - px).square()
        loss = (weight * err).mean() / weight.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        done += 1
        bar.update(1)
        stop = stop_reason(done, steps, clock, max_seconds, stop_at)
        if checkpoints is not None and (stop is not None or checkpoints.due(done)):
            checkpoints.save(done, stop, clock.elapsed(), training_state(vq, opt, sched, rng, losses))
    bar.close()
    vq.eval()
    return StageRun(losses, done, clock.elapsed(), stop, start)


@torch.no_grad()
def decode_codes(vq: JanusVQVAE, codes: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Codes ``[n, N]`` -> uint8 images ``[n, H, W, 3]`` via ``JanusVQVAE.decode``."""
    vq.eval()
    dev = next(vq.parameters()).device
    out = []
    for a in range(0, len(codes), batch):
        px = vq.decode(codes[a : a + batch].to(dev)).float()  # [b, 3, H, W]
        px = ((px.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        out.append(px.cpu().numpy())
    return np.concatenate(out)
