"""A process killed with SIGKILL loses no event whose track() had returned."""

from __future__ import annotations

import signal

from durabletrack.emulator import Emulator, Faults
from tests.children import kill, read_until_tracked, start_child
from tests.support import make_tracker, records_for


class TestKillDuringTracking:
    def test_every_returned_event_delivered_in_order(self, tmp_path) -> None:
        # Event latency keeps deliveries in flight, so the kill lands among
        # commits, requests and acks alike.
        with Emulator(faults=Faults(event_latency=(0.0, 0.01), session_latency=0.2)) as emulator:
            child = start_child(tmp_path, emulator.url, count=100_000)
            handle, tracked = read_until_tracked(child, wanted=300)
            tracked += kill(child)

            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=60)
                records = records_for(emulator, tracker, handle)

        assert child.returncode == -signal.SIGKILL
        assert delivered
        playheads = [int(body["playerTime"]["playhead"]) for record in records for body in record.events]
        without_duplicates = [p for i, p in enumerate(playheads) if i == 0 or p != playheads[i - 1]]
        assert without_duplicates[: len(tracked)] == tracked
        assert len(playheads) - len(without_duplicates) <= 1

    def test_kill_before_any_delivery(self, tmp_path) -> None:
        # The collector is down while the child runs: everything is on disk only.
        with Emulator(faults=Faults(blackhole_rate=1.0)) as down:
            child = start_child(tmp_path, down.url, count=100_000)
            handle, tracked = read_until_tracked(child, wanted=50)
            tracked += kill(child)

        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=60)
                records = records_for(emulator, tracker, handle)

        assert delivered
        playheads = [int(body["playerTime"]["playhead"]) for body in records[0].events]
        assert playheads[: len(tracked)] == tracked
