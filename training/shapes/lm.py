"""The shapes model: its Janus config and the SFT loop (CoT via the LM head, image via the
generation head), on left-padded batches so every example's image starts at the same column."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import JanusConfig, JanusForConditionalGeneration

from reasongen.tiny import janus_config

from .data import TextExample, make_batch
from .stage_state import (
    StageCheckpoints,
    StageClock,
    StageRun,
    restore_training_state,
    stop_reason,
    training_state,
)
from .vq import warmup_cosine


def shapes_config(
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    image_size: int,
    downsample_levels: int,
    codebook: int,
    vq_embed_dim: int,
    vq_base_channels: int,
    max_positions: int = 1024,
) -> JanusConfig:
    """A small Janus config: Llama LM, VQ with ``downsample_levels`` halvings and no residual
    blocks, minimal vision tower (built by ``reasongen.tiny.janus_config``)."""
    mults = [1, 1, 2, 2, 4, 4][: downsample_levels + 1]
    return janus_config(
        vocab_size,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=3 * hidden,
        image_size=image_size,
        vq_downsample=2**downsample_levels,
        codebook_size=codebook,
        vq_embed_dim=vq_embed_dim,
        vq_base_channels=vq_base_channels,
        max_position_embeddings=max_positions,
        channel_multiplier=mults,
        latent_channels=vq_base_channels * mults[-1],
        num_res_blocks=0,
    )


def sft_losses(
    model: JanusForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    code_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(text loss, image loss, anchor loss) of one left-padded batch (``data.make_batch``).

    ``code_weights`` (``[K]``) weights each image target by its code (weighted mean). The anchor
    loss is the generation head's cross-entropy at each plan box's corner token against that
    object's starting image code (``data.anchor_targets``; zero when the batch has none).
    """
    ids, mask, codes = batch["ids"], batch["mask"], batch["codes"]  # [B, T], [B, T], [B, N]
    text_emb = model.get_input_embeddings()(ids)  # [B, T, H]
    img_emb = model.prepare_embeddings_for_image_generation(codes)  # [B, N, H]
    embeds = torch.cat([text_emb, img_emb], dim=1)  # [B, T+N, H]
    full_mask = torch.cat([mask, torch.ones_like(codes)], dim=1)  # [B, T+N]
    pos = (full_mask.cumsum(1) - 1).clamp(min=0)  # [B, T+N]
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=full_mask, position_ids=pos
    ).last_hidden_state  # [B, T+N, H]
    t, n = ids.shape[1], codes.shape[1]
    sel = batch["text_target"][:, : t - 1]  # [B, T-1]
    if sel.any():
        text_logits = model.lm_head(hidden[:, : t - 1][sel])  # [M, V]
        text_loss = F.cross_entropy(text_logits.float(), ids[:, 1:][sel])
    else:
        text_loss = hidden.sum() * 0.0
    img_logits = model.model.generation_head(hidden[:, t - 1 : t - 1 + n])  # [B, N, K]
    ce = F.cross_entropy(img_logits.float().flatten(0, 1), codes.flatten(), reduction="none")  # [B*N]
    anchor_code = batch.get("anchor_code")
    if anchor_code is not None and (anchor_code >= 0).any():
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None]  # [B, 1]
        anchor_logits = model.model.generation_head(hidden[rows, batch["anchor_pos"]])  # [B, A, K]
        anchor_loss = F.cross_entropy(
            anchor_logits.float().flatten(0, 1), anchor_code.flatten(), ignore_index=-100
        )
    else:
        anchor_loss = hidden.sum() * 0.0
    if code_weights is None:
        return text_loss, ce.mean(), anchor_loss
    w = code_weights[codes.flatten()]  # [B*N]
    return text_loss, (ce * w).sum() / w.sum(), anchor_loss


def train_lm(
    model: JanusForConditionalGeneration,
    texts: Sequence[TextExample],
    codes: torch.Tensor,
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    drop_prob: float,
    device: torch.device,
    seed: int,
    text_weight: float = 1.0,
    max_seconds: float | None = None,
    code_weights: torch.Tensor | None = None,
    anchor_weight: float = 1.0,
    checkpoints: StageCheckpoints | None = None,
    resume: bool = False,
    stop_at: float | None = None,
) -> StageRun:
    """SFT the LM, embeddings and heads (the VQ stays frozen); returns what it did (``record``:
    the (text, image) loss of each step).

    ``max_seconds`` stops early, counting the stage's earlier sessions; ``stop_at`` (wall-clock
    time) ends this session without touching the schedule. With ``checkpoints`` the state is
    saved every ``checkpoints.every`` steps and when the stage stops; ``resume`` continues from
    the newest one exactly (same batches, same weights as a run never stopped).
    """
    rng = random.Random(seed)
    model.train().to(device)
    for p in model.model.vqmodel.parameters():
        p.requires_grad_(False)
    for p in (*model.model.vision_model.parameters(), *model.model.aligner.parameters()):
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    saved = checkpoints.latest() if checkpoints is not None and resume else None
    clock = StageClock(saved["seconds"] if saved else 0.0)
    sched = warmup_cosine(opt, steps, 0.03, max_seconds, clock)
    curve: list[tuple[float, float]] = []
    start = 0
    if saved:
        restore_training_state(saved, model, opt, sched, rng)
        curve, start = [tuple(c) for c in saved["record"]], saved["step"]
        print(f"LM: resumed at step {start} of {steps} from {saved['path']}", flush=True)
    amp = device.type == "cuda"
    code_weights = None if code_weights is None else code_weights.to(device)
    done = start
    # A fresh stage does at least one step, a session at least one; a resumed stage may be done.
    stop = stop_reason(done, steps, clock, max_seconds if saved else None, None)
    bar = tqdm(total=steps, initial=start, desc="LM", mininterval=5.0)
    while stop is None:
        pick = [rng.randrange(len(texts)) for _ in range(batch_size)]
        batch = make_batch([texts[i] for i in pick], codes[pick], pad_id, drop_prob, rng)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            text_loss, img_loss, anchor_loss = sft_losses(model, batch, code_weights)
        loss = text_weight * text_loss + img_loss + anchor_weight * anchor_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        curve.append((float(text_loss.detach()), float(img_loss.detach())))
        if done % 25 == 0:
            bar.set_postfix(text=f"{curve[-1][0]:.3f}", image=f"{curve[-1][1]:.3f}",
                            anchor=f"{float(anchor_loss.detach()):.3f}")  # fmt: skip
        done += 1
        bar.update(1)
        stop = stop_reason(done, steps, clock, max_seconds, stop_at)
        if checkpoints is not None and (stop is not None or checkpoints.due(done)):
            checkpoints.save(done, stop, clock.elapsed(), training_state(model, opt, sched, rng, curve))
    bar.close()
    model.eval()
    return StageRun(curve, done, clock.elapsed(), stop, start)
