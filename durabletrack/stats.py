"""A point-in-time snapshot of a tracker's stored sessions, queues and counters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .registry import OPEN_STATES, SessionRecord, SessionState
from .store import Store


@dataclass(frozen=True)
class SessionStats:
    """State of one session that is not closed.

    Attributes:
        handle: Local session handle.
        state: Lifecycle state (``pending``, ``active``, ``resuming``, ``rejected``).
        queued_events: Events waiting for delivery, including one in flight
            and the sessionStart while the session has no session ID.
        oldest_event_age_s: Age of the oldest waiting event in seconds, or None.
        session_ids: Server session IDs the session had, oldest first.
        last_error: Reason of the last failed attempt in this process, or None.
        next_retry_in_s: Seconds until the next attempt, or None if not waiting.
    """

    handle: str
    state: str
    queued_events: int
    oldest_event_age_s: float | None
    session_ids: list[str]
    last_error: str | None = None
    next_retry_in_s: float | None = None


@dataclass(frozen=True)
class TrackerStats:
    """Snapshot returned by :meth:`Tracker.stats`.

    Attributes:
        sessions_by_state: Number of sessions per lifecycle state.
        sessions: Per-session detail of every session not closed.
        queued_events: Events waiting for delivery in all sessions.
        oldest_event_age_s: Age of the oldest waiting event in seconds, or None.
        dead_letters: Dead letters kept.
        bytes_on_disk: Size of the data directory's files in bytes.
        counters: Counts since this tracker started: ``delivered``,
            ``retried``, ``dead_lettered``, ``sessions_opened``,
            ``sessions_resumed``, ``shed``, ``expired``.
        totals: The same counts summed over every tracker that used the
            data directory; saved every poll interval and at close.
        is_draining: True if this process holds the drain lock.
    """

    sessions_by_state: dict[str, int]
    sessions: list[SessionStats]
    queued_events: int
    oldest_event_age_s: float | None
    dead_letters: int
    bytes_on_disk: int
    counters: dict[str, int]
    totals: dict[str, int]
    is_draining: bool


def collect_session_stats(store: Store, now: float | None = None) -> list[SessionStats]:
    """Return per-session stats read from the store (no in-memory worker state)."""
    now = time.time() if now is None else now
    stats = []
    for record in store.registry.sessions(OPEN_STATES + (SessionState.REJECTED,)):
        count, oldest_queued_at = store.pending_summary(record.handle)
        oldest = None if oldest_queued_at is None else max(now - oldest_queued_at, 0.0)
        stats.append(
            SessionStats(
                handle=record.handle,
                state=record.state.value,
                queued_events=count + len(record.replay) + _unsent_start(record),
                oldest_event_age_s=oldest,
                session_ids=list(record.session_ids),
            )
        )

    return stats


def directory_size(directory: Path) -> int:
    """Return the total size in bytes of the regular files directly in ``directory``."""
    total = 0
    for entry in directory.iterdir():
        if entry.is_file():
            total += entry.stat().st_size

    return total


def _unsent_start(record: SessionRecord) -> int:
    waiting = record.session_id is None and record.state is not SessionState.REJECTED
    return 1 if waiting else 0
