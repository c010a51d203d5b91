"""Opt-out, redaction of identifiers, file permissions, endpoint rules, TLS and size limits."""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from durabletrack import ConfigError, InvalidEventError, RetryPolicy, Tracker, TrackerConfig
from durabletrack.emulator import Answer, Emulator, Faults
from durabletrack.redact import REDACTED, identifier_values, is_identifier_key, redact_event, redact_text
from tests.support import SESSION_PARAMS, wait_until

REPO = Path(__file__).resolve().parents[1]

IDENTIFIERS = {
    "visitor.marketingCloudUserId": "ECID-PRIV-90417733",
    "analytics.visitorId": "VID-PRIV-11820456",
    "analytics.aid": "AID-PRIV-52290013",
    "appInstallationId": "INSTALL-PRIV-7781",
}
CUSTOMER_ID = "CRM-PRIV-424242"
CUSTOM_USER_ID = "USER-PRIV-3141"
PARAMS = {
    **SESSION_PARAMS,
    **IDENTIFIERS,
    "visitor.customerIDs": {"crm": {"id": CUSTOMER_ID, "authState": 1}},
}
METADATA = {"userId": CUSTOM_USER_ID, "show": "Pilot"}
SECRET_VALUES = [*IDENTIFIERS.values(), CUSTOMER_ID, CUSTOM_USER_ID]

FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.2)


def values_on_disk(directory: Path) -> set[str]:
    """Return the secret values found in any file of the directory, -wal and -shm included."""
    found = set()
    for path in directory.iterdir():
        data = path.read_bytes()
        found |= {value for value in SECRET_VALUES if value.encode() in data}
    return found


def track_session(tracker: Tracker, end: bool = False) -> str:
    session = tracker.start_session(PARAMS, custom_metadata=METADATA)
    session.track("play", 0.0)
    session.track("ping", 10.0)
    if end:
        session.end(10.0)
    return session.handle


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "durabletrack", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def tracked_dir(tmp_path: Path, emulator: Emulator) -> Path:
    """A data directory holding identifiers in dead letters, in a rejected session and in a queue."""
    emulator.set_faults(Faults(script=(Answer(status=400, kind="sessions"), Answer(status=400, kind="events"))))
    data_dir = tmp_path / "data"
    with Tracker(emulator.url, data_dir, retry=FAST_RETRY) as tracker:
        track_session(tracker)
        track_session(tracker)
        assert tracker.flush(10.0)
    emulator.set_faults(Faults(blackhole_rate=1.0))
    with Tracker(emulator.url, data_dir, retry=FAST_RETRY, request_timeout=0.5) as tracker:
        track_session(tracker)
        tracker.close(0.1)
    return data_dir


class TestOptOut:
    def test_leaves_nothing_on_disk(self, tracked_dir: Path, emulator: Emulator) -> None:
        assert values_on_disk(tracked_dir) == set(SECRET_VALUES)
        tracker = Tracker(emulator.url, tracked_dir, retry=FAST_RETRY, request_timeout=0.5)

        tracker.opt_out()
        track_session(tracker)
        stats = tracker.stats()
        tracker.close(0.5)

        assert values_on_disk(tracked_dir) == set()
        assert stats.sessions_by_state == {}
        assert stats.dead_letters == 0
        assert stats.queued_events == 0

    def test_survives_restart(self, tmp_path: Path, emulator: Emulator) -> None:
        with Tracker(emulator.url, tmp_path / "data") as tracker:
            tracker.opt_out()

        with Tracker(emulator.url, tmp_path / "data") as reopened:
            opted_out = reopened.opted_out
            track_session(reopened)
            stats = reopened.stats()
            assert reopened.flush(5.0)

        assert opted_out
        assert stats.sessions_by_state == {}
        assert values_on_disk(tmp_path / "data") == set()
        assert emulator.requests_seen() == 0

    def test_opt_in_tracks_again(self, tmp_path: Path, emulator: Emulator) -> None:
        with Tracker(emulator.url, tmp_path / "data") as tracker:
            tracker.opt_out()
            tracker.opt_in()
            track_session(tracker)
            assert tracker.flush(10.0)

        assert len(emulator.sessions()) == 1


class TestRedaction:
    @pytest.mark.parametrize(
        "key", [*IDENTIFIERS, "visitor.customerIDs", "userId", "custom.account_id", "deviceIDs", "email"]
    )
    def test_identifier_keys(self, key: str) -> None:
        assert is_identifier_key(key)

    @pytest.mark.parametrize(
        "key", ["media.id", "media.ad.id", "visitor.marketingCloudOrgId", "show", "media.ad.creativeId"]
    )
    def test_content_keys_kept(self, key: str) -> None:
        assert not is_identifier_key(key)

    def test_nested_values_redacted(self) -> None:
        event = {"params": PARAMS, "customMetadata": METADATA}

        redacted = redact_event(event)

        assert redacted["params"]["visitor.customerIDs"] == REDACTED
        assert redacted["customMetadata"]["userId"] == REDACTED
        assert redacted["customMetadata"]["show"] == "Pilot"
        assert redacted["params"]["media.id"] == "ep-0042"
        assert not set(SECRET_VALUES) & set(json.dumps(redacted).split('"'))

    def test_quoted_value_scrubbed_from_text(self) -> None:
        values = identifier_values({"params": PARAMS})

        text = redact_text(f"invalid visitor {IDENTIFIERS['analytics.visitorId']} for report suite", values)

        assert IDENTIFIERS["analytics.visitorId"] not in text
        assert REDACTED in text

    COMMANDS = (
        ("status",),
        ("status", "--json"),
        ("inspect",),
        ("inspect", "--json"),
        ("dead-letters",),
        ("dead-letters", "--export", "-"),
    )

    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_cli_output_redacted(self, tracked_dir: Path, command: tuple[str, ...]) -> None:
        result = run_cli(command[0], str(tracked_dir), *command[1:])

        assert result.returncode == 0, result.stderr
        for value in SECRET_VALUES:
            assert value not in result.stdout + result.stderr
        if command[0] != "status":
            assert REDACTED in result.stdout

    def test_export_file_redacted(self, tracked_dir: Path, tmp_path: Path) -> None:
        target = tmp_path / "dead.jsonl"

        run_cli("dead-letters", str(tracked_dir), "--export", str(target))

        text = target.read_text()
        assert REDACTED in text
        for value in SECRET_VALUES:
            assert value not in text

    @pytest.mark.parametrize("command", [("inspect",), ("dead-letters",)], ids=" ".join)
    def test_show_values_shows_them(self, tracked_dir: Path, command: tuple[str, ...]) -> None:
        result = run_cli(command[0], str(tracked_dir), *command[1:], "--show-values")

        assert result.returncode == 0, result.stderr
        assert IDENTIFIERS["visitor.marketingCloudUserId"] in result.stdout
        assert CUSTOMER_ID in result.stdout


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Clear the umask, so only the library's own modes keep files private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


class TestPermissions:
    PRIVATE_FILES = (
        "registry.db",
        "registry.db-wal",
        "registry.db-shm",
        "events.db",
        "events.db-wal",
        "events.db-shm",
        "drain.lock",
    )

    def test_directory_and_files_private(self, tmp_path: Path, emulator: Emulator, open_umask: None) -> None:
        data_dir = tmp_path / "data"
        with Tracker(emulator.url, data_dir) as tracker:
            track_session(tracker)
            assert tracker.flush(10.0)

            modes = {name: stat.S_IMODE((data_dir / name).stat().st_mode) for name in self.PRIVATE_FILES}
            directory_mode = stat.S_IMODE(data_dir.stat().st_mode)

        assert directory_mode == 0o700
        assert modes == dict.fromkeys(self.PRIVATE_FILES, 0o600)

    def test_cli_keeps_files_private(self, tracked_dir: Path, open_umask: None) -> None:
        for name in ("registry.db-wal", "registry.db-shm", "events.db-wal", "events.db-shm"):
            (tracked_dir / name).unlink(missing_ok=True)
        # Only what the command creates is checked here; the library's own modes are checked above.
        for path in tracked_dir.iterdir():
            path.chmod(0o600)

        run_cli("status", str(tracked_dir))
        run_cli("inspect", str(tracked_dir))

        for path in tracked_dir.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name

    def test_wide_directory_reported(
        self, tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="durabletrack")
        data_dir = tmp_path / "shared"
        data_dir.mkdir(mode=0o755)
        data_dir.chmod(0o755)

        Tracker(emulator.url, data_dir).close(0.1)
        status = json.loads(run_cli("status", str(data_dir), "--json").stdout)

        warnings = [
            record.getMessage() for record in caplog.records if "data_dir_permissions_wide" in record.getMessage()
        ]
        assert len(warnings) == 1
        assert str(data_dir) in warnings[0]
        assert str(data_dir) in status["wide_permissions"]
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755


class TestEndpointRules:
    # The .invalid domain never resolves; these only build a configuration.
    @pytest.mark.parametrize("endpoint", ["http://collector.invalid", "ftp://collector.invalid", "https://"])
    def test_rejected(self, endpoint: str, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as raised:
            TrackerConfig(endpoint=endpoint, data_dir=tmp_path)

        assert raised.value.setting == "endpoint"

    @pytest.mark.parametrize(
        "endpoint", ["https://collector.invalid", "http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost"]
    )
    def test_accepted(self, endpoint: str, tmp_path: Path) -> None:
        config = TrackerConfig(endpoint=endpoint, data_dir=tmp_path)

        assert config.endpoint == endpoint

    def test_insecure_opt_in(self, tmp_path: Path) -> None:
        config = TrackerConfig(endpoint="http://collector.invalid", data_dir=tmp_path, allow_insecure_http=True)

        assert config.endpoint == "http://collector.invalid"


class _CollectorHandler(BaseHTTPRequestHandler):
    """A minimal collection API: 201 with a Location for sessions, a configured status for events."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        server: Any = self.server
        server.paths.append(self.path)
        if self.path == "/api/v1/sessions":
            self._answer(201, b"", {"Location": "/api/v1/sessions/" + "ab" * 32})
        else:
            self._answer(server.event_status, server.event_body, {"Content-Type": "application/json"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., ThreadingHTTPServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(
        tls: ssl.SSLContext | None = None, event_status: int = 204, event_body: bytes = b""
    ) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _CollectorHandler)
        server.daemon_threads = True
        server.paths = []  # type: ignore[attr-defined]
        server.event_status = event_status  # type: ignore[attr-defined]
        server.event_body = event_body  # type: ignore[attr-defined]
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class TestTls:
    def _server(
        self, collector_factory: Callable[..., ThreadingHTTPServer], cert: Path, key: Path
    ) -> ThreadingHTTPServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return collector_factory(tls=context)

    def test_delivers_with_ca_bundle(
        self, tmp_path: Path, collector_factory: Callable[..., ThreadingHTTPServer], self_signed: tuple[Path, Path]
    ) -> None:
        cert, key = self_signed
        server = self._server(collector_factory, cert, key)
        url = f"https://127.0.0.1:{server.server_address[1]}"

        with Tracker(url, tmp_path / "data", ca_bundle=str(cert), retry=FAST_RETRY) as tracker:
            track_session(tracker)
            delivered = tracker.flush(10.0)

        assert delivered
        assert server.paths[0] == "/api/v1/sessions"  # type: ignore[attr-defined]
        assert len(server.paths) == 3  # type: ignore[attr-defined]

    def test_unknown_ca_not_delivered(
        self, tmp_path: Path, collector_factory: Callable[..., ThreadingHTTPServer], self_signed: tuple[Path, Path]
    ) -> None:
        cert, key = self_signed
        server = self._server(collector_factory, cert, key)
        url = f"https://127.0.0.1:{server.server_address[1]}"

        with Tracker(url, tmp_path / "data", retry=FAST_RETRY) as tracker:
            track_session(tracker)
            assert wait_until(lambda: tracker.stats().sessions[0].last_error is not None)
            stats = tracker.stats()
            tracker.close(0.1)

        assert stats.sessions[0].last_error == "tls_error"
        assert stats.queued_events == 3
        assert server.paths == []  # type: ignore[attr-defined]


class TestSizeLimits:
    def test_event_over_limit_not_stored(self, tmp_path: Path, emulator: Emulator) -> None:
        with Tracker(emulator.url, tmp_path / "data", max_event_bytes=1024) as tracker:
            session = tracker.start_session(PARAMS)
            with pytest.raises(InvalidEventError) as raised:
                session.track("play", 0.0, custom_metadata={"note": "x" * 2000})
            session.track("ping", 10.0)
            assert tracker.flush(10.0)

        assert "over max_event_bytes=1024" in str(raised.value)
        assert [event["eventType"] for event in emulator.sessions()[0].events] == ["ping"]

    def test_response_cut_to_limit(self, tmp_path: Path, collector_factory: Callable[..., ThreadingHTTPServer]) -> None:
        server = collector_factory(event_status=400, event_body=b'{"error":"' + b"y" * 200_000 + b'"}')
        url = f"http://127.0.0.1:{server.server_address[1]}"

        with Tracker(url, tmp_path / "data", max_response_bytes=1024, retry=FAST_RETRY) as tracker:
            session = tracker.start_session(PARAMS)
            session.track("play", 0.0)
            assert tracker.flush(10.0)
            dead = tracker.dead_letters()

        assert len(dead) == 1
        assert dead[0].status == 400
        assert 0 < len(dead[0].response.encode()) <= 1024
