"""Benchmark durabletrack against its baselines in one run and print ratios.

Contenders of one benchmark run alternately, in a rotated order, for several
repetitions. The table shows the median of each figure and the median of the
per-repetition ratios to a baseline measured in the same repetition. On a
shared, noisy machine only the ratios are meant to be compared across runs.

Usage:
    python tools/bench.py                  # full run, a few minutes on 2 cores
    python tools/bench.py --quick          # a few seconds, for CI
    python tools/bench.py --json out.json  # also write every row as JSON

Every server it talks to is the loopback emulator it starts itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_drain as drain
import _bench_enqueue as enqueue
from _bench_common import Row, child_environment, directory_bytes, latency_figures, median

from durabletrack.emulator import Emulator, Faults

PROCESS_SCRIPT = Path(__file__).resolve().parent / "_bench_process.py"
BACKLOG_SESSIONS = 50

# Maximum wait for any one child step or drain, in seconds. Every wait loop here ends by then.
STEP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (see ``parse_args`` for their meaning)."""

    reps: int
    enqueue_events: int
    drain_events: int
    drain_latency_events: int
    backlog_sizes: tuple[int, ...]
    idle_seconds: float
    parts: tuple[str, ...]


# Enqueue ------------------------------------------------------------------


def run_enqueue(settings: Settings) -> list[Row]:
    """Measure enqueue throughput and latency in both durability settings, with 1 and 4 threads."""
    contenders = dict(enqueue.CONTENDERS)
    if not enqueue.has_analytics():
        print("note: analytics-python is not installed; its rows are left out", file=sys.stderr)
        contenders.pop("analytics-python track() (memory)")

    rows: list[Row] = []
    with enqueue.parked_emulator() as emulator:
        for durability, synchronous in (("power_loss", "FULL"), ("process_crash", "NORMAL")):
            for threads in (1, 4):
                group = f"enqueue {durability} {threads} thread{'s' if threads > 1 else ''}"
                samples = _alternate(
                    contenders,
                    settings.reps,
                    lambda setup, sync=synchronous, count=threads: _enqueue_figures(
                        setup, sync, count, settings.enqueue_events, emulator.url
                    ),
                )
                rows.extend(_enqueue_rows(group, samples, with_targets=threads == 1))

    return rows


def _enqueue_figures(setup: enqueue.Setup, synchronous: str, threads: int, events: int, url: str) -> dict[str, float]:
    latencies, elapsed = enqueue.run_once(setup, synchronous, threads, events, url)

    return latency_figures(latencies, elapsed)


def _enqueue_rows(group: str, samples: dict[str, list[dict[str, float]]], with_targets: bool) -> list[Row]:
    rows = []
    for contender, runs in samples.items():
        rows.append(_row(group, contender, "events/s", "1/s", samples, "persist-queue put", runs))
        for figure in ("p50", "p99", "p99.9"):
            rows.append(_row(group, contender, figure, "us", samples, "raw SQLite insert+commit", runs))

    if with_targets:
        _set_target(rows, "durabletrack track()", "events/s", ">=", 0.9)
        _set_target(rows, "durabletrack track()", "p99", "<=", 1.5)

    return rows


# Drain --------------------------------------------------------------------


def run_drain(settings: Settings) -> list[Row]:
    """Measure events/s from a full queue to the emulator, without and with a 20 ms event latency."""
    rows: list[Row] = []
    for label, faults, events in (
        ("drain loopback", Faults(), settings.drain_events),
        ("drain 20 ms per event", Faults(event_latency=0.02), settings.drain_latency_events),
    ):
        with Emulator(faults=faults) as emulator:
            contenders: dict[str, Callable[[], float]] = {
                "bare requests loop": lambda n=events: drain.drain_bare_loop(emulator, n),
                "durabletrack 1 session": lambda n=events: drain.drain_tracker(emulator, 1, n, STEP_TIMEOUT_S),
                "durabletrack 4 sessions": lambda n=events: drain.drain_tracker(
                    emulator, 4, max(n // 4, 1), STEP_TIMEOUT_S
                ),
            }
            samples = _alternate(contenders, settings.reps, lambda run: {"events/s": run()})
        for contender, runs in samples.items():
            rows.append(_row(label, contender, "events/s", "1/s", samples, "bare requests loop", runs))
        _set_target(rows, "durabletrack 1 session", "events/s", ">=", 0.7, group=label)

    return rows


# Backlog ------------------------------------------------------------------


def run_backlog(settings: Settings) -> list[Row]:
    """Measure open-to-first-delivery, RSS and disk use with backlogs of several sizes."""
    by_size: dict[str, list[dict[str, float]]] = {}
    with Emulator() as emulator, tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        for size in settings.backlog_sizes:
            template = Path(tmp) / f"template-{size}"
            fill_began = time.perf_counter()
            drain.fill_queue(template, BACKLOG_SESSIONS, max(size // BACKLOG_SESSIONS, 1))
            print(f"filled {size} events in {time.perf_counter() - fill_began:.1f} s", file=sys.stderr)
            queued_bytes = directory_bytes(template)

            runs = []
            for rep in range(settings.reps):
                copy = Path(tmp) / f"run-{size}-{rep}"
                shutil.copytree(template, copy)
                emulator.reset_records()
                runs.append(_open_to_first_delivery(emulator, copy))
                shutil.rmtree(copy)
            runs[0].update(_drained_figures(emulator, template, size, queued_bytes))
            by_size[f"{_size_label(size)} queued"] = runs

    return _backlog_rows(by_size, settings.backlog_sizes)


def _open_to_first_delivery(emulator: Emulator, directory: Path) -> dict[str, float]:
    child = _start_child("open", emulator.url, str(directory))
    try:
        opened = _read_json(child)
        seen_at = _wait_first_event(emulator)
        assert child.stdin is not None
        child.stdin.write("rss\n")
        child.stdin.flush()
        memory = _read_json(child)
        child.wait(timeout=STEP_TIMEOUT_S)
    finally:
        _stop_child(child)

    return {
        "open s": opened["open_s"],
        "first delivery s": seen_at - opened["began"],
        "RSS MiB": memory["rss_kib"] / 1024,
        "peak RSS MiB": memory["peak_kib"] / 1024,
    }


def _drained_figures(emulator: Emulator, directory: Path, size: int, queued_bytes: int) -> dict[str, float]:
    child = _start_child("drain", emulator.url, str(directory), str(STEP_TIMEOUT_S))
    try:
        result = _read_json(child)
        child.wait(timeout=STEP_TIMEOUT_S)
    finally:
        _stop_child(child)
    if not result["drained"]:
        print(f"warning: {size} events not drained within {STEP_TIMEOUT_S} s", file=sys.stderr)

    return {
        "bytes/queued event": queued_bytes / size,
        "disk after drain KiB": directory_bytes(directory) / 1024,
        "drain RSS MiB": result["rss_kib"] / 1024,
    }


def _wait_first_event(emulator: Emulator) -> float:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(delivery.kind == "events" for delivery in emulator.accepted()):
            return time.monotonic()
        time.sleep(0.002)

    raise TimeoutError(f"no event reached the emulator within {STEP_TIMEOUT_S} s")


def _backlog_rows(by_size: dict[str, list[dict[str, float]]], sizes: tuple[int, ...]) -> list[Row]:
    baseline = f"{_size_label(sizes[0])} queued"
    rows = []
    for contender, runs in by_size.items():
        for figure, unit in (
            ("open s", "s"),
            ("first delivery s", "s"),
            ("RSS MiB", "MiB"),
            ("peak RSS MiB", "MiB"),
            ("bytes/queued event", "B"),
            ("disk after drain KiB", "KiB"),
            ("drain RSS MiB", "MiB"),
        ):
            rows.append(_row("backlog, 50 sessions", contender, figure, unit, by_size, baseline, runs))

    largest = f"{_size_label(sizes[-1])} queued"
    for figure in ("first delivery s", "RSS MiB"):
        _set_target(rows, largest, figure, "<=", 1.5)

    return rows


# Idle ---------------------------------------------------------------------


def run_idle(settings: Settings) -> list[Row]:
    """Measure the CPU time of an idle Tracker and the RSS that ``import durabletrack`` adds."""
    with Emulator() as emulator, tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        child = _start_child("idle", emulator.url, tmp, str(settings.idle_seconds))
        try:
            idle = _read_json(child)
            child.wait(timeout=STEP_TIMEOUT_S)
        finally:
            _stop_child(child)

    imports = [_import_rss() for _ in range(settings.reps)]
    per_minute = idle["cpu_s"] * 60.0 / idle["idle_s"]
    rows = [
        Row("idle", "durabletrack Tracker", "CPU s per idle minute", "s", per_minute, [per_minute]),
        Row("idle", "durabletrack Tracker", "RSS MiB", "MiB", idle["rss_kib"] / 1024, [idle["rss_kib"] / 1024]),
    ]
    bare = [item["bare_kib"] / 1024 for item in imports]
    loaded = [item["imported_kib"] / 1024 for item in imports]
    rows.append(Row("idle", "python alone", "RSS MiB", "MiB", median(bare), bare))
    rows.append(
        Row(
            "idle",
            "after import durabletrack",
            "RSS MiB",
            "MiB",
            median(loaded),
            loaded,
            "python alone",
            median(loaded) / median(bare),
        )
    )
    # "Close to zero": at most 0.1 % of one core, 0.06 CPU seconds per minute.
    rows[0].target, rows[0].met = "<= 0.06 s", per_minute <= 0.06

    return rows


def _import_rss() -> dict[str, float]:
    child = _start_child("import")
    try:
        result = _read_json(child)
        child.wait(timeout=STEP_TIMEOUT_S)
    finally:
        _stop_child(child)

    return result


# Children -----------------------------------------------------------------


def _start_child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROCESS_SCRIPT), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )


def _read_json(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark child {child.args!r} exited with {child.wait()} before printing a result")

    return json.loads(line)


def _stop_child(child: subprocess.Popen[str]) -> None:
    # Only this child, by its own PID, and only if it is still running.
    if child.poll() is None:
        child.kill()
        child.wait()
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()


# Rows and alternation -------------------------------------------------------


def _alternate(
    contenders: dict[str, Any], reps: int, measure: Callable[[Any], dict[str, float]]
) -> dict[str, list[dict[str, float]]]:
    """Run every contender once per repetition, rotating the order, and return the figures of each run."""
    names = list(contenders)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(measure(contenders[name]))

    return samples


def _row(
    group: str,
    contender: str,
    figure: str,
    unit: str,
    samples: dict[str, list[dict[str, float]]],
    baseline: str,
    runs: list[dict[str, float]],
) -> Row:
    values = [run[figure] for run in runs if figure in run]
    row = Row(group, contender, figure, unit, median(values), values)
    if contender != baseline and baseline in samples:
        # Ratios pair the runs of one repetition, which ran back to back.
        base_values = [run.get(figure) for run in samples[baseline]]
        ratios = [value / base for value, base in zip(values, base_values, strict=False) if base]
        if ratios:
            row.baseline, row.ratio = baseline, median(ratios)

    return row


def _set_target(rows: list[Row], contender: str, figure: str, op: str, bound: float, group: str | None = None) -> None:
    for row in rows:
        if row.contender != contender or row.figure != figure or (group and row.group != group):
            continue
        row.target = f"{op} {bound}"
        if row.ratio is not None:
            row.met = row.ratio >= bound if op == ">=" else row.ratio <= bound


def _size_label(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


# Output -------------------------------------------------------------------


def format_table(rows: list[Row]) -> str:
    """Return the rows as a Markdown table."""
    lines = [
        "| benchmark | contender | figure | median | ratio | baseline | target |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        target = "" if not row.target else f"{row.target} {'met' if row.met else 'MISSED'}"
        cells = [row.group, row.contender, row.figure, f"{_number(row.median)} {row.unit}", ratio, row.baseline, target]
        lines.append("| " + " | ".join(cells) + " |")

    return "\n".join(lines)


def _number(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"

    return f"{value:.3g}"


def machine_facts() -> dict[str, str]:
    """Return the CPU, core count, Python, SQLite and persist-queue versions of this machine."""
    from importlib.metadata import version

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "persist_queue": version("persist-queue"),
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None]:
    """Parse the command line into run sizes and the JSON output path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repetition; finishes in seconds")
    parser.add_argument("--reps", type=int, help="repetitions of each contender (default 5, quick 1)")
    parser.add_argument("--events", type=int, help="events per enqueue run (default 3000, quick 200)")
    parser.add_argument("--drain-events", type=int, help="events per loopback drain run (default 1000, quick 100)")
    parser.add_argument("--drain-latency-events", type=int, help="events per 20 ms drain run (default 60, quick 8)")
    parser.add_argument(
        "--backlog", help="comma-separated backlog sizes in events (default 1000,10000,100000; quick 100,1000)"
    )
    parser.add_argument("--idle-seconds", type=float, help="seconds of idle time measured (default 30, quick 1)")
    parser.add_argument(
        "--only", help="comma-separated parts to run: enqueue, drain, backlog, idle (default all of them)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows and machine facts to this JSON file")
    args = parser.parse_args(argv)

    quick = args.quick
    backlog = args.backlog or ("100,1000" if quick else "1000,10000,100000")
    settings = Settings(
        reps=args.reps or (1 if quick else 5),
        enqueue_events=args.events or (200 if quick else 3000),
        drain_events=args.drain_events or (100 if quick else 1000),
        drain_latency_events=args.drain_latency_events or (8 if quick else 60),
        backlog_sizes=tuple(int(size) for size in backlog.split(",")),
        idle_seconds=args.idle_seconds or (1.0 if quick else 30.0),
        parts=tuple((args.only or "enqueue,drain,backlog,idle").split(",")),
    )
    unknown = set(settings.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)} in --only: use {', '.join(PARTS)}")

    return settings, args.json


PARTS: dict[str, Callable[[Settings], list[Row]]] = {
    "enqueue": run_enqueue,
    "drain": run_drain,
    "backlog": run_backlog,
    "idle": run_idle,
}


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, print the table and optionally write JSON."""
    settings, json_path = parse_args(argv)
    began = time.perf_counter()
    rows: list[Row] = []
    for part in settings.parts:
        part_began = time.perf_counter()
        rows.extend(PARTS[part](settings))
        print(f"{part}: {time.perf_counter() - part_began:.1f} s", file=sys.stderr)

    print(format_table(rows))
    print(f"\ntotal {time.perf_counter() - began:.0f} s, {settings.reps} repetition(s)")
    if json_path is not None:
        report = {"settings": settings.__dict__, "machine": machine_facts(), "rows": [row.to_json() for row in rows]}
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    return 0


if __name__ == "__main__":
    sys.exit(main())
