"""The sampling maths: guidance, filtered log-probs, and the exponential-race draw."""

from __future__ import annotations

import pytest
import torch

from reasongen.sampling import EXP_NORMAL_MIN, draw, guided_logits, probs_from_logprobs, sampling_logprobs


def test_guidance_extrapolates_from_unconditional_to_conditional():
    cond, uncond = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.5]])
    torch.testing.assert_close(guided_logits(cond, uncond, 5.0), torch.tensor([[5.0, -14.0, 0.5]]))
    torch.testing.assert_close(guided_logits(cond, uncond, 1.0), cond)


def test_draw_frequencies_follow_the_distribution_and_skip_filtered_tokens():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(4000, 1)  # [4000, 4] rows
    logp = sampling_logprobs(logits, top_k=3)  # the 0.05 token is filtered out
    gen = torch.Generator().manual_seed(0)
    tokens, lps = draw(logp, greedy=False, generator=gen)
    freq = torch.bincount(tokens, minlength=4).float() / tokens.numel()
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    # 4000 draws: one standard error is at most 0.008; allow four
    torch.testing.assert_close(freq, expected, atol=0.032, rtol=0)
    assert int((tokens == 3).sum()) == 0
    torch.testing.assert_close(lps, logp.gather(-1, tokens[:, None]).squeeze(-1))


def test_draw_is_seeded_and_greedy_takes_the_argmax():
    logp = torch.log_softmax(torch.randn(8, 50, generator=torch.Generator().manual_seed(1)), dim=-1)
    a = draw(logp, False, torch.Generator().manual_seed(3))[0]
    b = draw(logp, False, torch.Generator().manual_seed(3))[0]
    c = draw(logp, False, torch.Generator().manual_seed(4))[0]
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert draw(logp, True, None)[0].tolist() == logp.argmax(-1).tolist()


def test_draw_with_one_stream_per_block_matches_each_block_alone():
    logp = torch.log_softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    tokens, lps = draw(logp, greedy=False, generator=gens)
    for k, seed in enumerate((1, 2, 3)):
        alone, alone_lp = draw(
            logp[2 * k : 2 * k + 2], greedy=False, generator=torch.Generator().manual_seed(seed)
        )
        assert tokens[2 * k : 2 * k + 2].tolist() == alone.tolist()
        assert torch.equal(lps[2 * k : 2 * k + 2], alone_lp)


def test_draw_skips_inactive_blocks_without_advancing_their_stream():
    logp = torch.log_softmax(torch.randn(4, 30, generator=torch.Generator().manual_seed(0)), dim=-1)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    draw(logp, greedy=False, generator=gens, active=[True, False])
    fresh = torch.Generator().manual_seed(2)
    assert torch.equal(
        torch.empty(3).exponential_(generator=gens[1]), torch.empty(3).exponential_(generator=fresh)
    )
    with pytest.raises(ValueError, match="equal random streams"):
        draw(logp, greedy=False, generator=gens[:1] * 3)


def test_probs_from_logprobs_is_exp_above_the_normal_range_and_zero_below() -> None:
    x = torch.linspace(-800.0, 0.0, 400_001)  # [N]: guided tails reach -700
    p = probs_from_logprobs(x)
    keep = x >= EXP_NORMAL_MIN
    assert torch.equal(p[keep], x[keep].exp())  # bit for bit where exp is a normal number
    assert bool((p[~keep] == 0).all())
    smallest_kept = float(torch.tensor(EXP_NORMAL_MIN).exp())
    assert torch.finfo(torch.float32).tiny <= smallest_kept < 1.18e-38  # a normal number
    assert float(x[~keep].exp().max()) < smallest_kept  # only values below it were zeroed


def test_draw_on_peaked_guided_rows_matches_the_exact_exp_race() -> None:
    """Rows whose tails lie below -87 (as guided image logits do) draw the same tokens as the
    race on the exact exp, stream for stream."""
    logits = torch.randn(64, 688) * 40.0  # [B, V]
    lp = sampling_logprobs(logits, 1.0)
    assert float((lp < EXP_NORMAL_MIN).float().mean()) > 0.5
    tokens, _ = draw(lp, False, torch.Generator().manual_seed(3))
    race = torch.empty_like(lp).exponential_(generator=torch.Generator().manual_seed(3))
    exact = lp.exp().div(race.clamp_min(torch.finfo(lp.dtype).tiny)).argmax(dim=-1)  # [B]
    assert torch.equal(tokens, exact)
