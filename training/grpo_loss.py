"""GRPO loss maths: group advantages, PPO-clipped surrogate, k3 KL, per-modality entropy.

Everything here is a pure function of tensors (or a small controller object with explicit
state), so it can be tested without a model. Shapes: ``G`` groups of ``n`` samples, ``B = G·n``
samples in a batch, ``T`` token positions of one modality (text CoT or image), ``V`` vocabulary.

The loss follows the design's "Training" section:

- advantages ``(r − mean_g) / (std_g + eps)`` per group; rewards that are ``None``/NaN/±inf are
  left out of the group statistics and their samples get no gradient; groups whose valid rewards do
  not spread (or that have fewer than two valid rewards) are flagged so the caller can drop and
  refill them;
- PPO's clipped surrogate against the behaviour log-probs stored in the samples, with separate
  lower and upper clip ranges (``1 − clip_low``, ``1 + clip_high``);
- the k3 estimator ``exp(ref − logp) − (ref − logp) − 1`` of KL(π‖π_ref);
- ``aggregation="joint"``: one mean over the CoT and image tokens together, as both upstreams do
  (T2I-R1 ``open_r1/trainer/grpo_trainer.py`` concatenates the two modalities' log-probs and
  takes ``(loss · mask).sum() / mask.sum()``; ReasonGen-R1 ``verl/trainer/ppo/core_algos.py``
  ``compute_policy_loss`` takes one ``masked_mean`` over the whole response);
  ``aggregation="per_modality"``: text and image tokens are averaged separately and the two means
  summed, which weighs a CoT token about ``576 / L_cot`` times more than an image token. Either
  way a mean is a token mean over the batch or a mean of per-sample means, and ``text_weight`` /
  ``image_weight`` scale everything a modality contributes;
- each modality has its own entropy bonus ``−c_m · mean_m(H)`` (a per-modality mean in both
  aggregations, as ReasonGen-R1's ``dp_actor.py``), fixed or driven by
  :class:`AdaptiveEntropyCoefficient` towards a target entropy (ReasonGen-R1 uses 2.0 nats for
  text and 7.0 for image tokens).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from reasongen.group_zscore import GROUP_EPS, group_zscores
from reasongen.sampling import probs_from_logprobs

Normalisation = Literal["token", "sample"]
Aggregation = Literal["joint", "per_modality"]
MODALITIES = ("text", "image")
AGGREGATIONS = ("joint", "per_modality")


# --------------------------------------------------------------------------- advantages


@dataclass(frozen=True)
class GroupAdvantages:
    """Per-sample advantages and the bookkeeping the trainer needs.

    ``advantages`` is 0 wherever ``valid`` is False; ``keep_group[g]`` is False for groups with
    zero spread (all valid rewards equal within ``tol``) or fewer than two valid rewards.
    """

    advantages: torch.Tensor  # [G, n] float
    valid: torch.Tensor  # [G, n] bool: reward present and its group kept
    keep_group: torch.Tensor  # [G] bool
    mean: torch.Tensor  # [G] NaN where a group has no valid reward
    std: torch.Tensor  # [G] NaN where a group has fewer than two valid rewards


def rewards_tensor(rewards: Sequence[float | None], group_size: int) -> torch.Tensor:
    """Turn a flat list of rewards (``None`` for "not applicable") into a ``[G, n]`` tensor.

    Raises ``ValueError`` if the list does not split into whole groups of ``group_size``.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if len(rewards) % group_size != 0:
        raise ValueError(
            f"{len(rewards)} rewards do not split into groups of {group_size}; "
            "pass one reward per sample, groups contiguous"
        )
    vals = [float("nan") if r is None else float(r) for r in rewards]
    return torch.tensor(vals, dtype=torch.float64).view(-1, group_size)  # [G, n]


def group_advantages(rewards: torch.Tensor, eps: float = GROUP_EPS, tol: float = 1e-8) -> GroupAdvantages:
    """GRPO advantages ``(r − mean_g) / (std_g + eps)`` for ``rewards`` of shape ``[G, n]``.

    The z-scores of ``reasongen.group_zscore.group_zscores``: sample std (``n − 1``
    denominator, as ``torch.std``), ``eps`` 1e-4 by default. NaN and ±inf rewards are missing:
    excluded from the mean and standard deviation (one inf would make every advantage of its
    group NaN), with advantage 0 and ``valid=False``.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (groups, group_size), got {tuple(rewards.shape)}")
    r = rewards.to(torch.float64)  # [G, n]
    present = torch.isfinite(r)  # [G, n]
    r = torch.where(present, r, torch.full_like(r, math.nan))  # [G, n]: ±inf → missing
    stats = group_zscores(r, eps)
    count, mean, std = stats.count, stats.mean, stats.std  # [G] each
    spread = torch.where(present, r, torch.full_like(r, -math.inf)).amax(dim=1) - torch.where(
        present, r, torch.full_like(r, math.inf)
    ).amin(dim=1)  # [G]
    keep = (count >= 2) & (spread > tol)  # [G]
    valid = present & keep[:, None]  # [G, n]
    adv = torch.where(valid, stats.z, torch.zeros_like(r))  # [G, n]
    nan = torch.full_like(mean, math.nan)
    return GroupAdvantages(
        advantages=adv.to(torch.float32),
        valid=valid,
        keep_group=keep,
        mean=torch.where(count >= 1, mean, nan).to(torch.float32),
        std=torch.where(count >= 2, std, nan).to(torch.float32),
    )


# --------------------------------------------------------------------------- token terms


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss per token (to be minimised).

    ``logprobs`` [B, T] under the current policy (with grad), ``old_logprobs`` [B, T] under the
    behaviour policy, ``advantages`` [B] or [B, T]. Returns ``(loss, ratio, clipped)``, all
    [B, T]: ``loss = −min(ρ·A, clip(ρ, 1 − clip_low, 1 + clip_high)·A)`` with
    ``ρ = exp(logp − old)``; ``clipped`` marks tokens where the clipped branch was taken
    (its gradient is zero there).
    """
    if clip_low < 0 or clip_high < 0 or clip_low >= 1:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    adv = advantages if advantages.dim() == logprobs.dim() else advantages[:, None]  # (B, T|1)
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-20.0, 20.0)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    unclipped = ratio * adv  # [B, T]
    clipped_val = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv  # [B, T]
    loss = -torch.minimum(unclipped, clipped_val)  # [B, T]
    clipped = (clipped_val < unclipped).detach()  # [B, T]
    return loss, ratio.detach(), clipped


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, max_value: float = 0.0) -> torch.Tensor:
    """The k3 estimator of KL(π ‖ π_ref) per token: ``exp(ref − logp) − (ref − logp) − 1`` ≥ 0.

    Both [B, T]; gradients flow through ``logprobs`` only. ``ref − logp`` is clamped to ±20 (so
    ``exp`` stays finite), and with ``max_value > 0`` each token's value to at most
    ``max_value``, with no gradient beyond it — verl's ``low_var_kl`` does both, with 10. The
    estimator's tail is heavy: a sampled token the policy has all but ruled out (logp 20 nats
    under the reference's) is worth exp(20) ≈ 5e8 unclamped, enough to make one token the whole
    step's gradient (seen once in a long learned-reward run: image KL 2.4e5 at one step).
    """
    d = (ref_logprobs.detach() - logprobs).clamp(-20.0, 20.0)  # [B, T]
    k3 = torch.exp(d) - d - 1.0  # [B, T]
    return k3.clamp(max=max_value) if max_value > 0 else k3


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the categorical distribution over the last axis: [..., V] → (...).

    Logits of ``-inf`` (tokens removed by top-k/top-p) contribute zero.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # [..., V]
    p = probs_from_logprobs(logp)  # [..., V]; p < 1.18e-38 → 0 (each term below 1e-36)
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # [..., V]
    return -plogp.sum(dim=-1)  # (...)


def masked_mean(
    values: torch.Tensor,
    mask: torch.Tensor,
    normalisation: Normalisation = "token",
    denom: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``values`` [B, T] over ``mask`` [B, T] as a scalar; 0 if the mask is empty.

    ``"token"``: sum over all masked tokens of the batch / their number (long sequences weigh
    more). ``"sample"``: each sample's token mean, then the mean over samples with any token.
    ``denom`` replaces the local count (tokens, or samples with tokens) by a global one, so that
    sums over micro-batches and processes give the mean over the whole batch.
    """
    m = mask.to(values.dtype)  # [B, T]
    v = torch.where(mask, values, torch.zeros_like(values))  # [B, T]: NaN-safe outside the mask
    if normalisation == "token":
        count = m.sum() if denom is None else denom
        return (v * m).sum() / torch.as_tensor(count, dtype=values.dtype).clamp(min=1.0)
    if normalisation == "sample":
        per = (v * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # [B]
        has = (m.sum(dim=1) > 0).to(values.dtype)  # [B]
        count = has.sum() if denom is None else denom
        return (per * has).sum() / torch.as_tensor(count, dtype=values.dtype).clamp(min=1.0)
    raise ValueError(f"normalisation must be 'token' or 'sample', got {normalisation!r}")


def normaliser_count(mask: torch.Tensor, normalisation: Normalisation) -> float:
    """What :func:`masked_mean` divides by for ``mask`` [B, T]: tokens, or samples with tokens."""
    if normalisation == "token":
        return float(mask.sum())
    return float((mask.sum(dim=1) > 0).sum())


# --------------------------------------------------------------------------- entropy control


class AdaptiveEntropyCoefficient:
    """Drives one modality's entropy bonus towards a target entropy (ReasonGen-R1's rule).

    The bonus coefficient is ``c = clamp(−sinh(ψ), c_min, c_max)`` and the policy loss includes
    ``−c · H``. Each :meth:`update` gives ψ one Adam step (default betas, eps 1e-8) on
    ``−sinh(ψ) · (H − target)`` and keeps ψ inside the coefficient box (so a saturated controller
    can still turn back): when the measured entropy ``H`` is below the target the bonus grows
    (pushing entropy up); above the target it shrinks and turns negative (pushing entropy down).
    This is ReasonGen-R1's ``verl/utils/adaptive_entropy_coeff.py`` (``α = sinh ψ``, ``c = −α``,
    ψ reset to ``asinh`` of the clamped α after each step); its trainer calls it once per
    micro-batch with that micro-batch's token-mean entropy (``verl/workers/actor/dp_actor.py``),
    lr 5e-5 and bounds ±5e-3 (``verl/trainer/config/image_generation_trainer.yaml``). How often
    it is called is the trainer's choice (``entropy_update`` in ``training/grpo.py``).
    """

    def __init__(
        self,
        target: float,
        initial: float = 0.0,
        lr: float = 1e-3,
        min_coef: float = -1e-3,
        max_coef: float = 1e-3,
    ) -> None:
        if min_coef > max_coef:
            raise ValueError(f"min_coef {min_coef} must not exceed max_coef {max_coef}")
        if lr <= 0:
            raise ValueError(f"entropy controller lr must be positive, got {lr}")
        self.target = float(target)
        self.min_coef = float(min_coef)
        self.max_coef = float(max_coef)
        self.psi = torch.nn.Parameter(torch.asinh(torch.tensor(-float(initial), dtype=torch.float64)))
        self.optimizer = torch.optim.Adam([self.psi], lr=lr)

    @property
    def coef(self) -> float:
        """The current entropy bonus coefficient ``c`` (loss term ``−c·H``)."""
        return float(torch.clamp(-torch.sinh(self.psi.detach()), self.min_coef, self.max_coef))

    def update(self, entropy: float) -> float:
        """One controller step given the measured mean entropy; returns the new coefficient."""
        if not math.isfinite(entropy):
            return self.coef
        alpha = torch.sinh(self.psi)  # α = −c
        loss = -alpha * (float(entropy) - self.target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # keep ψ inside the box so the controller can always turn back
            lo = math.asinh(-self.max_coef)
            hi = math.asinh(-self.min_coef)
            self.psi.clamp_(lo, hi)
        return self.coef

    def state_dict(self) -> dict[str, Any]:
        return {
            "psi": self.psi.detach().clone(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.psi.copy_(state["psi"])
        self.optimizer.load_state_dict(state["optimizer"])


# --------------------------------------------------------------------------- the loss


@dataclass
class ModalityTokens:
    """One modality's per-token terms for a batch of ``B`` samples padded to ``T`` positions."""

    logprobs: torch.Tensor  # [B, T] current policy, differentiable
    old_logprobs: torch.Tensor  # [B, T] behaviour policy (stored in the samples)
    mask: torch.Tensor  # [B, T] bool: real tokens that take part in the loss
    ref_logprobs: torch.Tensor | None = None  # [B, T] frozen reference, for the KL term
    entropy: torch.Tensor | None = None  # [B, T] entropy of the current policy, differentiable


@dataclass
class LossSettings:
    """Weights and ranges of the GRPO loss (the trainer's config copies these)."""

    clip_low: float = field(default=0.2, metadata={"help": "PPO lower clip: ratio >= 1 - clip_low"})
    clip_high: float = field(default=0.2, metadata={"help": "PPO upper clip: ratio <= 1 + clip_high"})
    kl_coef: float = field(default=0.0, metadata={"help": "weight of the k3 KL to the reference"})
    text_weight: float = field(default=1.0, metadata={"help": "loss weight of CoT text tokens"})
    image_weight: float = field(default=1.0, metadata={"help": "loss weight of image tokens"})
    normalisation: Normalisation = field(
        default="token", metadata={"help": "'token' (token mean over batch) or 'sample'"}
    )
    aggregation: Aggregation = field(
        default="per_modality",
        metadata={"help": "'joint' (one mean over CoT and image tokens together, as T2I-R1 and "
                  "ReasonGen-R1) or 'per_modality' (each modality's mean apart, summed)"},
    )  # fmt: skip
    kl_clamp: float = field(
        default=10.0,
        metadata={"help": "largest per-token k3 value (no gradient above it), as verl's low_var_kl; "
                  "0 = unclamped (TRL's k3, T2I-R1's)"},
    )  # fmt: skip
    text_kl_scale: float = field(
        default=1.0,
        metadata={"help": "the CoT tokens' KL weight is kl_coef × this (the image tokens' is kl_coef)"},
    )

    def __post_init__(self) -> None:
        if self.normalisation not in ("token", "sample"):
            raise ValueError("normalisation must be 'token' or 'sample'")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be 'joint' or 'per_modality', got {self.aggregation!r}")
        if min(self.kl_coef, self.text_weight, self.image_weight, self.kl_clamp, self.text_kl_scale) < 0:
            raise ValueError(
                "kl_coef, kl_clamp, text_kl_scale, text_weight and image_weight must be non-negative"
            )


@dataclass
class LossOutput:
    loss: torch.Tensor  # () scalar to minimise
    metrics: dict[str, float]
    entropy: dict[str, float]  # modality -> mean entropy (NaN if not computed / no tokens)


def grpo_loss(
    tokens: dict[str, ModalityTokens],
    advantages: torch.Tensor,
    settings: LossSettings,
    entropy_coefs: dict[str, float] | None = None,
    denominators: dict[str, float] | None = None,
) -> LossOutput:
    """The GRPO loss for ``tokens`` keyed by modality (``"text"``, ``"image"``).

    ``advantages`` [B] per sample (0 for samples that must not contribute). Per token the policy
    term is ``surrogate + kl_coef·k3``. ``settings.aggregation``:

    - ``"per_modality"``: ``Σ_m w_m · [mean_m(policy term) − c_m·mean_m(H)]``;
    - ``"joint"``: ``mean over both modalities' tokens of (w_m · policy term) − Σ_m w_m·c_m·mean_m(H)``.

    Means use ``settings.normalisation`` over the modality's mask (the joint mean over the two
    masks side by side); modalities with no tokens contribute nothing. ``denominators[m]`` (and
    ``denominators["joint"]`` for the joint mean; see :func:`masked_mean` and
    :func:`joint_count`) make the means global across micro-batches and processes. The metrics
    ``{m}/pg_loss`` and ``{m}/kl`` are each modality's own means in either aggregation.
    """
    denominators = denominators or {}
    entropy_coefs = entropy_coefs or {}
    weights = {"text": settings.text_weight, "image": settings.image_weight}
    total = advantages.new_zeros(())
    metrics: dict[str, float] = {}
    entropies: dict[str, float] = {}
    joint_vals: list[torch.Tensor] = []  # [B, T_m] weighted policy terms, one per modality
    joint_masks: list[torch.Tensor] = []  # [B, T_m] bool
    for name, t in tokens.items():
        if name not in weights:
            raise ValueError(f"unknown modality {name!r}; use one of {MODALITIES}")
        mask = t.mask.bool()  # [B, T]
        if not bool(mask.any()):
            entropies[name] = math.nan
            continue
        surr, ratio, clipped = clipped_surrogate(
            t.logprobs, t.old_logprobs, advantages, settings.clip_low, settings.clip_high
        )  # [B, T] each
        per_token = surr  # [B, T]
        den = denominators.get(name)
        term = masked_mean(surr, mask, settings.normalisation, den)
        metrics[f"{name}/pg_loss"] = float(term.detach())
        metrics[f"{name}/clip_frac"] = float(masked_mean(clipped.float(), mask, "token"))
        metrics[f"{name}/clipped_tokens"] = float((clipped & mask).sum())
        metrics[f"{name}/tokens"] = float(mask.sum())
        metrics[f"{name}/ratio_mean"] = float(masked_mean(ratio, mask, "token"))
        beta = settings.kl_coef * (settings.text_kl_scale if name == "text" else 1.0)
        if settings.kl_coef > 0 and t.ref_logprobs is not None:
            k3 = k3_kl(t.logprobs, t.ref_logprobs, settings.kl_clamp)  # [B, T]
            kl = masked_mean(k3, mask, settings.normalisation, den)
            term = term + beta * kl
            per_token = per_token + beta * k3  # [B, T]
            metrics[f"{name}/kl"] = float(kl.detach())
            if settings.kl_clamp > 0:
                at_cap = (k3.detach() >= settings.kl_clamp) & mask  # [B, T]
                metrics[f"{name}/kl_clamped_tokens"] = float(at_cap.sum())
        bonus = advantages.new_zeros(())
        if t.entropy is not None:
            ent = masked_mean(t.entropy, mask, settings.normalisation, den)
            entropies[name] = float(ent.detach())
            metrics[f"{name}/entropy"] = entropies[name]
            coef = float(entropy_coefs.get(name, 0.0))
            if coef != 0.0:
                bonus = coef * ent
            metrics[f"{name}/entropy_coef"] = coef
        else:
            entropies[name] = math.nan
        if settings.aggregation == "per_modality":
            total = total + weights[name] * (term - bonus)
        else:
            total = total - weights[name] * bonus
            joint_vals.append(weights[name] * per_token)
            joint_masks.append(mask)
    if joint_vals:
        values = torch.cat(joint_vals, dim=1)  # [B, Tc + N]
        mask = torch.cat(joint_masks, dim=1)  # [B, Tc + N]
        total = total + masked_mean(values, mask, settings.normalisation, denominators.get("joint"))
    metrics["loss"] = float(total.detach())
    return LossOutput(loss=total, metrics=metrics, entropy=entropies)


def joint_count(masks: Sequence[torch.Tensor], normalisation: Normalisation) -> float:
    """What the joint mean of :func:`grpo_loss` divides by for the modalities' masks [B, T_m]:
    all their tokens, or the samples with a token in any of them."""
    return normaliser_count(torch.cat([m.bool() for m in masks], dim=1), normalisation)
