"""Collection API behaviour of the emulator: sessions, events, expiry, batches, HTTP errors."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from durabletrack.emulator import Emulator, ExpiryPolicy

TS = 1_700_000_000_000

SESSION_START = {
    "playerTime": {"playhead": 0, "ts": TS},
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

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS,POST,PUT",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Expose-Headers": "Location",
}


def event(event_type: str, playhead: float, ts_offset_ms: int = 0) -> dict[str, Any]:
    return {"playerTime": {"playhead": playhead, "ts": TS + ts_offset_ms}, "eventType": event_type}


def create_session(emulator: Emulator, http: requests.Session) -> str:
    response = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def post_event(emulator: Emulator, http: requests.Session, sid: str, body: dict[str, Any]) -> requests.Response:
    return http.post(f"{emulator.url}/api/v1/sessions/{sid}/events", json=body, timeout=5)


class FakeClock:
    """Monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def short_expiry(clock: FakeClock) -> Iterator[Emulator]:
    policy = ExpiryPolicy(idle_s=10, stalled_playhead_s=30, max_age_s=100)
    with Emulator(expiry=policy, clock=clock) as running:
        yield running


class TestSessions:
    def test_created_with_location(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)

        assert response.status_code == 201
        assert re.fullmatch(r"/api/v1/sessions/[0-9a-f]{64}", response.headers["Location"])
        assert response.content == b""
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Length"] == "0"

    def test_created_with_cors_headers(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)

        for name, value in CORS.items():
            assert response.headers[name] == value

    def test_session_recorded(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)

        record = emulator.session(sid)
        assert record.start == SESSION_START
        assert record.events == []
        assert record.closed_reason is None
        assert record.downloaded is False
        assert [delivery.kind for delivery in emulator.accepted()] == ["sessions"]

    def test_unknown_session_lookup_raises(self, emulator: Emulator) -> None:
        with pytest.raises(KeyError):
            emulator.session("0" * 64)

    def test_records_are_copies(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)

        emulator.session(sid).start["eventType"] = "changed"

        assert emulator.session(sid).start["eventType"] == "sessionStart"

    def test_array_without_downloaded_flag_rejected(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/sessions", json=[SESSION_START, event("play", 0)], timeout=5)

        assert response.status_code == 400
        assert response.json()["path"] == "params.media.downloaded"
        assert emulator.sessions() == []

    def test_deprecated_offline_array_accepted(self, emulator: Emulator, http: requests.Session) -> None:
        start = {**SESSION_START, "params": {**SESSION_START["params"], "media.downloaded": True}}

        response = http.post(emulator.url + "/api/v1/sessions", json=[start, event("play", 0, 5)], timeout=5)

        assert response.status_code == 201
        assert emulator.sessions()[0].downloaded is True
        assert emulator.sessions()[0].events == [event("play", 0, 5)]


class TestEvents:
    def test_event_accepted(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)

        response = post_event(emulator, http, sid, event("play", 0, 10))

        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert emulator.session(sid).events == [event("play", 0, 10)]

    def test_events_kept_in_arrival_order(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)
        bodies = [event("play", 0, 1), event("ping", 10, 2), event("pauseStart", 12, 3)]

        for body in bodies:
            post_event(emulator, http, sid, body)

        assert emulator.session(sid).events == bodies
        assert [delivery.seq for delivery in emulator.accepted()] == [1, 2, 3, 4]

    def test_unknown_session_gets_404(self, emulator: Emulator, http: requests.Session) -> None:
        response = post_event(emulator, http, "f" * 64, event("play", 0))

        assert response.status_code == 404
        assert response.json()["error"] == "unknown_session"
        assert emulator.rejected()[0].status == 404

    def test_after_session_end_gets_410(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)
        ended = post_event(emulator, http, sid, event("sessionEnd", 5, 1))

        late = post_event(emulator, http, sid, event("ping", 5, 2))

        assert ended.status_code == 204
        assert late.status_code == 410
        assert late.json()["closedReason"] == "sessionEnd"
        assert emulator.session(sid).closed_reason == "sessionEnd"

    def test_session_complete_keeps_session_open(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)
        post_event(emulator, http, sid, event("sessionComplete", 1800, 1))

        response = post_event(emulator, http, sid, event("ping", 1800, 2))

        assert response.status_code == 204


class TestExpiry:
    def test_idle_session_closed(self, short_expiry: Emulator, clock: FakeClock, http: requests.Session) -> None:
        sid = create_session(short_expiry, http)
        clock.advance(10)

        response = post_event(short_expiry, http, sid, event("play", 1))

        assert response.status_code == 410
        assert short_expiry.session(sid).closed_reason == "idle"

    def test_events_keep_session_alive(self, short_expiry: Emulator, clock: FakeClock, http: requests.Session) -> None:
        sid = create_session(short_expiry, http)
        statuses = []

        for step in range(1, 4):
            clock.advance(9)
            statuses.append(post_event(short_expiry, http, sid, event("ping", step, step)).status_code)

        assert statuses == [204, 204, 204]

    def test_stalled_playhead_closes_session(
        self, short_expiry: Emulator, clock: FakeClock, http: requests.Session
    ) -> None:
        sid = create_session(short_expiry, http)
        statuses = []

        for step in range(1, 5):
            clock.advance(8)
            statuses.append(post_event(short_expiry, http, sid, event("ping", 0, step)).status_code)

        assert statuses == [204, 204, 204, 410]
        assert short_expiry.session(sid).closed_reason == "stalled_playhead"

    def test_max_age_closes_session(self, short_expiry: Emulator, clock: FakeClock, http: requests.Session) -> None:
        sid = create_session(short_expiry, http)
        statuses = []

        for step in range(1, 13):
            clock.advance(9)
            statuses.append(post_event(short_expiry, http, sid, event("ping", step, step)).status_code)

        assert statuses[-1] == 410
        assert statuses.count(204) == 11
        assert short_expiry.session(sid).closed_reason == "max_age"

    def test_expiry_visible_without_requests(
        self, short_expiry: Emulator, clock: FakeClock, http: requests.Session
    ) -> None:
        create_session(short_expiry, http)

        clock.advance(10)

        assert short_expiry.sessions()[0].closed_reason == "idle"


class TestDownloaded:
    def test_batch_creates_session(self, emulator: Emulator, http: requests.Session) -> None:
        batch = [SESSION_START, event("play", 0, 500), event("ping", 10, 10_500), event("sessionComplete", 14, 14_600)]

        response = http.post(emulator.url + "/api/v1/downloaded", json=batch, timeout=5)

        assert response.status_code == 201
        sid = response.headers["Location"].rsplit("/", 1)[1]
        assert emulator.session(sid).downloaded is True
        assert emulator.session(sid).events == batch[1:]
        assert emulator.accepted()[0].body == batch

    def test_invalid_element_rejects_whole_batch(self, emulator: Emulator, http: requests.Session) -> None:
        bad_ping = {**event("ping", 10, 2), "params": {}}
        batch = [SESSION_START, event("play", 0, 1), bad_ping, event("sessionEnd", 10, 3)]

        response = http.post(emulator.url + "/api/v1/downloaded", json=batch, timeout=5)

        assert response.status_code == 400
        assert response.json()["index"] == 2
        assert response.json()["path"] == "params"
        assert emulator.sessions() == []
        assert emulator.accepted() == []

    def test_batch_must_start_with_session_start(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/downloaded", json=[event("play", 0)], timeout=5)

        assert response.status_code == 400
        assert response.json()["index"] == 0

    def test_single_object_rejected(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/downloaded", json=SESSION_START, timeout=5)

        assert response.status_code == 400
        assert response.json()["rule"] == "must be a non-empty JSON array of events"

    def test_session_end_in_batch_closes_session(self, emulator: Emulator, http: requests.Session) -> None:
        batch = [SESSION_START, event("play", 0, 1), event("sessionEnd", 3, 2)]

        http.post(emulator.url + "/api/v1/downloaded", json=batch, timeout=5)

        assert emulator.sessions()[0].closed_reason == "sessionEnd"


class TestHttpErrors:
    def test_wrong_content_type_gets_415(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(
            emulator.url + "/api/v1/sessions", data=b"{}", headers={"Content-Type": "text/plain"}, timeout=5
        )

        assert response.status_code == 415
        assert emulator.rejected()[0].reason == "unsupported_media_type"

    def test_json_with_charset_accepted(self, emulator: Emulator, http: requests.Session) -> None:
        import json

        headers = {"Content-Type": "application/json; charset=utf-8"}
        response = http.post(
            emulator.url + "/api/v1/sessions", data=json.dumps(SESSION_START), headers=headers, timeout=5
        )

        assert response.status_code == 201

    def test_invalid_json_gets_400(self, emulator: Emulator, http: requests.Session) -> None:
        headers = {"Content-Type": "application/json"}
        response = http.post(emulator.url + "/api/v1/sessions", data=b'{"eventType": ', headers=headers, timeout=5)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"

    def test_nan_is_invalid_json(self, emulator: Emulator, http: requests.Session) -> None:
        data = b'{"playerTime": {"playhead": NaN, "ts": 1}, "eventType": "play"}'
        response = http.post(
            emulator.url + "/api/v1/sessions", data=data, headers={"Content-Type": "application/json"}, timeout=5
        )

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"

    def test_body_over_limit_gets_413(self, http: requests.Session) -> None:
        with Emulator(max_body_bytes=1024) as emulator:
            data = b" " * 2048
            response = http.post(
                emulator.url + "/api/v1/sessions", data=data, headers={"Content-Type": "application/json"}, timeout=5
            )

            assert response.status_code == 413
            assert response.json()["limit"] == 1024
            assert response.headers["Connection"] == "close"

    def test_connection_usable_after_413(self, http: requests.Session) -> None:
        with Emulator(max_body_bytes=1024) as emulator:
            http.post(
                emulator.url + "/api/v1/sessions",
                data=b" " * 4096,
                headers={"Content-Type": "application/json"},
                timeout=5,
            )

            response = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)

            assert response.status_code == 201

    def test_large_body_drained_before_close(self) -> None:
        # 12 MiB exceeds the loopback socket buffers, so a server that closed
        # without draining would reset the connection while the client sends.
        length = 12 * 1024 * 1024
        head = b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        request = head + b"Content-Length: %d\r\n\r\n" % length + b" " * length

        with Emulator(max_body_bytes=1024) as emulator:
            status_line = raw_request(emulator, request)

        assert status_line.startswith(b"HTTP/1.1 413")

    def test_unknown_path_gets_404(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v2/sessions", json=SESSION_START, timeout=5)

        assert response.status_code == 404
        assert response.json()["error"] == "not_found"

    def test_wrong_method_gets_405(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.get(emulator.url + "/api/v1/sessions", timeout=5)

        assert response.status_code == 405
        assert response.headers["Allow"] == "OPTIONS, POST"

    def test_options_gets_cors(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.options(emulator.url + "/api/v1/sessions/abc/events", timeout=5)

        assert response.status_code == 204
        for name, value in CORS.items():
            assert response.headers[name] == value

    def test_missing_content_length_gets_411(self, emulator: Emulator) -> None:
        request = b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"

        status_line = raw_request(emulator, request)

        assert status_line.startswith(b"HTTP/1.1 411")

    def test_keep_alive_serves_several_requests(self, emulator: Emulator, http: requests.Session) -> None:
        first = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)
        second = http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=5)

        assert first.headers.get("Connection") != "close"
        assert second.status_code == 201


def raw_request(emulator: Emulator, request: bytes) -> bytes:
    host, port = emulator.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        return connection.recv(4096).split(b"\r\n", 1)[0]


class TestSchemasAndInspection:
    def test_schema_served(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.get(emulator.url + "/api/v1/schemas/adStart", timeout=5)

        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert "media.ad.id" in response.json()["properties"]["params"]["required"]

    def test_unknown_schema_gets_404(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.get(emulator.url + "/api/v1/schemas/seek", timeout=5)

        assert response.status_code == 404

    def test_inspection_lists_sessions(self, emulator: Emulator, http: requests.Session) -> None:
        sid = create_session(emulator, http)

        response = http.get(emulator.url + "/_emulator/sessions", timeout=5)

        assert response.json()[0]["sid"] == sid
        assert emulator.requests_seen() == 1

    def test_reset_records_forgets_everything(self, emulator: Emulator, http: requests.Session) -> None:
        create_session(emulator, http)
        post_event(emulator, http, "0" * 64, event("play", 0))

        emulator.reset_records()

        assert emulator.sessions() == []
        assert emulator.accepted() == []
        assert emulator.rejected() == []
        assert emulator.requests_seen() == 0

    def test_wait_for_times_out(self, emulator: Emulator) -> None:
        assert emulator.wait_for(lambda emu: emu.requests_seen() > 0, timeout=0.1) is False

    def test_wait_for_sees_request(self, emulator: Emulator) -> None:
        sender = threading.Thread(
            target=requests.post,
            args=(emulator.url + "/api/v1/sessions",),
            kwargs={"json": SESSION_START, "timeout": 5},
        )
        sender.start()

        seen = emulator.wait_for(lambda emu: len(emu.sessions()) == 1, timeout=5)
        sender.join(timeout=5)

        assert seen is True

    def test_non_loopback_host_rejected(self) -> None:
        with pytest.raises(ValueError, match="not a loopback address"):
            Emulator(host="0.0.0.0")
