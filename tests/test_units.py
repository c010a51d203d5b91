"""Unit tests of the pure parts: retry policy, outcome classification, clock, config."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timezone

import pytest
from requests.structures import CaseInsensitiveDict

from durabletrack import ConfigError, Durability, RetryPolicy, Tracker, TrackerConfig
from durabletrack.clock import SessionClock
from durabletrack.protocol import Verdict, classify, session_id_from_location
from durabletrack.retry import parse_retry_after

SID = "a" * 64


def _headers(**values: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({key.replace("_", "-"): value for key, value in values.items()})


class TestRetryPolicy:
    def test_backoff_within_capped_exponential(self) -> None:
        policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
        rng = random.Random(1)

        delays = {attempt: [policy.backoff(attempt, rng) for _ in range(200)] for attempt in (1, 2, 3, 10)}

        assert max(delays[1]) <= 1.0
        assert max(delays[2]) <= 2.0
        assert max(delays[3]) <= 4.0
        assert max(delays[10]) <= 8.0
        assert max(delays[10]) > 4.0  # full jitter spreads over the whole range

    def test_retry_after_wins_and_is_capped(self) -> None:
        policy = RetryPolicy(retry_after_cap=30.0)
        rng = random.Random(1)

        assert policy.delay(1, rng, 7.0) == 7.0
        assert policy.delay(1, rng, 3600.0) == 30.0

    def test_negative_setting_rejected(self) -> None:
        with pytest.raises(ConfigError, match="retry.base_delay"):
            RetryPolicy(base_delay=-1)

    def test_parse_retry_after_forms(self) -> None:
        now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

        assert parse_retry_after("120") == 120.0
        assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
        assert parse_retry_after("soon") is None
        assert parse_retry_after(None) is None


class TestClassify:
    @pytest.mark.parametrize(
        "location",
        [f"/api/v1/sessions/{SID}", f"https://ns.hb-api.omtrdc.net/api/v1/sessions/{SID}", f"/api/v1/sessions/{SID}/"],
    )
    def test_session_id_from_location(self, location: str) -> None:
        assert session_id_from_location(location) == SID

    @pytest.mark.parametrize("location", [None, "", "/api/v1/other/x", "/sessions/abc"])
    def test_unusable_location(self, location) -> None:
        assert session_id_from_location(location) is None

    def test_session_created(self) -> None:
        result = classify(201, _headers(Location=f"/api/v1/sessions/{SID}"), "", expects_session=True)

        assert result.verdict is Verdict.ACCEPTED
        assert result.session_id == SID

    def test_201_without_location_is_retried(self) -> None:
        assert classify(201, _headers(), "", expects_session=True).verdict is Verdict.RETRY

    def test_captive_portal_html_is_retried(self) -> None:
        result = classify(200, _headers(Content_Type="text/html"), "<html>login</html>", expects_session=False)

        assert result.verdict is Verdict.RETRY

    @pytest.mark.parametrize(
        "status,verdict",
        [
            (204, Verdict.ACCEPTED),
            (302, Verdict.RETRY),
            (400, Verdict.REJECTED),
            (401, Verdict.MISCONFIGURED),
            (403, Verdict.MISCONFIGURED),
            (404, Verdict.SESSION_GONE),
            (408, Verdict.RETRY),
            (410, Verdict.SESSION_GONE),
            (413, Verdict.REJECTED),
            (429, Verdict.RETRY),
            (500, Verdict.RETRY),
            (503, Verdict.RETRY),
        ],
    )
    def test_event_statuses(self, status: int, verdict: Verdict) -> None:
        assert classify(status, _headers(), "", expects_session=False).verdict is verdict

    def test_404_on_session_creation_is_misconfiguration(self) -> None:
        assert classify(404, _headers(), "", expects_session=True).verdict is Verdict.MISCONFIGURED

    def test_retry_after_read_from_429(self) -> None:
        result = classify(429, _headers(Retry_After="4"), "", expects_session=False)

        assert result.retry_after == 4.0


class TestSessionClock:
    def test_stamps_strictly_increase_at_same_instant(self) -> None:
        clock = SessionClock(wall_clock=lambda: 1000.0, monotonic=lambda: 5.0)

        stamps = [clock.next_ts() for _ in range(5)]

        assert stamps == [1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004]

    def test_wall_clock_jumping_back_changes_nothing(self) -> None:
        wall = [1000.0]
        mono = [0.0]
        clock = SessionClock(wall_clock=lambda: wall[0], monotonic=lambda: mono[0])
        first = clock.next_ts()

        wall[0] = 1.0  # NTP moved the wall clock back by almost 17 minutes
        mono[0] = 2.5
        second = clock.next_ts()

        assert second == first + 2500


class TestConfig:
    @pytest.mark.parametrize(
        "endpoint",
        ["http://collector.invalid", "ftp://127.0.0.1", "127.0.0.1:8080", "https://", "https://h.invalid/?q=1"],
    )
    def test_bad_endpoint_rejected(self, endpoint: str, tmp_path) -> None:
        with pytest.raises(ConfigError, match="endpoint"):
            TrackerConfig(endpoint=endpoint, data_dir=tmp_path)

    def test_insecure_http_needs_opt_in(self, tmp_path) -> None:
        # A config object only: nothing connects to the (unresolvable) host.
        config = TrackerConfig(endpoint="http://collector.invalid/", data_dir=tmp_path, allow_insecure_http=True)

        assert config.endpoint == "http://collector.invalid"

    @pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80"])
    def test_loopback_http_allowed(self, endpoint: str, tmp_path) -> None:
        assert TrackerConfig(endpoint=endpoint, data_dir=tmp_path).endpoint == endpoint

    @pytest.mark.parametrize(
        "setting,value",
        [("request_timeout", 0), ("sender_threads", 0), ("max_event_bytes", 10), ("durability", "fsync")],
    )
    def test_bad_setting_named(self, setting: str, value, tmp_path) -> None:
        with pytest.raises(ConfigError, match=setting):
            Tracker("http://127.0.0.1:1", tmp_path, **{setting: value})

    def test_unknown_setting_named(self, tmp_path) -> None:
        with pytest.raises(TypeError, match="request_timout"):
            Tracker("http://127.0.0.1:1", tmp_path, request_timout=3)

    def test_data_dir_that_is_a_file_rejected(self, tmp_path) -> None:
        path = tmp_path / "file"
        path.write_text("")

        with pytest.raises(ConfigError, match="not a directory"):
            TrackerConfig(endpoint="http://127.0.0.1:1", data_dir=path)

    def test_config_is_frozen(self, tmp_path) -> None:
        tracker = Tracker("http://127.0.0.1:1", tmp_path)

        with pytest.raises(AttributeError):
            tracker.config.request_timeout = 1.0  # type: ignore[misc]
        tracker.close(timeout=0)


class TestDurabilitySetting:
    @pytest.mark.parametrize("durability,code", [(Durability.POWER_LOSS, 2), (Durability.PROCESS_CRASH, 1)])
    def test_synchronous_set_on_every_connection(self, durability, code, tmp_path) -> None:
        tracker = Tracker("http://127.0.0.1:1", tmp_path, durability=durability)
        session = tracker.start_session(
            {
                "analytics.trackingServer": "t",
                "analytics.reportSuite": "r",
                "visitor.marketingCloudOrgId": "o@AdobeOrg",
                "media.id": "m",
                "media.length": 1,
                "media.contentType": "vod",
                "media.playerName": "p",
                "media.channel": "c",
            }
        )
        with tracker._store.queue(session.handle) as queue:
            connections: list[sqlite3.Connection] = [queue._putter, queue._getter, tracker._store.registry._conn]
            values = [conn.execute("PRAGMA synchronous").fetchone()[0] for conn in connections]
            modes = [conn.execute("PRAGMA journal_mode").fetchone()[0] for conn in connections]

        assert values == [code, code, code]
        assert modes == ["wal", "wal", "wal"]
        tracker.close(timeout=0)
