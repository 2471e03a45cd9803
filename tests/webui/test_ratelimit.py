"""webui.ratelimit: the per-session sliding-window limiter."""

from __future__ import annotations

import pytest

from webui.ratelimit import RateLimiter


def _limiter(limit: int, window_s: float) -> tuple[RateLimiter, list[float]]:
    now = [100.0]
    return RateLimiter(limit, window_s, clock=lambda: now[0]), now


def test_rate_limiter_sliding_window():
    lim, now = _limiter(2, 10.0)
    assert lim.check("a") == 0 and lim.check("a") == 0
    wait = lim.check("a")
    assert wait == pytest.approx(10.0)
    assert lim.check("b") == 0  # per session
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
