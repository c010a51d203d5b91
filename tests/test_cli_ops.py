"""The data-directory commands of ``durabletrack``, run as a real child process.

Every data directory here is written by a real Tracker delivering to the
loopback emulator; one is left by a drainer killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durabletrack import RetryPolicy, Tracker
from durabletrack.emulator import Answer, Emulator, Faults
from tests.support import SESSION_PARAMS

REPO = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 60.0

PARAMS = {
    **SESSION_PARAMS,
    "visitor.marketingCloudUserId": "ECID-CLI-71938455",
}

FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.2)


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "durabletrack", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def file_digests(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.name in ("registry.db", "events.db", "drain.lock")
    }


def unreachable_url() -> str:
    """Return the URL of an emulator that has stopped: connections are refused."""
    with Emulator() as emulator:
        url = emulator.url
    return url


def track_three(tracker: Tracker) -> str:
    session = tracker.start_session(PARAMS)
    session.track("play", 0.0)
    session.track("ping", 10.0)
    session.track("pauseStart", 12.0)
    return session.handle


@pytest.fixture
def queued_dir(tmp_path: Path) -> tuple[Path, str]:
    """A data directory with one session whose four items were never delivered."""
    data_dir = tmp_path / "data"
    tracker = Tracker(unreachable_url(), data_dir, retry=FAST_RETRY)
    handle = track_three(tracker)
    tracker.close(0.2)
    return data_dir, handle


@pytest.fixture
def dead_letter_dir(tmp_path: Path, emulator: Emulator) -> tuple[Path, str]:
    """A data directory whose one session has its first event (play) dead-lettered."""
    emulator.set_faults(Faults(script=(Answer(status=400, kind="events"),)))
    data_dir = tmp_path / "data"
    with Tracker(emulator.url, data_dir, retry=FAST_RETRY) as tracker:
        handle = track_three(tracker)
        assert tracker.flush(10.0)
    return data_dir, handle


@pytest.fixture
def rejected_dir(tmp_path: Path, emulator: Emulator) -> tuple[Path, str]:
    """A data directory whose session the collector rejected: every item is a dead letter."""
    emulator.set_faults(Faults(script=(Answer(status=400, kind="sessions"),)))
    data_dir = tmp_path / "data"
    with Tracker(emulator.url, data_dir, retry=FAST_RETRY) as tracker:
        handle = track_three(tracker)
        assert tracker.flush(10.0)
        assert len(tracker.dead_letters()) == 4
    emulator.reset_records()
    return data_dir, handle


class TestStatus:
    def test_json_counts(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, handle = queued_dir

        result = run_cli("status", str(data_dir), "--json")

        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["sessions_by_state"] == {"pending": 1}
        assert status["queued_events"] == 4
        assert status["sessions"][0]["handle"] == handle
        assert status["oldest_event_age_s"] >= 0
        assert status["bytes_on_disk"] > 0
        assert status["drainer_pid"] is None

    def test_text_summary(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, handle = dead_letter_dir

        result = run_cli("status", str(data_dir))

        assert result.returncode == 0, result.stderr
        assert "dead letters    1" in result.stdout
        assert handle in result.stdout
        assert "delivered 2" in result.stdout

    def test_reads_without_writing(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, handle = dead_letter_dir
        before = file_digests(data_dir)

        results = [
            run_cli("status", str(data_dir)),
            run_cli("status", str(data_dir), "--json"),
            run_cli("inspect", str(data_dir)),
            run_cli("dead-letters", str(data_dir)),
        ]

        assert [result.returncode for result in results] == [0, 0, 0, 0]
        assert file_digests(data_dir) == before

    def test_reports_wide_permissions(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir
        data_dir.chmod(0o755)

        text = run_cli("status", str(data_dir))
        as_json = json.loads(run_cli("status", str(data_dir), "--json").stdout)

        assert "WARNING" in text.stdout
        assert str(data_dir) in as_json["wide_permissions"]


class TestBadDirectory:
    COMMANDS = (
        ("status",),
        ("inspect",),
        ("dead-letters",),
        ("requeue", "--all"),
        ("purge", "--yes"),
        ("drain", "--endpoint", "http://127.0.0.1:9"),
    )

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
    def test_missing_is_not_created(self, tmp_path: Path, command: tuple[str, ...]) -> None:
        missing = tmp_path / "missing"

        result = run_cli(command[0], str(missing), *command[1:])

        assert result.returncode == 2
        assert f"{missing}: does not exist" in result.stderr
        assert not missing.exists()

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
    def test_not_a_data_directory(self, tmp_path: Path, command: tuple[str, ...]) -> None:
        result = run_cli(command[0], str(tmp_path), *command[1:])

        assert result.returncode == 2
        assert "is not a durabletrack data directory" in result.stderr
        assert list(tmp_path.iterdir()) == []

    def test_corrupt_registry(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir
        (data_dir / "registry.db").write_bytes(b"not a database " * 400)

        result = run_cli("status", str(data_dir))

        assert result.returncode == 2
        assert "registry.db: is corrupt" in result.stderr

    def test_file_instead_of_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "file"
        path.write_text("x")

        result = run_cli("status", str(path))

        assert result.returncode == 2
        assert "is not a directory" in result.stderr

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_unreadable(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir
        data_dir.chmod(0)
        try:
            result = run_cli("status", str(data_dir))
        finally:
            data_dir.chmod(0o700)

        assert result.returncode == 2
        assert "cannot be read" in result.stderr


class TestInspect:
    def test_items_in_delivery_order(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, handle = queued_dir

        result = run_cli("inspect", str(data_dir), "--session", handle[:8], "--json")

        assert result.returncode == 0, result.stderr
        items = json.loads(result.stdout)
        assert [item["kind"] for item in items] == ["sessionStart", "event", "event", "event"]
        assert [item["event"]["eventType"] for item in items] == ["sessionStart", "play", "ping", "pauseStart"]
        row_ids = [item["queue_id"] for item in items[1:]]
        assert row_ids == sorted(row_ids)

    def test_unknown_session(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir

        result = run_cli("inspect", str(data_dir), "--session", "ffff0000")

        assert result.returncode == 2
        assert "no session has the session handle 'ffff0000'" in result.stderr


class TestDeadLetters:
    def test_lists_reason(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, handle = dead_letter_dir

        result = run_cli("dead-letters", str(data_dir))

        assert result.returncode == 0, result.stderr
        assert "status 400" in result.stdout
        assert handle in result.stdout
        assert '"play"' in result.stdout

    def test_export_json_lines(self, dead_letter_dir: tuple[Path, str], tmp_path: Path) -> None:
        data_dir, handle = dead_letter_dir
        target = tmp_path / "dead.jsonl"

        result = run_cli("dead-letters", str(data_dir), "--export", str(target))

        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in target.read_text().splitlines()]
        assert len(lines) == 1
        assert lines[0]["handle"] == handle
        assert lines[0]["status"] == 400
        assert lines[0]["event"]["eventType"] == "play"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def test_export_keeps_existing_file(self, dead_letter_dir: tuple[Path, str], tmp_path: Path) -> None:
        data_dir, _ = dead_letter_dir
        target = tmp_path / "dead.jsonl"
        target.write_text("keep me")

        result = run_cli("dead-letters", str(data_dir), "--export", str(target))

        assert result.returncode == 2
        assert "already exists" in result.stderr
        assert target.read_text() == "keep me"


class TestRequeue:
    def test_rejected_session_delivered_in_order(self, rejected_dir: tuple[Path, str], emulator: Emulator) -> None:
        data_dir, handle = rejected_dir

        requeued = run_cli("requeue", str(data_dir), "--all")
        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)
        drained = run_cli("drain", str(data_dir), "--endpoint", emulator.url, "--timeout", "30")

        assert requeued.returncode == 0, requeued.stderr
        assert "reopened" in requeued.stdout
        assert status["sessions_by_state"] == {"pending": 1}
        assert status["queued_events"] == 4
        assert drained.returncode == 0, drained.stderr
        sessions = emulator.sessions()
        assert len(sessions) == 1
        assert [event["eventType"] for event in sessions[0].events] == ["play", "ping", "pauseStart"]
        assert run_cli("dead-letters", str(data_dir)).stdout == "no dead letters\n"

    def test_event_goes_back_to_its_row(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, handle = dead_letter_dir
        dead = json.loads(run_cli("dead-letters", str(data_dir), "--export", "-").stdout)

        result = run_cli("requeue", str(data_dir), "--id", str(dead["id"]))
        items = json.loads(run_cli("inspect", str(data_dir), "--session", handle, "--json").stdout)

        assert result.returncode == 0, result.stderr
        assert [(item["queue_id"], item["event"]["eventType"]) for item in items] == [(dead["queue_id"], "play")]

    def test_closed_session_is_skipped(self, tmp_path: Path, emulator: Emulator) -> None:
        emulator.set_faults(Faults(script=(Answer(status=400, kind="events"),)))
        data_dir = tmp_path / "data"
        with Tracker(emulator.url, data_dir, retry=FAST_RETRY) as tracker:
            session = tracker.start_session(PARAMS)
            session.track("play", 0.0)
            session.end(5.0)
            assert tracker.flush(10.0)

        result = run_cli("requeue", str(data_dir), "--all")

        assert result.returncode == 1
        assert "the session is closed" in result.stderr
        assert len(run_cli("dead-letters", str(data_dir), "--export", "-").stdout.splitlines()) == 1

    def test_unknown_id(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, _ = dead_letter_dir

        result = run_cli("requeue", str(data_dir), "--id", "999")

        assert result.returncode == 1
        assert "skipped dead letter 999: no such dead letter" in result.stderr


class TestPurge:
    def test_refuses_without_terminal(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, _ = dead_letter_dir
        before = file_digests(data_dir)

        result = run_cli("purge", str(data_dir))

        assert result.returncode == 2
        assert "pass --yes" in result.stderr
        assert file_digests(data_dir) == before

    def test_yes_deletes_everything(self, dead_letter_dir: tuple[Path, str]) -> None:
        data_dir, _ = dead_letter_dir

        result = run_cli("purge", str(data_dir), "--yes")
        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)

        assert result.returncode == 0, result.stderr
        assert status["sessions_by_state"] == {}
        assert status["dead_letters"] == 0
        for path in data_dir.iterdir():
            assert b"ECID-CLI-71938455" not in path.read_bytes(), path.name

    @pytest.mark.parametrize(("answer", "code", "sessions_left"), [("no", 1, 1), ("yes", 0, 0)])
    def test_asks_on_terminal(self, queued_dir: tuple[Path, str], answer: str, code: int, sessions_left: int) -> None:
        data_dir, _ = queued_dir

        output, returncode = run_on_terminal(["purge", str(data_dir)], answer + "\n")
        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)

        assert "Type 'yes' to confirm" in output
        assert returncode == code
        assert sum(status["sessions_by_state"].values()) == sessions_left


def run_on_terminal(args: list[str], typed: str) -> tuple[str, int]:
    """Run the command with a pseudo-terminal as stdin and stdout, typing ``typed`` after the prompt."""
    controller, terminal = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "durabletrack", *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    output = read_until(controller, b"confirm: ")
    os.write(controller, typed.encode())
    returncode = process.wait(CLI_TIMEOUT_S)
    output += read_until(controller, None)
    os.close(controller)
    return output.decode(errors="replace"), returncode


def read_until(fd: int, marker: bytes | None, timeout: float = CLI_TIMEOUT_S) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (marker is None or marker not in data):
        ready, _, _ = select.select([fd], [], [], 0.1 if marker is None else deadline - time.monotonic())
        if not ready:
            if marker is None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


# A drainer killed by PID -----------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, threading
    from durabletrack import Tracker
    params = dict(PARAMS)
    tracker = Tracker(sys.argv[1], sys.argv[2], request_timeout=120)
    session = tracker.start_session(params)
    for event_type, playhead in (("play", 0.0), ("ping", 10.0), ("pauseStart", 12.0)):
        session.track(event_type, playhead)
    print("tracked", flush=True)
    threading.Event().wait()
    """
).replace("dict(PARAMS)", repr(PARAMS))


@pytest.fixture
def stuck_drainer(tmp_path: Path) -> Iterator[tuple[Emulator, subprocess.Popen[str], Path]]:
    """A child process draining to an emulator that never responds to events, so one is in flight."""
    data_dir = tmp_path / "data"
    with Emulator(faults=Faults(blackhole_rate=1.0, applies_to=("events",))) as emulator:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, emulator.url, str(data_dir)], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert emulator.wait_for(lambda emu: emu.requests_seen() >= 2, timeout=30.0)
            yield emulator, child, data_dir
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait(CLI_TIMEOUT_S)


class TestKilledDrainer:
    def test_status_names_live_drainer(self, stuck_drainer: tuple[Emulator, subprocess.Popen[str], Path]) -> None:
        _, child, data_dir = stuck_drainer

        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)

        assert status["drainer_pid"] == child.pid
        assert status["sessions"][0]["queued_events"] == 3

    def test_drain_refuses_while_locked(self, stuck_drainer: tuple[Emulator, subprocess.Popen[str], Path]) -> None:
        emulator, child, data_dir = stuck_drainer

        result = run_cli("drain", str(data_dir), "--endpoint", emulator.url, "--timeout", "5")

        assert result.returncode == 3
        assert f"process {child.pid} holds the drain lock" in result.stderr

    def test_after_sigkill_drain_delivers(self, stuck_drainer: tuple[Emulator, subprocess.Popen[str], Path]) -> None:
        emulator, child, data_dir = stuck_drainer
        os.kill(child.pid, signal.SIGKILL)
        child.wait(CLI_TIMEOUT_S)

        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)
        listing = json.loads(run_cli("inspect", str(data_dir), "--json").stdout)
        emulator.update_faults(blackhole_rate=0.0)
        drained = run_cli("drain", str(data_dir), "--endpoint", emulator.url, "--timeout", "30")

        assert status["drainer_pid"] is None
        assert status["queued_events"] == 3
        assert [item["event"]["eventType"] for item in listing] == ["play", "ping", "pauseStart"]
        assert drained.returncode == 0, drained.stderr
        assert "Summary" in drained.stdout
        assert "still queued       0" in drained.stdout
        events = [event["eventType"] for event in emulator.sessions()[0].events]
        assert events == ["play", "ping", "pauseStart"]


class TestDrain:
    def test_delivers_and_reports(self, queued_dir: tuple[Path, str], emulator: Emulator) -> None:
        data_dir, _ = queued_dir

        result = run_cli("drain", str(data_dir), "--endpoint", emulator.url, "--timeout", "30")

        assert result.returncode == 0, result.stderr
        assert "4 item(s) queued" in result.stderr
        assert "[" + "#" * 30 + "] 4/4" in result.stderr
        assert "delivered          3" in result.stdout
        assert [event["eventType"] for event in emulator.sessions()[0].events] == ["play", "ping", "pauseStart"]

    def test_incomplete_exits_1(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir

        result = run_cli("drain", str(data_dir), "--endpoint", unreachable_url(), "--timeout", "1")

        assert result.returncode == 1
        assert "still queued after 1 s" in result.stderr
        assert "connection_error" in result.stderr

    def test_insecure_endpoint_rejected(self, queued_dir: tuple[Path, str]) -> None:
        data_dir, _ = queued_dir

        # The .invalid domain never resolves, and the URL is rejected before any connection.
        result = run_cli("drain", str(data_dir), "--endpoint", "http://collector.invalid")

        assert result.returncode == 2
        assert "plain http:// is allowed only for loopback hosts" in result.stderr


class TestQuarantine:
    def test_status_lists_moved_files(self, queued_dir: tuple[Path, str], emulator: Emulator) -> None:
        data_dir, _ = queued_dir
        (data_dir / "events.db").write_bytes(b"not a database " * 400)
        for name in ("events.db-wal", "events.db-shm"):
            (data_dir / name).unlink(missing_ok=True)
        Tracker(emulator.url, data_dir).close(0.1)

        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)
        text = run_cli("status", str(data_dir)).stdout

        assert any(name.startswith("events.db.corrupt-") for name in status["quarantined"])
        assert "moved aside as corrupt" in text
