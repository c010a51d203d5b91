"""``durabletrack demo`` and ``durabletrack replay``: replay a trace and report delivery."""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TextIO

from .emulator import Emulator, Faults
from .trace import Trace, bundled_trace_names, load_bundled_trace, load_trace, replay
from .tracker import Session, Tracker

DEFAULT_DEMO_TRACE = "adobe-timeline-1"
DEFAULT_SESSION_DELAY = 5.0
DEFAULT_SPEED = 10.0
DEFAULT_DELIVERY_TIMEOUT = 120.0


@dataclass(frozen=True)
class ReplaySummary:
    """Outcome of one replay for its events.

    Attributes:
        tracked: Events whose ``track()`` (or ``start_session()``) returned.
        delivered: Events the collector accepted.
        dead_lettered: Events the collector rejected, kept in dead letters.
        queued: Events still waiting when the delivery timeout passed.
        lost: Tracked events neither delivered, dead-lettered nor queued.
        order_preserved: True if delivered events arrived in tracked order,
            None if the collector could not be inspected.
        ts_increasing: True if ``playerTime.ts`` rose strictly per session ID,
            None if the collector could not be inspected.
        seconds: Wall time from the first event to the end of delivery.
    """

    tracked: int
    delivered: int
    dead_lettered: int
    queued: int
    lost: int
    order_preserved: bool | None
    ts_increasing: bool | None
    seconds: float

    @property
    def ok(self) -> bool:
        """True if nothing was lost and no check failed."""
        return self.lost == 0 and self.order_preserved is not False and self.ts_increasing is not False


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``durabletrack demo``."""
    parser.add_argument(
        "--trace",
        default=DEFAULT_DEMO_TRACE,
        choices=bundled_trace_names(),
        help=f"bundled trace to replay (default: {DEFAULT_DEMO_TRACE})",
    )
    parser.add_argument(
        "--session-delay",
        type=float,
        default=DEFAULT_SESSION_DELAY,
        metavar="SECONDS",
        help=f"how long the emulator delays each session response, in seconds (default: {DEFAULT_SESSION_DELAY})",
    )
    _add_common_arguments(parser)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``durabletrack replay``."""
    parser.add_argument("trace", metavar="TRACE.jsonl", help="trace file to replay (JSON Lines)")
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="collector base URI; default: an emulator started on 127.0.0.1 for this run",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// endpoint that is not loopback",
    )
    _add_common_arguments(parser)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        metavar="X",
        help=f"playback speed: 1 keeps the trace's timing, 0 sends at once (default: {DEFAULT_SPEED})",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory of the tracker (default: a new temporary directory)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DELIVERY_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for delivery after the last event (default: {DEFAULT_DELIVERY_TIMEOUT:g})",
    )


def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``durabletrack demo``; return the exit status (0 when nothing was lost)."""
    trace = load_bundled_trace(args.trace)
    out.write(
        f"durabletrack demo: replaying {trace.name} ({len(trace.events)} events) {_pace(args.speed)}\n"
        f"through an emulator on 127.0.0.1 that delays each session response by {args.session_delay:g} s.\n"
    )

    return _run(trace, args, Faults(session_latency=args.session_delay), endpoint=None, out=out)


def run_replay(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``durabletrack replay``; return the exit status (0 when nothing was lost)."""
    trace = load_trace(args.trace)
    target = args.endpoint or "an emulator on 127.0.0.1"
    out.write(f"durabletrack replay: {trace.name} ({len(trace.events)} events) {_pace(args.speed)} to {target}\n")

    return _run(trace, args, Faults(), endpoint=args.endpoint, out=out)


def _pace(speed: float) -> str:
    return "as fast as possible" if speed <= 0 else f"at {speed:g} times the recorded speed"


def _run(trace: Trace, args: argparse.Namespace, faults: Faults, endpoint: str | None, out: TextIO) -> int:
    with ExitStack() as stack:
        emulator = None
        if endpoint is None:
            emulator = stack.enter_context(Emulator(faults=faults))
            endpoint = emulator.url
        data_dir = args.data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="durabletrack-"))
        options: dict[str, Any] = {}
        if getattr(args, "allow_insecure_http", False):
            options["allow_insecure_http"] = True
        tracker = Tracker(endpoint, data_dir, **options)
        stack.callback(tracker.close, 2.0)

        summary = _replay_and_wait(trace, tracker, emulator, args, out)

    _print_summary(summary, out)

    return 0 if summary.ok else 1


def _replay_and_wait(
    trace: Trace, tracker: Tracker, emulator: Emulator | None, args: argparse.Namespace, out: TextIO
) -> ReplaySummary:
    started = time.monotonic()
    tracked = [0]
    delivered = _delivered_counter(tracker, emulator)
    progress = _Progress(out, started, lambda: (tracked[0], len(trace.events), delivered()))

    with progress:
        sessions = replay(trace, tracker, speed=args.speed, on_event=lambda count: tracked.__setitem__(0, count))
        tracker.flush(args.timeout)
    seconds = time.monotonic() - started

    return _summarise(trace, tracker, sessions, emulator, seconds)


def _delivered_counter(tracker: Tracker, emulator: Emulator | None) -> Callable[[], int]:
    if emulator is not None:
        return lambda: sum(1 + len(record.events) for record in emulator.sessions())

    return lambda: _delivered_by_tracker(tracker)


def _delivered_by_tracker(tracker: Tracker) -> int:
    counts = tracker.stats().counters
    return counts.get("delivered", 0) + counts.get("sessions_opened", 0)


def _summarise(
    trace: Trace, tracker: Tracker, sessions: list[Session], emulator: Emulator | None, seconds: float
) -> ReplaySummary:
    tracked = len(trace.events)
    dead = sum(len(tracker.dead_letters(session.handle)) for session in sessions)
    queued = tracker.stats().queued_events
    if emulator is None:
        delivered = _delivered_by_tracker(tracker)
        order: bool | None = None
        ts_ok: bool | None = None
    else:
        received = _received_bodies(tracker, sessions, emulator)
        delivered, order = _match_in_order(trace, received, dead)
        ts_ok = _ts_strictly_increasing(emulator, tracker, sessions)
    lost = max(tracked - delivered - dead - queued, 0)

    return ReplaySummary(tracked, delivered, dead, queued, lost, order, ts_ok, seconds)


def _session_ids(tracker: Tracker, session: Session) -> list[str]:
    return tracker.session_ids(session.handle)


def _received_bodies(tracker: Tracker, sessions: list[Session], emulator: Emulator) -> list[dict[str, Any]]:
    by_id = {record.sid: record for record in emulator.sessions()}
    bodies: list[dict[str, Any]] = []
    for session in sessions:
        for session_id in _session_ids(tracker, session):
            record = by_id.get(session_id)
            if record is not None:
                bodies.append(record.start)
                bodies.extend(record.events)

    return bodies


def _key(event_type: str, playhead: float, params: Any) -> tuple[str, float, str]:
    return event_type, float(playhead), repr(sorted((params or {}).items()))


def _match_in_order(trace: Trace, received: list[dict[str, Any]], dead: int) -> tuple[int, bool]:
    """Count trace events found, in order, among the received bodies.

    Resumed sessions add re-sent context events and duplicates can follow a
    lost response, so the trace must be an ordered subsequence of what arrived.
    """
    expected = [_key(event.event_type, event.playhead, event.params) for event in trace.events]
    matched = 0
    for body in received:
        if matched == len(expected):
            break
        params = {k: v for k, v in (body.get("params") or {}).items() if k != "media.resume"}
        if _key(body["eventType"], body["playerTime"]["playhead"], params) == expected[matched]:
            matched += 1

    return matched, matched + dead >= len(expected)


def _ts_strictly_increasing(emulator: Emulator, tracker: Tracker, sessions: list[Session]) -> bool:
    wanted = {session_id for session in sessions for session_id in _session_ids(tracker, session)}
    for record in emulator.sessions():
        if record.sid not in wanted:
            continue
        stamps = [record.start["playerTime"]["ts"]] + [body["playerTime"]["ts"] for body in record.events]
        if any(later <= earlier for earlier, later in pairwise(stamps)):
            return False

    return True


def _print_summary(summary: ReplaySummary, out: TextIO) -> None:
    def verdict(value: bool | None) -> str:
        if value is None:
            return "not checked (collector cannot be inspected)"
        return "yes" if value else "NO"

    out.write(
        "\nSummary\n"
        f"  events tracked     {summary.tracked}\n"
        f"  delivered          {summary.delivered}\n"
        f"  dead-lettered      {summary.dead_lettered}\n"
        f"  still queued       {summary.queued}\n"
        f"  lost               {summary.lost}\n"
        f"  order preserved    {verdict(summary.order_preserved)}\n"
        f"  ts increasing      {verdict(summary.ts_increasing)}\n"
        f"  time taken         {summary.seconds:.1f} s\n"
    )


class _Progress:
    """Prints a progress line every second on a background thread."""

    def __init__(self, out: TextIO, started: float, read: Callable[[], tuple[int, int, int]]) -> None:
        self._out = out
        self._started = started
        self._read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durabletrack-progress", daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._print()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._print()

    def _print(self) -> None:
        tracked, total, delivered = self._read()
        elapsed = time.monotonic() - self._started
        self._out.write(f"  [{elapsed:5.1f} s] tracked {tracked:3d}/{total}  delivered {delivered:3d}/{total}\n")
        self._out.flush()
