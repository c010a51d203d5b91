"""A session's event queue: a persist-queue ``SQLiteAckQueue`` table in ``events.db``."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from persistqueue import SQLiteAckQueue
from persistqueue.sqlackqueue import AckStatus

from ._sqlite import apply_pragmas, create_private_file
from .clock import BootTime, boot_time

EVENTS_FILE = "events.db"

# Events are stored as compact JSON, so a ping always contains this text.
_PING_PATTERN = '%"eventType":"ping"%'

# persist-queue does not escape table names, so a handle must be plain hex.
_HANDLE = re.compile(r"^[0-9a-f]{32}$")


class _JsonText:
    """persist-queue serializer for items that are already JSON text.

    ``track()`` serialises each event once, to check it and its size, so the
    queue stores that text as it is and hands the same text back.
    """

    @staticmethod
    def dumps(item: str) -> str:
        return item

    @staticmethod
    def loads(data: Any) -> str:
        return data.decode("utf-8") if isinstance(data, bytes) else str(data)


@dataclass(frozen=True)
class QueuedEvent:
    """The head of a session's queue, taken by the worker and not yet acked.

    Attributes:
        queue_id: persist-queue row ID; ack and nack use it.
        text: The event body as JSON text.
        queued_at: Epoch seconds when ``track()`` committed it.
        queued_boot: Boot and time since boot when it was committed, which
            measure its age without trusting the wall clock.
    """

    queue_id: int
    text: str
    queued_at: float
    queued_boot: BootTime | None = None


def is_valid_handle(handle: str) -> bool:
    """Return True if ``handle`` has the shape of a session handle (32 hex digits)."""
    return bool(_HANDLE.match(handle))


def pending_summary_sql(handle: str) -> str:
    """Return the query for (items not acked, oldest queued_at) of a session's table."""
    return f"SELECT COUNT(*), MIN(timestamp) FROM {table_name(handle)} WHERE status < {AckStatus.acked}"


def pending_bytes_sql(handle: str) -> str:
    """Return the query for (items not acked, their total JSON size) of a session's table."""
    return f"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM {table_name(handle)} WHERE status < {AckStatus.acked}"


def sheddable_pings_sql(handle: str) -> str:
    """Return the query for ready pings that another ping follows, oldest first.

    A ping followed by a ping carries only playhead progress that the next
    one also carries. The last ping before any other event is never
    returned. The query takes the row limit as its one parameter and returns
    ``(row ID, queued_at epoch seconds, size)`` rows.
    """
    table = table_name(handle)
    ping = _PING_PATTERN
    return (
        f"SELECT a._id, a.timestamp, LENGTH(a.data) FROM {table} a"
        f" WHERE a.status < {AckStatus.unack} AND a.data LIKE '{ping}'"
        f" AND (SELECT b.data FROM {table} b WHERE b._id > a._id AND b.status < {AckStatus.acked}"
        f" ORDER BY b._id LIMIT 1) LIKE '{ping}' ORDER BY a._id LIMIT ?"
    )


def table_name(handle: str) -> str:
    """Return the name of the SQLite table that contains the queue of ``handle``."""
    return f"ack_queue_s{handle}"


class SessionQueue(SQLiteAckQueue):
    """The persist-queue ack queue of one session.

    Items are acked by row ID (``ack(id=...)``), never by object identity.
    ``auto_resume`` is off: only the process that holds the drain lock may
    turn another process's in-flight items back into ready ones. Each row
    also stores the boot ID and the time since boot of its commit.
    """

    _SQL_CREATE = (
        "CREATE TABLE IF NOT EXISTS {table_name} ("
        "{key_column} INTEGER PRIMARY KEY AUTOINCREMENT, "
        "data BLOB, timestamp FLOAT, status INTEGER, boot_id TEXT, boot_seconds FLOAT)"
    )
    _SQL_INSERT = (
        "INSERT INTO {table_name} (data, timestamp, status, boot_id, boot_seconds)"
        f" VALUES (?, ?, {AckStatus.inited}, ?, ?)"
    )

    def __init__(self, directory: Path, handle: str, synchronous: str, timeout: float = 30.0) -> None:
        if not is_valid_handle(handle):
            raise ValueError(f"invalid session handle {handle!r}: expected 32 lowercase hex digits")
        create_private_file(directory / EVENTS_FILE)
        self._synchronous = synchronous
        super().__init__(
            str(directory),
            name=f"s{handle}",
            multithreading=True,
            timeout=timeout,
            auto_resume=False,
            serializer=_JsonText,
            db_file_name=EVENTS_FILE,
        )

    def _new_db_connection(self, path: str, multithreading: bool, timeout: float) -> sqlite3.Connection:
        # persist-queue sets only journal_mode and does not check it; durability
        # needs synchronous set explicitly on every connection.
        conn = super()._new_db_connection(path, multithreading, timeout)
        apply_pragmas(conn, self._synchronous)
        return conn

    def _reader_connection(self) -> sqlite3.Connection:
        # persist-queue declares its connections as None until _init() runs.
        return cast(sqlite3.Connection, self._getter)

    def _writer_connection(self) -> sqlite3.Connection:
        return cast(sqlite3.Connection, self._putter)

    def put(self, item: str) -> int:
        """Append one item (JSON text) and commit it; return its row ID."""
        now = boot_time()
        row_id = self._insert_into(item, time.time(), now.boot_id, now.seconds)
        self.total += 1
        self.put_event.set()

        return int(row_id)

    def take_head(self) -> QueuedEvent | None:
        """Return the oldest item not yet acked, or None if there is none."""
        sql = (
            f"SELECT _id, data, timestamp, boot_id, boot_seconds FROM {self._table_name}"
            f" WHERE status < {AckStatus.unack} ORDER BY _id LIMIT 1"
        )
        with self.tran_lock:
            row = self._reader_connection().execute(sql).fetchone()

        # The item is not marked in flight, as persist-queue's get() would:
        # that costs a commit per event, and only the one drainer reads the
        # head, which stays first in line after a crash either way.
        return _queued_event(row) if row is not None else None

    def pending_items(self) -> list[QueuedEvent]:
        """Return every item not yet acked, oldest first."""
        sql = (
            f"SELECT _id, data, timestamp, boot_id, boot_seconds FROM {self._table_name}"
            f" WHERE status < {AckStatus.acked} ORDER BY _id"
        )
        with self.tran_lock:
            rows = self._reader_connection().execute(sql).fetchall()

        return [_queued_event(row) for row in rows]

    def ack_many(self, row_ids: list[int]) -> None:
        """Ack several rows by ID in one commit (a delivered batch)."""
        if not row_ids:
            return
        marks = ",".join("?" for _ in row_ids)
        with self.tran_lock:
            with self._writer_connection() as tran:
                tran.execute(
                    f"UPDATE {self._table_name} SET status = {AckStatus.acked} WHERE _id IN ({marks})", row_ids
                )

    def give_back_free_pages(self) -> None:
        """Return the file's free pages to the file system (needs ``auto_vacuum=INCREMENTAL``)."""
        with self.tran_lock:
            # execute() would step the pragma once and free a single page;
            # executescript() runs it to the end.
            self._writer_connection().executescript("PRAGMA incremental_vacuum;")

    def delete(self, row_ids: list[int]) -> None:
        """Delete rows by ID in one commit (used for shed pings)."""
        marks = ",".join("?" for _ in row_ids)
        with self.tran_lock:
            with self._writer_connection() as tran:
                tran.execute(f"DELETE FROM {self._table_name} WHERE _id IN ({marks})", row_ids)


def _queued_event(row: tuple[Any, ...]) -> QueuedEvent:
    row_id, data, queued_at, boot_id, boot_seconds = row
    boot = BootTime(boot_id, boot_seconds) if boot_id is not None else None

    return QueuedEvent(queue_id=row_id, text=_JsonText.loads(data), queued_at=queued_at, queued_boot=boot)
