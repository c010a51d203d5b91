"""The ``durabletrack emulate`` command: options, help text and a real run in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from durabletrack.emulator.cli import build_parser, faults_from_args, main, parse_latency

REPO_ROOT = Path(__file__).resolve().parent.parent

SESSION_START = {
    "playerTime": {"playhead": 0, "ts": 1_700_000_000_000},
    "eventType": "sessionStart",
    "params": {
        "analytics.trackingServer": "acme.sc.omtrdc.net",
        "analytics.reportSuite": "acmeprod",
        "visitor.marketingCloudOrgId": "ABCDEF0123456789@AdobeOrg",
        "media.id": "ep-0042",
        "media.length": 1800.5,
        "media.contentType": "vod",
        "media.playerName": "acme-web-player",
        "media.channel": "acme-site",
    },
}


def child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    return environment


class TestOptions:
    def test_help_lists_units(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])

        output = capsys.readouterr().out
        assert exit_info.value.code == 0
        for option in (
            "--session-latency",
            "--error-rate",
            "--retry-after",
            "--idle-expiry",
            "--max-body-bytes",
            "--duration",
        ):
            assert option in output
        assert "seconds" in output
        assert "bytes" in output
        assert "fraction" in output

    def test_latency_range_parsed(self) -> None:
        assert parse_latency("0.5:2") == (0.5, 2.0)
        assert parse_latency("3") == 3.0

    def test_invalid_latency_rejected(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--session-latency", "2:1"])

        assert exit_info.value.code == 2
        assert "invalid latency" in capsys.readouterr().err

    def test_remote_host_rejected(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--host", "0.0.0.0", "--duration", "0"])

        assert exit_info.value.code == 2
        assert "not a loopback address" in capsys.readouterr().err

    def test_rates_over_one_rejected(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["--error-rate", "0.7", "--reset-rate", "0.7", "--duration", "0"])

        assert "sum" in capsys.readouterr().err

    def test_fault_options_build_faults(self) -> None:
        args = build_parser().parse_args(
            ["--error-rate", "0.25", "--captive-portal", "--seed", "9", "--event-latency", "1:2"]
        )

        faults = faults_from_args(args)

        assert (faults.error_rate, faults.captive_portal, faults.seed, faults.event_latency) == (
            0.25,
            True,
            9,
            (1.0, 2.0),
        )

    def test_zero_duration_prints_summary(self, capsys: pytest.CaptureFixture[str]) -> None:
        status = main(["--port", "0", "--duration", "0"])

        output = capsys.readouterr().out
        assert status == 0
        assert output.startswith("durabletrack emulator listening on http://127.0.0.1:")
        assert "summary" in output


class TestChildProcess:
    def test_serves_until_sigterm(self) -> None:
        command = [sys.executable, "-m", "durabletrack.emulator", "--port", "0", "--duration", "60"]
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_environment()
        )
        try:
            first_line = child.stdout.readline() if child.stdout else ""
            url = first_line.rsplit(" ", 1)[-1].strip()
            created = requests.post(url + "/api/v1/sessions", json=SESSION_START, timeout=5)
            sessions = requests.get(url + "/_emulator/sessions", timeout=5).json()
            child.send_signal(signal.SIGTERM)
            output, errors = child.communicate(timeout=10)
        finally:
            stop_child(child)

        assert url.startswith("http://127.0.0.1:")
        assert created.status_code == 201
        assert len(sessions) == 1
        assert child.returncode == 0, errors
        assert '"sessions": 1' in output

    def test_stops_after_duration(self) -> None:
        command = [sys.executable, "-m", "durabletrack.emulator", "--port", "0", "--duration", "0.5"]
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_environment()
        )
        try:
            output, errors = child.communicate(timeout=10)
        finally:
            stop_child(child)

        assert child.returncode == 0, errors
        assert "durabletrack emulator summary" in output


def stop_child(child: subprocess.Popen[str]) -> None:
    """Kill the child this test started if it is still running."""
    if child.poll() is None:
        child.kill()
        child.wait(timeout=5)
