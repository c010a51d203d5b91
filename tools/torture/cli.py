"""Command line of the torture harness."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import child
from .check import check, render
from .scenarios import SCENARIOS, RunSettings, drain_here, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torture.py",
        description="Kill and chaos harness: checks that durabletrack loses, reorders and duplicates nothing.",
    )
    parser.add_argument("scenario", choices=SCENARIOS + ("child", "drain"), help="scenario to run")
    parser.add_argument("child_settings", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cycles", type=int, default=100, help="maximum number of child processes to start (default 100)"
    )
    parser.add_argument(
        "--seconds", type=float, default=600.0, help="maximum wall time of the run, in seconds (default 600)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of kill times, workloads and faults (default 1)")
    parser.add_argument(
        "--work-dir", type=Path, help="directory for data directories and ledgers (default: a new temporary one)"
    )
    parser.add_argument(
        "--epoch", type=int, default=50, help="children per data directory before it is drained (default 50)"
    )
    parser.add_argument("--players", type=int, default=6, help="player threads of the chaos scenario (default 6)")
    parser.add_argument("--parallel", type=int, default=2, help="children at once in the combined scenario (default 2)")
    parser.add_argument("--phase", type=float, default=20.0, help="seconds per fault phase (default 20)")
    parser.add_argument(
        "--drain-timeout", type=float, default=300.0, help="maximum time of each final drain, in seconds (default 300)"
    )
    parser.add_argument(
        "--durability",
        choices=("power_loss", "process_crash"),
        default="power_loss",
        help="Tracker durability (default power_loss)",
    )
    parser.add_argument(
        "--idle", type=float, help="seconds without events before the emulator expires a session (default 5 or 8)"
    )
    parser.add_argument("--report", type=Path, help="also write the table to this file")

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a scenario, print its table and return 0 if the guarantee held, 1 if not."""
    args = build_parser().parse_args(argv)
    if args.scenario == "child":
        return child.main(args.child_settings)
    if args.scenario == "drain":
        return drain_here(json.loads(args.child_settings))

    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix=f"torture-{args.scenario}-"))
    settings = RunSettings(
        scenario=args.scenario,
        seed=args.seed,
        cycles=args.cycles,
        seconds=args.seconds,
        work_dir=work_dir,
        epoch_cycles=args.epoch,
        players=args.players,
        parallel=args.parallel,
        phase_s=args.phase,
        drain_timeout=args.drain_timeout,
        durability=args.durability,
        idle_s=args.idle,
    )
    print(f"torture: {args.scenario} seed={args.seed} work_dir={work_dir}", file=sys.stderr, flush=True)

    started = time.monotonic()
    report = check(run(settings))
    report.wall_s = time.monotonic() - started
    text = render(report)
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n", encoding="utf-8")

    return 1 if report.failures() else 0
