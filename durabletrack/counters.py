"""Delivery counters kept in memory and added to the registry from time to time."""

from __future__ import annotations

import threading

DELIVERED = "delivered"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
SESSIONS_OPENED = "sessions_opened"
SESSIONS_RESUMED = "sessions_resumed"
SHED = "shed"
EXPIRED = "expired"

NAMES = (DELIVERED, RETRIED, DEAD_LETTERED, SESSIONS_OPENED, SESSIONS_RESUMED, SHED, EXPIRED)


class Counters:
    """Counts since this tracker started, plus the part not yet persisted. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since_start = dict.fromkeys(NAMES, 0)
        self._unsaved: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._since_start[name] = self._since_start.get(name, 0) + amount
            self._unsaved[name] = self._unsaved.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """Return the counts since start."""
        with self._lock:
            return dict(self._since_start)

    def pending(self) -> dict[str, int]:
        """Return the increments not yet persisted, without resetting them."""
        with self._lock:
            return dict(self._unsaved)

    def take_unsaved(self) -> dict[str, int]:
        """Return and reset the increments not yet persisted."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}

        return unsaved

    def restore_unsaved(self, unsaved: dict[str, int]) -> None:
        """Put back increments whose save failed, so a later save includes them."""
        with self._lock:
            for name, amount in unsaved.items():
                self._unsaved[name] = self._unsaved.get(name, 0) + amount
