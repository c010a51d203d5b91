"""The local store: a data directory with the session registry and the session queues."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._log import get_logger
from ._sqlite import create_private_file
from .budget import Limits, QueueBudget
from .config import Durability
from .counters import SHED, Counters
from .drain_lock import DrainLock
from .errors import QueueFullError, StorageError
from .quarantine import open_or_quarantine
from .registry import OPEN_STATES, Registry, SessionState
from .session_queue import (
    EVENTS_FILE,
    SessionQueue,
    pending_bytes_sql,
    pending_summary_sql,
    sheddable_pings_sql,
    table_name,
)

DIRECTORY_MODE = 0o700

# Session queues whose SQLite connections stay open at once (two connections
# and about four file descriptors each). Tracking more sessions than this in
# turn reopens a queue on every put, about 20 times slower (measured with 17
# sessions against 16), so the cap sits well above what a player runs at once.
MAX_OPEN_QUEUES = 64

# At the ceiling, pings are shed until this fraction of each limit is free.
SHED_HEADROOM = 0.02

# Space kept in the data directory for the worker's acks. When the disk fills
# up, the file is deleted so that delivery can go on and free space in the
# queues. It is written again once there is room. The size is twice the
# write-ahead log's checkpoint size (256 pages of 4 KiB).
RESERVE_FILE = "reserve.bin"
RESERVE_BYTES = 2 * 1024 * 1024


@dataclass
class _OpenQueue:
    queue: SessionQueue
    users: int = 0


class Store:
    """Opens a data directory and hands out its registry and per-session queues.

    Thread-safe. Every write commits before the method returns, so a call that
    returned has put its data on disk with the configured durability.
    """

    def __init__(
        self,
        directory: Path,
        durability: Durability,
        limits: Limits | None = None,
        counters: Counters | None = None,
        logger: Any = None,
    ) -> None:
        self.directory = directory
        self._synchronous = durability.synchronous
        self._log = get_logger(logger)
        self._counters = counters or Counters()
        self._prepare_directory()
        self.registry = open_or_quarantine(directory, self._open_databases, self._log)
        self.drain_lock = DrainLock(directory)
        self._queues: OrderedDict[str, _OpenQueue] = OrderedDict()
        self._queues_lock = threading.Lock()
        self._queue_returned = threading.Condition(self._queues_lock)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self.budget = QueueBudget(limits or Limits(max_events=2**62, max_bytes=2**62))
        self._shed_lock = threading.Lock()
        # Counting a large backlog reads every row, so it is left to the
        # worker's next scan and to the first put that reaches a limit.
        self.budget_counted = False
        self.ensure_reserve()
        _open_stores.add(self)

    def _open_databases(self) -> Registry:
        """Open both databases, raising ``sqlite3.DatabaseError`` if either is unusable."""
        registry = Registry(self.directory, self._synchronous)
        try:
            _probe_events_file(self.directory / EVENTS_FILE)
        except BaseException:
            registry.close()
            raise

        return registry

    @contextmanager
    def queue(self, handle: str) -> Iterator[SessionQueue]:
        """Lend the queue of ``handle``, creating its table on first use.

        At most ``MAX_OPEN_QUEUES`` queues keep their SQLite connections open.
        The least recently used idle one is closed when another is opened,
        so sessions that are never ended do not hold file descriptors and
        page caches for good. A queue is never closed while lent.
        """
        with self._queues_lock:
            entry = self._queues.get(handle)
            if entry is None:
                entry = self._queues[handle] = _OpenQueue(SessionQueue(self.directory, handle, self._synchronous))
            self._queues.move_to_end(handle)
            entry.users += 1
            self._close_idle_queues()
        try:
            yield entry.queue
        finally:
            with self._queues_lock:
                entry.users -= 1
                self._queue_returned.notify_all()

    def _close_idle_queues(self) -> None:
        for handle in list(self._queues):
            if len(self._queues) <= MAX_OPEN_QUEUES:
                return
            entry = self._queues[handle]
            if entry.users == 0:
                del self._queues[handle]
                entry.queue.close()

    def start_session(self, handle: str, start_body: dict[str, Any]) -> None:
        """Create the session's queue and registry record (state PENDING).

        Raises:
            StorageError: if either could not be committed.
        """
        try:
            with self.queue(handle):
                pass
            self.registry.add_session(handle, start_body)
        except (sqlite3.Error, OSError) as error:
            raise StorageError(str(self.directory), str(error)) from error

    def put(self, handle: str, text: str) -> int:
        """Append one event (JSON text) to the session's queue and commit it.

        Returns:
            The queue row ID of the event.

        Raises:
            QueueFullError: if a limit is reached and no ping can be shed.
            StorageError: if the commit failed (read-only or full disk, ...).
        """
        size = len(text)
        if not self.budget.try_add(size):
            self._make_room(size)
        try:
            with self.queue(handle) as queue:
                row_id = queue.put(text)
        except (sqlite3.Error, OSError) as error:
            self.budget.remove(1, size)
            self.release_reserve_if_full(error)
            raise StorageError(str(self.directory / EVENTS_FILE), str(error)) from error

        return int(row_id or 0)

    def ensure_reserve(self) -> None:
        """Write the reserve file if it is missing and the disk has room for it."""
        path = self.directory / RESERVE_FILE
        if path.exists():
            return
        try:
            stats = os.statvfs(self.directory)
            # Only with room to spare, or writing it would fill the disk again at once.
            if stats.f_bavail * stats.f_frsize < 3 * RESERVE_BYTES:
                return
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            path.unlink(missing_ok=True)

    def release_reserve_if_full(self, error: BaseException) -> bool:
        """Delete the reserve file if ``error`` reports a full disk; return whether it did."""
        if not is_disk_full(error):
            return False
        path = self.directory / RESERVE_FILE
        if not path.exists():
            return False

        path.unlink(missing_ok=True)
        self._log.error("disk_full", path=str(self.directory), released_bytes=RESERVE_BYTES)

        return True

    def release(self, events: int, size: int) -> None:
        """Stop counting events that left the queue (delivered or dead-lettered)."""
        self.budget.remove(events, size)

    def recount_budget(self) -> None:
        """Count the waiting events and bytes again from the store."""
        events = size = 0
        for record in self.registry.sessions(OPEN_STATES + (SessionState.REJECTED,)):
            row = self._read_row(pending_bytes_sql(record.handle))
            if row is not None:
                events += int(row[0])
                size += int(row[1])
        self.budget.reset(events, size)
        self.budget_counted = True

    def _make_room(self, size: int) -> None:
        """Shed the oldest pings that another ping follows until an event of ``size`` fits."""
        with self._shed_lock:
            # Other processes' puts, and rows put back by the command line, are
            # only counted here.
            self.recount_budget()
            if self.budget.try_add(size):
                return
            events_needed, bytes_needed = self.budget.excess(size, SHED_HEADROOM)
            shed = self._shed_pings(events_needed, bytes_needed)
            for handle, count in shed.items():
                self._counters.add(SHED, count)
                self._log.warning("pings_shed", handle=handle, count=count)
            if self.budget.try_add(size):
                return

        limits = self.budget.limits
        events, _ = self.budget.totals()
        if events + 1 > limits.max_events:
            raise QueueFullError("max_queued_events", limits.max_events)
        raise QueueFullError("max_queued_bytes", limits.max_bytes)

    def _shed_pings(self, events_needed: int, bytes_needed: int) -> dict[str, int]:
        """Delete the oldest sheddable pings across sessions; return how many per session handle."""
        candidates: list[tuple[float, str, int, int]] = []
        limit = max(events_needed, 1) + 100
        for record in self.registry.sessions(OPEN_STATES):
            # Read through the store's own connection: a session closing
            # meanwhile must not get its dropped table created again.
            for row_id, queued_at, length in self._read_rows(sheddable_pings_sql(record.handle), limit):
                candidates.append((queued_at, record.handle, row_id, length))
        candidates.sort()

        chosen: dict[str, list[int]] = {}
        freed_events = freed_bytes = 0
        for _, handle, row_id, length in candidates:
            if freed_events >= events_needed and freed_bytes >= bytes_needed:
                break
            chosen.setdefault(handle, []).append(row_id)
            freed_events += 1
            freed_bytes += length
        for handle, row_ids in chosen.items():
            with self.queue(handle) as queue:
                queue.delete(row_ids)
        self.budget.remove(freed_events, freed_bytes)

        return {handle: len(row_ids) for handle, row_ids in chosen.items()}

    def undelivered_count(self) -> int:
        """Return how many items still wait for delivery, sessionStart bodies included."""
        total = 0
        # A rejected session's events still wait to be moved to dead letters.
        for record in self.registry.sessions(OPEN_STATES + (SessionState.REJECTED,)):
            if record.session_id is None and record.state is not SessionState.REJECTED:
                total += 1
            total += len(record.replay)
            total += self.pending_summary(record.handle)[0]

        return total

    def pending_summary(self, handle: str) -> tuple[int, float | None]:
        """Return how many items of a session are not acked and when the oldest was queued.

        Reads through its own connection and never creates a queue, because
        the worker may close the session and drop its table at any moment.
        """
        row = self._read_row(pending_summary_sql(handle))
        if row is None:
            return 0, None

        return int(row[0]), row[1]

    def _reading_connection(self) -> sqlite3.Connection:
        """Return the store's own connection to the events database; call with ``_reader_lock`` held."""
        if self._reader is None:
            self._reader = sqlite3.connect(self.directory / EVENTS_FILE, timeout=30.0, check_same_thread=False)

        return self._reader

    def _read_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a query on the reading connection; no rows if the table is gone."""
        with self._reader_lock:
            try:
                return [tuple(row) for row in self._reading_connection().execute(sql, params).fetchall()]
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []
                raise

    def _read_row(self, sql: str) -> tuple[Any, ...] | None:
        """Run a one-row query on the reading connection; None if the table is gone."""
        with self._reader_lock:
            try:
                return tuple(self._reading_connection().execute(sql).fetchone())
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return None
                raise

    def drop_queue(self, handle: str) -> None:
        """Close a finished session's queue once no thread uses it, and drop its table."""
        with self._queues_lock:
            entry = self._queues.pop(handle, None)
            while entry is not None and entry.users:
                self._queue_returned.wait()
        if entry is not None:
            entry.queue.close()

        with self._reader_lock:
            conn = self._reading_connection()
            conn.execute(f"DROP TABLE IF EXISTS {table_name(handle)}")
            conn.commit()
            # execute() would step the pragma once and free a single page.
            conn.executescript("PRAGMA incremental_vacuum;")

    def delete_all(self) -> None:
        """Delete every queued event, session and dead letter, and compact the files.

        Deleted rows are not left behind in free pages or the write-ahead log:
        both databases are vacuumed and their logs truncated.
        """
        with self._queues_lock:
            entries = list(self._queues.values())
            self._queues.clear()
            while any(entry.users for entry in entries):
                self._queue_returned.wait()
        for entry in entries:
            entry.queue.close()

        with self._reader_lock:
            conn = self._reading_connection()
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ack_queue_s%'")
            for (name,) in tables.fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.commit()
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.registry.delete_all_tracking_data()

    def close(self) -> None:
        """Close every connection and release the drain lock."""
        with self._queues_lock:
            entries = list(self._queues.values())
            self._queues.clear()
        for entry in entries:
            entry.queue.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self.registry.close()
        self.release_drain_lock()

    def release_drain_lock(self) -> None:
        """Let another process, or another Tracker here, deliver this directory."""
        if self.drain_lock.is_held:
            self._log.info("drain_lock_released", path=str(self.directory))
        self.drain_lock.release()

    def _prepare_directory(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise StorageError(str(self.directory), "exists and is not a directory")
        try:
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(str(self.directory), str(error)) from error

        mode = stat.S_IMODE(os.stat(self.directory).st_mode)
        if mode & 0o077:
            # The directory may be shared on purpose, so report it rather than change it.
            self._log.warning("data_dir_permissions_wide", path=str(self.directory), mode=oct(mode), expected="0o700")


def _probe_events_file(path: Path) -> None:
    """Open the events database once, raising if it is not a usable SQLite file."""
    if path.is_dir():
        raise sqlite3.DatabaseError(f"{path.name} is a directory")
    create_private_file(path)
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        # persist-queue switches a new file to WAL before our settings run,
        # and auto_vacuum only takes effect on a file that has no header yet.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def is_disk_full(error: BaseException) -> bool:
    """Return True if ``error`` reports a full disk (SQLite's SQLITE_FULL or ENOSPC)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True

    return isinstance(error, sqlite3.OperationalError) and "full" in str(error).lower()


# A thread inside SQLite when another thread calls fork() leaves SQLite's
# mutexes locked for good in the child, which then hangs on its first new
# connection. Every SQLite call of the store runs under one of these locks,
# so taking them all around fork() means no thread is inside SQLite then.
_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()
_locks_held_for_fork: list[threading.Lock] = []


def _take_locks_before_fork() -> None:
    for store in list(_open_stores):
        store._queues_lock.acquire()
        _locks_held_for_fork.append(store._queues_lock)
        for entry in store._queues.values():
            entry.queue.tran_lock.acquire()
            _locks_held_for_fork.append(entry.queue.tran_lock)
        for lock in (store._reader_lock, store.registry._lock):
            lock.acquire()
            _locks_held_for_fork.append(lock)


def _release_locks_after_fork() -> None:
    while _locks_held_for_fork:
        _locks_held_for_fork.pop().release()


os.register_at_fork(
    before=_take_locks_before_fork,
    after_in_parent=_release_locks_after_fork,
    after_in_child=_release_locks_after_fork,
)
