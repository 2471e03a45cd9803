"""The update of a GRPO step: micro-batched loss and gradients, mini-batches, behaviour log-probs.

Shared by online GRPO (``training.grpo``) and GRPO from human rankings (``training.human``):
``update`` accumulates one optimizer step's gradients over micro-batches of groups, with
global denominators (so micro-batching and the number of processes do not change the update);
``mini_batches`` cuts a step's groups into PPO mini-batches; ``behaviour_logprobs`` computes
behaviour log-probs when the stored ones are not of the trained distribution (conditional
log-probs of guided rollouts); ``keep_zero_spread`` lets groups without spread take part as
T2I-R1 does; the entropy controllers' checkpoint state per process lives here too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from .grpo_loss import (
    AdaptiveEntropyCoefficient,
    ModalityTokens,
    grpo_loss,
    joint_count,
    normaliser_count,
)
from .logprobs import policy_logprobs, run_policy, stored_logprobs
from .rollouts import blank_group

if TYPE_CHECKING:
    from .grpo import PolicyOptimConfig
    from .rollouts import Group


def needs_behaviour(cfg: PolicyOptimConfig, groups: Sequence[Group]) -> bool:
    """Whether the stored image log-probs are not of the trained distribution: conditional
    log-probs (``logprob_distribution: conditional``) of samples drawn with guidance ≠ 1."""
    return cfg.logprob_distribution == "conditional" and any(
        float(s.settings.guidance) != 1.0 for g in groups for s in g.samples
    )


def _padded(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)  # [B, N]
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def _keep_behaviour(chunk: Sequence[Group], image: torch.Tensor) -> None:
    """Store each sample's image log-probs (rows of ``image`` [B, N], detached) in its group."""
    row = 0
    for g in chunk:
        g.behaviour = [image[row + k, : len(s.image_token_ids)].detach().float().cpu()
                       for k, s in enumerate(g.samples)]  # fmt: skip
        row += len(g.samples)


def micro_batches(cfg: PolicyOptimConfig, groups: list[Group]) -> list[list[Group]]:
    """``groups`` in consecutive runs of ``micro_batch_groups`` (one forward and backward each)."""
    m = cfg.micro_batch_groups
    return [groups[i : i + m] for i in range(0, len(groups), m)]


@torch.no_grad()
def behaviour_logprobs(run: Any, cfg: PolicyOptimConfig, groups: list[Group]) -> None:
    """Fill every group's ``behaviour`` with its image log-probs under the trained distribution
    and the current policy: one no-grad forward per micro-batch (the conditional row only).

    Run before a step's first optimizer step when that step has several (``mini_batches`` > 1);
    with one, the first pass's own forward gives the same values for free (``_chunk_loss``).
    Like the rollouts it calls the unwrapped model (no DDP forward, so no collective).
    """
    ids = run.loaded.ids
    for chunk in micro_batches(cfg, groups):
        samples = [s for g in chunk for s in g.samples]
        with run.accelerator.autocast():
            lp = policy_logprobs(run.loaded.model, samples, ids.bos, ids.pad, mode=cfg.logprob_mode())
        _keep_behaviour(chunk, lp.image)


def _tokens(
    lp: Any, old: torch.Tensor, ref: torch.Tensor | None, kind: str, valid: torch.Tensor
) -> ModalityTokens:
    mask = getattr(lp, f"{kind}_mask") & valid[:, None]  # [B, T]
    ent = getattr(lp, f"{kind}_entropy")
    cur = lp.cot if kind == "cot" else lp.image
    return ModalityTokens(cur, old.to(cur.device), mask, None if ref is None else ref.to(cur.device), ent)


def _local_entropy(t: ModalityTokens) -> float:
    """Token-mean entropy over ``t``'s mask in this micro-batch alone (NaN without tokens)."""
    n = float(t.mask.sum())
    if t.entropy is None or n == 0:
        return math.nan
    return float(torch.where(t.mask, t.entropy.detach(), 0.0).sum()) / n


def _chunk_loss(
    run: Any,
    cfg: PolicyOptimConfig,
    chunk: list[Group],
    ref_model: Any,
    coefs: dict[str, float],
    dens: dict[str, float],
) -> tuple[torch.Tensor, dict[str, float], dict[str, float]]:
    """The GRPO loss of one micro-batch of groups (divided by the global denominators), its
    metrics, and its own token-mean entropy per modality."""
    acc, ids = run.accelerator, run.loaded.ids
    samples = [s for g in chunk for s in g.samples]
    adv = torch.tensor([a for g in chunk for a in g.advantages], device=acc.device)  # [B]
    valid = torch.tensor([v for g in chunk for v in g.valid], device=acc.device)  # [B]
    mode = cfg.logprob_mode()
    lp = run_policy(run.model, samples, ids.bos, ids.pad, mode=mode, with_entropy=True,
                    detach_uncond=cfg.detach_uncond)  # fmt: skip
    cot_old, img_old = stored_logprobs(samples)  # [B, Tc], [B, N]
    if needs_behaviour(cfg, chunk):
        if any(g.behaviour is None for g in chunk):  # first pass, no optimizer step yet
            _keep_behaviour(chunk, lp.image)
        img_old = _padded([r for g in chunk for r in g.behaviour or []], img_old.shape[1])  # [B, N]
    cot_ref = img_ref = None
    if ref_model is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            r = policy_logprobs(ref_model, samples, ids.bos, ids.pad, mode=mode)
        cot_ref, img_ref = r.cot, r.image
    toks = {"text": _tokens(lp, cot_old, cot_ref, "cot", valid),
            "image": _tokens(lp, img_old, img_ref, "image", valid)}  # fmt: skip
    out = grpo_loss(toks, adv, cfg.loss_settings(), coefs, dens)
    # Keep the graph connected even when no token of this micro-batch counts (a dropped group
    # run only so DDP sees a forward): zero gradients instead of an error.
    anchor = 0.0 * (lp.cot.clamp(min=-1e4).sum() + lp.image.clamp(min=-1e4).sum())
    return out.loss + anchor, out.metrics, {k: _local_entropy(t) for k, t in toks.items()}


def denominators(acc: Any, cfg: PolicyOptimConfig, groups: list[Group]) -> dict[str, float]:
    """What the loss means of ``groups`` divide by, summed over every process: per modality
    (``text``, ``image``) and for the joint mean (``joint``)."""
    samples_all = [s for g in groups for s in g.samples]
    valid_all = torch.tensor([v for g in groups for v in g.valid], dtype=torch.bool)
    cot_len = torch.tensor([len(s.cot_token_ids) for s in samples_all])  # [B]
    img_len = torch.tensor([len(s.image_token_ids) for s in samples_all])  # [B]
    t_cot, t_img = max(cot_len.tolist(), default=0), max(img_len.tolist(), default=0)
    cot_mask = (torch.arange(t_cot)[None] < cot_len[:, None]) & valid_all[:, None]  # [B, Tc]
    img_mask = (torch.arange(t_img)[None] < img_len[:, None]) & valid_all[:, None]  # [B, N]
    norm = cfg.loss_settings().normalisation
    counts = torch.tensor([normaliser_count(cot_mask, norm), normaliser_count(img_mask, norm),
                           joint_count([cot_mask, img_mask], norm)], device=acc.device)  # fmt: skip
    counts = acc.reduce(counts, reduction="sum")
    return {"text": float(counts[0]), "image": float(counts[1]), "joint": float(counts[2])}


def update(
    run: Any,
    cfg: PolicyOptimConfig,
    groups: list[Group],
    ref_model: Any,
    coefs: dict[str, float],
    controllers: dict[str, AdaptiveEntropyCoefficient] | None = None,
) -> dict[str, float]:
    """Accumulate the gradients of the GRPO loss over micro-batches of ``groups`` (the caller
    steps the optimizer). Returns this process's metrics summed over micro-batches (means
    already divided by the global denominators, so summing over processes gives global means).

    With ``controllers`` (``entropy_update: micro_batch``) each micro-batch's entropy bonus uses
    the controllers' current coefficients, and then moves them with that micro-batch's own
    token-mean entropies (ReasonGen-R1's ``dp_actor.py``); ``coefs`` is then unused.
    """
    acc = run.accelerator
    dens = denominators(acc, cfg, groups)
    world = acc.num_processes
    sums: dict[str, float] = {}
    chunks = micro_batches(cfg, groups)
    for c, chunk in enumerate(chunks):
        if controllers:
            coefs = {k: ctl.coef for k, ctl in controllers.items()}
        ctx = acc.no_sync(run.model) if c < len(chunks) - 1 else contextlib.nullcontext()
        with ctx:
            with acc.autocast():
                loss, metrics, local = _chunk_loss(run, cfg, chunk, ref_model, coefs, dens)
            acc.backward(loss * world)  # DDP averages over processes; we want the sum
        for name, ctl in (controllers or {}).items():
            ctl.update(local[name])  # NaN (no token of the modality here): no move
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v
    return sums


def mini_batches(groups: list[Group], count: int) -> list[list[Group]]:
    """``groups`` cut into ``count`` contiguous parts of near-equal size (as verl's
    ``DataProto.chunk``). A part left empty (fewer groups than parts on this process) holds a
    copy of the first group that counts for nothing, so every process runs a forward."""
    parts = [groups[i * len(groups) // count : (i + 1) * len(groups) // count] for i in range(count)]
    blank = blank_group(groups[0])
    return [p or [blank] for p in parts]


def keep_zero_spread(group: Group) -> Group:
    """``group`` taking part in the loss even without spread, as T2I-R1 does
    (``grpo_trainer.py`` keeps every group: ``(r − mean)/(std + eps)`` is 0 there, and their tokens
    stay in the token mean and the KL term): every sample with a reward is valid, advantage 0.
    Groups that already take part, or have no reward at all, come back as they are."""
    present = [r is not None for r in group.rewards]
    if not group.dropped or not any(present):
        return group
    return replace(group, valid=present, advantages=[0.0] * len(present), dropped=False)


def merge_metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    """One pass's metrics from its mini-batches': token counts add up, means are averaged."""
    keys = sorted({k for p in parts for k in p})
    return {k: sum(p.get(k, 0.0) for p in parts) / (1 if k.endswith("tokens") else len(parts))
            for k in keys}  # fmt: skip


def controller_states(acc: Any, controllers: dict[str, AdaptiveEntropyCoefficient], per_rank: bool) -> dict:
    """The controllers' states for a checkpoint: one set, or (updated per micro-batch on several
    processes, where each process moves its own) every process's under ``by_rank``."""
    local = {k: c.state_dict() for k, c in controllers.items()}
    if not per_rank or acc.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return {"by_rank": gather_object([local])}


def rank_state(saved: dict, rank: int) -> dict:
    """This process's controller states from a checkpoint's (rank 0's when it had fewer)."""
    if "by_rank" not in saved:
        return saved
    ranks = saved["by_rank"]
    return ranks[rank] if rank < len(ranks) else ranks[0]
