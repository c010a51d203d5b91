"""Draft-04 JSON Schemas derived from the event table, served at ``/api/v1/schemas/{eventType}``.

The served schema describes the same rules :mod:`.validation` enforces, but
the validator is the authority: the schema does not express the rule that
``statesUpdate`` needs one of its two lists.
"""

from __future__ import annotations

from typing import Any

from durabletrack.eventtypes import CUSTOM_METADATA_KEY, EVENT_SPECS, EVENT_TYPES, QOE_TYPES, EventSpec

DRAFT_04 = "http://json-schema.org/draft-04/schema#"


def schema_for(event_type: str) -> dict[str, Any]:
    """Return the JSON Schema of one event type. Raises KeyError if unknown."""
    spec = EVENT_SPECS[event_type]
    required = ["eventType", "playerTime"]
    properties: dict[str, Any] = {
        "eventType": {"type": "string", "enum": [event_type]},
        "playerTime": _player_time_schema(),
        "qoeData": _qoe_schema(),
        "customMetadata": _custom_metadata_schema(),
    }
    if spec.allows_params:
        properties["params"] = _params_schema(spec)
    if spec.required:
        required.append("params")

    return {
        "$schema": DRAFT_04,
        "title": event_type,
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def known_event_types() -> list[str]:
    return sorted(EVENT_TYPES)


def _player_time_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["playhead", "ts"],
        "properties": {"playhead": {"type": "number"}, "ts": {"type": "integer"}},
        "additionalProperties": False,
    }


def _qoe_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": tag} for key, tag in QOE_TYPES.items()},
        "additionalProperties": False,
    }


def _custom_metadata_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "patternProperties": {CUSTOM_METADATA_KEY.pattern: {"type": "string"}},
        "additionalProperties": False,
    }


def _params_schema(spec: EventSpec) -> dict[str, Any]:
    known = {**spec.optional, **spec.required}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {key: {"type": tag} for key, tag in known.items()},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    }
    if spec.required:
        schema["required"] = sorted(spec.required)

    return schema
