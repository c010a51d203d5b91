"""Retry policy: how long to wait before the next attempt at a request."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from .errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, all times in seconds.

    Attempts are never given up: an undelivered event stays queued. Only the
    wait between attempts is bounded.

    Attributes:
        base_delay: Upper bound of the first wait.
        max_delay: Cap on the exponential upper bound.
        retry_after_cap: Longest ``Retry-After`` honoured; longer values are cut.
        misconfigured_delay: Wait after a 401, 403 or another 4xx that shows the
            endpoint is wrong for every request.
    """

    base_delay: float = 0.5
    max_delay: float = 60.0
    retry_after_cap: float = 600.0
    misconfigured_delay: float = 600.0

    def __post_init__(self) -> None:
        for name in ("base_delay", "max_delay", "retry_after_cap", "misconfigured_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"retry.{name}", value, "must be a number of seconds >= 0")
        if self.max_delay < self.base_delay:
            raise ConfigError("retry.max_delay", self.max_delay, "must be >= base_delay")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the wait before retry number ``attempt`` (1 for the first retry)."""
        exponent = min(max(attempt - 1, 0), 32)
        ceiling = min(self.max_delay, self.base_delay * (2**exponent))

        return rng.uniform(0.0, ceiling)

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        """Return the wait before the next attempt, honouring ``Retry-After`` up to its cap."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)

        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header into seconds from now.

    Accepts delta-seconds and HTTP dates. Returns None for a missing or
    unparseable header, so the caller falls back to backoff.
    """
    if not value:
        return None

    text = value.strip()
    if text.isdigit():
        return float(text)

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)

    return max((when - now).total_seconds(), 0.0)
