"""Scheduling of sessions: the next one to deliver, and when each may try again."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .session_queue import QueuedEvent


@dataclass
class SessionSlot:
    """The worker's in-memory state of one session.

    Attributes:
        handle: Local session handle.
        ready_at: Monotonic time before which the session waits (backoff).
        busy: True while a sender thread works on it; one request in flight at most.
        has_work: False once the session's queue was found empty.
        attempt: Failed attempts in a row at the current head.
        head: The queue item taken and not yet acked, kept across retries.
        last_error: Reason of the last failed attempt, or None.
        gone_streak: 404/410 responses in a row without a delivery in between.
        acked_since_clear: Acks since acked rows were last deleted.
        unsaved_ack: True when the collector accepted ``head`` but its ack
            could not be stored yet.
    """

    handle: str
    ready_at: float = 0.0
    busy: bool = False
    has_work: bool = True
    attempt: int = 0
    head: QueuedEvent | None = None
    last_error: str | None = None
    gone_streak: int = 0
    acked_since_clear: int = 0
    unsaved_ack: bool = False
    wakeups: int = 0
    wakeups_at_claim: int = 0


class Schedule:
    """Round-robin choice of the next runnable session. Thread-safe.

    A session is runnable when no thread works on it, it may have work and its
    backoff has passed. Sender threads sleep on a condition until one is, or
    until ``max_wait`` passes, and ``stop()`` wakes them all at once.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._slots: OrderedDict[str, SessionSlot] = OrderedDict()
        self._cond = threading.Condition()
        self._stopped = False

    def add(self, handle: str) -> None:
        """Make ``handle`` known, with work to do now."""
        with self._cond:
            slot = self._slots.get(handle)
            # Waking a thread costs a context switch per track(); only a slot
            # that just became runnable needs one.
            becomes_runnable = slot is None or not (slot.has_work or slot.busy)
            if slot is None:
                slot = self._slots[handle] = SessionSlot(handle)
            slot.has_work = True
            slot.wakeups += 1
            if becomes_runnable:
                self._cond.notify()

    def mark_work(self, handle: str) -> None:
        """Record that ``handle`` got a new event, waking a sender thread."""
        self.add(handle)

    def remove(self, handle: str) -> None:
        """Forget ``handle`` (closed or rejected session)."""
        with self._cond:
            self._slots.pop(handle, None)

    def claim(self, max_wait: float) -> SessionSlot | None:
        """Return the next runnable session, marked busy, or None after ``max_wait`` seconds."""
        deadline = self._monotonic() + max_wait
        with self._cond:
            while not self._stopped:
                now = self._monotonic()
                slot, wait = self._next_runnable(now)
                if slot is not None:
                    slot.busy = True
                    slot.wakeups_at_claim = slot.wakeups
                    self._slots.move_to_end(slot.handle)
                    return slot
                remaining = deadline - now
                if remaining <= 0:
                    return None
                self._cond.wait(min(wait, remaining))

        return None

    def release(self, slot: SessionSlot, *, delay: float = 0.0, has_work: bool = True) -> None:
        """Hand a claimed session back, runnable again after ``delay`` seconds."""
        with self._cond:
            slot.busy = False
            slot.ready_at = self._monotonic() + delay
            # An event tracked while the slot was busy keeps it runnable, even
            # when the thread found the queue empty before that event arrived.
            slot.has_work = has_work or slot.wakeups != slot.wakeups_at_claim
            # The releasing thread claims the next ready slot itself, so waking
            # another one only pays when a backoff timer changed or a second
            # slot is ready for a second thread.
            if delay > 0 or self._count_runnable(self._monotonic()) > 1:
                self._cond.notify()

    def next_retry_in(self, handle: str) -> float | None:
        """Return seconds until ``handle`` may be tried again, or None if it may now."""
        with self._cond:
            slot = self._slots.get(handle)
            if slot is None:
                return None
            wait = slot.ready_at - self._monotonic()

        return wait if wait > 0 else None

    def last_error(self, handle: str) -> str | None:
        """Return the reason of the last failed attempt for ``handle``, or None."""
        with self._cond:
            slot = self._slots.get(handle)
            return slot.last_error if slot else None

    def stop(self) -> None:
        """Wake every waiting thread; ``claim`` returns None from now on."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _count_runnable(self, now: float) -> int:
        return sum(1 for slot in self._slots.values() if not slot.busy and slot.has_work and slot.ready_at <= now)

    def _next_runnable(self, now: float) -> tuple[SessionSlot | None, float]:
        wait = float("inf")
        for slot in self._slots.values():
            if slot.busy or not slot.has_work:
                continue
            if slot.ready_at <= now:
                return slot, 0.0
            wait = min(wait, slot.ready_at - now)

        return None, wait
