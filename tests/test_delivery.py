"""Delivery against a real emulator: slow sessions, outages, throttling, rejections."""

from __future__ import annotations

import socket
import time

from durabletrack.emulator import Answer, Emulator, Faults
from tests.support import event_types, make_tracker, records_for, session_params, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestSlowSessionResponse:
    def test_events_wait_for_session_id(self, tmp_path) -> None:
        with Emulator(faults=Faults(session_latency=5.0)) as emulator:
            with make_tracker(emulator.url, tmp_path, request_timeout=10.0) as tracker:
                started = time.monotonic()
                session = tracker.start_session(session_params())
                for second in range(20):
                    session.track("ping" if second else "play", float(second))
                tracked_in = time.monotonic() - started
                no_events_yet = emulator.accepted() == []

                delivered = tracker.flush(timeout=20)
                record = records_for(emulator, tracker, session.handle)[0]

        assert tracked_in < 2.0
        assert no_events_yet
        assert delivered
        assert event_types(record) == ["play"] + ["ping"] * 19
        assert [body["playerTime"]["playhead"] for body in record.events] == [float(s) for s in range(20)]

    def test_slow_session_does_not_block_another(self, tmp_path) -> None:
        # The first sessionStart is never answered; the second session must
        # be delivered completely while the first still waits.
        faults = Faults(script=(Answer.BLACKHOLE.only_for("sessions"),))
        with Emulator(faults=faults) as emulator:
            with make_tracker(emulator.url, tmp_path, request_timeout=30.0) as tracker:
                stuck = tracker.start_session(session_params(**{"media.id": "stuck"}))
                assert emulator.wait_for(lambda emu: emu.fault_counts().get("blackhole") == 1, timeout=5)
                stuck.track("play", 0.0)
                moving = tracker.start_session(session_params(**{"media.id": "moving"}))
                for second in range(5):
                    moving.track("ping" if second else "play", float(second))

                moving_done = wait_until(lambda: len(_events_of(emulator, "moving")) == 5, timeout=10)
                stuck_has_no_id = tracker.session_ids(stuck.handle) == []

        assert moving_done
        assert stuck_has_no_id


def _events_of(emulator: Emulator, media_id: str) -> list[dict]:
    for record in emulator.sessions():
        if record.start["params"]["media.id"] == media_id:
            return record.events
    return []


class TestOutageAndRecovery:
    def test_down_then_503_then_429_then_recovered(self, tmp_path) -> None:
        port = _free_port()
        with make_tracker(f"http://127.0.0.1:{port}", tmp_path) as tracker:
            session = tracker.start_session(session_params())
            for second in range(10):
                session.track("ping" if second else "play", float(second))
            assert wait_until(lambda: tracker.stats().counters["retried"] >= 3, timeout=10)

            script = (Answer(status=503), Answer(status=429, retry_after=2))
            with Emulator(faults=Faults(script=script), port=port) as emulator:
                assert emulator.wait_for(lambda emu: emu.fault_counts().get("throttle") == 1, timeout=10)
                seen_at_throttle = emulator.requests_seen()
                quiet_after_throttle = not emulator.wait_for(
                    lambda emu: emu.requests_seen() > seen_at_throttle, timeout=1.5
                )
                delivered = tracker.flush(timeout=20)
                records = records_for(emulator, tracker, session.handle)

        assert quiet_after_throttle
        assert delivered
        assert len(records) == 1
        assert event_types(records[0]) == ["play"] + ["ping"] * 9

    def test_event_503_retried_in_order(self, tmp_path) -> None:
        script = tuple(Answer(status=503).only_for("events") for _ in range(3))
        with Emulator(faults=Faults(script=script)) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                for second in range(6):
                    session.track("ping" if second else "play", float(second))
                delivered = tracker.flush(timeout=20)
                record = records_for(emulator, tracker, session.handle)[0]

        assert delivered
        assert [body["playerTime"]["playhead"] for body in record.events] == [float(s) for s in range(6)]

    def test_captive_portal_is_not_a_delivery(self, tmp_path) -> None:
        with Emulator(faults=Faults(captive_portal=True)) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                session.track("play", 0.0)
                assert emulator.wait_for(lambda emu: emu.fault_counts().get("captive_portal", 0) >= 2, timeout=10)
                still_queued = tracker.stats().queued_events

                emulator.update_faults(captive_portal=False)
                delivered = tracker.flush(timeout=20)
                record = records_for(emulator, tracker, session.handle)[0]

        assert still_queued == 2
        assert delivered
        assert event_types(record) == ["play"]


class TestRejection:
    def test_400_dead_letters_one_event(self, tmp_path) -> None:
        script = (Answer(status=201).only_for("sessions"), Answer(status=204), Answer(status=400))
        with Emulator(faults=Faults(script=script)) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                for second in range(5):
                    session.track("ping" if second else "play", float(second))
                delivered = tracker.flush(timeout=20)
                record = records_for(emulator, tracker, session.handle)[0]
                dead = tracker.dead_letters()

        assert delivered
        assert [body["playerTime"]["playhead"] for body in record.events] == [0.0, 2.0, 3.0, 4.0]
        assert len(dead) == 1
        assert dead[0].status == 400
        assert '"playhead":1.0' in dead[0].event

    def test_rejected_session_start_dead_letters_all(self, tmp_path) -> None:
        script = (Answer(status=400).only_for("sessions"),)
        with Emulator(faults=Faults(script=script)) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                session = tracker.start_session(session_params())
                session.track("play", 0.0)
                session.track("ping", 10.0)
                delivered = tracker.flush(timeout=20)
                dead = tracker.dead_letters(session.handle)

        assert delivered
        assert [letter.reason for letter in dead] == ["session_rejected"] * 3
        assert '"sessionStart"' in dead[0].event


class TestClose:
    def test_close_returns_while_server_hangs(self, tmp_path) -> None:
        with Emulator(faults=Faults(blackhole_rate=1.0)) as emulator:
            tracker = make_tracker(emulator.url, tmp_path, request_timeout=30.0)
            session = tracker.start_session(session_params())
            for second in range(5):
                session.track("ping" if second else "play", float(second))
            assert emulator.wait_for(lambda emu: emu.fault_counts().get("blackhole", 0) >= 1, timeout=5)

            started = time.monotonic()
            tracker.close(timeout=1.0)
            close_took = time.monotonic() - started

        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=20)
                records = emulator.sessions()

        assert close_took < 1.5
        assert delivered
        assert len(records) == 1
        assert event_types(records[0]) == ["play", "ping", "ping", "ping", "ping"]
