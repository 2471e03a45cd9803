"""GRPO loss maths: advantages, clipped ratio, k3 KL, entropy control, sign of an update."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from training.grpo_loss import (
    AdaptiveEntropyCoefficient,
    LossSettings,
    ModalityTokens,
    clipped_surrogate,
    entropy_from_logits,
    group_advantages,
    grpo_loss,
    joint_count,
    k3_kl,
    masked_mean,
    normaliser_count,
    rewards_tensor,
)


def test_group_advantages_values_match_formula() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 1.0, 0.0, 1.0]])
    out = group_advantages(r, eps=1e-4)
    for g in range(2):
        mean, std = r[g].mean(), r[g].std()
        expected = (r[g] - mean) / (std + 1e-4)
        assert torch.allclose(out.advantages[g], expected, atol=1e-6)
        assert out.mean[g].item() == pytest.approx(mean.item())
        assert out.std[g].item() == pytest.approx(std.item(), rel=1e-6)
    assert out.keep_group.tolist() == [True, True]
    assert bool(out.valid.all())
    # Advantages of a group sum to zero.
    assert out.advantages.sum(dim=1).abs().max().item() < 1e-5


def test_group_advantages_nan_rewards_are_excluded() -> None:
    r = rewards_tensor([1.0, None, 3.0, 5.0], group_size=4)
    out = group_advantages(r, eps=0.0)
    valid = torch.tensor([1.0, 3.0, 5.0])
    expected = (valid - valid.mean()) / valid.std()
    adv = out.advantages[0]
    assert adv[1].item() == 0.0
    assert not bool(out.valid[0, 1])
    assert torch.allclose(adv[[0, 2, 3]], expected, atol=1e-6)
    assert out.mean[0].item() == pytest.approx(3.0)
    assert not torch.isnan(out.advantages).any()


def test_zero_spread_and_singleton_groups_are_flagged() -> None:
    r = rewards_tensor([0.5, 0.5, 0.5, None, 2.0, None, 0.0, 1.0, None], group_size=3)
    out = group_advantages(r)
    # group 0: all equal; group 1: a single valid reward; group 2: spread.
    assert out.keep_group.tolist() == [False, False, True]
    assert out.advantages[:2].abs().sum().item() == 0.0
    assert not bool(out.valid[:2].any())
    assert out.valid[2].tolist() == [True, True, False]
    assert math.isnan(out.std[1].item())
    # All-None group: no mean.
    empty = group_advantages(rewards_tensor([None, None], 2))
    assert math.isnan(empty.mean[0].item()) and not bool(empty.keep_group[0])


def test_rewards_tensor_rejects_ragged_groups() -> None:
    with pytest.raises(ValueError, match="groups of 4"):
        rewards_tensor([1.0, 2.0, 3.0], 4)


def test_clipped_surrogate_clips_where_expected() -> None:
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[0.5, 0.9, 1.1, 1.5]])).requires_grad_(True)
    # Positive advantage: the ratio is capped above at 1.2, not below.
    loss, ratio, clipped = clipped_surrogate(new, old, torch.tensor([2.0]), 0.2, 0.2)
    assert torch.allclose(ratio, torch.tensor([[0.5, 0.9, 1.1, 1.5]]), atol=1e-6)
    assert torch.allclose(loss, -2.0 * torch.tensor([[0.5, 0.9, 1.1, 1.2]]), atol=1e-6)
    assert clipped.tolist() == [[False, False, False, True]]
    loss.sum().backward()
    # No gradient through the clipped token, gradient −A·ρ elsewhere.
    assert new.grad[0, 3].item() == 0.0
    assert new.grad[0, 0].item() == pytest.approx(-2.0 * 0.5, rel=1e-5)
    # Negative advantage: capped below at 1 − clip_low (asymmetric ranges respected).
    loss, _, clipped = clipped_surrogate(new.detach(), old, torch.tensor([-1.0]), 0.3, 0.1)
    assert torch.allclose(loss, torch.tensor([[0.7, 0.9, 1.1, 1.5]]), atol=1e-6)
    assert clipped.tolist() == [[True, False, False, False]]


def test_k3_kl_clamp_caps_values_and_cuts_their_gradient() -> None:
    """verl's low_var_kl: ``ref − logp`` within ±20, then each token's k3 at most the clamp, and no
    gradient from a token at the cap. Unclamped (0), a token 20 nats under the reference is worth
    exp(20) − 21."""
    logp = torch.tensor([-1.0, -2.0, -25.0], requires_grad=True)
    ref = torch.tensor([-1.0, -0.5, -3.0])
    free = k3_kl(logp, ref)
    assert free[2].item() == pytest.approx(math.exp(20.0) - 21.0, rel=1e-5)  # d = 22 clamped to 20
    capped = k3_kl(logp, ref, max_value=10.0)
    d = 1.5
    assert capped.tolist() == pytest.approx([0.0, math.exp(d) - d - 1.0, 10.0], abs=1e-6)
    capped.sum().backward()
    assert logp.grad[2].item() == 0.0  # at the cap: no gradient
    assert logp.grad[1].item() == pytest.approx(1.0 - math.exp(d), rel=1e-5)  # d/dlogp (e^d − d − 1)
    with pytest.raises(ValueError, match="non-negative"):
        LossSettings(kl_clamp=-1.0)


def test_loss_counts_tokens_at_the_kl_clamp() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    logp = torch.tensor([[-1.0, -2.0, -25.0]])
    toks = {"image": ModalityTokens(logp, logp.clone(), mask, torch.tensor([[-1.0, -0.5, -3.0]]))}
    adv = torch.zeros(1)
    out = grpo_loss(toks, adv, LossSettings(kl_coef=0.1, kl_clamp=10.0))
    assert out.metrics["image/kl_clamped_tokens"] == 1.0
    assert out.metrics["image/kl"] == pytest.approx((0.0 + (math.exp(1.5) - 2.5) + 10.0) / 3, rel=1e-5)
    unclamped = grpo_loss(toks, adv, LossSettings(kl_coef=0.1, kl_clamp=0.0))
    assert "image/kl_clamped_tokens" not in unclamped.metrics and unclamped.metrics["image/kl"] > 1e7


def test_k3_kl_values() -> None:
    logp = torch.log(torch.tensor([0.5, 0.25, 0.1]))
    ref = torch.log(torch.tensor([0.5, 0.5, 0.4]))
    kl = k3_kl(logp, ref)
    ratio = torch.tensor([1.0, 2.0, 4.0])  # π_ref / π
    assert torch.allclose(kl, ratio - torch.log(ratio) - 1.0, atol=1e-6)
    assert kl[0].item() == pytest.approx(0.0, abs=1e-7)
    assert bool((kl >= 0).all())
    # Unbiased: E_π[k3] equals KL(π‖π_ref) exactly for a full categorical sum.
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    expected = (p * (p / q).log()).sum()
    assert (p * k3_kl(p.log(), q.log())).sum().item() == pytest.approx(expected.item(), rel=1e-5)


def test_entropy_and_masked_means() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf]])
    h = entropy_from_logits(logits)
    assert h.tolist() == pytest.approx([math.log(4), math.log(2)])
    v = torch.tensor([[1.0, 3.0, 99.0], [5.0, 99.0, 99.0]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert masked_mean(v, m, "token").item() == pytest.approx(3.0)  # (1+3+5)/3
    assert masked_mean(v, m, "sample").item() == pytest.approx(3.5)  # (2+5)/2
    v_nan = torch.where(m, v, torch.full_like(v, math.nan))
    assert masked_mean(v_nan, m, "token").item() == pytest.approx(3.0)
    assert masked_mean(v, torch.zeros_like(m), "token").item() == 0.0


def test_entropy_controller_moves_coefficient_the_right_way() -> None:
    low = AdaptiveEntropyCoefficient(target=2.0, lr=1e-4, min_coef=-1e-3, max_coef=1e-3)
    coefs = [low.update(entropy=0.5) for _ in range(5)]
    assert coefs[0] > 0 and all(b > a for a, b in itertools.pairwise(coefs))  # H too low: bonus up
    high = AdaptiveEntropyCoefficient(target=7.0, lr=1e-4)
    coefs = [high.update(entropy=9.0) for _ in range(5)]
    assert coefs[0] < 0 and all(b < a for a, b in itertools.pairwise(coefs))  # too high: bonus down
    # Saturates at the bound and still turns back when the entropy crosses the target.
    for _ in range(200):
        high.update(entropy=9.0)
    assert high.coef == pytest.approx(-1e-3)
    before = high.coef
    for _ in range(10):  # Adam's momentum needs a few steps to turn
        high.update(entropy=1.0)
    assert high.coef > before
    # State round-trips.
    clone = AdaptiveEntropyCoefficient(target=7.0, lr=1e-4)
    clone.load_state_dict(high.state_dict())
    assert clone.update(3.0) == pytest.approx(high.update(3.0))


def _adam_by_hand(entropies, target, lr, bound):
    """ReasonGen-R1's controller written out: α = sinh ψ, loss −α·(H − target), one Adam step
    (β1 0.9, β2 0.999, eps 1e-8) per entropy, ψ reset to asinh of α clamped to ±bound; returns
    the coefficient c = −α after each step."""
    psi, m, v, out = 0.0, 0.0, 0.0, []
    for t, h in enumerate(entropies, start=1):
        g = -math.cosh(psi) * (h - target)  # d/dψ of −sinh(ψ)·(H − target)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        psi -= lr * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        psi = math.asinh(min(max(math.sinh(psi), -bound), bound))
        out.append(-math.sinh(psi))
    return out


def test_entropy_controller_follows_upstream_on_a_synthetic_entropy_sequence() -> None:
    # Text target 2.0 with ReasonGen-R1's lr 5e-5 and bounds ±5e-3
    # (verl/trainer/config/image_generation_trainer.yaml), one update per micro-batch.
    seq = [1.5, 1.0, 1.2, 2.5, 3.0, 2.0, 0.5, 1.9]
    ctl = AdaptiveEntropyCoefficient(target=2.0, lr=5e-5, min_coef=-5e-3, max_coef=5e-3)
    got = [ctl.update(h) for h in seq]
    assert got == pytest.approx(_adam_by_hand(seq, 2.0, 5e-5, 5e-3), rel=1e-9, abs=1e-15)
    # First Adam step moves ψ by lr·|g|/(|g| + eps): the bonus is 5e-5 after one micro-batch whose
    # entropy is below the target; the second step (g = cosh ψ1 ≈ 1) by lr·0.76316/0.79069.
    assert got[0] == pytest.approx(5e-5, rel=1e-6)
    assert got[1] == pytest.approx(5e-5 + 5e-5 * 0.965181, rel=1e-5)
    # Far from saturating: 90 more low-entropy micro-batches stay inside ±5e-3, 200 more reach it.
    for _ in range(90):
        ctl.update(1.0)
    assert 0 < ctl.coef < 5e-3
    for _ in range(200):
        ctl.update(1.0)
    assert ctl.coef == pytest.approx(5e-3)
    # The old per-step setting (lr 1e-3 against ±1e-3) saturates after one update.
    old = AdaptiveEntropyCoefficient(target=2.0, lr=1e-3, min_coef=-1e-3, max_coef=1e-3)
    assert old.update(1.0) == pytest.approx(1e-3)


def test_joint_aggregation_is_one_token_mean_over_both_modalities() -> None:
    text_mask = torch.tensor([[True, True], [True, False]])  # 2 and 1 CoT tokens
    image_mask = torch.ones(2, 3, dtype=torch.bool)  # 3 image tokens each
    adv = torch.tensor([1.0, 3.0])

    def run(aggregation, norm="token", tw=1.0, iw=1.0, coefs=None):
        lt = torch.zeros(2, 2, requires_grad=True)
        li = torch.zeros(2, 3, requires_grad=True)
        ent = torch.full((2, 3), 2.0)
        toks = {"text": ModalityTokens(lt, torch.zeros(2, 2), text_mask),
                "image": ModalityTokens(li, torch.zeros(2, 3), image_mask, entropy=ent)}  # fmt: skip
        s = LossSettings(text_weight=tw, image_weight=iw, normalisation=norm, aggregation=aggregation)
        out = grpo_loss(toks, adv, s, coefs)
        out.loss.backward()
        return out, lt.grad, li.grad

    # Ratio 1: each token's surrogate is −A. Per modality: −5/3 (text) − 12/6 (image).
    per, per_gt, _ = run("per_modality")
    assert per.loss.item() == pytest.approx(-5 / 3 - 2)
    # Joint: (−1·(2 + 3) − 3·(1 + 3)) / 9 tokens.
    joint, joint_gt, joint_gi = run("joint")
    assert joint.loss.item() == pytest.approx(-17 / 9)
    # Every token weighs 1/9 jointly; per modality a CoT token weighs 1/3 against an image's 1/6.
    assert joint_gt[0, 0].item() == pytest.approx(-1 / 9) and joint_gi[0, 0].item() == pytest.approx(-1 / 9)
    assert per_gt[0, 0].item() == pytest.approx(-1 / 3)
    assert joint_gt[1, 1].item() == 0.0  # padding
    # Weights scale each modality's tokens inside the joint mean, and its entropy bonus.
    weighted, _, _ = run("joint", tw=0.5, iw=2.0, coefs={"image": 0.1})
    assert weighted.loss.item() == pytest.approx((0.5 * -5 + 2.0 * -12) / 9 - 2.0 * 0.1 * 2.0)
    # Sample normalisation: each sample's mean over all its tokens, then the mean over samples.
    by_sample, _, _ = run("joint", norm="sample")
    assert by_sample.loss.item() == pytest.approx((-1 - 3) / 2)
    assert joint.metrics["text/pg_loss"] == pytest.approx(-5 / 3)  # per-modality metrics kept
    assert joint_count([text_mask, image_mask], "token") == 9.0
    with pytest.raises(ValueError, match="aggregation"):
        LossSettings(aggregation="mean")  # type: ignore[arg-type]


def test_grpo_loss_weights_and_masks_modalities() -> None:
    b, t = 2, 3
    zeros = torch.zeros(b, t)
    mask = torch.ones(b, t, dtype=torch.bool)
    text = ModalityTokens(zeros.clone(), zeros, mask)
    image = ModalityTokens(zeros.clone(), zeros, mask, entropy=torch.full((b, t), 2.0))
    adv = torch.tensor([1.0, 3.0])
    s = LossSettings(text_weight=0.5, image_weight=2.0)
    out = grpo_loss({"text": text, "image": image}, adv, s, entropy_coefs={"image": 0.1})
    # Each modality: mean(−A) = −2; weights 0.5 and 2; image entropy bonus 0.1·2.
    assert out.loss.item() == pytest.approx(0.5 * -2.0 + 2.0 * (-2.0 - 0.2))
    assert out.entropy["image"] == pytest.approx(2.0) and math.isnan(out.entropy["text"])
    empty = ModalityTokens(zeros.clone(), zeros, torch.zeros(b, t, dtype=torch.bool))
    only_img = grpo_loss({"text": empty, "image": image}, adv, s)
    assert only_img.loss.item() == pytest.approx(2.0 * -2.0)
    with pytest.raises(ValueError, match="modality"):
        grpo_loss({"audio": text}, adv, s)
    with pytest.raises(ValueError, match="normalisation"):
        LossSettings(normalisation="seq")  # type: ignore[arg-type]


class _TinyPolicy(torch.nn.Module):
    """A two-token-context categorical policy over 7 symbols."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(7, 8)
        self.out = torch.nn.Linear(8, 7)

    def logprobs(self, ctx: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.out(torch.tanh(self.emb(ctx)))  # (B, T, 7)
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]  # (B, T)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_step_moves_logprob_with_the_advantage(sign: float) -> None:
    torch.manual_seed(0)
    pol = _TinyPolicy()
    ctx = torch.tensor([[0, 1, 2], [3, 4, 5]])
    tok = torch.tensor([[1, 2, 3], [6, 5, 4]])
    old = pol.logprobs(ctx, tok).detach()  # (2, 3)
    adv = torch.tensor([sign, 0.0])  # only sample 0 is pushed
    opt = torch.optim.SGD(pol.parameters(), lr=0.5)
    toks = ModalityTokens(pol.logprobs(ctx, tok), old, torch.ones(2, 3, dtype=torch.bool))
    grpo_loss({"text": toks}, adv, LossSettings()).loss.backward()
    opt.step()
    new = pol.logprobs(ctx, tok).detach()
    delta = (new[0] - old[0]).sum().item()
    assert delta * sign > 1e-3


def test_global_denominators_make_micro_batches_sum_to_the_full_batch() -> None:
    torch.manual_seed(1)
    logp = torch.randn(4, 5).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(4, 5)
    mask = torch.rand(4, 5) > 0.3
    adv = torch.randn(4)
    ent = torch.rand(4, 5)
    img = torch.randn(4, 6).requires_grad_(True)
    img_old = img.detach() + 0.1 * torch.randn(4, 6)
    img_mask = torch.rand(4, 6) > 0.2
    img_mask[3] = False  # a sample with CoT tokens only
    for norm, agg in itertools.product(("token", "sample"), ("per_modality", "joint")):
        s = LossSettings(clip_low=0.1, clip_high=0.1, normalisation=norm, aggregation=agg)

        def loss_of(rows, dens=None, s=s):
            t = ModalityTokens(logp[rows], old[rows], mask[rows], entropy=ent[rows])
            i = ModalityTokens(img[rows], img_old[rows], img_mask[rows])
            return grpo_loss({"text": t, "image": i}, adv[rows], s, {"text": 0.05}, dens).loss

        full = loss_of(slice(None))
        dens = {"text": normaliser_count(mask, norm), "image": normaliser_count(img_mask, norm),
                "joint": joint_count([mask, img_mask], norm)}  # fmt: skip
        split = loss_of(slice(0, 2), dens) + loss_of(slice(2, 4), dens)
        assert split.item() == pytest.approx(full.item(), rel=1e-6)


def test_text_kl_scale_weights_only_the_cot_tokens_kl() -> None:
    """``text_kl_scale`` multiplies the CoT tokens' KL weight; the image tokens keep ``kl_coef``."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-0.5, -2.5]])
    kl = k3_kl(logp, ref).mean().item()  # the same tokens in both modalities
    toks = {m: ModalityTokens(logp, logp.clone(), mask, ref) for m in ("text", "image")}
    adv = torch.zeros(1)  # no policy term: the loss is the KL terms alone
    base = grpo_loss(toks, adv, LossSettings(kl_coef=0.1))
    scaled = grpo_loss(toks, adv, LossSettings(kl_coef=0.1, text_kl_scale=10.0))
    assert base.loss.item() == pytest.approx(0.1 * kl + 0.1 * kl, rel=1e-6)
    assert scaled.loss.item() == pytest.approx(1.0 * kl + 0.1 * kl, rel=1e-6)
    # the logged KL is each modality's own mean, unweighted
    assert scaled.metrics["text/kl"] == pytest.approx(kl) and scaled.metrics["image/kl"] == pytest.approx(kl)
    joint = grpo_loss(toks, adv, LossSettings(kl_coef=0.1, text_kl_scale=10.0, aggregation="joint"))
    assert joint.loss.item() == pytest.approx((1.0 * kl + 0.1 * kl) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        LossSettings(text_kl_scale=-1.0)
