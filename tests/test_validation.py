"""Bad input raises at call time, names the field and the rule, and stores nothing."""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest

from durabletrack import InvalidEventError, InvalidFieldTypeError, RetryPolicy, SessionClosedError, Tracker
from durabletrack.emulator import Emulator
from durabletrack.eventtypes import EVENT_SPECS
from tests.support import make_tracker, session_params

AD_START = {"media.ad.id": "ad-1", "media.ad.length": 15, "media.ad.podPosition": 1, "media.ad.playerName": "p"}

# (event_type, playhead, params, custom_metadata, qoe_data, error type, text the message must contain)
BAD_EVENTS: list[tuple[Any, Any, Any, Any, Any, type, str]] = [
    ("fastForward", 0, None, None, None, InvalidEventError, "eventType"),
    (7, 0, None, None, None, InvalidFieldTypeError, "eventType"),
    ("sessionStart", 0, session_params(), None, None, InvalidEventError, "start_session"),
    ("play", "12", None, None, None, InvalidFieldTypeError, "playhead"),
    ("play", True, None, None, None, InvalidFieldTypeError, "playhead"),
    ("play", math.nan, None, None, None, InvalidEventError, "finite"),
    ("play", math.inf, None, None, None, InvalidEventError, "finite"),
    ("play", -1, None, None, None, InvalidEventError, ">= 0"),
    ("ping", 5, {"media.ad.podIndex": 1}, None, None, InvalidEventError, "must not carry params"),
    ("ping", 5, {}, None, None, InvalidEventError, "must not carry params"),
    ("adBreakStart", 0, None, None, None, InvalidEventError, "media.ad.podIndex"),
    ("adBreakStart", 0, {"media.ad.podIndex": 1}, None, None, InvalidEventError, "media.ad.podSecond"),
    (
        "adBreakStart",
        0,
        {"media.ad.podIndex": 1.5, "media.ad.podSecond": 0},
        None,
        None,
        InvalidFieldTypeError,
        "media.ad.podIndex",
    ),
    (
        "adBreakStart",
        0,
        {"media.ad.podIndex": "1", "media.ad.podSecond": 0},
        None,
        None,
        InvalidFieldTypeError,
        "an integer",
    ),
    ("adStart", 0, {**AD_START, "media.ad.length": "15"}, None, None, InvalidFieldTypeError, "media.ad.length"),
    ("adStart", 0, {**AD_START, "media.ad.length": True}, None, None, InvalidFieldTypeError, "finite number"),
    (
        "adStart",
        0,
        {k: v for k, v in AD_START.items() if k != "media.ad.id"},
        None,
        None,
        InvalidEventError,
        "media.ad.id",
    ),
    (
        "chapterStart",
        0,
        {"media.chapter.index": 1, "media.chapter.offset": 0},
        None,
        None,
        InvalidEventError,
        "media.chapter.length",
    ),
    ("stateStart", 0, {"media.state.name": 3}, None, None, InvalidFieldTypeError, "media.state.name"),
    ("stateEnd", 0, None, None, None, InvalidEventError, "media.state.name"),
    ("statesUpdate", 0, {}, None, None, InvalidEventError, "statesStart"),
    ("statesUpdate", 0, {"statesStart": [{"name": "mute"}]}, None, None, InvalidEventError, "statesStart"),
    ("play", 0, {"custom.value": [1, 2]}, None, None, InvalidFieldTypeError, "custom.value"),
    ("play", 0, {"custom.value": math.nan}, None, None, InvalidEventError, "finite"),
    ("play", 0, ["media.id"], None, None, InvalidFieldTypeError, "params"),
    ("play", 0, {1: "x"}, None, None, InvalidFieldTypeError, "params key"),
    ("play", 0, None, {"genre": 5}, None, InvalidFieldTypeError, 'customMetadata["genre"]'),
    ("play", 0, None, {"bad key": "x"}, None, InvalidEventError, "letters, digits"),
    ("play", 0, None, {"media.show": "x"}, None, InvalidEventError, "reserved"),
    ("play", 0, None, {"a.thing": "x"}, None, InvalidEventError, "reserved"),
    ("play", 0, None, "genre=drama", None, InvalidFieldTypeError, "customMetadata"),
    ("bitrateChange", 0, None, None, {"media.qoe.bitrate": 12.5}, InvalidFieldTypeError, "media.qoe.bitrate"),
    ("bitrateChange", 0, None, None, {"media.qoe.speed": 1}, InvalidEventError, "not a qoeData key"),
    ("play", 0, {"custom.blob": "x" * 40_000}, None, None, InvalidEventError, "bytes"),
]


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    """A tracker whose collector is down, so queued counts change only through track()."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    tracker = make_tracker(f"http://127.0.0.1:{closed_port}", tmp_path, retry=RetryPolicy(base_delay=60))
    yield tracker
    tracker.close(timeout=0)


def _queued(tracker: Tracker, handle: str) -> int:
    return sum(item.queued_events for item in tracker.stats().sessions if item.handle == handle)


class TestTrackValidation:
    @pytest.mark.parametrize("event_type,playhead,params,metadata,qoe,error,text", BAD_EVENTS)
    def test_bad_event_raises_and_stores_nothing(
        self, tracker: Tracker, event_type, playhead, params, metadata, qoe, error, text
    ) -> None:
        session = tracker.start_session(session_params())
        before = _queued(tracker, session.handle)

        with pytest.raises(error) as raised:
            session.track(event_type, playhead, params, metadata, qoe)

        assert text in str(raised.value)
        assert _queued(tracker, session.handle) == before

    def test_error_names_field_and_value(self, tracker: Tracker) -> None:
        session = tracker.start_session(session_params())

        with pytest.raises(InvalidFieldTypeError) as raised:
            session.track("adBreakStart", 0, {"media.ad.podIndex": "one", "media.ad.podSecond": 0})

        assert raised.value.field == 'params["media.ad.podIndex"]'
        assert raised.value.value == "one"
        assert raised.value.expected == "an integer"

    def test_errors_are_builtin_subclasses(self) -> None:
        assert issubclass(InvalidEventError, ValueError)
        assert issubclass(InvalidFieldTypeError, TypeError)

    def test_not_serialisable_value_rejected(self, tracker: Tracker) -> None:
        session = tracker.start_session(session_params())

        with pytest.raises(InvalidFieldTypeError):
            session.track("play", 0, {"custom.when": object()})

        assert _queued(tracker, session.handle) == 1

    def test_track_after_end_raises(self, tracker: Tracker) -> None:
        session = tracker.start_session(session_params())
        session.end(0)

        with pytest.raises(SessionClosedError):
            session.track("play", 0)

    def test_every_event_type_has_a_valid_form(self, emulator: Emulator, tmp_path) -> None:
        valid_params = {
            "adBreakStart": {"media.ad.podIndex": 0, "media.ad.podSecond": 0.0},
            "adStart": AD_START,
            "chapterStart": {"media.chapter.index": 1, "media.chapter.offset": 0, "media.chapter.length": 30},
            "stateStart": {"media.state.name": "mute"},
            "stateEnd": {"media.state.name": "mute"},
            "statesUpdate": {"statesStart": [{"media.state.name": "fullscreen"}]},
        }
        trackable = [name for name in EVENT_SPECS if name not in ("sessionStart", "sessionEnd")]
        with make_tracker(emulator.url, tmp_path) as tracker:
            session = tracker.start_session(session_params())
            for event_type in trackable + ["sessionEnd"]:
                session.track(event_type, 1.0, valid_params.get(event_type))
            delivered = tracker.flush(timeout=20)

        assert delivered
        assert emulator.rejected() == []
        assert len(emulator.sessions()[0].events) == len(trackable) + 1


class TestStartSessionValidation:
    @pytest.mark.parametrize(
        "params,error,text",
        [
            ({k: v for k, v in session_params().items() if k != "media.channel"}, InvalidEventError, "media.channel"),
            (session_params(**{"media.length": "1800"}), InvalidFieldTypeError, "media.length"),
            (session_params(**{"analytics.enableSSL": "yes"}), InvalidFieldTypeError, "a boolean"),
            (session_params(**{"media.id": 42}), InvalidFieldTypeError, "media.id"),
            (None, InvalidEventError, "requires params"),
        ],
    )
    def test_bad_params_raise_and_store_nothing(self, tracker: Tracker, params, error, text) -> None:
        with pytest.raises(error) as raised:
            tracker.start_session(params)

        assert text in str(raised.value)
        assert tracker.stats().sessions == []

    def test_bad_playhead_raises(self, tracker: Tracker) -> None:
        with pytest.raises(InvalidEventError):
            tracker.start_session(session_params(), playhead=-5)

        assert tracker.stats().sessions == []
