"""The local store: a data directory with the session registry and the session queues."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

from ._log import get_logger
from .config import Durability
from .drain_lock import DrainLock
from .errors import StorageError
from .registry import OPEN_STATES, Registry, SessionState
from .session_queue import EVENTS_FILE, SessionQueue, table_name

DIRECTORY_MODE = 0o700


class Store:
    """Opens a data directory and hands out its registry and per-session queues.

    Thread-safe. Every write commits before the method returns, so a call that
    returned has put its data on disk with the configured durability.
    """

    def __init__(self, directory: Path, durability: Durability, logger: Any = None) -> None:
        self.directory = directory
        self._synchronous = durability.synchronous
        self._log = get_logger(logger)
        self._prepare_directory()
        try:
            self.registry = Registry(directory, self._synchronous)
        except (sqlite3.Error, OSError) as error:
            raise StorageError(str(directory / "registry.db"), str(error)) from error
        self.drain_lock = DrainLock(directory)
        self._queues: dict[str, SessionQueue] = {}
        self._queues_lock = threading.Lock()

    def queue(self, handle: str) -> SessionQueue:
        """Return the queue of ``handle``, creating its table on first use."""
        with self._queues_lock:
            queue = self._queues.get(handle)
            if queue is None:
                queue = SessionQueue(self.directory, handle, self._synchronous)
                self._queues[handle] = queue

        return queue

    def start_session(self, handle: str, start_body: dict[str, Any]) -> None:
        """Create the session's queue and registry record (state PENDING).

        Raises:
            StorageError: if either could not be committed.
        """
        try:
            self.queue(handle)
            self.registry.add_session(handle, start_body)
        except (sqlite3.Error, OSError) as error:
            raise StorageError(str(self.directory), str(error)) from error

    def put(self, handle: str, text: str) -> int:
        """Append one event (JSON text) to the session's queue and commit it.

        Returns:
            The queue row ID of the event.

        Raises:
            StorageError: if the commit failed (read-only or full disk, ...).
        """
        try:
            row_id = self.queue(handle).put(text)
        except (sqlite3.Error, OSError) as error:
            raise StorageError(str(self.directory / EVENTS_FILE), str(error)) from error

        return int(row_id or 0)

    def undelivered_count(self) -> int:
        """Return how many items still wait for delivery, sessionStart bodies included."""
        total = 0
        # A rejected session's events still wait to be moved to dead letters.
        for record in self.registry.sessions(OPEN_STATES + (SessionState.REJECTED,)):
            if record.session_id is None and record.state is not SessionState.REJECTED:
                total += 1
            total += len(record.replay)
            total += self.queue(record.handle).pending_count()

        return total

    def drop_queue(self, handle: str) -> None:
        """Close a finished session's queue and drop its table."""
        with self._queues_lock:
            queue = self._queues.pop(handle, None)
        if queue is not None:
            queue.close()

        conn = sqlite3.connect(self.directory / EVENTS_FILE, timeout=30.0, isolation_level=None)
        try:
            conn.execute(f"DROP TABLE IF EXISTS {table_name(handle)}")
        finally:
            conn.close()

    def delete_all(self) -> None:
        """Delete every queued event, session and dead letter, and compact the files.

        Deleted rows are not left behind in free pages or the write-ahead log:
        both databases are vacuumed and their logs truncated.
        """
        with self._queues_lock:
            queues = list(self._queues.values())
            self._queues.clear()
        for queue in queues:
            queue.close()

        conn = sqlite3.connect(self.directory / EVENTS_FILE, timeout=30.0, isolation_level=None)
        try:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ack_queue_s%'")
            for (name,) in tables.fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.registry.delete_all_tracking_data()

    def close(self) -> None:
        """Close every connection and release the drain lock."""
        with self._queues_lock:
            queues = list(self._queues.values())
            self._queues.clear()
        for queue in queues:
            queue.close()
        self.registry.close()
        self.drain_lock.release()

    def _prepare_directory(self) -> None:
        try:
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(str(self.directory), str(error)) from error

        mode = stat.S_IMODE(os.stat(self.directory).st_mode)
        if mode & 0o077:
            # The directory may be shared on purpose; say so rather than change it.
            self._log.warning(
                "data_dir_permissions_wide", path=str(self.directory), mode=oct(mode), expected="0o700"
            )


def is_closed_state(state: SessionState) -> bool:
    """Return True for states in which a session has nothing left to deliver."""
    return state in (SessionState.CLOSED, SessionState.REJECTED)
