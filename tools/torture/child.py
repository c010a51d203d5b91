"""The child process that the kill scenarios start and SIGKILL.

Run as ``python tools/torture.py child '<json settings>'``. The child tracks
its sessions (its Tracker delivers meanwhile), writes ``D`` to its ledger and
then only delivers until ``flush()`` returns. The kill-producer scenario kills
it at a random time after it was started. The kill-worker scenario waits for
``D`` first, so that the kill lands while the worker is delivering.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from durabletrack import RetryPolicy, Tracker

from .ledger import LedgerWriter, OutcomeLogger
from .player import Player


@dataclass(frozen=True)
class ChildSettings:
    """Settings of one child process. Times are in seconds.

    Attributes:
        endpoint: Emulator URL (loopback).
        data_dir: The shared data directory.
        ledger: Path of this child's ledger file.
        run: Run name for markers.
        cycle: Child number within the run.
        seed: Seed of the child's random source.
        max_events: Calls to make before flushing.
        flush_timeout: Maximum time of the final ``flush()``.
        request_timeout, base_delay, max_delay, retry_after_cap: Tracker and
            RetryPolicy settings.
        poll_interval: Tracker ``poll_interval``; short, so a new child takes
            the drain lock of a killed one quickly.
        sender_threads: Tracker ``sender_threads``.
        durability: Tracker ``durability``.
    """

    endpoint: str
    data_dir: str
    ledger: str
    run: str
    cycle: int
    seed: int
    max_events: int
    flush_timeout: float = 30.0
    request_timeout: float = 2.0
    base_delay: float = 0.05
    max_delay: float = 0.5
    retry_after_cap: float = 2.0
    poll_interval: float = 0.2
    sender_threads: int = 4
    durability: str = "power_loss"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def open_tracker(settings: ChildSettings, logger: OutcomeLogger | None) -> Tracker:
    """Open a Tracker on the shared data directory with the harness settings."""
    retry = RetryPolicy(
        base_delay=settings.base_delay, max_delay=settings.max_delay, retry_after_cap=settings.retry_after_cap
    )

    return Tracker(
        settings.endpoint,
        settings.data_dir,
        request_timeout=settings.request_timeout,
        retry=retry,
        poll_interval=settings.poll_interval,
        sender_threads=settings.sender_threads,
        durability=settings.durability,
        logger=logger,
    )


def run_child(settings: ChildSettings) -> int:
    """Track, then flush; return the exit status (0 when everything was delivered)."""
    ledger = LedgerWriter(Path(settings.ledger))
    tracker = open_tracker(settings, OutcomeLogger(ledger))
    player = Player(tracker, ledger, settings.run, settings.cycle, random.Random(settings.seed))

    player.play(settings.max_events)
    ledger.tracking_done()
    flushed = tracker.flush(settings.flush_timeout)
    ledger.flushed(flushed)
    tracker.close(timeout=1.0)

    return 0 if flushed else 3


def main(argument: str) -> int:
    """Entry point of a child: ``argument`` is the JSON of :class:`ChildSettings`."""
    return run_child(ChildSettings(**json.loads(argument)))
