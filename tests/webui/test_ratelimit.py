"""webui.ratelimit: the sliding-window limiter and the failure backoff (per key: address, username)."""

from __future__ import annotations

import pytest

from webui.ratelimit import FailureBackoff, RateLimiter


def _limiter(limit: int, window_s: float) -> tuple[RateLimiter, list[float]]:
    now = [100.0]
    return RateLimiter(limit, window_s, clock=lambda: now[0]), now


def test_rate_limiter_sliding_window():
    lim, now = _limiter(2, 10.0)
    assert lim.check("a") == 0 and lim.check("a") == 0
    wait = lim.check("a")
    assert wait == pytest.approx(10.0)
    assert lim.check("b") == 0  # per key
    now[0] += 10.5
    assert lim.check("a") == 0


def test_window_slides_event_by_event_and_refusals_are_not_counted():
    lim, now = _limiter(2, 10.0)
    assert lim.check("a") == 0  # t=100
    now[0] = 104.0
    assert lim.check("a") == 0  # t=104
    now[0] = 106.0
    assert lim.check("a") == pytest.approx(4.0)  # the t=100 event leaves the window at 110
    now[0] = 110.0  # an event exactly window_s old no longer counts
    assert lim.check("a") == 0
    assert lim.check("a") == pytest.approx(4.0)  # t=104 and t=110 fill it; 104 leaves at 114
    now[0] = 114.0
    assert lim.check("a") == 0  # the refused attempts at 106 and 110 did not use up the window


def test_the_wait_is_never_reported_as_zero_when_refused():
    lim, now = _limiter(1, 10.0)
    assert lim.check("a") == 0
    now[0] += 10.0 - 1e-9
    assert lim.check("a") == pytest.approx(0.01)


def _backoff(free: int = 2, base_s: float = 1.0, **kw) -> tuple[FailureBackoff, list[float]]:
    now = [100.0]
    return FailureBackoff(free, base_s, clock=lambda: now[0], **kw), now


def test_backoff_doubles_after_the_free_failures_and_refusals_are_not_counted():
    b, now = _backoff(free=2, base_s=1.0, max_s=8.0)
    assert b.attempt("u") == 0 and b.attempt("u") == 0  # two free failures, at once
    waits = []
    for _ in range(6):
        wait = b.attempt("u")
        assert wait > 0 and b.attempt("u") == pytest.approx(wait)  # refused: nothing counted
        waits.append(wait)
        now[0] += wait
        assert b.attempt("u") == 0  # allowed after the wait, and counted as a failure
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0, 8.0])  # doubling, capped at max_s
    assert b.attempt("v") == 0  # per key


def test_backoff_success_clears_or_takes_back_one_attempt():
    b, _ = _backoff(free=1, base_s=5.0)
    assert b.attempt("u") == 0
    b.succeeded("u")  # a success clears the count
    assert b.attempt("u") == 0 and b.attempt("u") == pytest.approx(5.0)
    b, _ = _backoff(free=2, base_s=5.0)
    assert b.attempt("a") == 0 and b.attempt("a") == 0
    b.succeeded("a", reset=False)  # only that attempt is taken back: one failure stays
    assert b.attempt("a") == 0 and b.attempt("a") == pytest.approx(5.0)


def test_backoff_is_forgotten_after_a_quiet_period_and_attempts_at_once_are_counted():
    b, now = _backoff(free=3, base_s=1.0, forget_s=60.0)
    allowed = sum(b.attempt("u") == 0 for _ in range(20))  # a burst: only the free ones pass
    assert allowed == 3
    now[0] += 60.0
    assert b.attempt("u") == 0 and b.attempt("u") == 0  # forgotten: free again
    with pytest.raises(ValueError, match="backoff"):
        FailureBackoff(1, 0.0)
