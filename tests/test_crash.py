"""A process killed with SIGKILL loses no event whose track() had returned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from durabletrack.emulator import Emulator, Faults
from tests.support import make_tracker, records_for

REPO = Path(__file__).resolve().parents[1]


def _start_child(data_dir: Path, endpoint: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.child_tracker", str(data_dir), endpoint, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


def _read_until_tracked(child: subprocess.Popen[str], wanted: int) -> tuple[str, list[int]]:
    """Read the child's report lines until ``wanted`` events were tracked."""
    assert child.stdout is not None
    handle = child.stdout.readline().split()[1]
    tracked: list[int] = []
    while len(tracked) < wanted:
        line = child.stdout.readline()
        assert line, "child exited before tracking enough events"
        tracked.append(int(line.split()[1]))

    return handle, tracked


def _kill(child: subprocess.Popen[str]) -> list[int]:
    """SIGKILL the child by PID; return the events it reported after the last read."""
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.stdout is not None
    rest = [int(line.split()[1]) for line in child.stdout.read().splitlines() if line.startswith("tracked")]

    return rest


class TestKillDuringTracking:
    def test_every_returned_event_delivered_in_order(self, tmp_path) -> None:
        # Event latency keeps deliveries in flight, so the kill lands among
        # commits, requests and acks alike.
        with Emulator(faults=Faults(event_latency=(0.0, 0.01), session_latency=0.2)) as emulator:
            child = _start_child(tmp_path, emulator.url, count=100_000)
            handle, tracked = _read_until_tracked(child, wanted=300)
            tracked += _kill(child)

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
            child = _start_child(tmp_path, down.url, count=100_000)
            handle, tracked = _read_until_tracked(child, wanted=50)
            tracked += _kill(child)

        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=60)
                records = records_for(emulator, tracker, handle)

        assert delivered
        playheads = [int(body["playerTime"]["playhead"]) for body in records[0].events]
        assert playheads[: len(tracked)] == tracked
