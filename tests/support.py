"""Helpers shared by the tracker tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durabletrack import RetryPolicy, Tracker
from durabletrack.emulator import Emulator, SessionRecord

SESSION_PARAMS: dict[str, Any] = {
    "analytics.trackingServer": "acme.sc.omtrdc.net",
    "analytics.reportSuite": "acmeprod",
    "visitor.marketingCloudOrgId": "0123456789ABCDEF@AdobeOrg",
    "media.id": "ep-0042",
    "media.length": 1800.5,
    "media.contentType": "vod",
    "media.playerName": "test-player",
    "media.channel": "test-channel",
}

# Short waits keep retry tests fast; the rules under test stay the same.
FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.5, misconfigured_delay=1.0)


def session_params(**overrides: Any) -> dict[str, Any]:
    """Return valid sessionStart params with some keys replaced."""
    params = dict(SESSION_PARAMS)
    params.update(overrides)
    return params


def make_tracker(endpoint: str, data_dir: Path, **options: Any) -> Tracker:
    """Return a Tracker with fast retries and short timeouts, for tests."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("request_timeout", 5.0)
    options.setdefault("poll_interval", 0.5)
    return Tracker(endpoint, data_dir, **options)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def records_for(emulator: Emulator, tracker: Tracker, handle: str) -> list[SessionRecord]:
    """Return the emulator's records of every server session a local session had."""
    wanted = tracker.session_ids(handle)
    by_id = {record.sid: record for record in emulator.sessions()}
    return [by_id[sid] for sid in wanted if sid in by_id]


def event_types(record: SessionRecord) -> list[str]:
    """Return the event types the emulator accepted for a session, sessionStart excluded."""
    return [body["eventType"] for body in record.events]


def all_ts(record: SessionRecord) -> list[int]:
    """Return ``playerTime.ts`` of sessionStart and every event, in arrival order."""
    return [record.start["playerTime"]["ts"]] + [body["playerTime"]["ts"] for body in record.events]
