"""The demo, replay and emulate commands, run as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.children import REPO


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "durabletrack", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


class TestDemo:
    def test_demo_reports_nothing_lost(self) -> None:
        result = _run("demo", "--session-delay", "1", "--speed", "0")

        assert result.returncode == 0, result.stderr
        assert "lost               0" in result.stdout
        assert "order preserved    yes" in result.stdout
        assert "delivered          49" in result.stdout


class TestReplay:
    def test_bundled_trace_file(self) -> None:
        trace = REPO / "durabletrack" / "traces" / "adobe-timeline-3.jsonl"

        result = _run("replay", str(trace), "--speed", "0")

        assert result.returncode == 0, result.stderr
        assert "lost               0" in result.stdout

    def test_missing_file_exits_2(self) -> None:
        result = _run("replay", "/nonexistent/trace.jsonl")

        assert result.returncode == 2
        assert "cannot be read" in result.stderr
        assert "Traceback" not in result.stderr

    def test_invalid_event_names_line(self, tmp_path: Path) -> None:
        trace = tmp_path / "bad.jsonl"
        trace.write_text('{"trace": "bad"}\n{"t": 0, "eventType": "sessionStart", "playhead": 0, "params": {}}\n')

        result = _run("replay", str(trace), "--speed", "0")

        assert result.returncode == 2
        assert f"{trace}:2: missing params" in result.stderr
        assert "Traceback" not in result.stderr


class TestEmulate:
    def test_busy_port_exits_2(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]

            result = _run("emulate", "--port", str(port), "--duration", "1")

        assert result.returncode == 2
        assert "Address already in use" in result.stderr
        assert "Traceback" not in result.stderr
