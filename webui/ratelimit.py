"""Rate limiting of the app's generations and logins, keyed by client address or username.

Keys are whatever the caller passes (the app uses the client's address and the username), so a
limit holds across sessions: a fresh client per request counts against the same key.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 10_000
"""Idle keys are forgotten once a limiter holds more than this many."""


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key (sliding window, thread-safe)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """Record an event for ``key``; return 0 if allowed, else the seconds until it would be."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.01, hits[0] + self.window_s - now)
            hits.append(now)
            if len(self._hits) > MAX_KEYS:  # forget idle keys
                for k in [k for k, v in self._hits.items() if not v]:
                    del self._hits[k]
            return 0.0


class FailureBackoff:
    """Exponential backoff after repeated failures per key (thread-safe).

    ``attempt(key)`` is counted as a failure when it is allowed, until ``succeeded(key)`` says
    otherwise, so attempts made at the same moment cannot slip past the count. The first ``free``
    attempts go through at once; after ``n >= free`` counted failures the next attempt must wait
    ``min(max_s, base_s * 2 ** (n - free))`` seconds after the previous one. A key's count is
    forgotten ``forget_s`` seconds after its last attempt.
    """

    def __init__(self, free: int, base_s: float, max_s: float = 900.0, forget_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if free < 0 or base_s <= 0 or max_s < base_s or forget_s <= 0:
            raise ValueError(f"bad backoff settings: free={free}, base_s={base_s}, max_s={max_s}")
        self.free, self.base_s, self.max_s, self.forget_s, self.clock = free, base_s, max_s, forget_s, clock
        self._state: dict[str, tuple[int, float]] = {}  # key -> (counted failures, last attempt)
        self._lock = threading.Lock()

    def delay(self, failures: int) -> float:
        """Seconds an attempt must wait after the previous one, once ``failures`` are counted."""
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - self.free, 64))

    def attempt(self, key: str) -> float:
        """0 if ``key`` may try now (the attempt is counted as a failure), else the seconds to wait
        (a refused attempt is not counted)."""
        now = self.clock()
        with self._lock:
            failures, last = self._state.get(key, (0, now))
            if now - last >= self.forget_s:
                failures = 0
            wait = last + self.delay(failures) - now
            if failures and wait > 0:
                return max(0.01, wait)
            self._state[key] = (failures + 1, now)
            if len(self._state) > MAX_KEYS:
                for k in [k for k, (_, t) in self._state.items() if now - t >= self.forget_s]:
                    del self._state[k]
            return 0.0

    def succeeded(self, key: str, reset: bool = True) -> None:
        """The last allowed attempt for ``key`` succeeded: clear its count (``reset``), or only
        take that attempt back off the count."""
        with self._lock:
            if key not in self._state:
                return
            failures, last = self._state[key]
            if reset or failures <= 1:
                del self._state[key]
            else:
                self._state[key] = (failures - 1, last)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._state.clear()
