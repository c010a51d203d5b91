"""The drain lock: one process per data directory delivers its events."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "drain.lock"


class DrainLock:
    """An exclusive ``flock`` on ``drain.lock`` in the data directory.

    The operating system releases the lock when its holder exits or is
    killed, so a dead drainer never leaves a stale lock behind. Other
    processes may still enqueue; they only do not deliver.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / LOCK_FILE
        self._fd: int | None = None
        self._pid = os.getpid()

    @property
    def is_held(self) -> bool:
        """True if this process holds the lock."""
        return self._fd is not None and self._pid == os.getpid()

    def try_acquire(self) -> bool:
        """Take the lock if it is free; return whether this process holds it."""
        if self.is_held:
            return True

        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        self._pid = os.getpid()

        return True

    def release(self) -> None:
        """Release the lock if this process holds it."""
        if self._fd is None:
            return
        if self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        # A child after fork() shares the parent's open lock file. Closing its
        # copy without LOCK_UN leaves the parent's lock in place, and a child
        # that outlives the parent does not keep the lock held by accident.
        os.close(self._fd)
        self._fd = None
