"""Operations on a data directory from outside the app that owns it.

The ``durabletrack`` command uses these to show and act on what a data
directory holds, whether or not an app is running on it. None of them takes
the drain lock or turns in-flight items back into ready ones, so a running
drainer keeps delivering. The read-only functions (:func:`read_status`,
:func:`read_queued_events`, :func:`read_dead_letters`) open the databases with
SQLite's ``mode=ro``. Only :func:`requeue_dead_letters` and :func:`purge`
write, and only to do what they are named for.

Opening a directory never creates it. A directory without ``registry.db`` is
not a data directory.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._sqlite import apply_pragmas
from .drain_lock import LOCK_FILE
from .errors import DurabletrackError
from .registry import OPEN_STATES, OPTED_OUT, REGISTRY_FILE, SESSION_START_QUEUE_ID, SessionState
from .session_queue import EVENTS_FILE, SessionQueue, is_valid_handle, table_name

# persist-queue's AckStatus value for a delivered row. Every row below it still waits.
ACKED = 5

# Seconds a command waits for a database that another process is writing.
BUSY_TIMEOUT_S = 30.0

PROC_LOCKS = Path("/proc/locks")


class DataDirError(DurabletrackError, OSError):
    """A path given as a data directory cannot be used as one.

    Attributes:
        path: The directory, or the file in it that failed.
        problem: What is wrong, such as ``does not exist``.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class DirectoryLockedError(DurabletrackError, RuntimeError):
    """Another process holds the data directory's drain lock.

    Attributes:
        path: The data directory.
        pid: Process ID of the holder, or None if it could not be read.
    """

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{path}: {holder} holds the drain lock; stop that app first, or wait for it to exit")


class SessionNotFoundError(DurabletrackError, LookupError):
    """No session, or more than one, matches a handle given on the command line.

    Attributes:
        handle: The handle or handle prefix that was given.
    """

    def __init__(self, path: Path, handle: str, problem: str) -> None:
        self.handle = handle
        super().__init__(f"{path}: {problem} session handle {handle!r}")


@dataclass(frozen=True)
class SessionSummary:
    """Contents of a data directory for one session that is not closed.

    Attributes:
        handle: Local session handle.
        state: Lifecycle state (``pending``, ``active``, ``resuming``, ``rejected``).
        session_ids: Server session IDs it had, oldest first.
        queued_events: Items waiting for delivery, counted as ``Tracker.stats()``
            counts them: queue rows not acked, events to re-send after a
            resume, and the sessionStart while there is no session ID.
        oldest_queued_at: Epoch seconds when the oldest waiting row was
            queued, or None.
        dead_letters: Dead letters kept for this session.
        created_at: Epoch seconds when the session was started.
    """

    handle: str
    state: str
    session_ids: list[str]
    queued_events: int
    oldest_queued_at: float | None
    dead_letters: int
    created_at: float


@dataclass(frozen=True)
class DirectoryStatus:
    """A snapshot of a data directory, read without changing it.

    Attributes:
        path: The data directory.
        mode: Permission bits of the directory.
        wide_permissions: Paths (the directory or its files) that other
            users may access; the library creates them 0700 and 0600.
        quarantined: Files a Tracker moved aside (``*.corrupt-<time>``)
            because they were unusable, kept for examination.
        drainer_pid: Process ID holding the drain lock, or None when no
            process holds it or ``/proc/locks`` cannot be read.
        opted_out: True if the user opted out of tracking.
        sessions_by_state: Number of sessions per state, closed ones included.
        sessions: Sessions that are not closed, oldest first.
        dead_letters: Dead letters kept.
        bytes_on_disk: Size of the directory's regular files in bytes.
        totals: Persistent counters (``delivered``, ``retried``, ...) summed
            over every tracker that used the directory. A drainer saves its
            counts every poll interval and at close, so the last few seconds
            of a running or killed drainer may be missing.
    """

    path: Path
    mode: int
    wide_permissions: list[str]
    quarantined: list[str]
    drainer_pid: int | None
    opted_out: bool
    sessions_by_state: dict[str, int]
    sessions: list[SessionSummary]
    dead_letters: int
    bytes_on_disk: int
    totals: dict[str, int]

    @property
    def queued_events(self) -> int:
        """Items waiting for delivery in every session."""
        return sum(session.queued_events for session in self.sessions)

    @property
    def oldest_queued_at(self) -> float | None:
        """Epoch seconds when the oldest waiting row was queued, or None."""
        stamps = [s.oldest_queued_at for s in self.sessions if s.oldest_queued_at is not None]

        return min(stamps) if stamps else None

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """Return the snapshot as JSON-ready values; ages are in seconds before ``now``."""
        now = time.time() if now is None else now
        oldest = self.oldest_queued_at

        return {
            "path": str(self.path),
            "mode": f"{self.mode:04o}",
            "wide_permissions": self.wide_permissions,
            "quarantined": self.quarantined,
            "drainer_pid": self.drainer_pid,
            "opted_out": self.opted_out,
            "sessions_by_state": self.sessions_by_state,
            "queued_events": self.queued_events,
            "oldest_event_age_s": None if oldest is None else round(max(now - oldest, 0.0), 3),
            "dead_letters": self.dead_letters,
            "bytes_on_disk": self.bytes_on_disk,
            "totals": self.totals,
            "sessions": [_session_json(session, now) for session in self.sessions],
        }


@dataclass(frozen=True)
class QueuedItem:
    """One item a session still has to deliver, in delivery order.

    Attributes:
        kind: ``sessionStart`` (not yet sent), ``replay`` (re-sent after a
            resume) or ``event`` (a queue row).
        body: The event body as JSON text.
        queue_id: Queue row ID, or None for sessionStart and replay items.
        queued_at: Epoch seconds when the row was queued, or None.
    """

    kind: str
    body: str
    queue_id: int | None = None
    queued_at: float | None = None


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter as stored, with the queue row it came from.

    Attributes:
        id: Dead-letter ID (what ``requeue --id`` takes).
        handle: Local session handle.
        queue_id: Queue row ID of the event; 0 for a sessionStart.
        event: The event body as JSON text.
        status: HTTP status of the rejection, or None.
        reason: Short machine-readable cause.
        response: The collector's response body, cut to the size limit.
        created_at: Epoch seconds when it was dead-lettered.
    """

    id: int
    handle: str
    queue_id: int
    event: str
    status: int | None
    reason: str
    response: str
    created_at: float


@dataclass
class RequeueReport:
    """Outcome of :func:`requeue_dead_letters`.

    Attributes:
        requeued: Dead-letter IDs put back in their session's queue.
        skipped: Dead-letter ID and the reason it stayed a dead letter.
        reopened: Handles of rejected sessions whose sessionStart will be sent again.
    """

    requeued: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PurgeReport:
    """Counts of the rows :func:`purge` deleted.

    Attributes:
        sessions: Session records deleted.
        queued_rows: Queue rows deleted, acked ones included.
        dead_letters: Dead letters deleted.
    """

    sessions: int
    queued_rows: int
    dead_letters: int


# Checking and opening -------------------------------------------------------


def check_data_dir(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking that it is a readable data directory.

    Raises:
        DataDirError: if the path does not exist, is not a directory, cannot
            be read or has no ``registry.db``.
    """
    directory = Path(path)
    if not directory.exists():
        raise DataDirError(directory, "does not exist")
    if not directory.is_dir():
        raise DataDirError(directory, "is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise DataDirError(directory, "cannot be read (permission denied)")

    registry = directory / REGISTRY_FILE
    if not registry.is_file():
        raise DataDirError(directory, f"is not a durabletrack data directory (no {REGISTRY_FILE})")
    if not os.access(registry, os.R_OK):
        raise DataDirError(registry, "cannot be read (permission denied)")

    return directory


@contextmanager
def read_only(database: Path) -> Iterator[sqlite3.Connection]:
    """Open an SQLite file with ``mode=ro`` and close it afterwards.

    SQLite may create the empty ``-wal`` and ``-shm`` files it needs to read
    a WAL database; the database itself is never written.

    Raises:
        DataDirError: if the file cannot be opened or is not an SQLite database.
    """
    uri = f"file:{quote(str(database.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise DataDirError(database, f"cannot be opened: {error}") from error
    try:
        _check_is_database(conn, database)
        yield conn
    finally:
        conn.close()


def _check_is_database(conn: sqlite3.Connection, database: Path) -> None:
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise DataDirError(database, f"is corrupt or not an SQLite database: {error}") from error


def _corrupt(database: Path, error: sqlite3.Error) -> DataDirError:
    return DataDirError(database, f"is corrupt or has an unexpected schema: {error}")


# Drain lock -----------------------------------------------------------------


def find_drainer_pid(directory: Path) -> int | None:
    """Return the process ID holding the drain lock, without taking the lock.

    Reads ``/proc/locks`` (Linux), which lists every ``flock`` with its
    holder and the device and inode of the locked file. Returns None when no
    process holds the lock, and also when ``/proc/locks`` cannot be read. A
    holder in another PID namespace is reported as 0.
    """
    try:
        info = os.stat(directory / LOCK_FILE)
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return None

    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    for line in lines:
        pid = _flock_holder(line, wanted)
        if pid is not None:
            return pid

    return None


def _flock_holder(line: str, wanted: tuple[int, int, int]) -> int | None:
    # Format: "1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF"; waiters have "->" after the number.
    parts = line.split()
    if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
        return None

    try:
        major, minor, inode = parts[5].split(":")
        device = (int(major, 16), int(minor, 16), int(inode))
        pid = int(parts[4])
    except ValueError:
        return None

    return pid if device == wanted else None


def check_not_drained(directory: Path) -> None:
    """Raise DirectoryLockedError if a process holds the drain lock of ``directory``."""
    pid = find_drainer_pid(directory)
    if pid is not None:
        raise DirectoryLockedError(directory, pid)


# Status ---------------------------------------------------------------------


def read_status(path: str | os.PathLike[str], now: float | None = None) -> DirectoryStatus:
    """Read a snapshot of a data directory without changing it.

    Raises:
        DataDirError: if the directory is missing, unreadable, not a data
            directory or corrupt.
    """
    directory = check_data_dir(path)
    registry = directory / REGISTRY_FILE
    with read_only(registry) as conn:
        try:
            records = _open_session_rows(conn)
            by_state = dict(conn.execute("SELECT state, COUNT(*) FROM sessions GROUP BY state").fetchall())
            dead_by_handle = dict(conn.execute("SELECT handle, COUNT(*) FROM dead_letters GROUP BY handle").fetchall())
            totals = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            opted_out = _read_setting(conn, OPTED_OUT) == "1"
        except sqlite3.Error as error:
            raise _corrupt(registry, error) from error

    queues = _read_queue_summaries(directory, [row["handle"] for row in records])
    sessions = [_summary(row, queues.get(row["handle"]), dead_by_handle.get(row["handle"], 0)) for row in records]

    return DirectoryStatus(
        path=directory,
        mode=stat.S_IMODE(directory.stat().st_mode),
        wide_permissions=find_wide_permissions(directory),
        quarantined=sorted(entry.name for entry in directory.glob("*.corrupt-*")),
        drainer_pid=find_drainer_pid(directory),
        opted_out=opted_out,
        sessions_by_state=by_state,
        sessions=sessions,
        dead_letters=sum(dead_by_handle.values()),
        bytes_on_disk=_directory_size(directory),
        totals=totals,
    )


def find_wide_permissions(directory: Path) -> list[str]:
    """Return the data directory and the files in it that group or other users may access."""
    wide = []
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        wide.append(str(directory))
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and stat.S_IMODE(entry.stat().st_mode) & 0o077:
            wide.append(str(entry))

    return wide


def _open_session_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    states = [state.value for state in OPEN_STATES + (SessionState.REJECTED,)]
    marks = ",".join("?" for _ in states)
    rows = conn.execute(
        "SELECT handle, state, session_id, session_ids, replay, created_at FROM sessions"
        f" WHERE state IN ({marks}) ORDER BY created_at, handle",
        states,
    ).fetchall()
    names = ("handle", "state", "session_id", "session_ids", "replay", "created_at")

    return [dict(zip(names, row, strict=True)) for row in rows]


def _read_setting(conn: sqlite3.Connection, name: str) -> str | None:
    # Data directories written before settings existed have no such table.
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'").fetchone()
    if not has_table:
        return None
    row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()

    return row[0] if row else None


def _read_queue_summaries(directory: Path, handles: list[str]) -> dict[str, tuple[int, float | None]]:
    """Return (not acked, oldest queued_at) per handle that has a queue table."""
    events = directory / EVENTS_FILE
    if not events.exists() or not handles:
        return {}

    summaries = {}
    with read_only(events) as conn:
        existing = _queue_tables(conn)
        for handle in handles:
            if table_name(handle) not in existing:
                continue
            try:
                summaries[handle] = conn.execute(
                    f'SELECT COUNT(*), MIN(timestamp) FROM "{table_name(handle)}" WHERE status < {ACKED}'
                ).fetchone()
            except sqlite3.Error as error:
                raise _corrupt(events, error) from error

    return summaries


def _queue_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ack_queue_s%'")

    return {name for (name,) in rows.fetchall()}


def _summary(row: dict[str, Any], queue: tuple[int, float | None] | None, dead_letters: int) -> SessionSummary:
    count, oldest = queue or (0, None)
    replay = json.loads(row["replay"])
    # Mirrors Tracker.stats(): a session without a session ID still has its
    # sessionStart to send, unless the collector rejected it.
    unsent_start = 1 if row["session_id"] is None and row["state"] != SessionState.REJECTED.value else 0

    return SessionSummary(
        handle=row["handle"],
        state=row["state"],
        session_ids=json.loads(row["session_ids"]),
        queued_events=int(count) + len(replay) + unsent_start,
        oldest_queued_at=oldest,
        dead_letters=dead_letters,
        created_at=row["created_at"],
    )


def _session_json(session: SessionSummary, now: float) -> dict[str, Any]:
    oldest = session.oldest_queued_at

    return {
        "handle": session.handle,
        "state": session.state,
        "session_ids": session.session_ids,
        "queued_events": session.queued_events,
        "oldest_event_age_s": None if oldest is None else round(max(now - oldest, 0.0), 3),
        "dead_letters": session.dead_letters,
        "created_at": session.created_at,
    }


def _directory_size(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())


# Queued events --------------------------------------------------------------


def resolve_handle(path: str | os.PathLike[str], handle: str) -> str:
    """Return the full session handle that ``handle`` (a whole handle or a unique prefix) names.

    Raises:
        DataDirError: if the directory cannot be read.
        SessionNotFoundError: if no session or several sessions match.
    """
    directory = check_data_dir(path)
    prefix = handle.lower()
    with read_only(directory / REGISTRY_FILE) as conn:
        rows = conn.execute("SELECT handle FROM sessions WHERE handle LIKE ? || '%'", (prefix,)).fetchall()
        if not rows:
            rows = conn.execute(
                "SELECT DISTINCT handle FROM dead_letters WHERE handle LIKE ? || '%'", (prefix,)
            ).fetchall()

    if not rows:
        raise SessionNotFoundError(directory, handle, "no session has the")
    if len(rows) > 1:
        raise SessionNotFoundError(directory, handle, f"{len(rows)} sessions start with the")

    return str(rows[0][0])


def read_queued_events(path: str | os.PathLike[str], handle: str) -> list[QueuedItem]:
    """Return what a session still has to deliver, in the order a drainer sends it.

    The sessionStart comes first while the session has no session ID, then
    the events to re-send after a resume, then the queue rows not acked.

    Raises:
        DataDirError: if the directory cannot be read.
        SessionNotFoundError: if no session has ``handle``.
    """
    directory = check_data_dir(path)
    registry = directory / REGISTRY_FILE
    with read_only(registry) as conn:
        row = conn.execute(
            "SELECT state, session_id, start, replay FROM sessions WHERE handle = ?", (handle,)
        ).fetchone()
    if row is None:
        raise SessionNotFoundError(directory, handle, "no session has the")

    state, session_id, start, replay = row
    items = []
    if session_id is None and state in (SessionState.PENDING.value, SessionState.RESUMING.value):
        items.append(QueuedItem(kind="sessionStart", body=start))
    items.extend(QueuedItem(kind="replay", body=text) for text in json.loads(replay))
    items.extend(_read_queue_rows(directory, handle))

    return items


def _read_queue_rows(directory: Path, handle: str) -> list[QueuedItem]:
    events = directory / EVENTS_FILE
    if not events.exists():
        return []

    with read_only(events) as conn:
        if table_name(handle) not in _queue_tables(conn):
            return []
        rows = conn.execute(
            f'SELECT _id, data, timestamp FROM "{table_name(handle)}" WHERE status < {ACKED} ORDER BY _id'
        ).fetchall()

    return [
        QueuedItem(kind="event", body=_text(data), queue_id=row_id, queued_at=queued_at)
        for row_id, data, queued_at in rows
    ]


def _text(data: Any) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)


# Dead letters ---------------------------------------------------------------


def read_dead_letters(path: str | os.PathLike[str], handle: str | None = None) -> list[DeadLetterRow]:
    """Return dead letters, oldest first, of one session or of all.

    Raises:
        DataDirError: if the directory cannot be read.
    """
    directory = check_data_dir(path)
    registry = directory / REGISTRY_FILE
    query = "SELECT id, handle, queue_id, event, status, reason, response, created_at FROM dead_letters"
    args: tuple[Any, ...] = ()
    if handle is not None:
        query += " WHERE handle = ?"
        args = (handle,)

    with read_only(registry) as conn:
        try:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.Error as error:
            raise _corrupt(registry, error) from error

    return [DeadLetterRow(*row) for row in rows]


def requeue_dead_letters(
    path: str | os.PathLike[str], ids: Sequence[int] | None = None, handle: str | None = None
) -> RequeueReport:
    """Put dead letters back in their session's queue, each at the place it left.

    An event goes back under its original queue row ID, so it is delivered
    before every event tracked after it. Per session:

    - pending, active or resuming: the events are queued again. If the
      session already delivered later events, the collector may reject the
      requeued one again, because its ``playerTime.ts`` is older.
    - rejected (the collector refused its sessionStart): the session is
      reopened, so the next drainer sends its sessionStart again (as a
      resume if it had a session ID before), and its events are queued. The
      sessionStart's own dead letter is requeued with any of its events.
    - closed, or its record removed: nothing is done and the dead letters
      stay, because the server session has ended and a drainer would never
      send them. They are listed in ``skipped``.

    Works while an app drains the directory: the registry stays locked for
    writing until the dead letters are deleted, so a drainer that rejects a
    requeued event again stores a new dead letter rather than losing it.

    Args:
        path: The data directory.
        ids: Dead-letter IDs to requeue, or None for every dead letter.
        handle: Only requeue dead letters of this session.

    Raises:
        DataDirError: if the directory cannot be read or written.
    """
    directory = check_data_dir(path)
    report = RequeueReport()
    chosen = _choose_dead_letters(read_dead_letters(directory, handle), ids, report)

    by_handle: dict[str, list[DeadLetterRow]] = {}
    for row in chosen:
        by_handle.setdefault(row.handle, []).append(row)
    for session_handle, rows in by_handle.items():
        _requeue_session(directory, session_handle, rows, report)

    return report


def _choose_dead_letters(
    rows: list[DeadLetterRow], ids: Sequence[int] | None, report: RequeueReport
) -> list[DeadLetterRow]:
    if ids is None:
        return rows

    by_id = {row.id: row for row in rows}
    for missing in sorted(set(ids) - set(by_id)):
        report.skipped.append((missing, "no such dead letter"))
    chosen = [by_id[dead_id] for dead_id in sorted(set(ids) & set(by_id))]

    # A rejected session's events cannot be delivered without its sessionStart.
    handles = {row.handle for row in chosen}
    starts = [row for row in rows if row.queue_id == SESSION_START_QUEUE_ID and row.handle in handles]

    return sorted({row.id: row for row in chosen + starts}.values(), key=lambda row: row.id)


def _requeue_session(directory: Path, handle: str, rows: list[DeadLetterRow], report: RequeueReport) -> None:
    registry = _open_for_writing(directory / REGISTRY_FILE)
    try:
        # Held until the dead letters are deleted: a drainer's write (a new
        # dead letter, an ack's context) waits, so none of them is lost.
        registry.execute("BEGIN IMMEDIATE")
        record = registry.execute("SELECT state, session_ids FROM sessions WHERE handle = ?", (handle,)).fetchone()
        problem = _requeue_problem(handle, record)
        if problem is not None:
            registry.execute("ROLLBACK")
            report.skipped.extend((row.id, problem) for row in rows)
            return

        state, session_ids = record
        if state == SessionState.REJECTED.value:
            # A session that had a session ID was rejected while resuming: resume it again.
            reopened = SessionState.RESUMING if json.loads(session_ids) else SessionState.PENDING
            registry.execute(
                "UPDATE sessions SET state = ?, session_id = NULL, updated_at = ? WHERE handle = ?",
                (reopened.value, time.time(), handle),
            )
            report.reopened.append(handle)

        _insert_queue_rows(directory, handle, [row for row in rows if row.queue_id != SESSION_START_QUEUE_ID])
        registry.executemany("DELETE FROM dead_letters WHERE id = ?", [(row.id,) for row in rows])
        registry.execute("COMMIT")
        report.requeued.extend(row.id for row in rows)
    except sqlite3.Error as error:
        if registry.in_transaction:
            registry.execute("ROLLBACK")
        raise DataDirError(directory, f"could not requeue dead letters of session {handle}: {error}") from error
    finally:
        registry.close()


def _requeue_problem(handle: str, record: tuple[str, str] | None) -> str | None:
    if not is_valid_handle(handle):
        return "the session handle is not 32 hex digits"
    if record is None:
        return "the session's record was removed, so no drainer would send it"
    if record[0] == SessionState.CLOSED.value:
        return "the session is closed: its server session has ended"

    return None


def _insert_queue_rows(directory: Path, handle: str, rows: list[DeadLetterRow]) -> None:
    if not rows:
        return

    _ensure_queue_table(directory, handle)
    events = _open_for_writing(directory / EVENTS_FILE)
    try:
        events.execute("BEGIN IMMEDIATE")
        for row in rows:
            # The original row ID keeps the event ahead of later ones. A row
            # still there (acked, not yet cleared) is marked ready again.
            events.execute(
                f'INSERT INTO "{table_name(handle)}" (_id, data, timestamp, status) VALUES (?, ?, ?, 1)'
                f" ON CONFLICT(_id) DO UPDATE SET status = 1 WHERE status >= {ACKED}",
                (row.queue_id, row.event, _queued_at(row)),
            )
        events.execute("COMMIT")
    except BaseException:
        if events.in_transaction:
            events.execute("ROLLBACK")
        raise
    finally:
        events.close()


def _ensure_queue_table(directory: Path, handle: str) -> None:
    # persist-queue creates the table with its own schema; auto_resume is off
    # in SessionQueue, so opening it leaves other processes' items alone.
    queue = SessionQueue(directory, handle, "FULL")
    queue.close()


def _queued_at(row: DeadLetterRow) -> float:
    # The queue stores when track() committed the event; playerTime.ts (epoch
    # milliseconds) was stamped at that moment.
    try:
        return float(json.loads(row.event)["playerTime"]["ts"]) / 1000.0
    except (ValueError, KeyError, TypeError):
        return row.created_at


def _open_for_writing(database: Path) -> sqlite3.Connection:
    if not database.exists():
        raise DataDirError(database, "does not exist")
    try:
        conn = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        apply_pragmas(conn, "FULL")
    except sqlite3.Error as error:
        raise DataDirError(database, f"cannot be opened for writing: {error}") from error

    return conn


# Purge ----------------------------------------------------------------------


def purge(path: str | os.PathLike[str]) -> PurgeReport:
    """Delete every queued event, session and dead letter, and compact the files.

    The counters and settings (such as an opt-out) stay. Both databases are
    vacuumed and their write-ahead logs truncated, so deleted values do not
    stay in free pages.

    Raises:
        DataDirError: if the directory cannot be read or written.
        DirectoryLockedError: if a process drains the directory. Stop the app
            first: its open sessions would write into dropped queues.
    """
    directory = check_data_dir(path)
    # NOTE: an app that starts between this check and the end of the purge
    # writes into dropped tables. Holding the drain lock for the purge would close that gap.
    check_not_drained(directory)

    queued_rows = _purge_queues(directory)
    registry = _open_for_writing(directory / REGISTRY_FILE)
    try:
        sessions = registry.execute("DELETE FROM sessions").rowcount
        dead_letters = registry.execute("DELETE FROM dead_letters").rowcount
        _compact(registry)
    except sqlite3.Error as error:
        raise DataDirError(directory / REGISTRY_FILE, f"could not be purged: {error}") from error
    finally:
        registry.close()

    return PurgeReport(sessions=sessions, queued_rows=queued_rows, dead_letters=dead_letters)


def _purge_queues(directory: Path) -> int:
    events_path = directory / EVENTS_FILE
    if not events_path.exists():
        return 0

    events = _open_for_writing(events_path)
    try:
        deleted = 0
        for name in sorted(_queue_tables(events)):
            deleted += events.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            events.execute(f'DROP TABLE "{name}"')
        _compact(events)
    except sqlite3.Error as error:
        raise DataDirError(events_path, f"could not be purged: {error}") from error
    finally:
        events.close()

    return int(deleted)


def _compact(conn: sqlite3.Connection) -> None:
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
