"""Drain benchmark: a Tracker emptying a full queue against a bare ``requests`` loop.

Both send the same event bodies, one request at a time per session, to the
same loopback emulator. The Tracker's queue is filled first with the
collector out of reach (a closed loopback port), then a new Tracker on the
same directory is opened against the emulator and timed until the emulator
has received every event.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests
from _bench_common import CLOSED_LOOPBACK_URL, SESSION_PARAMS, event_body, event_fields

from durabletrack import Tracker
from durabletrack.emulator import Emulator
from durabletrack.protocol import session_id_from_location
from durabletrack.retry import RetryPolicy

# While filling, a failed sessionStart waits at least this long (seconds), so
# the filling Tracker's sender threads stay idle.
FILL_RETRY = RetryPolicy(base_delay=3600.0, max_delay=3600.0)

# How often the emulator's request count is read while waiting (seconds).
POLL_S = 0.002


def fill_queue(directory: Path, sessions: int, events_per_session: int) -> None:
    """Queue ``sessions`` sessions of ``events_per_session`` events each through ``track()``.

    ``durability="process_crash"`` keeps filling fast; the directory is the
    same as one written with the default durability.
    """
    fields = event_fields()
    with Tracker(CLOSED_LOOPBACK_URL, directory, durability="process_crash", retry=FILL_RETRY) as tracker:
        handles = [tracker.start_session(SESSION_PARAMS) for _ in range(sessions)]
        for index in range(events_per_session):
            for session in handles:
                session.track(
                    "bitrateChange", index * 0.5, qoe_data=fields["qoeData"], custom_metadata=fields["customMetadata"]
                )
        tracker.close(timeout=0.0)


def drain_tracker(emulator: Emulator, sessions: int, events_per_session: int, deadline_s: float) -> float:
    """Return events/s of a Tracker draining a full queue into ``emulator`` (0.0 if the deadline passed)."""
    expected = emulator.requests_seen() + sessions * (events_per_session + 1)
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        fill_queue(Path(tmp), sessions, events_per_session)

        began = time.perf_counter()
        tracker = Tracker(emulator.url, tmp, request_timeout=10.0)
        try:
            finished = _wait_for_requests(emulator, expected, deadline_s)
            elapsed = time.perf_counter() - began
        finally:
            tracker.close(timeout=1.0)

    return sessions * events_per_session / elapsed if finished else 0.0


def drain_bare_loop(emulator: Emulator, events: int) -> float:
    """Return events/s of one ``requests.Session`` posting a sessionStart and ``events`` events in a loop."""
    fields = event_fields()
    start_ms = int(time.time() * 1000)
    bodies = [event_body(start_ms + 1 + index, index * 0.5, fields) for index in range(events)]
    start = {"playerTime": {"playhead": 0.0, "ts": start_ms}, "eventType": "sessionStart", "params": SESSION_PARAMS}
    headers = {"Content-Type": "application/json"}

    with requests.Session() as http:
        began = time.perf_counter()
        reply = http.post(f"{emulator.url}/api/v1/sessions", json=start, timeout=10.0)
        _check(reply, 201)
        sid = session_id_from_location(reply.headers.get("Location"))
        events_url = f"{emulator.url}/api/v1/sessions/{sid}/events"
        for body in bodies:
            _check(http.post(events_url, data=body.encode("utf-8"), headers=headers, timeout=10.0), 204)
        elapsed = time.perf_counter() - began

    return events / elapsed


def _check(reply: requests.Response, status: int) -> None:
    if reply.status_code != status:
        raise RuntimeError(f"emulator answered {reply.status_code} instead of {status}: {reply.text[:200]}")


def _wait_for_requests(emulator: Emulator, expected: int, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while emulator.requests_seen() < expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)

    return True
