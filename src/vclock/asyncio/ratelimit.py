"""A token bucket for per-connection frame rates. The caller supplies the time."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` events per second on average, in bursts of up to ``burst``.

    Args:
        rate: tokens added per second.
        burst: bucket size; also the initial number of tokens.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not (rate > 0 and burst >= 1):  # written so that NaN fails too
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at time ``now`` (seconds, monotonic); False when empty."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def take_many(self, count: int, now: float) -> int:
        """Spend ``count`` tokens at time ``now``, as many as there are; return how
        many were missing (0: all taken). As ``count`` calls of :meth:`take`."""
        if count <= 0:
            return 0
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        taken = min(count, int(self._tokens))
        self._tokens -= taken
        return count - taken
