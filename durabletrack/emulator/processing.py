"""Collection API semantics: turn a decoded POST body into a reply and records.

Nothing here touches sockets. The request handler reads the body, calls
:func:`process_post` and writes the :class:`Reply` it returns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from durabletrack.emulator.faults import DOWNLOADED, EVENTS, SESSIONS
from durabletrack.emulator.records import Delivery, Journal, Rejection
from durabletrack.emulator.state import EventOutcome, SessionTable
from durabletrack.emulator.validation import (
    SchemaViolation,
    validate_batch,
    validate_session_event,
    validate_session_start,
)

logger = logging.getLogger(__name__)

SESSION_PATH_PREFIX = "/api/v1/sessions/"

# CORS headers of the collection API, which let browser players read Location.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS,POST,PUT",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Expose-Headers": "Location",
}


@dataclass
class Reply:
    """An HTTP answer to write: status, extra headers and body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Request:
    """The parts of a POST that processing needs."""

    seq: int
    method: str
    path: str
    kind: str
    sid: str | None
    raw_body: bytes


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """Build a reply with a JSON body."""
    data = json.dumps(body, sort_keys=True).encode("utf-8")
    return Reply(status, dict(headers or {}), data, "application/json")


def reject(
    journal: Journal,
    request: Request,
    status: int,
    reason: str,
    detail: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Reply:
    """Record a rejection and build its JSON reply, whose ``error`` is ``reason``."""
    body = {"error": reason, **detail}
    logger.debug("request_rejected seq=%d status=%d reason=%s path=%s", request.seq, status, reason, request.path)
    journal.add_rejection(Rejection(request.seq, request.method, request.path, status, reason, body))
    return json_reply(status, body, {**CORS_HEADERS, **(headers or {})})


def process_post(journal: Journal, sessions: SessionTable, request: Request) -> Reply:
    """Validate and apply one POST to a collection API path.

    Returns:
        201 with ``Location`` for a new session, 204 for an event, or the
        error reply (400, 404, 410) that was also recorded as a rejection.
    """
    try:
        body = decode_json(request.raw_body)
    except ValueError as error:
        return reject(journal, request, 400, "invalid_json", {"detail": str(error)})

    try:
        if request.kind == EVENTS:
            return _add_event(journal, sessions, request, body)
        if request.kind == DOWNLOADED or isinstance(body, list):
            return _create_offline_session(journal, sessions, request, body)
        return _create_live_session(journal, sessions, request, body)
    except SchemaViolation as violation:
        return reject(journal, request, 400, "schema_violation", _detail_of(violation))


def decode_json(raw_body: bytes) -> Any:
    """Decode a UTF-8 JSON body. NaN and Infinity are invalid JSON here, as in the standard."""
    text = raw_body.decode("utf-8")
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _detail_of(violation: SchemaViolation) -> dict[str, Any]:
    body = violation.to_body()
    del body["error"]
    return body


def _create_live_session(journal: Journal, sessions: SessionTable, request: Request, body: Any) -> Reply:
    validate_session_start(body)

    sid = sessions.create(body)
    journal.add_delivery(Delivery(request.seq, sid, request.kind, body))
    return _created(sid)


def _create_offline_session(journal: Journal, sessions: SessionTable, request: Request, body: Any) -> Reply:
    # The deprecated offline form is an array on /sessions with
    # media.downloaded true; /downloaded does not need the flag.
    validate_batch(body, require_downloaded_flag=request.kind == SESSIONS)

    sid = sessions.create(body[0], body[1:], downloaded=True)
    journal.add_delivery(Delivery(request.seq, sid, request.kind, body))
    return _created(sid)


def _created(sid: str) -> Reply:
    # NOTE: Adobe does not document a Location on /downloaded. The emulator
    # sends one on every 201 so tests can look the batch session up.
    headers = {**CORS_HEADERS, "Location": SESSION_PATH_PREFIX + sid}
    return Reply(201, headers)


def _add_event(journal: Journal, sessions: SessionTable, request: Request, body: Any) -> Reply:
    validate_session_event(body)

    assert request.sid is not None
    outcome, closed_reason = sessions.add_event(request.sid, body)
    if outcome is EventOutcome.UNKNOWN_SESSION:
        return reject(journal, request, 404, "unknown_session", {"sid": request.sid})
    if outcome is EventOutcome.SESSION_CLOSED:
        return reject(journal, request, 410, "session_closed", {"sid": request.sid, "closedReason": closed_reason})

    journal.add_delivery(Delivery(request.seq, request.sid, request.kind, body))
    return Reply(204, dict(CORS_HEADERS))
