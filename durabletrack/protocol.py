"""Collection API client: one request per call, outcome classified in one place.

The worker gets only :class:`Result` values. Which status code means deliver,
retry, dead-letter or resume is decided here and nowhere else, so another
collector protocol can be added as another client with the same three calls.
"""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .retry import parse_retry_after

# Group 1 of the path is the API version, group 2 the session ID. Adobe's own
# clients match the ``Location`` value this way; the path part of an absolute
# URL matches too.
_SESSION_PATH = re.compile(r"^/api/([^/]+)/sessions/([^/?#]+)/?$")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 501, 502, 503, 504})
SESSION_GONE_STATUSES = frozenset({404, 410})
REJECTED_STATUSES = frozenset({400, 413})

JSON_HEADERS = {"Content-Type": "application/json"}


class Verdict(enum.Enum):
    """Action the worker takes on the item after a request."""

    ACCEPTED = "accepted"  # ack it
    RETRY = "retry"  # keep it at the head and try again after a wait
    REJECTED = "rejected"  # move it to dead letters
    SESSION_GONE = "session_gone"  # the server forgot the session: resume it
    MISCONFIGURED = "misconfigured"  # the endpoint refuses everything: long wait


@dataclass(frozen=True)
class Result:
    """Outcome of one request.

    Attributes:
        verdict: What to do with the item.
        status: HTTP status, or None when no response arrived.
        reason: Short machine-readable cause, such as ``status_503`` or ``timeout``.
        detail: Response body (cut to the size limit) or error text.
        session_id: Session ID from a successful session creation.
        retry_after: Seconds from ``Retry-After``, if the response had one.
    """

    verdict: Verdict
    status: int | None
    reason: str
    detail: str = ""
    session_id: str | None = None
    retry_after: float | None = None


def session_id_from_location(location: str | None) -> str | None:
    """Extract the session ID from a relative or absolute ``Location`` value."""
    if not location:
        return None

    match = _SESSION_PATH.match(urlsplit(location.strip()).path)

    return match.group(2) if match else None


def classify(
    status: int,
    headers: Any,
    body: str,
    *,
    expects_session: bool,
) -> Result:
    """Map a response to a :class:`Result`.

    Args:
        status: HTTP status code.
        headers: Response headers (case-insensitive mapping).
        body: Response body, already cut to the size limit.
        expects_session: True for session creation, where only 201 with a
            usable ``Location`` counts as delivered.
    """
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if 200 <= status < 300:
        return _classify_success(status, headers, body, expects_session)
    if status in RETRYABLE_STATUSES:
        return Result(Verdict.RETRY, status, f"status_{status}", body, retry_after=retry_after)
    if 300 <= status < 400:
        # A redirect is what a captive portal or a wrong base URI sends: not a delivery.
        return Result(Verdict.RETRY, status, "redirect", headers.get("Location", ""))
    if status in REJECTED_STATUSES:
        return Result(Verdict.REJECTED, status, f"status_{status}", body)
    if status in SESSION_GONE_STATUSES and not expects_session:
        return Result(Verdict.SESSION_GONE, status, f"status_{status}", body)

    return Result(Verdict.MISCONFIGURED, status, f"status_{status}", body, retry_after=retry_after)


def _classify_success(status: int, headers: Any, body: str, expects_session: bool) -> Result:
    content_type = headers.get("Content-Type", "")
    if "html" in content_type.lower() or body.lstrip().startswith("<"):
        # A 2xx with an HTML page is a captive portal or proxy, never the collector.
        return Result(Verdict.RETRY, status, "html_response", body)
    if not expects_session:
        return Result(Verdict.ACCEPTED, status, "accepted")

    session_id = session_id_from_location(headers.get("Location"))
    if status != 201 or session_id is None:
        return Result(Verdict.RETRY, status, "no_session_location", headers.get("Location", ""))

    return Result(Verdict.ACCEPTED, status, "accepted", session_id=session_id)


class CollectionApiClient:
    """Sends requests to a Media Collection API endpoint.

    Each thread gets its own ``requests.Session`` (connection pool). Adapter
    retries and redirects are off: the worker is the only retry layer, and a
    redirect is not a delivery. TLS certificates are always verified.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float,
        ca_bundle: str | None = None,
        max_response_bytes: int = 64 * 1024,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._timeout = timeout
        self._verify: bool | str = ca_bundle or True
        self._max_response_bytes = max_response_bytes
        self._local = threading.local()

    def create_session(self, body: str) -> Result:
        """POST a sessionStart body (JSON text) to ``/api/v1/sessions``."""
        return self._post("/api/v1/sessions", body, expects_session=True)

    def send_event(self, session_id: str, body: str) -> Result:
        """POST one event body (JSON text) to ``/api/v1/sessions/{sid}/events``."""
        return self._post(f"/api/v1/sessions/{session_id}/events", body, expects_session=False)

    def send_batch(self, bodies: Sequence[str]) -> Result:
        """POST a whole offline session as one JSON array to ``/api/v1/downloaded``."""
        return self._post("/api/v1/downloaded", "[" + ",".join(bodies) + "]", expects_session=False)

    def close(self) -> None:
        """Close this thread's connection pool."""
        http = getattr(self._local, "http", None)
        if http is not None:
            http.close()
            self._local.http = None

    def _http(self) -> requests.Session:
        http = getattr(self._local, "http", None)
        if http is None:
            http = requests.Session()
            adapter = HTTPAdapter(max_retries=0)
            http.mount("https://", adapter)
            http.mount("http://", adapter)
            self._local.http = http

        return http

    def _post(self, path: str, body: str, *, expects_session: bool) -> Result:
        try:
            response = self._http().post(
                self._endpoint + path,
                data=body.encode("utf-8"),
                headers=JSON_HEADERS,
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as error:
            return Result(Verdict.RETRY, None, "timeout", str(error))
        except requests.exceptions.SSLError as error:
            return Result(Verdict.MISCONFIGURED, None, "tls_error", str(error))
        except requests.RequestException as error:
            return Result(Verdict.RETRY, None, "connection_error", str(error))

        try:
            text = self._read_body(response)
        except requests.RequestException as error:
            return Result(Verdict.RETRY, response.status_code, "read_error", str(error))
        finally:
            response.close()

        return classify(response.status_code, response.headers, text, expects_session=expects_session)

    def _read_body(self, response: requests.Response) -> str:
        # Reading through iter_content lets requests mark a fully read body as
        # consumed, so close() returns the connection to the pool for keep-alive.
        # A body over the limit is cut, and close() then drops the connection.
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_response_bytes:
                break

        return b"".join(chunks)[: self._max_response_bytes].decode("utf-8", errors="replace")
