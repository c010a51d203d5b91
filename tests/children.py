"""Starting, reading and killing ``tests.child_tracker`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_child(data_dir: Path, endpoint: str, count: int, *options: str) -> subprocess.Popen[str]:
    """Start ``tests.child_tracker`` with its stdout piped to the test."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.child_tracker", str(data_dir), endpoint, str(count), *options],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


def read_header(child: subprocess.Popen[str]) -> tuple[str, bool]:
    """Read the child's first line; return its session handle and whether it drains."""
    assert child.stdout is not None
    words = child.stdout.readline().split()
    assert words and words[0] == "started", f"unexpected first line from the child: {words}"

    return words[1], words[2] == "draining=True"


def read_tracked(child: subprocess.Popen[str], wanted: int) -> list[int]:
    """Read the child's report lines until ``wanted`` events were tracked."""
    assert child.stdout is not None
    tracked: list[int] = []
    while len(tracked) < wanted:
        line = child.stdout.readline()
        assert line.startswith("tracked"), f"child stopped before tracking {wanted} events: {line!r}"
        tracked.append(int(line.split()[1]))

    return tracked


def read_until_tracked(child: subprocess.Popen[str], wanted: int) -> tuple[str, list[int]]:
    """Read the header and then the report lines until ``wanted`` events were tracked."""
    handle, _ = read_header(child)

    return handle, read_tracked(child, wanted)


def kill(child: subprocess.Popen[str]) -> list[int]:
    """SIGKILL the child by PID; return the events it reported after the last read."""
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.stdout is not None
    rest = [int(line.split()[1]) for line in child.stdout.read().splitlines() if line.startswith("tracked")]

    return rest
