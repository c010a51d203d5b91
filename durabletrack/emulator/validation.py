"""Server-side schema checks of event bodies, as the collection API applies them.

The per-type rules come from :mod:`durabletrack.eventtypes`. On top of them
the server is stricter: unknown top-level and ``qoeData`` keys are rejected,
``playerTime`` allows exactly ``playhead`` and ``ts``, ``statesUpdate`` needs
a ``statesStart`` or ``statesEnd`` list, and unknown parameter values must be
JSON scalars. Cross-event mistakes, such as an ad outside a break, pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from durabletrack.eventtypes import (
    ARRAY,
    BOOLEAN,
    CUSTOM_METADATA_KEY,
    EVENT_SPECS,
    EVENT_TYPES,
    INTEGER,
    NUMBER,
    OBJECT,
    QOE_TYPES,
    SESSION_START,
    STRING,
    TOP_LEVEL_KEYS,
    EventSpec,
)

PLAYER_TIME_KEYS = frozenset({"playhead", "ts"})
STATES_UPDATE = "statesUpdate"
STATE_LIST_KEYS = ("statesStart", "statesEnd")
STATE_NAME = "media.state.name"
CUSTOMER_IDS = "visitor.customerIDs"
AUTH_STATES = (0, 1, 2)

_TYPE_RULES = {
    STRING: "must be a string",
    NUMBER: "must be a number",
    INTEGER: "must be an integer",
    BOOLEAN: "must be a boolean",
    OBJECT: "must be an object",
    ARRAY: "must be an array",
}


class SchemaViolation(ValueError):
    """An event body breaks a schema rule.

    Attributes:
        path: Dotted path of the offending value, such as
            ``"params.media.length"``, or ``""`` for the whole body.
        rule: The rule it breaks, such as ``"must be a number"``.
        event_type: The body's ``eventType`` if it was readable.
        index: Position of the event in a batch, or None for a single body.
    """

    def __init__(self, path: str, rule: str, event_type: str | None = None, index: int | None = None):
        super().__init__(f"{path or 'body'} {rule}")
        self.path = path
        self.rule = rule
        self.event_type = event_type
        self.index = index

    def to_body(self) -> dict[str, Any]:
        """Return the JSON error body the emulator sends with the 400."""
        body: dict[str, Any] = {"error": "schema_violation", "path": self.path, "rule": self.rule}
        if self.event_type is not None:
            body["eventType"] = self.event_type
        if self.index is not None:
            body["index"] = self.index

        return body


def is_of_type(value: object, type_tag: str) -> bool:
    """Return True if a decoded JSON value matches a type tag of the event table.

    ``bool`` matches only ``"boolean"``, although Python treats it as an int.
    """
    if isinstance(value, bool):
        return type_tag == BOOLEAN
    if type_tag == NUMBER:
        return isinstance(value, (int, float))
    if type_tag == INTEGER:
        return isinstance(value, int)

    expected = {STRING: str, OBJECT: dict, ARRAY: list}.get(type_tag)
    return expected is not None and isinstance(value, expected)


def validate_event(body: object) -> str:
    """Check one event body against the schema of its ``eventType``.

    Returns:
        The body's ``eventType``.

    Raises:
        SchemaViolation: The first rule the body breaks.
    """
    if not isinstance(body, dict):
        raise SchemaViolation("", "must be a JSON object")

    event_type = _check_event_type(body)
    try:
        _check_top_level_keys(body)
        _check_player_time(body)
        _check_params(body, EVENT_SPECS[event_type])
        _check_qoe_data(body)
        _check_custom_metadata(body)
    except SchemaViolation as violation:
        violation.event_type = event_type
        raise

    return event_type


def _check_event_type(body: Mapping[str, Any]) -> str:
    if "eventType" not in body:
        raise SchemaViolation("eventType", "is required")

    event_type = body["eventType"]
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise SchemaViolation("eventType", "must be one of the event types: " + ", ".join(sorted(EVENT_TYPES)))

    return event_type


def _check_top_level_keys(body: Mapping[str, Any]) -> None:
    for key in body:
        if key not in TOP_LEVEL_KEYS:
            raise SchemaViolation(str(key), "is not an allowed top-level key")


def _check_player_time(body: Mapping[str, Any]) -> None:
    if "playerTime" not in body:
        raise SchemaViolation("playerTime", "is required")

    player_time = body["playerTime"]
    if not isinstance(player_time, dict):
        raise SchemaViolation("playerTime", "must be an object")

    for key in player_time:
        if key not in PLAYER_TIME_KEYS:
            raise SchemaViolation(f"playerTime.{key}", "is not an allowed key")

    _check_typed(player_time, "playhead", NUMBER, "playerTime.playhead")
    _check_typed(player_time, "ts", INTEGER, "playerTime.ts")


def _check_typed(mapping: Mapping[str, Any], key: str, type_tag: str, path: str) -> None:
    if key not in mapping:
        raise SchemaViolation(path, "is required")
    if not is_of_type(mapping[key], type_tag):
        raise SchemaViolation(path, _TYPE_RULES[type_tag])


def _check_params(body: Mapping[str, Any], spec: EventSpec) -> None:
    if "params" not in body:
        if spec.required or spec.name == STATES_UPDATE:
            raise SchemaViolation("params", f"is required for eventType {spec.name}")
        return

    if not spec.allows_params:
        raise SchemaViolation("params", f"must not be present on eventType {spec.name}")

    params = body["params"]
    if not isinstance(params, dict):
        raise SchemaViolation("params", "must be an object")

    for key in spec.required:
        if key not in params:
            raise SchemaViolation(f"params.{key}", "is required")

    for key, value in params.items():
        _check_param(spec, key, value)

    if spec.name == STATES_UPDATE and not any(key in params for key in STATE_LIST_KEYS):
        raise SchemaViolation("params", "must contain statesStart or statesEnd")


def _check_param(spec: EventSpec, key: str, value: object) -> None:
    path = f"params.{key}"
    type_tag = spec.param_type(key)
    if type_tag is None:
        if not _is_scalar(value):
            raise SchemaViolation(path, "must be a string, number or boolean")
        return

    if not is_of_type(value, type_tag):
        raise SchemaViolation(path, _TYPE_RULES[type_tag])

    if key in STATE_LIST_KEYS:
        _check_state_list(value, path)
    elif key == CUSTOMER_IDS:
        _check_customer_ids(value, path)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float))


def _check_state_list(states: Any, path: str) -> None:
    for position, state in enumerate(states):
        item_path = f"{path}[{position}]"
        if not isinstance(state, dict):
            raise SchemaViolation(item_path, "must be an object")
        for key in state:
            if key != STATE_NAME:
                raise SchemaViolation(f"{item_path}.{key}", "is not an allowed key")
        _check_typed(state, STATE_NAME, STRING, f"{item_path}.{STATE_NAME}")


def _check_customer_ids(customer_ids: Any, path: str) -> None:
    for id_type, entry in customer_ids.items():
        entry_path = f"{path}.{id_type}"
        if not isinstance(entry, dict):
            raise SchemaViolation(entry_path, "must be an object")
        _check_typed(entry, "id", STRING, f"{entry_path}.id")
        if "authState" in entry and not _is_auth_state(entry["authState"]):
            raise SchemaViolation(f"{entry_path}.authState", "must be 0, 1 or 2")


def _is_auth_state(value: object) -> bool:
    return is_of_type(value, INTEGER) and value in AUTH_STATES


def _check_qoe_data(body: Mapping[str, Any]) -> None:
    if "qoeData" not in body:
        return

    qoe_data = body["qoeData"]
    if not isinstance(qoe_data, dict):
        raise SchemaViolation("qoeData", "must be an object")

    for key, value in qoe_data.items():
        type_tag = QOE_TYPES.get(key)
        if type_tag is None:
            raise SchemaViolation(f"qoeData.{key}", "is not an allowed key")
        if not is_of_type(value, type_tag):
            raise SchemaViolation(f"qoeData.{key}", _TYPE_RULES[type_tag])


def _check_custom_metadata(body: Mapping[str, Any]) -> None:
    if "customMetadata" not in body:
        return

    metadata = body["customMetadata"]
    if not isinstance(metadata, dict):
        raise SchemaViolation("customMetadata", "must be an object")

    for key, value in metadata.items():
        if not CUSTOM_METADATA_KEY.match(key):
            raise SchemaViolation(f"customMetadata.{key}", "key must match ^[a-zA-Z0-9_.]+$")
        if not isinstance(value, str):
            raise SchemaViolation(f"customMetadata.{key}", "must be a string")


def validate_session_start(body: object) -> None:
    """Check a single-object body sent to ``/api/v1/sessions``.

    Raises:
        SchemaViolation: The body is invalid, is not a ``sessionStart``, or
            sets ``media.downloaded: true``, which only the offline forms allow.
    """
    event_type = validate_event(body)
    if event_type != SESSION_START:
        raise SchemaViolation("eventType", "must be sessionStart on /api/v1/sessions", event_type)

    assert isinstance(body, dict)
    if body["params"].get("media.downloaded") is True:
        raise SchemaViolation(
            "params.media.downloaded",
            "must not be true on a live session: send offline sessions to /api/v1/downloaded",
            event_type,
        )


def validate_session_event(body: object) -> str:
    """Check a body sent to ``/api/v1/sessions/{sid}/events`` and return its type."""
    event_type = validate_event(body)
    if event_type == SESSION_START:
        raise SchemaViolation(
            "eventType", "must not be sessionStart on an events path: POST it to /api/v1/sessions", event_type
        )

    return event_type


def validate_batch(body: object, *, require_downloaded_flag: bool) -> None:
    """Check an offline batch: a non-empty array whose first event is ``sessionStart``.

    Args:
        body: The decoded request body.
        require_downloaded_flag: True for the deprecated array form on
            ``/api/v1/sessions``, which needs ``media.downloaded: true``.

    Raises:
        SchemaViolation: The first rule broken, with ``index`` set to the
            position of the offending event.
    """
    if not isinstance(body, list) or not body:
        raise SchemaViolation("", "must be a non-empty JSON array of events")

    for index, event in enumerate(body):
        _check_batch_event(event, index)

    start = body[0]
    if require_downloaded_flag and start["params"].get("media.downloaded") is not True:
        raise SchemaViolation(
            "params.media.downloaded",
            "must be true for an array on /api/v1/sessions: send a single sessionStart object for a live session",
            SESSION_START,
            0,
        )


def _check_batch_event(event: object, index: int) -> None:
    try:
        event_type = validate_event(event)
    except SchemaViolation as violation:
        violation.index = index
        raise

    if index == 0 and event_type != SESSION_START:
        raise SchemaViolation("eventType", "must be sessionStart on the first event of a batch", event_type, index)
    if index > 0 and event_type == SESSION_START:
        raise SchemaViolation(
            "eventType", "must not be sessionStart after the first event: one array is one session", event_type, index
        )
