"""Session lifecycle: resume after expiry, offline batches, age limits and bounded storage."""

from __future__ import annotations

import json
import socket
from itertools import pairwise

import pytest

from durabletrack import QueueFullError
from durabletrack.emulator import Answer, Emulator, ExpiryPolicy, Faults
from tests.support import event_types, make_tracker, records_for, session_params, wait_until

AD_BREAK = {"media.ad.podIndex": 1, "media.ad.podSecond": 300.0}
AD = {"media.ad.id": "ad-7", "media.ad.length": 30, "media.ad.podPosition": 1, "media.ad.playerName": "p"}
CHAPTER = {"media.chapter.index": 2, "media.chapter.offset": 240, "media.chapter.length": 600}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeClock:
    """A monotonic clock for the emulator that tests move forward by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestResume:
    def test_backlog_after_expiry_goes_to_resumed_session(self, tmp_path) -> None:
        clock = FakeClock()
        with Emulator(expiry=ExpiryPolicy(idle_s=600), clock=clock) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                session.track("chapterStart", 240.0, CHAPTER)
                session.track("play", 240.0)
                session.track("stateStart", 250.0, {"media.state.name": "mute"})
                session.track("adBreakStart", 300.0, AD_BREAK)
                session.track("adStart", 300.0, AD, {"campaign": "winter"})
                assert tracker.flush(timeout=20)

                emulator.update_faults(reset_rate=1.0)  # the box goes offline
                session.track("ping", 300.0)
                session.track("adComplete", 300.0)
                assert emulator.wait_for(lambda emu: emu.fault_counts().get("reset", 0) >= 1, timeout=10)
                clock.now += 700  # longer than the collector's 10-minute idle expiry
                emulator.update_faults(reset_rate=0.0)

                delivered = tracker.flush(timeout=30)
                records = records_for(emulator, tracker, session.handle)

        assert delivered
        assert len(records) == 2
        assert records[0].closed_reason == "idle"
        resumed = records[1]
        assert resumed.start["params"]["media.resume"] is True
        assert resumed.start["params"]["media.id"] == "ep-0042"
        assert resumed.start["playerTime"]["playhead"] == 300.0
        assert event_types(resumed) == [
            "chapterStart",
            "adBreakStart",
            "adStart",
            "stateStart",
            "play",
            "ping",
            "adComplete",
        ]
        assert resumed.events[2]["params"] == AD
        assert resumed.events[2]["customMetadata"] == {"campaign": "winter"}
        stamps = [resumed.start["playerTime"]["ts"]] + [body["playerTime"]["ts"] for body in resumed.events]
        assert all(later > earlier for earlier, later in pairwise(stamps))

    def test_410_after_session_end_elsewhere_resumes(self, tmp_path) -> None:
        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                session.track("play", 0.0)
                assert tracker.flush(timeout=20)
                first_sid = tracker.session_ids(session.handle)[0]
                _end_on_server(emulator, first_sid)

                session.track("ping", 10.0)
                delivered = tracker.flush(timeout=20)
                records = records_for(emulator, tracker, session.handle)

        assert delivered
        assert [record.sid for record in records][0] == first_sid
        assert event_types(records[1]) == ["play", "ping"]


def _end_on_server(emulator: Emulator, sid: str) -> None:
    import requests

    body = {"playerTime": {"playhead": 1, "ts": 1}, "eventType": "sessionEnd"}
    response = requests.post(f"{emulator.url}/api/v1/sessions/{sid}/events", json=body, timeout=5)
    assert response.status_code == 204


class TestOfflineUpload:
    def test_finished_offline_session_is_one_batch(self, tmp_path) -> None:
        port = _closed_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path, offline_upload=True) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            session.track("ping", 10.0)
            session.complete(20.0)
            session.end()
            assert wait_until(lambda: tracker.stats().counters["retried"] >= 1, timeout=10)

            with Emulator(port=port) as emulator:
                delivered = tracker.flush(timeout=20)
                accepted = emulator.accepted()
                records = emulator.sessions()

        assert delivered
        assert [delivery.kind for delivery in accepted] == ["downloaded"]
        assert records[0].downloaded
        assert event_types(records[0]) == ["play", "ping", "sessionComplete", "sessionEnd"]

    def test_rejected_batch_is_dead_lettered_whole(self, tmp_path) -> None:
        port = _closed_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path, offline_upload=True) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            session.end(5.0)
            assert wait_until(lambda: tracker.stats().counters["retried"] >= 1, timeout=10)

            with Emulator(port=port, faults=Faults(script=(Answer(status=400, kind="downloaded"),))) as emulator:
                delivered = tracker.flush(timeout=20)
                dead = tracker.dead_letters(session.handle)
                records = emulator.sessions()

        assert delivered
        assert records == []
        assert [letter.reason for letter in dead] == ["batch_rejected"] * 3
        assert {letter.status for letter in dead} == {400}

    def test_live_session_not_batched(self, emulator: Emulator, tmp_path) -> None:
        with make_tracker(emulator.url, tmp_path, offline_upload=True) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            assert tracker.flush(timeout=20)
            session.end(5.0)
            assert tracker.flush(timeout=20)

        assert [delivery.kind for delivery in emulator.accepted()] == ["sessions", "events", "events"]


class TestAgeLimits:
    def test_old_events_dead_lettered_as_expired(self, tmp_path) -> None:
        port = _closed_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            session.track("ping", 10.0)
        _age_queued_events(tmp_path, session.handle, seconds=3600)

        with Emulator(port=port) as emulator:
            with make_tracker(emulator.url, tmp_path, max_event_age=600) as tracker:
                delivered = tracker.flush(timeout=20)
                dead = tracker.dead_letters(session.handle)
                counters = tracker.stats().counters
                records = emulator.sessions()

        assert delivered
        assert [letter.reason for letter in dead] == ["expired", "expired"]
        assert counters["expired"] == 2
        assert event_types(records[0]) == []

    def test_wall_clock_jump_does_not_expire_fresh_events(self, tmp_path) -> None:
        # Queued while the wall clock read 1970, as on a box without a
        # real-time clock; the age is measured with time since boot instead.
        port = _closed_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
        _set_wall_stamp(tmp_path, session.handle, wall=100.0)

        with Emulator(port=port) as emulator:
            with make_tracker(emulator.url, tmp_path, max_event_age=600) as tracker:
                delivered = tracker.flush(timeout=20)
                dead = tracker.dead_letters()
                records = emulator.sessions()

        assert delivered
        assert dead == []
        assert event_types(records[0]) == ["play"]

    def test_old_server_session_split_with_resume(self, emulator: Emulator, tmp_path) -> None:
        with make_tracker(emulator.url, tmp_path, max_session_age=3600) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            assert tracker.flush(timeout=20)
            _age_session(tmp_path, session.handle, seconds=7200)
            session.track("ping", 10.0)
            delivered = tracker.flush(timeout=20)
            records = records_for(emulator, tracker, session.handle)

        assert delivered
        assert len(records) == 2
        assert records[1].start["params"]["media.resume"] is True
        assert event_types(records[1]) == ["play", "ping"]


def _sqlite(path):
    import sqlite3

    return sqlite3.connect(path, isolation_level=None)


def _age_queued_events(directory, handle: str, seconds: float) -> None:
    """Make the queued events of ``handle`` look ``seconds`` older, in both clocks."""
    conn = _sqlite(directory / "events.db")
    conn.execute(
        f"UPDATE ack_queue_s{handle} SET timestamp = timestamp - ?, boot_seconds = boot_seconds - ?",
        (seconds, seconds),
    )
    conn.close()


def _set_wall_stamp(directory, handle: str, wall: float) -> None:
    """Set the wall-clock stamp of queued events and forget their boot stamp."""
    conn = _sqlite(directory / "events.db")
    conn.execute(f"UPDATE ack_queue_s{handle} SET timestamp = ?", (wall,))
    conn.close()


def _age_session(directory, handle: str, seconds: float) -> None:
    conn = _sqlite(directory / "registry.db")
    conn.execute(
        "UPDATE sessions SET opened_at = opened_at - ?, opened_boot_seconds = opened_boot_seconds - ? WHERE handle = ?",
        (seconds, seconds, handle),
    )
    conn.close()


class TestBoundedStorage:
    def _tracker(self, tmp_path, **options):
        port = _closed_port()
        return make_tracker(f"http://127.0.0.1:{port}", tmp_path, **options)

    def test_pings_shed_oldest_first(self, tmp_path) -> None:
        tracker = self._tracker(tmp_path, max_queued_events=10)
        session = tracker.start_session(session_params())
        session.track("play", 0.0)
        for second in range(1, 10):
            session.track("ping", float(second))

        session.track("ping", 10.0)

        with tracker._store.queue(session.handle) as queue:
            queued = queue.pending_items()
        playheads = [json.loads(item.text)["playerTime"]["playhead"] for item in queued]
        assert playheads == [0.0] + [float(s) for s in range(2, 11)]
        assert tracker.stats().counters["shed"] == 1
        tracker.close(timeout=0)

    def test_last_ping_before_other_event_kept(self, tmp_path) -> None:
        tracker = self._tracker(tmp_path, max_queued_events=6)
        session = tracker.start_session(session_params())
        session.track("ping", 1.0)
        session.track("pauseStart", 1.0)
        session.track("ping", 2.0)
        session.track("ping", 3.0)
        session.track("play", 3.0)
        session.track("ping", 4.0)

        session.track("ping", 5.0)

        with tracker._store.queue(session.handle) as queue:
            queued = queue.pending_items()
        kept = [
            (json.loads(item.text)["eventType"], json.loads(item.text)["playerTime"]["playhead"]) for item in queued
        ]
        assert kept == [("ping", 1.0), ("pauseStart", 1.0), ("ping", 3.0), ("play", 3.0), ("ping", 4.0), ("ping", 5.0)]
        tracker.close(timeout=0)

    def test_queue_full_error_when_nothing_to_shed(self, tmp_path) -> None:
        tracker = self._tracker(tmp_path, max_queued_events=3)
        session = tracker.start_session(session_params())
        session.track("play", 0.0)
        session.track("pauseStart", 0.0)
        session.track("play", 0.0)

        with pytest.raises(QueueFullError) as raised:
            session.track("pauseStart", 1.0)

        assert raised.value.limit == "max_queued_events"
        assert "max_queued_events=3" in str(raised.value)
        assert tracker.stats().queued_events == 4  # three events and the unsent sessionStart
        tracker.close(timeout=0)

    def test_byte_ceiling_named(self, tmp_path) -> None:
        tracker = self._tracker(tmp_path, max_queued_bytes=32 * 1024, max_event_bytes=32 * 1024)
        session = tracker.start_session(session_params())
        blob = {"custom.blob": "x" * 20_000}
        session.track("play", 0.0, blob)

        with pytest.raises(QueueFullError) as raised:
            session.track("pauseStart", 0.0, blob)

        assert raised.value.limit == "max_queued_bytes"
        tracker.close(timeout=0)

    def test_room_returns_after_delivery(self, tmp_path) -> None:
        port = _closed_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path, max_queued_events=2) as tracker:
            session = tracker.start_session(session_params())
            session.track("play", 0.0)
            session.track("pauseStart", 0.0)
            with pytest.raises(QueueFullError):
                session.track("play", 1.0)

            with Emulator(port=port) as emulator:
                assert tracker.flush(timeout=20)
                session.track("play", 1.0)
                assert tracker.flush(timeout=20)
                records = emulator.sessions()

        assert event_types(records[0]) == ["play", "pauseStart", "play"]
