"""A session's event queue: a persist-queue ``SQLiteAckQueue`` table in ``events.db``."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persistqueue import SQLiteAckQueue
from persistqueue.exceptions import Empty

from ._sqlite import apply_pragmas, create_private_file

EVENTS_FILE = "events.db"

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
    """

    queue_id: int
    text: str
    queued_at: float


def is_valid_handle(handle: str) -> bool:
    """Return True if ``handle`` has the shape of a session handle (32 hex digits)."""
    return bool(_HANDLE.match(handle))


def table_name(handle: str) -> str:
    """Return the SQLite table that holds the queue of ``handle``."""
    return f"ack_queue_s{handle}"


class SessionQueue(SQLiteAckQueue):
    """The persist-queue ack queue of one session.

    Items are acked by row ID (``ack(id=...)``), never by object identity.
    ``auto_resume`` is off: only the process that holds the drain lock may
    turn another process's in-flight items back into ready ones.
    """

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

    def take_head(self) -> QueuedEvent | None:
        """Mark the oldest ready item in flight and return it, or None if there is none."""
        if not self._has_ready():
            return None
        try:
            raw = self.get(block=False, raw=True)
        except Empty:
            return None

        return QueuedEvent(queue_id=raw["pqid"], text=raw["data"], queued_at=raw["timestamp"])

    def pending_count(self) -> int:
        """Return the items not yet acked: ready and in flight."""
        sql = f"SELECT COUNT(*) FROM {self._table_name} WHERE status < 5"
        with self.tran_lock:
            return int(self._getter.execute(sql).fetchone()[0])

    def pending_summary(self) -> tuple[int, float | None]:
        """Return how many items are not yet acked and when the oldest was queued (epoch seconds)."""
        sql = f"SELECT COUNT(*), MIN(timestamp) FROM {self._table_name} WHERE status < 5"
        with self.tran_lock:
            count, oldest = self._getter.execute(sql).fetchone()

        return int(count), oldest

    def pending_items(self) -> list[QueuedEvent]:
        """Return every item not yet acked, oldest first."""
        sql = f"SELECT _id, data, timestamp FROM {self._table_name} WHERE status < 5 ORDER BY _id"
        with self.tran_lock:
            rows = self._getter.execute(sql).fetchall()

        return [QueuedEvent(row[0], _JsonText.loads(row[1]), row[2]) for row in rows]

    def _has_ready(self) -> bool:
        # get(block=False) raises Empty, which costs an exception per idle poll.
        sql = f"SELECT 1 FROM {self._table_name} WHERE status < 2 LIMIT 1"
        with self.tran_lock:
            return self._getter.execute(sql).fetchone() is not None
