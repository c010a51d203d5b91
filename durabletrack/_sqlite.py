"""SQLite connection settings shared by every database in the data directory."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

# Keep each write-ahead log near 1 MiB instead of letting it reach ~4 MB.
WAL_AUTOCHECKPOINT_PAGES = 256
JOURNAL_SIZE_LIMIT_BYTES = 1024 * 1024

# Page cache per connection, in KiB (SQLite's negative form). Every session
# queue has two connections, so the default 2 MiB each grows with sessions.
CACHE_SIZE_KIB = 256

# SQLite reports ``PRAGMA synchronous`` as a number.
_SYNCHRONOUS_CODES = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}

_log = logging.getLogger("durabletrack")


class PragmaError(sqlite3.DatabaseError):
    """SQLite did not accept a setting that durability depends on."""


def create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if it does not exist; never open an existing file.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file,
    so creating the database file first keeps all three private. An existing
    file must not be opened here. On Linux, closing any descriptor of a file
    drops every POSIX lock this process has on it, including those of open
    SQLite connections. SQLite would then delete a write-ahead log that
    another process still uses.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def apply_pragmas(conn: sqlite3.Connection, synchronous: str) -> None:
    """Set WAL mode and the durability level on ``conn`` and check that both took effect.

    Raises:
        PragmaError: if ``synchronous`` could not be set. A file system without
            WAL support falls back to a rollback journal, which is as durable
            and only slower, so that case is logged, not raised.
    """
    # Takes effect only on a new, empty file; lets drained queues give pages back.
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        _log.warning("wal_unavailable journal_mode=%s", mode)

    conn.execute(f"PRAGMA synchronous={synchronous}")
    actual = conn.execute("PRAGMA synchronous").fetchone()[0]
    if actual != _SYNCHRONOUS_CODES[synchronous]:
        raise PragmaError(f"PRAGMA synchronous={synchronous} did not take effect (got {actual})")

    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_SIZE_KIB}")
