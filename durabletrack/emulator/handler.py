"""HTTP request handler: header checks, faults on the wire, and replies.

The handler speaks HTTP/1.1 with keep-alive. It checks the headers of a POST,
gets a decision from the fault decider, reads the body, and then either
responds through :mod:`.processing` or misbehaves as the fault decision
sets: it resets the connection, keeps it open without a response, or sends an
error status.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from durabletrack.emulator.faults import (
    API_KINDS,
    BLACKHOLE,
    CAPTIVE_PORTAL,
    LOST_RESPONSE,
    RESET,
    Answer,
    Decision,
    FaultDecider,
)
from durabletrack.emulator.processing import CORS_HEADERS, Reply, Request, json_reply, process_post, reject
from durabletrack.emulator.records import Journal
from durabletrack.emulator.routes import INSPECT, UNKNOWN, Route, parse_route
from durabletrack.emulator.schemas import known_event_types, schema_for
from durabletrack.emulator.state import SessionTable

logger = logging.getLogger(__name__)

# A keep-alive connection with no request for this long is closed.
IDLE_CONNECTION_TIMEOUT_S = 120.0

# How often a black-holed request checks for stop() or a closed client.
BLACKHOLE_POLL_S = 0.05

# After a 413, at most this much of the unread body is drained so that the
# client can read the 413 response instead of getting a reset.
MAX_DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_TIMEOUT_S = 2.0

CAPTIVE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head>"
    b"<body><h1>Welcome</h1><p>Accept the terms of use to get online.</p></body></html>\n"
)


@dataclass
class HandlerContext:
    """Shared state that every request handler of one emulator uses."""

    journal: Journal
    sessions: SessionTable
    decider: FaultDecider
    stopping: threading.Event
    max_body_bytes: int
    inspect: Callable[[str], Any]
    notify: Callable[[], None]


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Handle one connection's requests as the Media Collection API does."""

    protocol_version = "HTTP/1.1"
    server_version = "durabletrack-emulator"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # Headers and body go out in separate writes. Without TCP_NODELAY the
    # second write waits for a delayed ACK, about 40 ms on Linux.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("emulator_http " + format, *args)

    @property
    def context(self) -> HandlerContext:
        # The server class sets ``context``; the stdlib type of self.server does not declare it.
        return cast(HandlerContext, getattr(self.server, "context"))  # noqa: B009

    def _dispatch(self, method: str) -> None:
        route = parse_route(self.path)
        if route.kind == INSPECT:
            self._serve_inspection(method, route)
            return

        seq = self.context.journal.next_seq()
        try:
            self._handle(seq, method, route)
        except Exception:
            # A bug in the emulator must not leave the client waiting forever.
            logger.exception("emulator_request_failed seq=%d method=%s path=%s", seq, method, route.path)
            self._send(json_reply(500, {"error": "emulator_internal_error"}), close=True)
        finally:
            self.context.notify()

    def _handle(self, seq: int, method: str, route: Route) -> None:
        if self.context.decider.note_captive(seq, route.kind):
            self._discard_body()
            self._send(Reply(200, {}, CAPTIVE_PAGE, "text/html; charset=utf-8"))
            return

        if route.kind in API_KINDS and method == "POST":
            self._handle_post(seq, method, route)
        else:
            self._handle_other(seq, method, route)

    def _handle_post(self, seq: int, method: str, route: Route) -> None:
        request = Request(seq, method, route.path, route.kind, route.argument, b"")
        length = self._check_post_headers(request)
        if length is None:
            return

        decision = self.context.decider.decide(seq, route.kind)
        raw_body = self._read_body(length)
        if raw_body is None:
            return

        request = Request(seq, method, route.path, route.kind, route.argument, raw_body)
        self._answer_post(request, decision)

    def _check_post_headers(self, request: Request) -> int | None:
        """Return the body length, or None after sending an error response."""
        journal = self.context.journal
        detail: dict[str, Any]
        if self.headers.get("Transfer-Encoding") is not None:
            detail = {"detail": "chunked bodies are not supported: send Content-Length"}
            self._send(reject(journal, request, 411, "length_required", detail), close=True)
            return None

        length = _content_length(self.headers.get("Content-Length"))
        if length is None:
            detail = {"detail": "Content-Length must be a non-negative integer"}
            self._send(reject(journal, request, 411, "length_required", detail), close=True)
            return None

        if length > self.context.max_body_bytes:
            detail = {"limit": self.context.max_body_bytes, "length": length}
            self._send(reject(journal, request, 413, "body_too_large", detail), close=True)
            self._drain(length)
            return None

        if not _is_json_content_type(self.headers.get("Content-Type")):
            self._read_body(length)
            # The collection API requires application/json. The emulator
            # rejects other types with 415 Unsupported Media Type.
            detail = {
                "detail": "Content-Type must be application/json",
                "contentType": self.headers.get("Content-Type"),
            }
            self._send(reject(journal, request, 415, "unsupported_media_type", detail))
            return None

        return length

    def _answer_post(self, request: Request, decision: Decision) -> None:
        answer = decision.answer
        if not self._wait(decision.latency_s):
            self._reset()
            return

        if answer is not None and answer.action != LOST_RESPONSE and not answer.is_success:
            self._apply_fault(answer)
            return

        reply = process_post(self.context.journal, self.context.sessions, request)
        if answer is not None and answer.action == LOST_RESPONSE:
            # The request was processed and recorded; only the answer is lost.
            self._reset()
            return

        if answer is not None and 200 <= reply.status < 300:
            _override_success(reply, answer)
        self._send(reply)

    def _apply_fault(self, answer: Answer) -> None:
        if answer.action == RESET:
            self._reset()
        elif answer.action == BLACKHOLE:
            self._blackhole()
        elif answer.action == CAPTIVE_PORTAL:
            self._send(Reply(200, {}, CAPTIVE_PAGE, "text/html; charset=utf-8"))
        else:
            self._send(self._fault_reply(answer))

    def _fault_reply(self, answer: Answer) -> Reply:
        assert answer.status is not None
        headers = dict(CORS_HEADERS)
        retry_after = answer.retry_after
        if retry_after is None and answer.status == 429:
            retry_after = self.context.decider.faults.retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)

        return json_reply(answer.status, {"error": "injected_fault", "status": answer.status}, headers)

    def _handle_other(self, seq: int, method: str, route: Route) -> None:
        request = Request(seq, method, route.path, route.kind, route.argument, b"")
        journal = self.context.journal
        body_read = self._discard_body()
        if route.kind == UNKNOWN:
            self._send(reject(journal, request, 404, "not_found", {"path": route.path}), close=not body_read)
        elif method not in route.allowed_methods:
            allow = {"Allow": ", ".join(route.allowed_methods)}
            detail = {"method": method, "allowed": list(route.allowed_methods)}
            self._send(reject(journal, request, 405, "method_not_allowed", detail, allow), close=not body_read)
        elif method == "OPTIONS":
            self._send(Reply(204, {**CORS_HEADERS, "Allow": ", ".join(route.allowed_methods)}), close=not body_read)
        else:
            self._serve_schema(request, close=not body_read)

    def _serve_schema(self, request: Request, close: bool) -> None:
        assert request.sid is not None
        try:
            reply = json_reply(200, schema_for(request.sid), CORS_HEADERS)
        except KeyError:
            detail = {"eventType": request.sid, "known": known_event_types()}
            reply = reject(self.context.journal, request, 404, "unknown_event_type", detail)
        self._send(reply, close=close)

    def _serve_inspection(self, method: str, route: Route) -> None:
        # Inspection paths are outside fault injection and request numbering.
        body_read = self._discard_body()
        if method != "GET":
            self._send(json_reply(405, {"error": "method_not_allowed"}, {"Allow": "GET"}), close=not body_read)
            return

        assert route.argument is not None
        self._send(json_reply(200, self.context.inspect(route.argument)), close=not body_read)

    def _send(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    def _read_body(self, length: int) -> bytes | None:
        """Read exactly ``length`` bytes, or return None if the client went away."""
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            return None

        return data

    def _discard_body(self) -> bool:
        """Read and drop a small body. Returns False if the connection must close."""
        if self.headers.get("Transfer-Encoding") is not None:
            return False

        length = _content_length(self.headers.get("Content-Length") or "0")
        if length is None or length > self.context.max_body_bytes:
            return False

        return self._read_body(length) is not None

    def _drain(self, length: int) -> None:
        try:
            self.connection.settimeout(DRAIN_TIMEOUT_S)
            remaining = min(length, MAX_DRAIN_BYTES)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the emulator stops. Returns False if it stopped."""
        if seconds <= 0:
            return not self.context.stopping.is_set()

        return not self.context.stopping.wait(seconds)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send a TCP RST, so the
        # client sees "connection reset by peer" rather than a clean close.
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _blackhole(self) -> None:
        """Hold the connection without a response until the client or the emulator gives up."""
        self.close_connection = True
        while not self.context.stopping.is_set():
            try:
                readable, _, _ = select.select([self.connection], [], [], BLACKHOLE_POLL_S)
                if readable and not self.connection.recv(65536):
                    return
            except (OSError, ValueError):
                return


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None

    return int(value)


def _is_json_content_type(value: str | None) -> bool:
    if value is None:
        return False

    return value.split(";", 1)[0].strip().lower() == "application/json"


def _override_success(reply: Reply, answer: Answer) -> None:
    # A scripted 2xx answer keeps the processing and replaces only the
    # status and, on session replies, the Location header.
    assert answer.status is not None
    reply.status = answer.status
    if "Location" not in reply.headers or not isinstance(answer.location, (str, type(None))):
        return

    if answer.location is None:
        del reply.headers["Location"]
    else:
        reply.headers["Location"] = answer.location
