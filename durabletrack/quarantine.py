"""Moving an unusable store aside so that a fresh one can be created."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import StorageError

DATABASE_FILES = ("registry.db", "events.db")
_COMPANION_SUFFIXES = ("", "-wal", "-shm", "-journal")

Opened = TypeVar("Opened")


def open_or_quarantine(directory: Path, opener: Callable[[], Opened], log: Any) -> Opened:
    """Call ``opener``; if the store is corrupt, move its files aside and call it again.

    A corrupt or unusable database (random bytes, a directory in place of the
    file, ...) must not stop the host app. Its files are renamed, not deleted,
    so they can still be examined, and an error is logged with what moved.

    Raises:
        StorageError: if the store cannot be opened for another reason (a
            lock held too long, no permission), or a fresh store fails too.
    """
    try:
        return opener()
    except (sqlite3.DatabaseError, OSError) as error:
        if not _is_corruption(directory, error):
            raise StorageError(str(directory), str(error)) from error
        moved = quarantine(directory)
        log.error("store_quarantined", path=str(directory), moved=moved, error=repr(error))

    try:
        return opener()
    except (sqlite3.Error, OSError) as error:
        raise StorageError(str(directory), f"a fresh store could not be created: {error}") from error


def quarantine(directory: Path) -> list[str]:
    """Rename every database file of the store with a ``.corrupt-<time>`` suffix; return the new names."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    moved = []
    for name in DATABASE_FILES:
        for suffix in _COMPANION_SUFFIXES:
            path = directory / (name + suffix)
            if path.exists() or path.is_symlink():
                target = path.with_name(f"{path.name}.corrupt-{stamp}")
                path.rename(target)
                moved.append(target.name)

    return moved


def _is_corruption(directory: Path, error: BaseException) -> bool:
    if any((directory / name).is_dir() for name in DATABASE_FILES):
        return True
    if isinstance(error, sqlite3.OperationalError):
        # Locks, permissions and I/O errors are not damage to the file.
        return False

    return isinstance(error, sqlite3.DatabaseError)
