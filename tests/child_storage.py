"""Child process for storage-fault tests; runs inside its own mount namespace.

Usage: unshare --mount --propagation private python -m tests.child_storage SCENARIO MOUNT_DIR

Mounts a small tmpfs on MOUNT_DIR (visible only in this namespace), runs the
scenario against a Tracker whose data directory is on it, and prints one JSON
line with what it observed. Scenarios: ``full`` (the disk fills up, then space
returns) and ``read-only`` (the file system is read-only when the Tracker
opens: the Tracker starts without its store and raises StorageError until
the file system is writable again).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from durabletrack import StorageError
from durabletrack.emulator import Emulator, Faults
from tests.support import FAST_RETRY, make_tracker, records_for, session_params, wait_until


def _mount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def full_disk(mount_dir: Path) -> dict:
    _mount(mount_dir, "size=8m,mode=0700")
    data_dir = mount_dir / "data"
    report: dict = {}
    with Emulator(faults=Faults(blackhole_rate=1.0)) as emulator:
        tracker = make_tracker(emulator.url, data_dir, request_timeout=1.0, retry=FAST_RETRY)
        session = tracker.start_session(session_params())
        filler = mount_dir / "filler"
        _fill(filler)

        tracked = 0
        error = None
        for index in range(100_000):
            try:
                session.track("play", float(index), {"custom.pad": "x" * 2000})
            except StorageError as raised:
                error = raised
                break
            tracked += 1
        report["tracked_before_full"] = tracked
        report["error"] = type(error).__name__ if error else None
        report["error_names_path"] = bool(error and str(data_dir) in str(error))

        emulator.update_faults(blackhole_rate=0.0)
        report["delivered_while_full"] = tracker.flush(timeout=60)
        records = records_for(emulator, tracker, session.handle)
        playheads = [int(body["playerTime"]["playhead"]) for record in records for body in record.events]
        report["in_order"] = playheads == list(range(tracked))

        filler.unlink()
        try:
            session.track("play", float(tracked), {"custom.pad": "x"})
            report["writes_after_space"] = tracker.flush(timeout=30)
        except StorageError:
            report["writes_after_space"] = False
        tracker.close(timeout=2)

    return report


def _fill(filler: Path) -> None:
    """Fill the file system, leaving a few pages for SQLite."""
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
    with open(filler, "r+b") as file:
        file.truncate(max(filler.stat().st_size - 300_000, 0))


def read_only(mount_dir: Path) -> dict:
    _mount(mount_dir, "size=8m,mode=0700")
    data_dir = mount_dir / "data"
    report: dict = {}
    # Nothing listens on the port, so every attempt fails at once and the
    # sender threads end within close(): no file stays open for the remount.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    tracker = make_tracker(f"http://127.0.0.1:{closed_port}", data_dir, request_timeout=1.0)
    session = tracker.start_session(session_params())
    for index in range(20):
        session.track("ping", float(index))
    tracker.close(timeout=3.0)
    _remount(mount_dir, "ro")

    with Emulator() as emulator:
        tracker = make_tracker(emulator.url, data_dir, poll_interval=0.2)
        report["opened_while_read_only"] = True
        try:
            tracker.start_session(session_params(**{"media.id": "late"}))
            report["start_while_read_only"] = "stored"
        except StorageError as error:
            report["start_while_read_only"] = type(error).__name__

        _remount(mount_dir, "rw")
        report["start_after_rw"] = wait_until(lambda: _try_start(tracker), timeout=10)
        report["flushed_after_rw"] = tracker.flush(timeout=30)
        report["old_events_delivered"] = sum(
            len(record.events) for record in emulator.sessions() if record.start["params"]["media.id"] != "late"
        )
        tracker.close(timeout=2)

    return report


def _try_start(tracker) -> bool:
    try:
        tracker.start_session(session_params(**{"media.id": "late"}))
    except StorageError:
        return False
    return True


def main() -> None:
    scenario, mount_dir = sys.argv[1], Path(sys.argv[2])
    run = {"full": full_disk, "read-only": read_only}[scenario]
    print(json.dumps(run(mount_dir)), flush=True)


if __name__ == "__main__":
    main()
