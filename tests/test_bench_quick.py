"""Smoke test of the benchmark tool: ``tools/bench.py --quick`` runs and prints every benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench.py"

# Rows that need no optional package (analytics-python rows appear only when it is installed).
EXPECTED_ROWS = [
    ("enqueue power_loss 1 thread", "raw SQLite insert+commit", "events/s"),
    ("enqueue power_loss 1 thread", "persist-queue put", "events/s"),
    ("enqueue power_loss 1 thread", "durabletrack track()", "p99"),
    ("enqueue process_crash 4 threads", "durabletrack track()", "events/s"),
    ("drain loopback", "bare requests loop", "events/s"),
    ("drain loopback", "durabletrack 1 session", "events/s"),
    ("drain 20 ms per event", "durabletrack 4 sessions", "events/s"),
    ("backlog, 50 sessions", "1k queued", "first delivery s"),
    ("backlog, 50 sessions", "1k queued", "disk after drain KiB"),
    ("idle", "durabletrack Tracker", "CPU s per idle minute"),
    ("idle", "after import durabletrack", "RSS MiB"),
]


class TestBenchQuick:
    def test_quick_run_prints_every_benchmark(self, tmp_path: Path) -> None:
        report = tmp_path / "bench.json"

        done = subprocess.run(
            [sys.executable, str(BENCH), "--quick", "--json", str(report)],
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert done.returncode == 0, done.stderr[-3000:]
        table_rows = {tuple(cell.strip() for cell in line.split("|")[1:4]) for line in done.stdout.splitlines()}
        for expected in EXPECTED_ROWS:
            assert expected in table_rows, f"row {expected} missing from:\n{done.stdout}"
        written = json.loads(report.read_text(encoding="utf-8"))
        assert len(written["rows"]) >= len(EXPECTED_ROWS)
        assert "sqlite" in written["machine"]
