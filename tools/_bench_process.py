"""Benchmarks that need a fresh process: backlog scaling, idle CPU and import RSS.

The parent (``bench.py``) runs the emulator and starts this file as a child
with one command; the child prints one JSON object per line on stdout.

Commands:
    open URL DIR      open a Tracker on DIR, print the open time, wait for a
                      line on stdin, print RSS, close.
    drain URL DIR T   open a Tracker on DIR, flush for at most T seconds, close.
    idle URL DIR T    track a few events, wait until delivered, then measure
                      the CPU time of T idle seconds.
    import            print RSS before and after ``import durabletrack``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from _bench_common import SESSION_PARAMS, event_fields, read_rss_kib


def _emit(**values: object) -> None:
    print(json.dumps(values), flush=True)


def _open(url: str, directory: str) -> None:
    from durabletrack import Tracker

    began = time.monotonic()
    tracker = Tracker(url, directory)
    _emit(began=began, open_s=time.monotonic() - began)

    # The parent writes a line once it saw the first event delivered.
    sys.stdin.readline()
    rss, peak = read_rss_kib()
    _emit(rss_kib=rss, peak_kib=peak)
    tracker.close(timeout=0.0)


def _drain(url: str, directory: str, timeout: float) -> None:
    from durabletrack import Tracker

    began = time.monotonic()
    # Durability changes only the cost of each ack, so process_crash drains a
    # large backlog faster and leaves the same files behind.
    tracker = Tracker(url, directory, durability="process_crash")
    drained = tracker.flush(timeout=timeout)
    elapsed = time.monotonic() - began
    rss, peak = read_rss_kib()
    tracker.close(timeout=1.0)
    _emit(drained=drained, drain_s=elapsed, rss_kib=rss, peak_kib=peak)


def _idle(url: str, directory: str, seconds: float) -> None:
    from durabletrack import Tracker

    tracker = Tracker(url, directory)
    fields = event_fields()
    session = tracker.start_session(SESSION_PARAMS)
    for index in range(10):
        session.track(
            "bitrateChange", index * 0.5, qoe_data=fields["qoeData"], custom_metadata=fields["customMetadata"]
        )
    delivered = tracker.flush(timeout=10.0)

    before = os.times()
    time.sleep(seconds)
    after = os.times()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    rss, peak = read_rss_kib()
    tracker.close(timeout=1.0)
    _emit(delivered=delivered, idle_s=seconds, cpu_s=cpu_s, rss_kib=rss, peak_kib=peak)


def _import() -> None:
    bare, _ = read_rss_kib()
    import durabletrack  # noqa: F401

    loaded, _ = read_rss_kib()
    _emit(bare_kib=bare, imported_kib=loaded)


def main(argv: list[str]) -> int:
    """Run one child command; see the module docstring."""
    command, args = argv[0], argv[1:]
    if command == "open":
        _open(args[0], args[1])
    elif command == "drain":
        _drain(args[0], args[1], float(args[2]))
    elif command == "idle":
        _idle(args[0], args[1], float(args[2]))
    elif command == "import":
        _import()
    else:
        print(f"unknown command {command!r}: expected open, drain, idle or import", file=sys.stderr)
        return 2

    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
