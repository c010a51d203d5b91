"""Checks an event against the collection API rules before it is enqueued.

Every check runs on the caller's thread at ``track()`` time, so a mistake
raises where it was made and never reaches the queue or the worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import MISSING, InvalidEventError, InvalidFieldTypeError
from .eventtypes import (
    ARRAY,
    BOOLEAN,
    CUSTOM_METADATA_KEY,
    EVENT_SPECS,
    INTEGER,
    NUMBER,
    OBJECT,
    QOE_TYPES,
    STRING,
    EventSpec,
)

# Custom metadata prefixes that the collection API reserves for itself.
RESERVED_METADATA_PREFIXES = ("media.", "a.")

# One encoder for every event: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

_EXPECTED_WORDS = {
    STRING: "a string",
    NUMBER: "a finite number",
    INTEGER: "an integer",
    BOOLEAN: "a boolean",
    OBJECT: "an object",
    ARRAY: "an array",
}


def check_event_type(event_type: Any, *, allow_session_start: bool = False) -> EventSpec:
    """Return the spec of ``event_type`` or raise if it is not a trackable type."""
    if not isinstance(event_type, str):
        raise InvalidFieldTypeError("eventType", event_type, "a string")

    spec = EVENT_SPECS.get(event_type)
    if spec is None:
        raise InvalidEventError("eventType", event_type, "must be one of " + ", ".join(sorted(EVENT_SPECS)))
    if spec.name == "sessionStart" and not allow_session_start:
        raise InvalidEventError("eventType", event_type, "sessionStart is sent by Tracker.start_session(), not track()")

    return spec


def check_playhead(playhead: Any) -> float | int:
    """Return ``playhead`` if it is a finite, non-negative number of seconds."""
    check_type("playhead", playhead, NUMBER)
    if playhead < 0:
        raise InvalidEventError("playhead", playhead, "must be >= 0 seconds")

    return playhead


def check_params(spec: EventSpec, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a copy of ``params`` after checking it against the event type's rules."""
    if params is None:
        if spec.required:
            missing = sorted(spec.required)[0]
            raise InvalidEventError(
                f'params["{missing}"]', MISSING, f"{spec.name} requires params {sorted(spec.required)}"
            )
        if spec.name == "statesUpdate":
            raise InvalidEventError("params", MISSING, "statesUpdate requires statesStart or statesEnd")
        return None

    checked = _check_flat_mapping("params", params)
    if not spec.allows_params:
        raise InvalidEventError("params", params, f"{spec.name} must not carry params")

    for key in spec.required:
        if key not in checked:
            raise InvalidEventError(f'params["{key}"]', MISSING, f"is required on {spec.name}")
    for key, value in checked.items():
        _check_param_value(spec, key, value)
    if spec.name == "statesUpdate" and not ({"statesStart", "statesEnd"} & checked.keys()):
        raise InvalidEventError("params", params, "statesUpdate requires statesStart or statesEnd")

    return checked


def check_custom_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Return a copy of custom metadata after checking keys and string values."""
    if metadata is None:
        return None

    checked = _check_flat_mapping("customMetadata", metadata)
    for key, value in checked.items():
        field = f'customMetadata["{key}"]'
        if not CUSTOM_METADATA_KEY.match(key):
            raise InvalidEventError(field, key, "keys may use only letters, digits, '_' and '.'")
        if key.startswith(RESERVED_METADATA_PREFIXES):
            raise InvalidEventError(field, key, "keys starting with 'media.' or 'a.' are reserved")
        if not isinstance(value, str):
            raise InvalidFieldTypeError(field, value, "a string (custom metadata values are strings)")

    return checked


def check_qoe_data(qoe_data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a copy of QoE data after checking its keys and types."""
    if qoe_data is None:
        return None

    checked = _check_flat_mapping("qoeData", qoe_data)
    for key, value in checked.items():
        expected = QOE_TYPES.get(key)
        if expected is None:
            raise InvalidEventError(
                f'qoeData["{key}"]', key, "is not a qoeData key; use one of " + ", ".join(QOE_TYPES)
            )
        check_type(f'qoeData["{key}"]', value, expected)

    return checked


def check_type(field: str, value: Any, expected: str) -> None:
    """Raise unless ``value`` has the JSON type ``expected``; ``bool`` is not a number."""
    if expected == STRING:
        ok = isinstance(value, str)
    elif expected == BOOLEAN:
        ok = isinstance(value, bool)
    elif expected == INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == NUMBER:
        ok = _is_number(value)
        if ok and not math.isfinite(value):
            raise InvalidEventError(field, value, "must be a finite number (no NaN or infinity)")
    elif expected == OBJECT:
        ok = isinstance(value, Mapping)
    else:
        ok = isinstance(value, (list, tuple))
    if not ok:
        raise InvalidFieldTypeError(field, value, _EXPECTED_WORDS[expected])


def serialize(body: Mapping[str, Any], max_bytes: int) -> str:
    """Return ``body`` as compact JSON, or raise if it is not JSON or too large."""
    try:
        text = _ENCODER.encode(body)
    except (TypeError, ValueError) as error:
        raise InvalidEventError("event", body.get("eventType"), f"must be JSON-serialisable: {error}") from error

    size = len(text.encode("utf-8"))
    if size > max_bytes:
        rule = f"is {size} bytes as JSON, over max_event_bytes={max_bytes}; send less data or raise the setting"
        raise InvalidEventError("event", size, rule)

    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_flat_mapping(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidFieldTypeError(field, value, "an object (a dict with string keys)")

    for key in value:
        if not isinstance(key, str):
            raise InvalidFieldTypeError(f"{field} key", key, "a string")

    return dict(value)


def _check_param_value(spec: EventSpec, key: str, value: Any) -> None:
    field = f'params["{key}"]'
    expected = spec.param_type(key)
    if expected is None:
        if isinstance(value, str) or isinstance(value, bool):
            return
        if _is_number(value):
            check_type(field, value, NUMBER)
            return
        raise InvalidFieldTypeError(field, value, "a string, number or boolean")

    check_type(field, value, expected)
    if key in ("statesStart", "statesEnd"):
        _check_state_list(field, value)
    elif key == "visitor.customerIDs":
        _check_customer_ids(field, value)


def _check_state_list(field: str, states: Any) -> None:
    for index, state in enumerate(states):
        item = f"{field}[{index}]"
        if not isinstance(state, Mapping) or set(state) != {"media.state.name"}:
            raise InvalidEventError(item, state, 'must be an object {"media.state.name": "<name>"}')
        check_type(f'{item}["media.state.name"]', state["media.state.name"], STRING)


def _check_customer_ids(field: str, customer_ids: Mapping[str, Any]) -> None:
    for id_type, entry in customer_ids.items():
        item = f'{field}["{id_type}"]'
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            raise InvalidEventError(item, "<hidden>", 'must be an object with a string "id"')
        if entry.get("authState", 0) not in (0, 1, 2) or isinstance(entry.get("authState"), bool):
            raise InvalidEventError(f'{item}["authState"]', entry.get("authState"), "must be 0, 1 or 2")
