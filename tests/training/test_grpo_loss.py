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
    s = LossSettings(clip_low=0.1, clip_high=0.1)
    for norm in ("token", "sample"):
        s.normalisation = norm

        def loss_of(rows, den=None):
            t = ModalityTokens(logp[rows], old[rows], mask[rows], entropy=ent[rows])
            dens = None if den is None else {"text": den}
            return grpo_loss({"text": t}, adv[rows], s, {"text": 0.05}, dens).loss

        full = loss_of(slice(None))
        den = normaliser_count(mask, norm)
        split = loss_of(slice(0, 2), den) + loss_of(slice(2, 4), den)
        assert split.item() == pytest.approx(full.item(), rel=1e-6)
