"""Short form of the torture harness (tools/torture.py), run with every ``pytest -q``.

A few dozen SIGKILLs of real child processes and a one-minute chaos run
against the loopback emulator, with fixed seeds. Each test fails when the
checker finds an event lost, reordered, with a ``ts`` out of order, or
duplicated beyond one per fault. The assert message is the checker's table.
Together they take about two minutes on two cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS_DIR))

from torture.check import Report, check, render  # noqa: E402
from torture.scenarios import CHAOS, KILL_PRODUCER, KILL_WORKER, RunSettings, run  # noqa: E402


def _run(
    tmp_path: Path, scenario: str, *, seed: int, cycles: int = 0, seconds: float = 120.0, **options: object
) -> Report:
    settings = RunSettings(
        scenario=scenario,
        seed=seed,
        cycles=cycles,
        seconds=seconds,
        work_dir=tmp_path,
        drain_timeout=60.0,
        **options,  # type: ignore[arg-type]
    )
    return check(run(settings))


@pytest.mark.parametrize(
    ("scenario", "cycles", "seed"),
    [(KILL_PRODUCER, 30, 101), (KILL_WORKER, 20, 102)],
)
def test_kills_lose_nothing(tmp_path: Path, scenario: str, cycles: int, seed: int) -> None:
    report = _run(tmp_path, scenario, seed=seed, cycles=cycles, epoch_cycles=10)

    assert report.kills > cycles // 2, render(report)
    assert report.accepted > 0, render(report)
    assert report.failures() == [], render(report)


def test_chaos_minute_loses_nothing(tmp_path: Path) -> None:
    report = _run(tmp_path, CHAOS, seed=103, seconds=60.0, players=4, phase_s=6.0)

    assert report.accepted > 0, render(report)
    assert report.faults, render(report)
    assert report.failures() == [], render(report)
