"""Fault injection of the emulator, as a real requests client sees it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from durabletrack.emulator import Answer, Emulator, Faults

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

PLAY = {"playerTime": {"playhead": 0, "ts": TS + 1}, "eventType": "play"}


def post_session(emulator: Emulator, http: requests.Session, timeout: float = 5) -> requests.Response:
    return http.post(emulator.url + "/api/v1/sessions", json=SESSION_START, timeout=timeout)


def post_play(emulator: Emulator, http: requests.Session, sid: str) -> requests.Response:
    return http.post(f"{emulator.url}/api/v1/sessions/{sid}/events", json=PLAY, timeout=5)


def sid_of(response: requests.Response) -> str:
    return response.headers["Location"].rsplit("/", 1)[1]


class TestScriptedAnswers:
    def test_reset_raises_connection_error(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer.RESET,)))

        with pytest.raises(requests.ConnectionError):
            post_session(emulator, http)

        assert emulator.sessions() == []
        assert emulator.fault_counts() == {"reset": 1}

    def test_blackhole_times_out(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer.BLACKHOLE,)))

        with pytest.raises(requests.ReadTimeout):
            post_session(emulator, http, timeout=0.3)

        assert emulator.sessions() == []

    def test_lost_response_still_records(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer.LOST_RESPONSE,)))

        with pytest.raises(requests.ConnectionError):
            post_session(emulator, http)

        assert len(emulator.sessions()) == 1
        assert emulator.fault_counts() == {"lost_response": 1}

    def test_captive_answer_is_html(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer.CAPTIVE,)))

        response = post_session(emulator, http)

        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert emulator.sessions() == []

    def test_throttle_sends_retry_after(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer(status=429, retry_after=2),)))

        response = post_session(emulator, http)

        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert emulator.sessions() == []

    def test_server_error_status(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer(status=503),)))

        response = post_session(emulator, http)

        assert response.status_code == 503
        assert "Retry-After" not in response.headers
        assert emulator.fault_log() == [(1, "sessions", "error")]

    def test_created_without_location(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer(status=201, location=None),)))

        response = post_session(emulator, http)

        assert response.status_code == 201
        assert "Location" not in response.headers
        assert len(emulator.sessions()) == 1

    def test_script_consumed_in_order(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer(status=503), Answer(status=502))))

        statuses = [post_session(emulator, http).status_code for _ in range(3)]

        assert statuses == [503, 502, 201]

    def test_script_restricted_to_kind(self, emulator: Emulator, http: requests.Session) -> None:
        emulator.set_faults(Faults(script=(Answer(status=500).only_for("events"),)))

        created = post_session(emulator, http)
        first = post_play(emulator, http, sid_of(created))
        second = post_play(emulator, http, sid_of(created))

        assert (created.status_code, first.status_code, second.status_code) == (201, 500, 204)

    def test_lost_event_is_recorded_once_per_send(self, emulator: Emulator, http: requests.Session) -> None:
        sid = sid_of(post_session(emulator, http))
        emulator.set_faults(Faults(script=(Answer.LOST_RESPONSE,)))

        with pytest.raises(requests.ConnectionError):
            post_play(emulator, http, sid)
        retried = post_play(emulator, http, sid)

        assert retried.status_code == 204
        assert emulator.session(sid).events == [PLAY, PLAY]


class TestRandomFaults:
    def test_full_error_rate(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(error_rate=1.0, error_statuses=(504,))) as emulator:
            response = post_session(emulator, http)

            assert response.status_code == 504

    def test_full_throttle_rate_uses_retry_after(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(throttle_rate=1.0, retry_after=7)) as emulator:
            response = post_session(emulator, http)

            assert response.status_code == 429
            assert response.headers["Retry-After"] == "7"

    def test_captive_portal_answers_everything(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(captive_portal=True)) as emulator:
            responses = [post_session(emulator, http), http.get(emulator.url + "/nowhere", timeout=5)]

            assert [response.status_code for response in responses] == [200, 200]
            assert emulator.fault_counts() == {"captive_portal": 2}

    def test_inspection_not_faulted(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(captive_portal=True)) as emulator:
            response = http.get(emulator.url + "/_emulator/faults", timeout=5)

            assert response.json()["counts"] == {}

    def test_applies_to_limits_kinds(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(error_rate=1.0, applies_to=("events",))) as emulator:
            created = post_session(emulator, http)
            played = post_play(emulator, http, sid_of(created))

            assert created.status_code == 201
            assert played.status_code >= 500

    def test_update_faults_while_running(self, emulator: Emulator, http: requests.Session) -> None:
        first = post_session(emulator, http)

        emulator.update_faults(error_rate=1.0, error_statuses=(502,))
        second = post_session(emulator, http)

        assert (first.status_code, second.status_code) == (201, 502)

    def test_rates_over_one_rejected(self) -> None:
        with pytest.raises(ValueError, match="sum"):
            Faults(error_rate=0.6, reset_rate=0.6)

    def test_lost_response_counted(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(lost_response_rate=1.0)) as emulator:
            for _ in range(3):
                with pytest.raises(requests.ConnectionError):
                    post_session(emulator, http)

            assert emulator.fault_counts()["lost_response"] == 3
            assert len(emulator.sessions()) == 3


def run_mixed_requests(seed: int) -> list[tuple[int, str, str]]:
    faults = Faults(error_rate=0.3, throttle_rate=0.2, lost_response_rate=0.2, reset_rate=0.1, seed=seed)
    with Emulator(faults=faults) as emulator, requests.Session() as http:
        for _ in range(30):
            try:
                post_session(emulator, http)
            except requests.ConnectionError:
                pass
        return emulator.fault_log()


class TestSeededRuns:
    def test_same_seed_repeats_decisions(self) -> None:
        first = run_mixed_requests(seed=11)
        second = run_mixed_requests(seed=11)

        assert first == second
        assert len(first) > 10

    def test_other_seed_differs(self) -> None:
        assert run_mixed_requests(seed=11) != run_mixed_requests(seed=12)


class TestLatency:
    def test_session_latency_delays_response(self, http: requests.Session) -> None:
        with Emulator(faults=Faults(session_latency=0.3)) as emulator:
            started = time.monotonic()
            response = post_session(emulator, http)
            elapsed = time.monotonic() - started

            assert response.status_code == 201
            assert elapsed >= 0.3

    def test_event_latency_range(self, emulator: Emulator, http: requests.Session) -> None:
        sid = sid_of(post_session(emulator, http))
        emulator.set_faults(Faults(event_latency=(0.2, 0.25)))

        started = time.monotonic()
        post_play(emulator, http, sid)
        elapsed = time.monotonic() - started

        assert elapsed >= 0.2

    def test_stop_interrupts_latency(self) -> None:
        emulator = Emulator(faults=Faults(session_latency=30.0))
        emulator.start()
        errors: list[Any] = []
        client = threading.Thread(target=_post_and_catch, args=(emulator.url, errors))
        client.start()
        assert emulator.wait_for(lambda emu: emu.requests_seen() == 1, timeout=5)

        started = time.monotonic()
        emulator.stop()
        client.join(timeout=5)

        assert time.monotonic() - started < 2.0
        assert not client.is_alive()
        assert errors and isinstance(errors[0], requests.ConnectionError)
        assert handler_threads_end(timeout=2.0)

    def test_stop_ends_blackhole(self) -> None:
        emulator = Emulator(faults=Faults(blackhole_rate=1.0))
        emulator.start()
        errors: list[Any] = []
        client = threading.Thread(target=_post_and_catch, args=(emulator.url, errors))
        client.start()
        assert emulator.wait_for(lambda emu: emu.fault_counts().get("blackhole") == 1, timeout=5)

        started = time.monotonic()
        emulator.stop()
        client.join(timeout=5)

        assert time.monotonic() - started < 2.0
        assert not client.is_alive()
        assert handler_threads_end(timeout=2.0)


def handler_threads_end(timeout: float) -> bool:
    """Wait until no request-handler thread of the http.server module is alive."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if not any("process_request_thread" in thread.name for thread in threading.enumerate()):
            return True
        pause.wait(0.02)
    return False


def _post_and_catch(url: str, errors: list[Any]) -> None:
    try:
        requests.post(url + "/api/v1/sessions", json=SESSION_START, timeout=30)
    except requests.RequestException as error:
        errors.append(error)
