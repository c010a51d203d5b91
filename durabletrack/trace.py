"""Reading player event traces (JSON Lines) and replaying them through a Tracker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InvalidEventError, InvalidFieldTypeError
from .eventtypes import SESSION_START
from .tracker import Session, Tracker

TRACE_PACKAGE = "durabletrack.traces"


@dataclass(frozen=True)
class TraceEvent:
    """One event of a trace.

    Attributes:
        t: Seconds since the trace's first sessionStart.
        event_type: The collection API ``eventType``.
        playhead: Playhead in seconds.
        params, custom_metadata, qoe_data: Optional fields, or None.
        line: Line number in the trace file, for error messages.
    """

    t: float
    event_type: str
    playhead: float
    params: dict[str, Any] | None = None
    custom_metadata: dict[str, str] | None = None
    qoe_data: dict[str, Any] | None = None
    line: int = 0


@dataclass(frozen=True)
class Trace:
    """A recorded sequence of events, in send order."""

    name: str
    description: str
    events: list[TraceEvent] = field(default_factory=list)
    source: str = ""


class TraceFormatError(ValueError):
    """A trace file does not follow the trace format."""


def bundled_trace_names() -> list[str]:
    """Return the names of the traces shipped with the package, sorted."""
    files = resources.files(TRACE_PACKAGE).iterdir()

    return sorted(entry.name[: -len(".jsonl")] for entry in files if entry.name.endswith(".jsonl"))


def load_bundled_trace(name: str) -> Trace:
    """Load a bundled trace by name, such as ``adobe-timeline-1``."""
    entry = resources.files(TRACE_PACKAGE) / f"{name}.jsonl"
    if not entry.is_file():
        raise TraceFormatError(f"no bundled trace {name!r}; choose one of {bundled_trace_names()}")

    return parse_trace(entry.read_text(encoding="utf-8").splitlines(), source=name)


def load_trace(path: str | Path) -> Trace:
    """Load a trace file."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TraceFormatError(f"{path}: cannot be read: {error}") from error

    return parse_trace(lines, source=str(path))


def parse_trace(lines: list[str], source: str) -> Trace:
    """Parse trace lines: a header object, then one event object per line."""
    rows = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise TraceFormatError(f"{source}: empty trace")

    header = _parse_line(source, *rows[0])
    if "trace" not in header:
        raise TraceFormatError(f'{source}:1: the first line must be a header with a "trace" key')
    events = [_parse_event(source, number, _parse_line(source, number, line)) for number, line in rows[1:]]
    if not events or events[0].event_type != SESSION_START:
        raise TraceFormatError(f"{source}: the first event must be sessionStart")

    name = str(header["trace"])
    description = str(header.get("description", ""))

    return Trace(name=name, description=description, events=events, source=source)


def _parse_line(source: str, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise TraceFormatError(f"{source}:{number}: invalid JSON: {error}") from error
    if not isinstance(value, dict):
        raise TraceFormatError(f"{source}:{number}: expected a JSON object")

    return value


def _parse_event(source: str, number: int, row: dict[str, Any]) -> TraceEvent:
    try:
        return TraceEvent(
            t=float(row["t"]),
            event_type=str(row["eventType"]),
            playhead=row["playhead"],
            params=row.get("params"),
            custom_metadata=row.get("customMetadata"),
            qoe_data=row.get("qoeData"),
            line=number,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise TraceFormatError(f"{source}:{number}: missing or invalid field: {error}") from error


def replay(
    trace: Trace,
    tracker: Tracker,
    *,
    speed: float = 0.0,
    on_event: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Session]:
    """Track every event of ``trace`` through ``tracker``.

    Args:
        trace: The trace to replay.
        tracker: The tracker to replay through.
        speed: Playback speed; 1.0 keeps the trace's timing, 10.0 is ten times
            faster, and 0 sends without waiting.
        on_event: Called with the count of events tracked so far.
        sleep: Waits between events (replaced in tests).

    Returns:
        The sessions started; a trace restarts a session at each sessionStart.
    """
    sessions: list[Session] = []
    started = time.monotonic()
    for count, event in enumerate(_paced(trace, speed, started, sleep), start=1):
        try:
            _track(tracker, sessions, event)
        except (InvalidEventError, InvalidFieldTypeError) as error:
            raise TraceFormatError(f"{trace.source or trace.name}:{event.line}: {error}") from error
        if on_event is not None:
            on_event(count)

    return sessions


def _track(tracker: Tracker, sessions: list[Session], event: TraceEvent) -> None:
    if event.event_type == SESSION_START:
        session = tracker.start_session(
            event.params or {}, event.custom_metadata, event.qoe_data, playhead=event.playhead
        )
        sessions.append(session)
        return

    sessions[-1].track(event.event_type, event.playhead, event.params, event.custom_metadata, event.qoe_data)


def _paced(trace: Trace, speed: float, started: float, sleep: Callable[[float], None]) -> Iterator[TraceEvent]:
    for event in trace.events:
        if speed > 0:
            wait = started + event.t / speed - time.monotonic()
            if wait > 0:
                sleep(wait)
        yield event
