"""The scenarios: kill-producer, kill-worker, chaos and combined.

Each scenario runs for at most ``cycles`` child processes (kill scenarios) and
at most ``seconds`` of wall time, whichever ends first, then drains what is
left and returns the :class:`~torture.check.Evidence` for the checker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from durabletrack import DeadLetter, DurabletrackError, Tracker
from durabletrack.emulator import Emulator, Faults

from .check import Evidence
from .child import ChildSettings, open_tracker
from .faultplan import PhaseClock, start_emulator
from .ledger import Ledger, LedgerWriter, OutcomeLogger, has_line
from .player import Player
from .workload import marker_of

ENTRY_POINT = Path(__file__).resolve().parent.parent / "torture.py"

KILL_PRODUCER = "kill-producer"
KILL_WORKER = "kill-worker"
CHAOS = "chaos"
COMBINED = "combined"
SCENARIOS = (KILL_PRODUCER, KILL_WORKER, CHAOS, COMBINED)

# Maximum wait for a kill-worker child to finish tracking (write "D"), in seconds.
TRACKING_DEADLINE_S = 30.0

# Maximum run time of a child or a drain process beyond its own timeouts, in seconds.
CHILD_DEADLINE_S = 60.0


@dataclass(frozen=True)
class RunSettings:
    """One run of a scenario. Times are in seconds.

    Attributes:
        scenario: One of ``SCENARIOS``.
        seed: Seed of every random choice: kill times, workloads, faults.
        cycles: Most child processes to start (kill scenarios).
        seconds: Most wall time for the cycles or the chaos phase.
        work_dir: Directory for data directories and ledgers.
        epoch_cycles: Children per data directory; each data directory is
            drained and checked by a fresh Tracker, then a new one starts.
        players: Player threads of the chaos scenario.
        parallel: Children running at once on one data directory (combined).
        phase_s: Length of one fault phase.
        drain_timeout: Maximum time of the final drain of one data directory.
        durability: Tracker ``durability`` of children and players.
        idle_s: Seconds without events after which the emulator expires a
            session, or None for the scenario's default (5 s chaos, 8 s kills).
    """

    scenario: str
    seed: int
    cycles: int
    seconds: float
    work_dir: Path
    epoch_cycles: int = 50
    players: int = 6
    parallel: int = 2
    phase_s: float = 20.0
    drain_timeout: float = 300.0
    durability: str = "power_loss"
    idle_s: float | None = None


@dataclass
class _Drained:
    session_ids: dict[str, list[str]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    undrained: int = 0
    library_errors: dict[str, int] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)


def queued_markers(data_dir: Path) -> list[str]:
    """Return the markers of events still queued in ``data_dir``.

    Call it only after every Tracker on ``data_dir`` is closed: it reads the
    persist-queue tables directly (rows with a status below 5 are not acked).
    """
    path = data_dir / "events.db"
    if not path.exists():
        return []

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ack_queue_s%'")
        markers = []
        for (table,) in tables.fetchall():
            for (data,) in conn.execute(f'SELECT data FROM "{table}" WHERE status < 5'):
                marker = marker_of(json.loads(data))
                if marker is not None:
                    markers.append(marker)
    finally:
        conn.close()

    return markers


def flush_despite_errors(tracker: Tracker, timeout: float, errors: dict[str, int]) -> bool:
    """Call ``tracker.flush()`` until it returns or ``timeout`` seconds pass.

    The library promises that ``flush()`` does not raise. When it does, the
    harness notes the error in ``errors`` (by exception type) and keeps
    draining, so one bug does not hide the rest of the run's findings.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return tracker.flush(max(deadline - time.monotonic(), 0.0))
        except sqlite3.Error as error:
            name = f"flush_raised_{type(error).__name__}"
            errors[name] = errors.get(name, 0) + 1
            if time.monotonic() >= deadline:
                return False


def run(settings: RunSettings) -> Evidence:
    """Run one scenario and return its evidence."""
    chaos = settings.scenario in (CHAOS, COMBINED)
    emulator = start_emulator(settings.seed, chaos=chaos, idle_s=settings.idle_s)
    try:
        if settings.scenario == CHAOS:
            return ChaosRun(settings, emulator).run()
        return KillRun(settings, emulator).run()
    finally:
        emulator.stop()


def _collect(settings: RunSettings, emulator: Emulator, ledger: Ledger, drained: _Drained, **counts: float) -> Evidence:
    return Evidence(
        scenario=settings.scenario,
        cycles=int(counts["cycles"]),
        kills=int(counts["kills"]),
        wall_s=counts["wall_s"],
        ledger=ledger,
        sessions=emulator.sessions(),
        deliveries=emulator.accepted(),
        fault_log=emulator.fault_log(),
        fault_counts=emulator.fault_counts(),
        session_ids=drained.session_ids,
        dead_letters=drained.dead_letters,
        undrained=drained.undrained,
        queued=set(drained.queued),
    )


def _tracker_settings(settings: RunSettings, endpoint: str, data_dir: Path, ledger: Path, cycle: int) -> ChildSettings:
    return ChildSettings(
        endpoint=endpoint,
        data_dir=str(data_dir),
        ledger=str(ledger),
        run=f"r{settings.seed}",
        cycle=cycle,
        seed=settings.seed * 1_000_003 + cycle,
        max_events=0,
        durability=settings.durability,
    )


def drain(settings: RunSettings, emulator: Emulator, data_dir: Path, handles: list[str]) -> _Drained:
    """Deliver everything left in ``data_dir`` with a fresh Tracker in a new process, without faults.

    A separate process keeps a crash of the library (even a segfault) from
    ending the run: it is noted, the drain is tried once more, and what
    stays undelivered counts as lost. Returns the stored session IDs of
    ``handles``, the dead letters and how many items stayed queued.
    """
    saved = emulator.faults
    emulator.set_faults(Faults(seed=settings.seed))
    try:
        for _attempt in range(2):
            drained = _drain_in_child(settings, emulator.url, data_dir, handles)
            if not drained.library_errors:
                break
    finally:
        emulator.set_faults(saved)

    return drained


def _drain_in_child(settings: RunSettings, endpoint: str, data_dir: Path, handles: list[str]) -> _Drained:
    result_path = data_dir.parent / "drained.json"
    result_path.unlink(missing_ok=True)
    request = {
        "tracker": json.loads(_tracker_settings(settings, endpoint, data_dir, data_dir / "unused", cycle=-1).to_json()),
        "handles": handles,
        "timeout": settings.drain_timeout,
        "result": str(result_path),
    }
    with open(data_dir.parent / "drain.stderr", "ab") as stderr:
        process = subprocess.run(
            [sys.executable, "-X", "faulthandler", str(ENTRY_POINT), "drain", json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            timeout=settings.drain_timeout + CHILD_DEADLINE_S,
        )
    if process.returncode != 0 or not result_path.exists():
        return _Drained(undrained=1, library_errors={f"drain_exit_{process.returncode}": 1})

    result = json.loads(result_path.read_text(encoding="utf-8"))
    return _Drained(
        session_ids=result["session_ids"],
        dead_letters=[DeadLetter(**letter) for letter in result["dead_letters"]],
        undrained=result["undrained"],
        library_errors=result["library_errors"],
        queued=result["queued"],
    )


def drain_here(request: dict[str, Any]) -> int:
    """Body of the drain process: flush, then write what the checker needs as JSON."""
    drained = _Drained()
    try:
        tracker = open_tracker(ChildSettings(**request["tracker"]), logger=None)
    except (DurabletrackError, sqlite3.Error) as error:
        # The store cannot be opened at all: whatever it held counts as lost.
        drained.library_errors[f"drain_open_raised_{type(error).__name__}"] = 1
        drained.undrained = 1
    else:
        try:
            if not flush_despite_errors(tracker, request["timeout"], drained.library_errors):
                drained.undrained = tracker.stats().queued_events or 1
            drained.session_ids = {handle: tracker.session_ids(handle) for handle in request["handles"]}
            drained.dead_letters = tracker.dead_letters()
        finally:
            tracker.close(timeout=1.0)
        drained.queued = queued_markers(Path(request["tracker"]["data_dir"]))

    result = {
        "session_ids": drained.session_ids,
        "dead_letters": [dataclasses.asdict(letter) for letter in drained.dead_letters],
        "undrained": drained.undrained,
        "library_errors": drained.library_errors,
        "queued": drained.queued,
    }
    Path(request["result"]).write_text(json.dumps(result), encoding="utf-8")

    return 0


class KillRun:
    """Children track and deliver on a shared data directory and are SIGKILLed at random moments."""

    def __init__(self, settings: RunSettings, emulator: Emulator) -> None:
        self._settings = settings
        self._emulator = emulator
        self._rng = random.Random(settings.seed)
        self._phases = PhaseClock(emulator, settings.seed, settings.phase_s) if settings.scenario == COMBINED else None
        self._ledger = Ledger()
        self._drained = _Drained()
        self._started = 0
        self._kills = 0

    def run(self) -> Evidence:
        started_at = time.monotonic()
        deadline = started_at + self._settings.seconds
        if self._phases is not None:
            self._phases.start()

        epoch = 0
        while self._started < self._settings.cycles and time.monotonic() < deadline:
            self._run_epoch(epoch, deadline)
            epoch += 1

        return _collect(
            self._settings,
            self._emulator,
            self._ledger,
            self._drained,
            cycles=self._started,
            kills=self._kills,
            wall_s=time.monotonic() - started_at,
        )

    def _run_epoch(self, epoch: int, deadline: float) -> None:
        """Run up to ``epoch_cycles`` children on a new data directory, then drain and read it."""
        epoch_dir = self._settings.work_dir / f"epoch-{epoch:04d}"
        data_dir = epoch_dir / "data"
        (epoch_dir / "ledgers").mkdir(parents=True, exist_ok=True)
        in_epoch = 0
        while in_epoch < self._settings.epoch_cycles and self._started < self._settings.cycles:
            if time.monotonic() >= deadline:
                break
            if self._phases is not None:
                self._phases.tick()
            in_epoch += self._run_cycle(epoch_dir, data_dir)

        self._drain_epoch(epoch_dir, data_dir)

    def _run_cycle(self, epoch_dir: Path, data_dir: Path) -> int:
        """Start this cycle's children, kill each at its moment; return how many were started."""
        count = self._settings.parallel if self._settings.scenario == COMBINED else 1
        children = [self._spawn(epoch_dir, data_dir) for _ in range(count)]
        for process, ledger_path, after_tracking in children:
            self._kill_at_random(process, ledger_path, after_tracking)

        return count

    def _spawn(self, epoch_dir: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], Path, bool]:
        cycle = self._started
        self._started += 1
        ledger_path = epoch_dir / "ledgers" / f"c{cycle}.log"
        child = _tracker_settings(self._settings, self._emulator.url, data_dir, ledger_path, cycle)
        after_tracking = self._settings.scenario == KILL_WORKER or (
            self._settings.scenario == COMBINED and self._rng.random() < 0.5
        )
        child = _with_workload(child, self._rng, after_tracking, chaos=self._phases is not None)
        stderr = open(epoch_dir / "ledgers" / f"c{cycle}.stderr", "wb")
        with stderr:
            process = subprocess.Popen(
                # faulthandler prints the Python stacks if the child crashes in C code.
                [sys.executable, "-X", "faulthandler", str(ENTRY_POINT), "child", child.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

        return process, ledger_path, after_tracking

    def _kill_at_random(self, process: subprocess.Popen[bytes], ledger_path: Path, after_tracking: bool) -> None:
        """SIGKILL ``process`` at a random moment, or let it finish if it ends first.

        Kill-worker children are killed a random time after they wrote ``D``
        (tracking done), so the kill lands in delivery. The others are killed
        a random time after they were started: during start-up, inside
        ``track()`` and its commit, or while a request is in flight.
        """
        if after_tracking:
            _wait_for_line(process, ledger_path, "D", TRACKING_DEADLINE_S)
            delay = self._rng.uniform(0.0, 1.0)
        else:
            delay = self._rng.uniform(0.02, 1.5 if self._phases is None else 3.0)

        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            # The child is ours and not yet reaped, so its PID cannot have been reused.
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=CHILD_DEADLINE_S)
            self._kills += 1
            return

        if process.returncode not in (0, 3):
            name = f"child_exit_{process.returncode}"
            self._ledger.library_errors[name] = self._ledger.library_errors.get(name, 0) + 1

    def _drain_epoch(self, epoch_dir: Path, data_dir: Path) -> None:
        epoch_ledger = Ledger()
        for path in sorted((epoch_dir / "ledgers").glob("*.log")):
            epoch_ledger.read(path)
        _merge(self._ledger, epoch_ledger)
        if not data_dir.exists():
            return

        drained = drain(self._settings, self._emulator, data_dir, list(epoch_ledger.handles.values()))
        self._drained.session_ids.update(drained.session_ids)
        self._drained.dead_letters.extend(drained.dead_letters)
        self._drained.undrained += drained.undrained
        self._drained.queued.extend(drained.queued)
        _add_counts(self._ledger.library_errors, drained.library_errors)


def _with_workload(child: ChildSettings, rng: random.Random, after_tracking: bool, *, chaos: bool) -> ChildSettings:
    """Pick how much a child tracks and how its Tracker retries."""
    max_events = rng.randint(20, 60) if after_tracking else rng.randint(5, 120)

    return replace(child, max_events=max_events, flush_timeout=30.0, request_timeout=2.0 if chaos else 5.0)


def _wait_for_line(process: subprocess.Popen[bytes], ledger_path: Path, line: str, timeout: float) -> bool:
    """Wait until the child's ledger has ``line`` or the child exited; False at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if has_line(ledger_path, line):
            return True
        try:
            process.wait(timeout=0.01)
            return False
        except subprocess.TimeoutExpired:
            continue

    return False


def _merge(into: Ledger, part: Ledger) -> None:
    into.handles.update(part.handles)
    into.accepted |= part.accepted
    _add_counts(into.unknown_outcomes, part.unknown_outcomes)
    _add_counts(into.library_errors, part.library_errors)
    into.flushes += part.flushes


def _add_counts(into: dict[str, int], part: dict[str, int]) -> None:
    for name, count in part.items():
        into[name] = into.get(name, 0) + count


class ChaosRun:
    """Player threads track sessions through one Tracker while the emulator rotates fault phases."""

    def __init__(self, settings: RunSettings, emulator: Emulator) -> None:
        self._settings = settings
        self._emulator = emulator
        self._phases = PhaseClock(emulator, settings.seed, settings.phase_s)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []

    def run(self) -> Evidence:
        started_at = time.monotonic()
        work_dir = self._settings.work_dir / "chaos"
        work_dir.mkdir(parents=True, exist_ok=True)
        ledger_path = work_dir / "ledger.log"
        writer = LedgerWriter(ledger_path)
        base = _tracker_settings(self._settings, self._emulator.url, work_dir / "data", ledger_path, cycle=0)
        tracker = open_tracker(_chaos_tracker(base), OutcomeLogger(writer))

        threads = [self._start_player(tracker, writer, index) for index in range(self._settings.players)]
        self._rotate_phases(started_at + self._settings.seconds)
        self._stop.set()
        for thread in threads:
            thread.join(timeout=CHILD_DEADLINE_S)

        self._phases.clear()
        ledger, drained = self._drain(tracker, ledger_path)
        writer.close()
        drained.queued = queued_markers(work_dir / "data")

        return _collect(
            self._settings,
            self._emulator,
            ledger,
            drained,
            cycles=self._settings.players,
            kills=0,
            wall_s=time.monotonic() - started_at,
        )

    def _drain(self, tracker: Tracker, ledger_path: Path) -> tuple[Ledger, _Drained]:
        """Flush without faults, then read the ledger, the session IDs and the dead letters; close the tracker."""
        drained = _Drained()
        if not flush_despite_errors(tracker, self._settings.drain_timeout, drained.library_errors):
            drained.undrained = tracker.stats().queued_events or 1

        ledger = Ledger()
        ledger.read(ledger_path)
        _add_counts(ledger.library_errors, drained.library_errors)
        for error in self._errors:
            name = f"player_{type(error).__name__}"
            ledger.library_errors[name] = ledger.library_errors.get(name, 0) + 1
        drained.session_ids = {handle: tracker.session_ids(handle) for handle in ledger.handles.values()}
        drained.dead_letters = tracker.dead_letters()
        tracker.close(timeout=1.0)

        return ledger, drained

    def _start_player(self, tracker: Tracker, writer: LedgerWriter, index: int) -> threading.Thread:
        player = Player(
            tracker,
            writer,
            f"r{self._settings.seed}",
            index,
            random.Random(self._settings.seed * 7919 + index),
            pace_s=0.1,
            stop=self._stop,
        )
        thread = threading.Thread(target=self._play, args=(player,), name=f"torture-player-{index}", daemon=True)
        thread.start()

        return thread

    def _play(self, player: Player) -> None:
        try:
            player.play(max_events=10**9)
        except BaseException as error:  # reported in the table, never swallowed silently
            self._errors.append(error)

    def _rotate_phases(self, deadline: float) -> None:
        self._phases.start()
        while not self._stop.wait(min(self._phases.until_next(), max(deadline - time.monotonic(), 0.0))):
            if time.monotonic() >= deadline:
                return
            self._phases.tick()


def _chaos_tracker(base: ChildSettings) -> ChildSettings:
    return replace(base, request_timeout=2.0, poll_interval=1.0)


__all__ = ["SCENARIOS", "RunSettings", "drain", "run"]
