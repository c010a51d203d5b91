"""``Tracker.stats()`` and the library's log events, during real delivery to the emulator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from durabletrack import RetryPolicy, Tracker
from durabletrack.emulator import Answer, Emulator, Faults
from tests.support import SESSION_PARAMS, wait_until

REPO = Path(__file__).resolve().parents[1]

IDENTIFIERS = {
    "visitor.marketingCloudUserId": "ECID-LOG-55120391",
    "analytics.visitorId": "VID-LOG-88231177",
    "analytics.aid": "AID-LOG-40417710",
    "appInstallationId": "INSTALL-LOG-6129",
}
PARAMS = {
    **SESSION_PARAMS,
    **IDENTIFIERS,
    "visitor.customerIDs": {"crm": {"id": "CRM-LOG-31337", "authState": 1}},
}
SECRET_VALUES = [*IDENTIFIERS.values(), "CRM-LOG-31337"]

FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.2)


def track_session(tracker: Tracker, end: bool = False) -> str:
    session = tracker.start_session(PARAMS)
    session.track("play", 0.0)
    session.track("ping", 10.0)
    session.track("pauseStart", 12.0)
    if end:
        session.end(12.0)
    return session.handle


def log_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """Return (event name, whole message) for each record of the durabletrack logger."""
    records = [record for record in caplog.records if record.name == "durabletrack"]
    return [(record.getMessage().split(" ", 1)[0], record.getMessage()) for record in records]


class TestStats:
    def test_counts_after_retry_and_dead_letter(self, tmp_path: Path, emulator: Emulator) -> None:
        emulator.set_faults(
            Faults(script=(Answer(status=503, retry_after=0, kind="events"), Answer(status=400, kind="events")))
        )
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            track_session(tracker)
            assert tracker.flush(10.0)

            stats = tracker.stats()

        assert stats.sessions_by_state == {"active": 1}
        assert stats.queued_events == 0
        assert stats.oldest_event_age_s is None
        assert stats.dead_letters == 1
        assert stats.bytes_on_disk > 0
        assert stats.is_draining
        assert stats.counters["delivered"] == 2
        assert stats.counters["retried"] == 1
        assert stats.counters["dead_lettered"] == 1
        assert stats.counters["sessions_opened"] == 1
        assert stats.counters["shed"] == 0
        assert stats.counters["expired"] == 0

    def test_waiting_session_detail(self, tmp_path: Path, emulator: Emulator) -> None:
        emulator.set_faults(Faults(script=(Answer(status=503, retry_after=30, kind="sessions"),)))
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            handle = track_session(tracker)
            assert wait_until(lambda: tracker.stats().sessions[0].last_error is not None)

            stats = tracker.stats()
            tracker.close(0.1)

        session = stats.sessions[0]
        assert session.handle == handle
        assert session.state == "pending"
        assert session.queued_events == 4
        assert session.oldest_event_age_s is not None and session.oldest_event_age_s >= 0
        assert session.last_error == "status_503"
        assert session.next_retry_in_s is not None and 20 < session.next_retry_in_s <= 30
        assert stats.sessions_by_state == {"pending": 1}

    def test_totals_survive_restart(self, tmp_path: Path, emulator: Emulator) -> None:
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            track_session(tracker)
            assert tracker.flush(10.0)

        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as reopened:
            stats = reopened.stats()

        assert stats.totals["delivered"] == 3
        assert stats.totals["sessions_opened"] == 1
        assert stats.counters["delivered"] == 0


class TestLogEvents:
    def test_state_changes_are_logged(
        self, tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="durabletrack")
        emulator.set_faults(
            Faults(
                script=(
                    Answer(status=503, retry_after=0, kind="sessions"),
                    Answer(status=400, kind="events"),
                    Answer(status=404, kind="events"),
                )
            )
        )
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            handle = track_session(tracker, end=True)
            assert tracker.flush(10.0)

        events = log_events(caplog)
        names = [name for name, _ in events]
        for expected in (
            "drain_lock_taken",
            "retry_scheduled",
            "session_resolved",
            "event_dead_lettered",
            "session_gone",
            "session_resumed",
            "session_closed",
        ):
            assert expected in names
        for name, message in events:
            if name in (
                "retry_scheduled",
                "session_resolved",
                "event_dead_lettered",
                "session_gone",
                "session_resumed",
                "session_closed",
            ):
                assert f"handle='{handle}'" in message, message
        retry = next(message for name, message in events if name == "retry_scheduled")
        assert "attempt=1" in retry
        assert "delay_s=" in retry
        assert "status=503" in retry

    def test_rejected_session_logged(
        self, tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="durabletrack")
        emulator.set_faults(Faults(script=(Answer(status=400, kind="sessions"),)))
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            handle = track_session(tracker)
            assert tracker.flush(10.0)

        rejected = [message for name, message in log_events(caplog) if name == "session_rejected"]
        assert len(rejected) == 1
        assert f"handle='{handle}'" in rejected[0]
        assert "status=400" in rejected[0]

    def test_no_identifier_values(self, tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="durabletrack")
        emulator.set_faults(
            Faults(
                script=(
                    Answer(status=400, kind="sessions"),
                    Answer(status=503, retry_after=0, kind="events"),
                    Answer(status=400, kind="events"),
                    Answer(status=410, kind="events"),
                )
            )
        )
        with Tracker(emulator.url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            track_session(tracker)
            track_session(tracker, end=True)
            assert tracker.flush(10.0)

        text = caplog.text
        assert "session_rejected" in text
        assert "event_dead_lettered" in text
        for value in SECRET_VALUES:
            assert value not in text

    def test_repeated_errors_rate_limited(
        self, tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="durabletrack")
        emulator.set_faults(Faults(script=tuple(Answer(status=403, kind="sessions") for _ in range(4))))
        retry = RetryPolicy(base_delay=0.05, max_delay=0.2, misconfigured_delay=0.05)
        with Tracker(emulator.url, tmp_path / "data", retry=retry) as tracker:
            track_session(tracker)
            assert emulator.wait_for(lambda emu: emu.requests_seen() >= 4, timeout=10.0)
            assert tracker.flush(10.0)

        errors = [message for name, message in log_events(caplog) if name == "endpoint_rejects_requests"]
        assert len(errors) == 1
        assert "status=403" in errors[0]


QUIET_CHILD = textwrap.dedent(
    """
    import logging, sys
    from durabletrack import RetryPolicy, Tracker
    from durabletrack.emulator import Answer, Emulator, Faults
    if sys.argv[2] == "configured":
        logging.basicConfig(level=logging.INFO)
    faults = Faults(script=(Answer(status=503, retry_after=0, kind="events"),))
    with Emulator(faults=faults) as emulator:
        with Tracker(emulator.url, sys.argv[1], retry=RetryPolicy(base_delay=0.05)) as tracker:
            session = tracker.start_session(PARAMS)
            session.track("play", 0.0)
            assert tracker.flush(10.0)
    """
).replace("PARAMS", repr(PARAMS))


class TestLoggingSetup:
    @pytest.mark.parametrize(("mode", "expect_output"), [("default", False), ("configured", True)])
    def test_quiet_until_configured(self, tmp_path: Path, mode: str, expect_output: bool) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))

        result = subprocess.run(
            [sys.executable, "-c", QUIET_CHILD, str(tmp_path / "data"), mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        assert ("session_resolved" in result.stderr) is expect_output
        assert ("retry_scheduled" in result.stderr) is expect_output
        if not expect_output:
            assert result.stderr == ""
