"""Enqueue benchmark: ``track()`` against a raw SQLite commit, a raw persist-queue put and analytics-python.

Every contender stores the same ~330-byte event body. The durable ones use
the same SQLite settings as durabletrack (WAL, the same ``synchronous``, the
same checkpoint limits), one table per session in one database file.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _bench_common import SESSION_PARAMS, event_body, event_fields

from durabletrack import Tracker
from durabletrack._sqlite import apply_pragmas
from durabletrack.config import Durability
from durabletrack.emulator import Emulator, Faults

# The emulator holds each sessionStart this long (seconds), so the Tracker's
# sender thread stays parked in that one request and never reads or writes
# the queue while track() is measured.
PARKED_SESSION_LATENCY_S = 3600.0

# One call of a contender: enqueue the event with this index.
EnqueueCall = Callable[[int], Any]

# Set up one contender in a fresh directory for ``threads`` writers; return
# one call per writer and a function that releases everything.
Setup = Callable[[Path, str, int, Any], tuple[list[EnqueueCall], Callable[[], None]]]


def _raw_sqlite(
    directory: Path, synchronous: str, threads: int, _shared: Any
) -> tuple[list[EnqueueCall], Callable[[], None]]:
    fields = event_fields()
    connections = []
    calls: list[EnqueueCall] = []
    for index in range(threads):
        conn = sqlite3.connect(directory / "raw.db", timeout=30.0, check_same_thread=False)
        apply_pragmas(conn, synchronous)
        table = f"raw_{index}"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table}"
            " (_id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, timestamp FLOAT, status INTEGER)"
        )
        conn.commit()
        connections.append(conn)
        calls.append(_raw_insert_call(conn, table, fields))

    def close() -> None:
        for conn in connections:
            conn.close()

    return calls, close


def _raw_insert_call(conn: sqlite3.Connection, table: str, fields: dict[str, Any]) -> EnqueueCall:
    sql = f"INSERT INTO {table} (data, timestamp, status) VALUES (?, ?, 0)"
    start_ms = int(time.time() * 1000)

    def call(index: int) -> None:
        conn.execute(sql, (event_body(start_ms + index, index * 0.5, fields), time.time()))
        conn.commit()

    return call


def _persist_queue(
    directory: Path, synchronous: str, threads: int, _shared: Any
) -> tuple[list[EnqueueCall], Callable[[], None]]:
    from persistqueue import SQLiteAckQueue
    from persistqueue.serializers import json as json_serializer

    class TunedAckQueue(SQLiteAckQueue):
        # The same pragmas durabletrack sets; persist-queue itself sets only WAL.
        def _new_db_connection(self, path: str, multithreading: bool, timeout: float) -> sqlite3.Connection:
            conn = super()._new_db_connection(path, multithreading, timeout)
            apply_pragmas(conn, synchronous)
            return conn

    fields = event_fields()
    start_ms = int(time.time() * 1000)
    queues = [
        TunedAckQueue(
            str(directory),
            name=f"q{index}",
            multithreading=True,
            auto_resume=False,
            serializer=json_serializer,
            db_file_name="pq.db",
        )
        for index in range(threads)
    ]

    def put_call(queue: Any) -> EnqueueCall:
        def call(index: int) -> None:
            queue.put(
                {
                    "playerTime": {"playhead": index * 0.5, "ts": start_ms + index},
                    "eventType": "bitrateChange",
                    **fields,
                }
            )

        return call

    def close() -> None:
        for queue in queues:
            queue.close()

    return [put_call(queue) for queue in queues], close


def _durabletrack(
    directory: Path, synchronous: str, threads: int, emulator_url: Any
) -> tuple[list[EnqueueCall], Callable[[], None]]:
    durability = Durability.POWER_LOSS if synchronous == "FULL" else Durability.PROCESS_CRASH
    tracker = Tracker(emulator_url, directory / "data", durability=durability, request_timeout=PARKED_SESSION_LATENCY_S)
    fields = event_fields()
    sessions = [tracker.start_session(SESSION_PARAMS) for _ in range(threads)]

    def track_call(session: Any) -> EnqueueCall:
        def call(index: int) -> None:
            session.track(
                "bitrateChange", index * 0.5, qoe_data=fields["qoeData"], custom_metadata=fields["customMetadata"]
            )

        return call

    def close() -> None:
        tracker.close(timeout=0.2)

    return [track_call(session) for session in sessions], close


def _analytics(
    directory: Path, synchronous: str, threads: int, _shared: Any
) -> tuple[list[EnqueueCall], Callable[[], None]]:
    import analytics

    # send=False: messages are built and validated but neither queued nor
    # sent, so no consumer thread competes and nothing leaves the process.
    client = analytics.Client(write_key="bench", send=False, host="http://127.0.0.1:9")
    fields = event_fields()

    def track_call(user: str) -> EnqueueCall:
        def call(index: int) -> None:
            client.track(user, "bitrateChange", {"playhead": index * 0.5, **fields})

        return call

    return [track_call(f"viewer-{index}") for index in range(threads)], client.join


CONTENDERS: dict[str, Setup] = {
    "raw SQLite insert+commit": _raw_sqlite,
    "persist-queue put": _persist_queue,
    "durabletrack track()": _durabletrack,
    "analytics-python track() (memory)": _analytics,
}


def has_analytics() -> bool:
    """Return True if analytics-python (module ``analytics``) can be imported."""
    try:
        import analytics  # noqa: F401
    except ImportError:
        return False

    return True


def run_once(setup: Setup, synchronous: str, threads: int, events: int, shared: Any) -> tuple[list[int], float]:
    """Run one repetition of one contender.

    Args:
        setup: The contender.
        synchronous: ``"FULL"`` or ``"NORMAL"``.
        threads: Writer threads started together; each writes ``events // threads``.
        events: Events in total.
        shared: The parked emulator's URL, for the Tracker.

    Returns:
        The latency of every call in nanoseconds, and the wall time of the run in seconds.
    """
    with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp:
        calls, close = setup(Path(tmp), synchronous, threads, shared)
        try:
            return _run_writers(calls, max(events // threads, 1))
        finally:
            close()


def _run_writers(calls: list[EnqueueCall], per_thread: int) -> tuple[list[int], float]:
    barrier = threading.Barrier(len(calls) + 1)
    results: list[list[int]] = [[] for _ in calls]

    def writer(slot: int) -> None:
        call, latencies = calls[slot], results[slot]
        barrier.wait()
        for index in range(per_thread):
            began = time.perf_counter_ns()
            call(index)
            latencies.append(time.perf_counter_ns() - began)

    threads = [threading.Thread(target=writer, args=(slot,), name=f"bench-writer-{slot}") for slot in range(len(calls))]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began

    return [value for latencies in results for value in latencies], elapsed


def parked_emulator() -> Emulator:
    """Return an emulator (not started) whose sessionStart answers take an hour.

    Stopping it ends the held requests at once.
    """
    return Emulator(faults=Faults(session_latency=PARKED_SESSION_LATENCY_S))
