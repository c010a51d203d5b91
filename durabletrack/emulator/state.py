"""Sessions the emulator created, their events and their expiry.

Expiry is checked lazily: a session is closed the moment a request or an
inspection call finds one of its deadlines passed, and the reason recorded is
the deadline that passed first.
"""

from __future__ import annotations

import copy
import enum
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from durabletrack.eventtypes import SESSION_END

CLOSED_BY_SESSION_END = "sessionEnd"
CLOSED_IDLE = "idle"
CLOSED_STALLED_PLAYHEAD = "stalled_playhead"
CLOSED_MAX_AGE = "max_age"

Clock = Callable[[], float]


@dataclass(frozen=True)
class ExpiryPolicy:
    """When the emulator closes a session, in seconds of its clock.

    Attributes:
        idle_s: Close after this long without any event (collection API: 10 minutes).
        stalled_playhead_s: Close after this long without playhead movement
            (collection API: 30 minutes).
        max_age_s: Close this long after creation (24 hours, the cap the
            Media Edge API documents and Adobe's SDKs apply).
    """

    idle_s: float = 600.0
    stalled_playhead_s: float = 1800.0
    max_age_s: float = 86400.0

    def __post_init__(self) -> None:
        for name in ("idle_s", "stalled_playhead_s", "max_age_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"ExpiryPolicy.{name}={value!r} is invalid: use seconds > 0")


@dataclass
class SessionRecord:
    """Snapshot of one session.

    Attributes:
        sid: The 64-hex session ID sent in ``Location``.
        start: The ``sessionStart`` body.
        events: Accepted event bodies after ``sessionStart``, in arrival order.
        closed_reason: None while open, else ``"sessionEnd"``, ``"idle"``,
            ``"stalled_playhead"`` or ``"max_age"``.
        downloaded: True if the session came as an offline batch.
    """

    sid: str
    start: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    closed_reason: str | None = None
    downloaded: bool = False


class EventOutcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN_SESSION = "unknown_session"
    SESSION_CLOSED = "session_closed"


class _Session:
    def __init__(self, sid: str, start: dict[str, Any], downloaded: bool, now: float) -> None:
        self.record = SessionRecord(sid, start, downloaded=downloaded)
        self.created_at = now
        self.last_event_at = now
        self.last_move_at = now
        self.playhead = start["playerTime"]["playhead"]

    def expire(self, now: float, policy: ExpiryPolicy) -> None:
        if self.record.closed_reason is not None:
            return

        deadlines = [
            (self.created_at + policy.max_age_s, CLOSED_MAX_AGE),
            (self.last_event_at + policy.idle_s, CLOSED_IDLE),
            (self.last_move_at + policy.stalled_playhead_s, CLOSED_STALLED_PLAYHEAD),
        ]
        due_at, reason = min(deadlines)
        if now >= due_at:
            self.record.closed_reason = reason

    def add_event(self, event: dict[str, Any], now: float) -> None:
        self.record.events.append(event)
        self.last_event_at = now

        playhead = event["playerTime"]["playhead"]
        if playhead != self.playhead:
            self.playhead = playhead
            self.last_move_at = now

        if event["eventType"] == SESSION_END:
            self.record.closed_reason = CLOSED_BY_SESSION_END


class SessionTable:
    """Thread-safe table of sessions keyed by session ID.

    Args:
        policy: When sessions expire.
        clock: Monotonic time source in seconds; tests pass a fake one.
    """

    def __init__(self, policy: ExpiryPolicy, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._clock = clock
        self._sessions: dict[str, _Session] = {}

    def create(self, start: dict[str, Any], events: Iterable[dict[str, Any]] = (), *, downloaded: bool = False) -> str:
        """Create a session, add ``events`` to it in order and return its ID."""
        with self._lock:
            now = self._clock()
            sid = _new_sid(self._sessions)
            session = _Session(sid, start, downloaded, now)
            for event in events:
                session.add_event(event, now)
            self._sessions[sid] = session

            return sid

    def add_event(self, sid: str, event: dict[str, Any]) -> tuple[EventOutcome, str | None]:
        """Add an event to an open session.

        Returns:
            The outcome and, for a closed session, the reason it closed.
        """
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return EventOutcome.UNKNOWN_SESSION, None

            now = self._clock()
            session.expire(now, self._policy)
            if session.record.closed_reason is not None:
                return EventOutcome.SESSION_CLOSED, session.record.closed_reason

            session.add_event(event, now)
            return EventOutcome.ACCEPTED, None

    def snapshots(self) -> list[SessionRecord]:
        """Return deep copies of all sessions in creation order, expiry applied."""
        with self._lock:
            now = self._clock()
            for session in self._sessions.values():
                session.expire(now, self._policy)

            return [copy.deepcopy(session.record) for session in self._sessions.values()]

    def snapshot(self, sid: str) -> SessionRecord:
        """Return a deep copy of one session. Raises KeyError for an unknown ID."""
        with self._lock:
            session = self._sessions[sid]
            session.expire(self._clock(), self._policy)

            return copy.deepcopy(session.record)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


def _new_sid(existing: dict[str, _Session]) -> str:
    # The collection API's session IDs are 64 lowercase hex digits.
    while True:
        sid = secrets.token_hex(32)
        if sid not in existing:
            return sid
