"""Per-session ``playerTime.ts`` stamping."""

from __future__ import annotations

import threading
import time
from typing import Callable


class SessionClock:
    """Stamps strictly increasing epoch-millisecond ``ts`` values for one session.

    The wall clock is read once, when the session starts. Later stamps add the
    monotonic time elapsed since then, so a wall clock that jumps (a box that
    booted with a wrong clock and is corrected by NTP) cannot reorder or squash
    the session's events, and durations stay true. Consecutive stamps are at
    least 1 ms apart, as the collection API requires. Thread-safe.
    """

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._anchor_ms = int(wall_clock() * 1000)
        self._anchor_mono = monotonic()
        self._last_ts: int | None = None
        self._lock = threading.Lock()

    def next_ts(self) -> int:
        """Return the ``ts`` for an event happening now, in epoch milliseconds."""
        elapsed_ms = int((self._monotonic() - self._anchor_mono) * 1000)
        with self._lock:
            ts = self._anchor_ms + elapsed_ms
            if self._last_ts is not None and ts <= self._last_ts:
                ts = self._last_ts + 1
            self._last_ts = ts

        return ts
