"""Per-session ``playerTime.ts`` stamping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")

# A wall-clock stamp before this (2024-01-01 UTC) was taken while the clock was
# wrong, as on a box that booted without a real-time clock: its age is unknown.
PLAUSIBLE_WALL_CLOCK = 1_704_067_200.0


@dataclass(frozen=True)
class BootTime:
    """A moment as seconds since boot (``CLOCK_BOOTTIME``) of one boot.

    Time since boot keeps counting through suspend and ignores wall-clock
    changes, so two moments of the same boot give a true duration.
    """

    boot_id: str
    seconds: float


def _read_boot_id() -> str:
    try:
        return _BOOT_ID_FILE.read_text().strip()
    except OSError:
        # Without a boot ID every stored moment counts as another boot, and
        # ages fall back to the wall clock.
        return ""


_CURRENT_BOOT_ID = _read_boot_id()


def boot_time() -> BootTime:
    """Return the current moment as a :class:`BootTime`."""
    return BootTime(_CURRENT_BOOT_ID, time.clock_gettime(time.CLOCK_BOOTTIME))


def age_seconds(
    wall: float, boot: BootTime | None, now_wall: float | None = None, now_boot: BootTime | None = None
) -> float:
    """Return how long ago a moment stored as ``wall`` and ``boot`` was, in seconds.

    Within one boot the age comes from time since boot, so a wall clock that
    jumps forwards cannot make a fresh event look old. Across boots only the
    wall clock is left. A stamp from a clock that was obviously wrong, or
    that lies in the future, counts as age 0 rather than as a guess.
    """
    now_boot = now_boot or boot_time()
    if boot is not None and boot.boot_id and boot.boot_id == now_boot.boot_id:
        return max(now_boot.seconds - boot.seconds, 0.0)

    now_wall = time.time() if now_wall is None else now_wall
    if wall < PLAUSIBLE_WALL_CLOCK or wall > now_wall:
        return 0.0

    return now_wall - wall


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
