"""How many events, and how many bytes of them, wait in the store."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Ceilings on what may wait in the store.

    Attributes:
        max_events: Events waiting at most.
        max_bytes: Total JSON size of the waiting events at most, in bytes.
    """

    max_events: int
    max_bytes: int


class QueueBudget:
    """Running totals of waiting events and their size, checked against :class:`Limits`.

    The totals count what this process put and removed. Another process's
    puts show up at the next :meth:`reset` from the store. Thread-safe.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._events = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def reset(self, events: int, size: int) -> None:
        """Replace the totals with values counted in the store."""
        with self._lock:
            self._events = events
            self._bytes = size

    def try_add(self, size: int) -> bool:
        """Count one more event of ``size`` bytes if it fits; return whether it did."""
        with self._lock:
            if self._events + 1 > self.limits.max_events or self._bytes + size > self.limits.max_bytes:
                return False
            self._events += 1
            self._bytes += size

        return True

    def remove(self, events: int, size: int) -> None:
        """Stop counting events that were delivered, dead-lettered or shed."""
        with self._lock:
            self._events = max(self._events - events, 0)
            self._bytes = max(self._bytes - size, 0)

    def excess(self, size: int, headroom: float) -> tuple[int, int]:
        """Return how many events and bytes to free so that one event of ``size`` fits.

        ``headroom`` frees that fraction of each limit more, so shedding runs
        once per batch of puts rather than on every put.
        """
        with self._lock:
            events = self._events + 1 - (self.limits.max_events - int(self.limits.max_events * headroom))
            size_over = self._bytes + size - (self.limits.max_bytes - int(self.limits.max_bytes * headroom))

        return max(events, 0), max(size_over, 0)

    def totals(self) -> tuple[int, int]:
        """Return the counted events and bytes."""
        with self._lock:
            return self._events, self._bytes
