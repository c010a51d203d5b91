"""The ledger: what each child saw ``track()`` return for, one line per fact.

A child appends a line only after the call it records has returned, with one
``write()`` on a file opened with ``O_APPEND``. A SIGKILL cannot undo a
completed ``write()`` (the page cache outlives the process), so no fsync is
needed: the harness kills processes, it does not cut power. Therefore a
logged marker was accepted by ``track()``, while an accepted event whose line
was never written is only "maybe" tracked.

Line formats (space separated, newline terminated):

``S <handle> <marker>``   ``start_session()`` returned ``handle``
``E <marker>``            ``track()`` returned
``U <handle> <reason>``   a request of ``handle`` ended without a response
                          (timeout), so the collector may have processed it
``X <event>``             the library logged an error other than a dead letter
``D``                     the child finished tracking and only delivers now
``F <flushed>``           the final ``flush()`` returned (1 if all delivered)
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Error events that report a dead letter, which the checker counts from the
# dead-letter store itself.
DEAD_LETTER_EVENTS = frozenset({"event_dead_lettered", "session_rejected"})

# Retry reasons after which the client cannot know whether the collector
# processed the request.
UNKNOWN_OUTCOME_REASONS = frozenset({"timeout", "read_error"})


class LedgerWriter:
    """Appends ledger lines to one file. Thread-safe (one ``write()`` per line)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def started(self, handle: str, marker: str) -> None:
        self._write(f"S {handle} {marker}")

    def tracked(self, marker: str) -> None:
        self._write(f"E {marker}")

    def unknown_outcome(self, handle: str, reason: str) -> None:
        self._write(f"U {handle} {reason}")

    def library_error(self, event: str) -> None:
        self._write(f"X {event}")

    def tracking_done(self) -> None:
        self._write("D")

    def flushed(self, flushed: bool) -> None:
        self._write(f"F {int(flushed)}")

    def close(self) -> None:
        os.close(self._fd)

    def _write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode("ascii"))


@dataclass
class Ledger:
    """The merged contents of the ledgers of a run.

    Attributes:
        handles: Start marker to session handle, for every logged sessionStart.
        accepted: Markers whose ``start_session()`` or ``track()`` returned.
        unknown_outcomes: Requests without a response, per session handle.
        library_errors: Error events the library logged, by event name.
        flushes: Final ``flush()`` results: how many children got to it.
    """

    handles: dict[str, str] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    unknown_outcomes: dict[str, int] = field(default_factory=dict)
    library_errors: dict[str, int] = field(default_factory=dict)
    flushes: int = 0

    def read(self, path: Path) -> None:
        """Add the complete lines of one ledger file; a torn last line is ignored."""
        text = path.read_text(encoding="ascii", errors="replace")
        for line in text.split("\n")[:-1]:
            self._add(line.split(" "))

    def _add(self, parts: list[str]) -> None:
        kind = parts[0]
        if kind == "S" and len(parts) == 3:
            self.handles[parts[2]] = parts[1]
            self.accepted.add(parts[2])
        elif kind == "E" and len(parts) == 2:
            self.accepted.add(parts[1])
        elif kind == "U" and len(parts) == 3:
            self.unknown_outcomes[parts[1]] = self.unknown_outcomes.get(parts[1], 0) + 1
        elif kind == "X" and len(parts) == 2:
            self.library_errors[parts[1]] = self.library_errors.get(parts[1], 0) + 1
        elif kind == "F":
            self.flushes += 1


def has_line(path: Path, line: str) -> bool:
    """Return True if the ledger file at ``path`` contains ``line`` as a whole line."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return False

    return ("\n" + text).find("\n" + line + "\n") >= 0


class OutcomeLogger:
    """A structlog-shaped logger for ``Tracker(logger=...)`` that notes unknown outcomes.

    The worker logs ``retry_scheduled`` with the session handle and the retry
    reason. For a timeout the collector may still process the request, so a
    duplicate can follow: the ledger counts these per handle. Error events
    other than dead letters are noted too; the rest is dropped.
    """

    def __init__(self, ledger: LedgerWriter) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()

    def bind(self, **_values: Any) -> OutcomeLogger:
        return self

    def warning(self, event: str, **values: Any) -> None:
        if event == "retry_scheduled" and values.get("reason") in UNKNOWN_OUTCOME_REASONS:
            self._ledger.unknown_outcome(str(values.get("handle")), str(values["reason"]))

    def debug(self, event: str, **values: Any) -> None:
        pass

    def info(self, event: str, **values: Any) -> None:
        pass

    def error(self, event: str, **values: Any) -> None:
        if event in DEAD_LETTER_EVENTS:
            return

        self._ledger.library_error(event)
        # The ledger keeps the event name; the details go to the child's stderr file.
        print(f"library error: {event} {values.get('error', '')}", file=sys.stderr, flush=True)

    def exception(self, event: str, **values: Any) -> None:
        pass
