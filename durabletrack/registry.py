"""Session registry and dead-letter store, in ``registry.db`` of the data directory."""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._sqlite import apply_pragmas, create_private_file
from .clock import BootTime, boot_time

REGISTRY_FILE = "registry.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    handle TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    session_id TEXT,
    session_ids TEXT NOT NULL DEFAULT '[]',
    start TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    replay TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    created_boot_id TEXT,
    created_boot_seconds REAL,
    opened_at REAL,
    opened_boot_id TEXT,
    opened_boot_seconds REAL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL,
    queue_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (handle, queue_id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

OPTED_OUT = "opted_out"


class SessionState(str, enum.Enum):
    """Lifecycle state of a tracked session.

    PENDING: sessionStart stored, no session ID yet.
    ACTIVE: session ID stored; events are being delivered.
    RESUMING: the collector forgot the session; a resumed one is being opened.
    CLOSED: sessionEnd delivered and the queue is empty.
    REJECTED: the collector rejected sessionStart with 400; its events are dead letters.
    """

    PENDING = "pending"
    ACTIVE = "active"
    RESUMING = "resuming"
    CLOSED = "closed"
    REJECTED = "rejected"


OPEN_STATES = (SessionState.PENDING, SessionState.ACTIVE, SessionState.RESUMING)

# sessionStart items use this queue_id in dead letters: they never had a queue row.
SESSION_START_QUEUE_ID = 0


@dataclass(frozen=True)
class SessionRecord:
    """One row of the session registry.

    Attributes:
        handle: Local session handle.
        state: Lifecycle state.
        session_id: Current server session ID, or None before one is known.
        session_ids: Every server session ID this handle had, oldest first.
        start: The sessionStart body as first tracked.
        context: What was open at the last delivered event (see ``context.py``).
        replay: Event bodies (JSON text) still to re-send after a resume.
        created_at: Epoch seconds when the session was started.
        created_boot: The same moment as time since boot, or None.
        opened_at: Epoch seconds when the current session ID was obtained.
        opened_boot: The same moment as time since boot, or None.
    """

    handle: str
    state: SessionState
    session_id: str | None
    session_ids: list[str]
    start: dict[str, Any]
    context: dict[str, Any]
    replay: list[str] = field(default_factory=list)
    created_at: float = 0.0
    created_boot: BootTime | None = None
    opened_at: float | None = None
    opened_boot: BootTime | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An item the collector rejected, kept with its response.

    Attributes:
        id: Row ID in the dead-letter store.
        handle: Local session handle.
        event: The event body as JSON text.
        status: HTTP status of the rejection, or None (for example when expired).
        reason: Short machine-readable cause.
        response: The collector's response body, cut to the size limit.
        created_at: Epoch seconds when it was dead-lettered.
    """

    id: int
    handle: str
    event: str
    status: int | None
    reason: str
    response: str
    created_at: float


class Registry:
    """Session registry, dead letters and counters, in one SQLite database.

    Thread-safe: one connection guarded by a lock. Every write commits before
    the method returns.
    """

    def __init__(self, directory: Path, synchronous: str, timeout: float = 30.0) -> None:
        path = directory / REGISTRY_FILE
        create_private_file(path)
        self._conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
        apply_pragmas(self._conn, synchronous)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def add_session(self, handle: str, start_body: dict[str, Any]) -> None:
        """Store a new session in state PENDING with its sessionStart body."""
        now = time.time()
        boot = boot_time()
        with self._lock:
            self._conn.execute(
                "INSERT INTO sessions (handle, state, start, created_at, created_boot_id, created_boot_seconds,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (handle, SessionState.PENDING.value, json.dumps(start_body), now, boot.boot_id, boot.seconds, now),
            )

    def get(self, handle: str) -> SessionRecord | None:
        """Return the record of ``handle``, or None if there is none."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM sessions WHERE handle = ?",
                (handle,),
            ).fetchone()

        return _record(row) if row else None

    def sessions(self, states: tuple[SessionState, ...] = OPEN_STATES) -> list[SessionRecord]:
        """Return the records in ``states``, oldest first."""
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM sessions WHERE state IN ({marks}) ORDER BY created_at, handle",
                [state.value for state in states],
            ).fetchall()

        return [_record(row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        """Return how many sessions are in each state."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM sessions GROUP BY state").fetchall()

        return {state: count for state, count in rows}

    def set_session_id(self, handle: str, session_id: str, replay: list[str]) -> None:
        """Store a new server session ID, make the session ACTIVE and set what to re-send."""
        with self._lock:
            row = self._conn.execute("SELECT session_ids FROM sessions WHERE handle = ?", (handle,)).fetchone()
            history = json.loads(row[0]) if row else []
            history.append(session_id)
            now = time.time()
            boot = boot_time()
            self._conn.execute(
                "UPDATE sessions SET state = ?, session_id = ?, session_ids = ?, replay = ?, opened_at = ?,"
                " opened_boot_id = ?, opened_boot_seconds = ?, updated_at = ? WHERE handle = ?",
                (
                    SessionState.ACTIVE.value,
                    session_id,
                    json.dumps(history),
                    json.dumps(replay),
                    now,
                    boot.boot_id,
                    boot.seconds,
                    now,
                    handle,
                ),
            )

    def set_state(self, handle: str, state: SessionState) -> None:
        """Move a session to ``state``; RESUMING also clears the current session ID."""
        with self._lock:
            if state is SessionState.RESUMING:
                self._conn.execute(
                    "UPDATE sessions SET state = ?, session_id = NULL, updated_at = ? WHERE handle = ?",
                    (state.value, time.time(), handle),
                )
            else:
                self._conn.execute(
                    "UPDATE sessions SET state = ?, updated_at = ? WHERE handle = ?",
                    (state.value, time.time(), handle),
                )

    def set_context(self, handle: str, context: dict[str, Any]) -> None:
        """Store what is open in the session after the last delivered event."""
        with self._lock:
            self._conn.execute(
                "UPDATE sessions SET context = ?, updated_at = ? WHERE handle = ?",
                (json.dumps(context), time.time(), handle),
            )

    def set_replay(self, handle: str, replay: list[str]) -> None:
        """Store the events still to re-send after a resume."""
        with self._lock:
            self._conn.execute(
                "UPDATE sessions SET replay = ?, updated_at = ? WHERE handle = ?",
                (json.dumps(replay), time.time(), handle),
            )

    def add_dead_letter(
        self, handle: str, queue_id: int, event: str, status: int | None, reason: str, response: str
    ) -> None:
        """Keep a rejected item. Adding the same (handle, queue_id) twice keeps one row."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO dead_letters"
                " (handle, queue_id, event, status, reason, response, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (handle, queue_id, event, status, reason, response, time.time()),
            )

    def dead_letters(self, handle: str | None = None) -> list[DeadLetter]:
        """Return dead letters, oldest first, of one session or of all."""
        query = "SELECT id, handle, event, status, reason, response, created_at FROM dead_letters"
        args: tuple[Any, ...] = ()
        if handle is not None:
            query += " WHERE handle = ?"
            args = (handle,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()

        return [DeadLetter(*row) for row in rows]

    def dead_letter_count(self) -> int:
        """Return how many dead letters are kept."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def add_to_counters(self, increments: dict[str, int]) -> None:
        """Add ``increments`` to the persistent counters in one commit."""
        if not increments:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for name, value in increments.items():
                    self._conn.execute(
                        "INSERT INTO counters (name, value) VALUES (?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                        (name, value),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def counters(self) -> dict[str, int]:
        """Return the persistent counters."""
        with self._lock:
            return dict(self._conn.execute("SELECT name, value FROM counters").fetchall())

    def get_setting(self, name: str) -> str | None:
        """Return a stored setting, or None if it was never set."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()

        return row[0] if row else None

    def set_setting(self, name: str, value: str | None) -> None:
        """Store a setting, or delete it when ``value`` is None."""
        with self._lock:
            if value is None:
                self._conn.execute("DELETE FROM settings WHERE name = ?", (name,))
            else:
                self._conn.execute(
                    "INSERT INTO settings (name, value) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )

    def delete_all_tracking_data(self) -> None:
        """Delete every session and dead letter, then compact the file so no copy stays on disk."""
        with self._lock:
            self._conn.execute("DELETE FROM sessions")
            self._conn.execute("DELETE FROM dead_letters")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


_RECORD_COLUMNS = (
    "handle, state, session_id, session_ids, start, context, replay, created_at,"
    " created_boot_id, created_boot_seconds, opened_at, opened_boot_id, opened_boot_seconds"
)


def _boot(boot_id: str | None, seconds: float | None) -> BootTime | None:
    return BootTime(boot_id, seconds) if boot_id is not None and seconds is not None else None


def _record(row: tuple[Any, ...]) -> SessionRecord:
    handle, state, session_id, session_ids, start, context, replay, created_at = row[:8]
    created_boot_id, created_boot_seconds, opened_at, opened_boot_id, opened_boot_seconds = row[8:]

    return SessionRecord(
        handle=handle,
        state=SessionState(state),
        session_id=session_id,
        session_ids=json.loads(session_ids),
        start=json.loads(start),
        context=json.loads(context),
        replay=json.loads(replay),
        created_at=created_at,
        created_boot=_boot(created_boot_id, created_boot_seconds),
        opened_at=opened_at,
        opened_boot=_boot(opened_boot_id, opened_boot_seconds),
    )
