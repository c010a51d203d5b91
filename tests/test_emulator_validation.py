"""Schema validation of the emulator, per event type, over real HTTP."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from durabletrack.emulator import Emulator
from durabletrack.eventtypes import EVENT_TYPES

TS = 1_700_000_000_000

SESSION_START_PARAMS = {
    "analytics.trackingServer": "acme.sc.omtrdc.net",
    "analytics.reportSuite": "acmeprod",
    "visitor.marketingCloudOrgId": "ABCDEF0123456789@AdobeOrg",
    "media.id": "ep-0042",
    "media.length": 1800.5,
    "media.contentType": "vod",
    "media.playerName": "acme-web-player",
    "media.channel": "acme-site",
}

VALID_PARAMS: dict[str, dict[str, Any] | None] = {
    "sessionStart": SESSION_START_PARAMS,
    "adBreakStart": {"media.ad.podIndex": 0, "media.ad.podSecond": 0.0},
    "adStart": {
        "media.ad.id": "ad-1",
        "media.ad.length": 15,
        "media.ad.podPosition": 1,
        "media.ad.playerName": "acme-web-player",
    },
    "chapterStart": {"media.chapter.index": 1, "media.chapter.offset": 0, "media.chapter.length": 600.0},
    "stateStart": {"media.state.name": "fullscreen"},
    "stateEnd": {"media.state.name": "fullscreen"},
    "statesUpdate": {"statesStart": [{"media.state.name": "mute"}], "statesEnd": [{"media.state.name": "inFocus"}]},
    "error": {"media.errorId": "E42", "media.errorSource": "player"},
}


def event(event_type: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"playerTime": {"playhead": 12.5, "ts": TS}, "eventType": event_type}
    if params is not None:
        body["params"] = copy.deepcopy(params)
    body.update(extra)
    return body


def valid_event(event_type: str) -> dict[str, Any]:
    return event(event_type, VALID_PARAMS.get(event_type))


def with_params(event_type: str, **changes: Any) -> dict[str, Any]:
    """Return a valid event whose params are changed; a value of ``...`` removes the key."""
    body = valid_event(event_type)
    params = body.setdefault("params", {})
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is ...:
            params.pop(key, None)
        else:
            params[key] = value
    return body


def with_player_time(event_type: str, **player_time: Any) -> dict[str, Any]:
    body = valid_event(event_type)
    body["playerTime"] = player_time
    return body


VALID_CASES = [pytest.param(valid_event(name), id=name) for name in sorted(EVENT_TYPES)] + [
    pytest.param(event("bitrateChange", qoeData={"media.qoe.bitrate": 4_000_000}), id="bitrateChange-qoe"),
    pytest.param(
        event("error", qoeData={"media.qoe.errorID": "E1", "media.qoe.errorSource": "player"}), id="error-qoe"
    ),
    pytest.param(event("play", {"custom.flag": True, "custom.count": 3}), id="play-scalar-params"),
    pytest.param(
        event("sessionStart", SESSION_START_PARAMS, customMetadata={"show_id": "42"}), id="sessionStart-metadata"
    ),
    pytest.param(
        with_params("sessionStart", analytics__enableSSL=True, visitor__aamLocationHint=9), id="sessionStart-optional"
    ),
    pytest.param(
        with_params("sessionStart", visitor__customerIDs={"crm": {"id": "u1", "authState": 1}}),
        id="sessionStart-customerIDs",
    ),
    pytest.param(with_params("sessionStart", media__length=1800), id="sessionStart-int-length"),
    pytest.param(event("statesUpdate", {"statesEnd": [{"media.state.name": "mute"}]}), id="statesUpdate-end-only"),
    pytest.param(
        event("chapterStart", VALID_PARAMS["chapterStart"], customMetadata={"a.b_c": "x"}), id="chapterStart-metadata"
    ),
]

# (body, path of the violation, rule fragment)
INVALID_CASES = [
    pytest.param(
        with_params("sessionStart", media__length=...),
        "params.media.length",
        "is required",
        id="sessionStart-missing-length",
    ),
    pytest.param(
        with_params("sessionStart", media__length="1800"),
        "params.media.length",
        "must be a number",
        id="sessionStart-length-string",
    ),
    pytest.param(
        with_params("sessionStart", media__length=True),
        "params.media.length",
        "must be a number",
        id="sessionStart-length-bool",
    ),
    pytest.param(
        with_params("sessionStart", media__id=42), "params.media.id", "must be a string", id="sessionStart-id-int"
    ),
    pytest.param(
        with_params("sessionStart", analytics__enableSSL="true"),
        "params.analytics.enableSSL",
        "must be a boolean",
        id="sessionStart-ssl-string",
    ),
    pytest.param(
        with_params("sessionStart", visitor__aamLocationHint=1.5),
        "params.visitor.aamLocationHint",
        "must be an integer",
        id="sessionStart-hint-float",
    ),
    pytest.param(
        with_params("sessionStart", visitor__customerIDs={"crm": {"id": "u1", "authState": 7}}),
        "params.visitor.customerIDs.crm.authState",
        "must be 0, 1 or 2",
        id="sessionStart-authState",
    ),
    pytest.param(event("sessionStart"), "params", "is required", id="sessionStart-no-params"),
    pytest.param(
        event("play", playerTime={"playhead": 1, "ts": 1.5}), "playerTime.ts", "must be an integer", id="play-ts-float"
    ),
    pytest.param(
        with_player_time("play", playhead=1, ts=TS, rate=1),
        "playerTime.rate",
        "is not an allowed key",
        id="play-playerTime-extra",
    ),
    pytest.param(
        event("play", params={"custom.nested": {"a": 1}}),
        "params.custom.nested",
        "must be a string, number or boolean",
        id="play-param-object",
    ),
    pytest.param(event("play", extra_key=1), "extra_key", "is not an allowed top-level key", id="play-unknown-key"),
    pytest.param(event("ping", {}), "params", "must not be present", id="ping-params"),
    pytest.param({"eventType": "pauseStart"}, "playerTime", "is required", id="pauseStart-no-playerTime"),
    pytest.param(
        with_player_time("bufferStart", playhead="12", ts=TS),
        "playerTime.playhead",
        "must be a number",
        id="bufferStart-playhead-string",
    ),
    pytest.param(
        with_player_time("bufferStart", ts=TS), "playerTime.playhead", "is required", id="bufferStart-no-playhead"
    ),
    pytest.param(
        event("bitrateChange", qoeData={"media.qoe.bitrate": 4.5e6}),
        "qoeData.media.qoe.bitrate",
        "must be an integer",
        id="bitrateChange-qoe-float",
    ),
    pytest.param(
        event("bitrateChange", qoeData={"media.qoe.latency": 3}),
        "qoeData.media.qoe.latency",
        "is not an allowed key",
        id="bitrateChange-qoe-unknown",
    ),
    pytest.param(
        with_params("error", media__errorId=42), "params.media.errorId", "must be a string", id="error-id-int"
    ),
    pytest.param(
        with_params("adBreakStart", media__ad__podIndex=1.0),
        "params.media.ad.podIndex",
        "must be an integer",
        id="adBreakStart-index-float",
    ),
    pytest.param(
        with_params("adBreakStart", media__ad__podSecond=...),
        "params.media.ad.podSecond",
        "is required",
        id="adBreakStart-no-second",
    ),
    pytest.param(event("adBreakStart"), "params", "is required", id="adBreakStart-no-params"),
    pytest.param(
        with_params("adStart", media__ad__podPosition=True),
        "params.media.ad.podPosition",
        "must be an integer",
        id="adStart-position-bool",
    ),
    pytest.param(with_params("adStart", media__ad__id=...), "params.media.ad.id", "is required", id="adStart-no-id"),
    pytest.param(
        event("adStart", VALID_PARAMS["adStart"], customMetadata={"ad_slot": 3}),
        "customMetadata.ad_slot",
        "must be a string",
        id="adStart-metadata-int",
    ),
    pytest.param(
        event("adStart", VALID_PARAMS["adStart"], customMetadata={"ad slot": "3"}),
        "customMetadata.ad slot",
        "must match",
        id="adStart-metadata-key",
    ),
    pytest.param(
        event("adComplete", {"custom.list": [1, 2]}),
        "params.custom.list",
        "must be a string, number or boolean",
        id="adComplete-param-array",
    ),
    pytest.param(event("adSkip", params=[1]), "params", "must be an object", id="adSkip-params-array"),
    pytest.param(
        event("adBreakComplete", playerTime=[0, TS]),
        "playerTime",
        "must be an object",
        id="adBreakComplete-playerTime-array",
    ),
    pytest.param(
        with_params("chapterStart", media__chapter__index=...),
        "params.media.chapter.index",
        "is required",
        id="chapterStart-no-index",
    ),
    pytest.param(
        with_params("chapterStart", media__chapter__length="600"),
        "params.media.chapter.length",
        "must be a number",
        id="chapterStart-length-string",
    ),
    pytest.param(
        event("chapterComplete", customMetadata=["x"]),
        "customMetadata",
        "must be an object",
        id="chapterComplete-metadata-array",
    ),
    pytest.param(event("chapterSkip", qoeData=5), "qoeData", "must be an object", id="chapterSkip-qoe-int"),
    pytest.param(event("stateStart"), "params", "is required", id="stateStart-no-params"),
    pytest.param(
        with_params("stateStart", media__state__name=1),
        "params.media.state.name",
        "must be a string",
        id="stateStart-name-int",
    ),
    pytest.param(event("stateEnd", {}), "params.media.state.name", "is required", id="stateEnd-no-name"),
    pytest.param(event("statesUpdate", {}), "params", "must contain statesStart or statesEnd", id="statesUpdate-empty"),
    pytest.param(event("statesUpdate"), "params", "is required", id="statesUpdate-no-params"),
    pytest.param(
        event("statesUpdate", {"statesStart": {"media.state.name": "mute"}}),
        "params.statesStart",
        "must be an array",
        id="statesUpdate-not-array",
    ),
    pytest.param(
        event("statesUpdate", {"statesStart": [{"name": "mute"}]}),
        "params.statesStart[0].name",
        "is not an allowed key",
        id="statesUpdate-item-key",
    ),
    pytest.param(
        event("statesUpdate", {"statesEnd": [{}]}),
        "params.statesEnd[0].media.state.name",
        "is required",
        id="statesUpdate-item-empty",
    ),
    pytest.param(
        event("sessionComplete", {"custom.value": None}),
        "params.custom.value",
        "must be a string, number or boolean",
        id="sessionComplete-param-null",
    ),
    pytest.param(event("sessionEnd", sid="abc"), "sid", "is not an allowed top-level key", id="sessionEnd-unknown-key"),
    pytest.param(event("seek"), "eventType", "must be one of", id="unknown-eventType"),
    pytest.param({"playerTime": {"playhead": 0, "ts": TS}}, "eventType", "is required", id="no-eventType"),
    pytest.param([], "", "must be a JSON object", id="empty-array-on-events"),
]


def post_body(emulator: Emulator, http: requests.Session, body: Any) -> requests.Response:
    """Post a sessionStart to /sessions and anything else to a live session's events."""
    if isinstance(body, dict) and body.get("eventType") == "sessionStart":
        return http.post(emulator.url + "/api/v1/sessions", json=body, timeout=5)

    created = http.post(emulator.url + "/api/v1/sessions", json=valid_event("sessionStart"), timeout=5)
    return http.post(emulator.url + created.headers["Location"] + "/events", json=body, timeout=5)


class TestValidBodies:
    def test_valid_cases_cover_every_event_type(self) -> None:
        covered = {case.values[0]["eventType"] for case in VALID_CASES}

        assert covered == EVENT_TYPES

    @pytest.mark.parametrize("body", VALID_CASES)
    def test_valid_body_accepted(self, emulator: Emulator, http: requests.Session, body: dict[str, Any]) -> None:
        response = post_body(emulator, http, body)

        assert response.status_code in (201, 204), response.text
        assert emulator.accepted()[-1].body == body


class TestInvalidBodies:
    def test_invalid_cases_cover_every_event_type(self) -> None:
        covered = {case.values[0].get("eventType") for case in INVALID_CASES if isinstance(case.values[0], dict)}

        assert EVENT_TYPES <= covered

    @pytest.mark.parametrize(("body", "path", "rule"), INVALID_CASES)
    def test_invalid_body_rejected(
        self, emulator: Emulator, http: requests.Session, body: Any, path: str, rule: str
    ) -> None:
        accepted_before = len(emulator.accepted())

        response = post_body(emulator, http, body)

        assert response.status_code == 400
        assert response.json()["error"] == "schema_violation"
        assert response.json()["path"] == path
        assert rule in response.json()["rule"]
        assert emulator.rejected()[-1].reason == "schema_violation"
        assert len(emulator.accepted()) == accepted_before + (0 if body_is_session_start(body) else 1)


def body_is_session_start(body: Any) -> bool:
    return isinstance(body, dict) and body.get("eventType") == "sessionStart"


class TestEndpointRules:
    def test_session_start_on_events_rejected(self, emulator: Emulator, http: requests.Session) -> None:
        created = http.post(emulator.url + "/api/v1/sessions", json=valid_event("sessionStart"), timeout=5)

        response = http.post(
            emulator.url + created.headers["Location"] + "/events", json=valid_event("sessionStart"), timeout=5
        )

        assert response.status_code == 400
        assert response.json()["path"] == "eventType"

    def test_play_on_sessions_rejected(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(emulator.url + "/api/v1/sessions", json=valid_event("play"), timeout=5)

        assert response.status_code == 400
        assert response.json()["rule"] == "must be sessionStart on /api/v1/sessions"

    def test_downloaded_flag_on_live_session_rejected(self, emulator: Emulator, http: requests.Session) -> None:
        body = with_params("sessionStart", media__downloaded=True)

        response = http.post(emulator.url + "/api/v1/sessions", json=body, timeout=5)

        assert response.status_code == 400
        assert response.json()["path"] == "params.media.downloaded"
        assert emulator.sessions() == []

    def test_error_body_names_event_type(self, emulator: Emulator, http: requests.Session) -> None:
        response = http.post(
            emulator.url + "/api/v1/sessions", json=with_params("sessionStart", media__length="x"), timeout=5
        )

        assert response.json()["eventType"] == "sessionStart"
        assert response.headers["Content-Type"] == "application/json"
