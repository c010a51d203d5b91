"""Several processes on one data directory, fork, and process exit."""

from __future__ import annotations

import os
import signal
import time

from durabletrack.emulator import Emulator, Faults
from tests.children import kill, read_header, read_tracked, read_until_tracked, start_child
from tests.support import event_types, make_tracker, records_for, session_params, wait_until


class TestOneDrainer:
    def test_second_process_enqueues_first_delivers(self, emulator: Emulator, tmp_path) -> None:
        with make_tracker(emulator.url, tmp_path) as tracker:
            assert wait_until(lambda: tracker.stats().is_draining, timeout=5)
            mine = tracker.start_session(session_params(**{"media.id": "parent"}))
            mine.track("play", 0.0)

            child = start_child(tmp_path, emulator.url, 20, "--exit", "--media-id", "child")
            child_handle, child_draining = read_header(child)
            child.wait(timeout=30)

            mine.track("ping", 10.0)
            delivered = tracker.flush(timeout=30)
            mine_records = records_for(emulator, tracker, mine.handle)
            child_records = records_for(emulator, tracker, child_handle)

        assert not child_draining
        assert child.returncode == 0
        assert delivered
        assert event_types(mine_records[0]) == ["play", "ping"]
        assert [body["playerTime"]["playhead"] for body in child_records[0].events] == [float(i) for i in range(20)]

    def test_dead_drainer_releases_lock(self, tmp_path) -> None:
        with Emulator(faults=Faults(blackhole_rate=1.0)) as down:
            child = start_child(tmp_path, down.url, 10_000)
            handle, child_draining = read_header(child)
            tracked = read_tracked(child, wanted=30)

            with Emulator() as emulator:
                with make_tracker(emulator.url, tmp_path) as tracker:
                    waiting = not tracker.stats().is_draining
                    tracked += kill(child)
                    took_over = wait_until(lambda: tracker.stats().is_draining, timeout=10)
                    delivered = tracker.flush(timeout=30)
                    records = records_for(emulator, tracker, handle)

        assert child_draining
        assert waiting
        assert took_over
        assert delivered
        playheads = [int(body["playerTime"]["playhead"]) for body in records[0].events]
        assert playheads[: len(tracked)] == tracked


class TestFork:
    def test_child_after_fork_reopens_and_parent_delivers(self, emulator: Emulator, tmp_path) -> None:
        with make_tracker(emulator.url, tmp_path) as tracker:
            parent_session = tracker.start_session(session_params(**{"media.id": "parent"}))
            parent_session.track("play", 0.0)
            assert tracker.flush(timeout=20)

            pid = os.fork()
            if pid == 0:
                _child_after_fork(tracker, "forked")
            _, status = os.waitpid(pid, 0)

            delivered = tracker.flush(timeout=30)
            child_records = [r for r in emulator.sessions() if r.start["params"]["media.id"] == "forked"]

        assert os.WEXITSTATUS(status) == 0
        assert delivered
        assert event_types(child_records[0]) == ["play", "ping", "ping"]

    def test_fork_while_delivering(self, tmp_path) -> None:
        # Sender threads are inside requests and SQLite commits when the
        # forks happen; no child may hang on a lock it inherited.
        with Emulator(faults=Faults(event_latency=(0.0, 0.003))) as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                busy = tracker.start_session(session_params(**{"media.id": "parent"}))
                statuses = []
                for round_number in range(10):
                    for second in range(40):
                        busy.track("ping", float(round_number * 40 + second))
                    pid = os.fork()
                    if pid == 0:
                        _child_after_fork(tracker, f"forked-{round_number}")
                    statuses.append(_wait_for_child(pid, timeout=30))

                delivered = tracker.flush(timeout=60)
                forked = [r for r in emulator.sessions() if r.start["params"]["media.id"].startswith("forked")]

        assert statuses == [0] * 10
        assert delivered
        assert sorted(len(record.events) for record in forked) == [3] * 10


def _wait_for_child(pid: int, timeout: float) -> int:
    """Return the child's exit status, or kill it by PID and return -1 if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def _child_after_fork(tracker, media_id: str) -> None:
    """Body of the forked child: must never return into pytest."""
    code = 1
    try:
        session = tracker.start_session(session_params(**{"media.id": media_id}))
        session.track("play", 0.0)
        session.track("ping", 10.0)
        session.track("ping", 20.0)
        code = 0 if not tracker.stats().is_draining else 3
    finally:
        os._exit(code)


class TestExit:
    def test_exit_without_close_loses_nothing(self, tmp_path) -> None:
        with Emulator(faults=Faults(blackhole_rate=1.0)) as down:
            child = start_child(tmp_path, down.url, 40, "--exit")
            started = time.monotonic()
            child.wait(timeout=30)
            exit_took = time.monotonic() - started
            handle, tracked = read_until_tracked(child, wanted=40)

        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=30)
                records = records_for(emulator, tracker, handle)

        assert child.returncode == 0
        assert exit_took < 10  # interpreter exit does not wait for the hanging request
        assert delivered
        assert [int(body["playerTime"]["playhead"]) for body in records[0].events] == tracked
