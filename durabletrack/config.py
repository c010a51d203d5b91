"""Tracker configuration: one frozen, validated value object."""

from __future__ import annotations

import enum
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .retry import RetryPolicy


class Durability(str, enum.Enum):
    """How much a committed event survives.

    POWER_LOSS: survives a power cut (SQLite ``synchronous=FULL``: one fsync
        per commit). The default.
    PROCESS_CRASH: survives ``kill -9`` of the process but not a power cut
        (``synchronous=NORMAL`` in WAL mode: no fsync per commit).
    """

    POWER_LOSS = "power_loss"
    PROCESS_CRASH = "process_crash"

    @property
    def synchronous(self) -> str:
        """The SQLite ``synchronous`` pragma value for this level."""
        return "FULL" if self is Durability.POWER_LOSS else "NORMAL"


DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_EVENT_BYTES = 32 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_SENDER_THREADS = 4
DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_MAX_QUEUED_EVENTS = 200_000
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_EVENT_AGE = 30 * 24 * 3600.0
# The collector closes a session after 24 hours; Adobe's SDKs restart theirs then.
DEFAULT_MAX_SESSION_AGE = 24 * 3600.0
# NOTE: the collector's size limit for a downloaded batch is not published;
# larger finished sessions are delivered live instead.
DEFAULT_MAX_BATCH_BYTES = 60 * 1024


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Settings of a :class:`~durabletrack.Tracker`. Times are in seconds.

    Attributes:
        endpoint: Base URI of the collector, such as
            ``https://<namespace>.hb-api.omtrdc.net``. Must be ``https://``
            unless the host is loopback or ``allow_insecure_http`` is set.
        data_dir: Directory of the local store. Created with mode 0700.
        durability: :class:`Durability` of each committed event.
        request_timeout: Connect and read timeout of one request. A slow
            session occupies a sender thread for at most this long per attempt.
        retry: :class:`~durabletrack.retry.RetryPolicy` between attempts.
        allow_insecure_http: Allow ``http://`` to a non-loopback host.
        ca_bundle: Path of a CA bundle to verify TLS with, or None for the
            system default. Verification is never turned off.
        max_event_bytes: Largest event accepted by ``track()``, as JSON.
        max_response_bytes: Most bytes read from a response body.
        sender_threads: Sessions delivered at once, each with one request in
            flight at most.
        poll_interval: How often the worker looks for sessions written by
            other processes and retries taking the drain lock.
        max_queued_events: Ceiling on events waiting in the store. At the
            ceiling pings are shed, then ``track()`` raises ``QueueFullError``.
        max_queued_bytes: The same ceiling on their total JSON size, in bytes.
        max_event_age: Events waiting longer than this many seconds go to dead
            letters as ``expired`` instead of being sent. None keeps them.
        max_session_age: A server session older than this many seconds is
            continued in a resumed one before the next event.
        offline_upload: Send a session that never got a session ID as one
            ``POST /api/v1/downloaded`` batch once it is finished (sessionEnd
            or sessionComplete tracked) or older than ``offline_after``.
        offline_after: Age in seconds after which an unfinished session without
            a session ID is uploaded as a batch; None waits for it to finish.
        max_batch_bytes: Largest batch body; a larger session goes live.
        logger: An application's structlog logger, or None for the library's
            quiet default.
    """

    endpoint: str
    data_dir: Path
    durability: Durability = Durability.POWER_LOSS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_insecure_http: bool = False
    ca_bundle: str | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    sender_threads: int = DEFAULT_SENDER_THREADS
    poll_interval: float = DEFAULT_POLL_INTERVAL
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    max_event_age: float | None = DEFAULT_MAX_EVENT_AGE
    max_session_age: float = DEFAULT_MAX_SESSION_AGE
    offline_upload: bool = False
    offline_after: float | None = None
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    logger: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", _check_endpoint(self.endpoint, self.allow_insecure_http))
        object.__setattr__(self, "data_dir", _check_data_dir(self.data_dir))
        object.__setattr__(self, "durability", _check_durability(self.durability))
        _check_positive("request_timeout", self.request_timeout)
        _check_positive("poll_interval", self.poll_interval)
        _check_count("max_event_bytes", self.max_event_bytes, minimum=256)
        _check_count("max_response_bytes", self.max_response_bytes, minimum=1024)
        _check_count("sender_threads", self.sender_threads, minimum=1)
        _check_count("max_queued_events", self.max_queued_events, minimum=1)
        _check_count("max_queued_bytes", self.max_queued_bytes, minimum=self.max_event_bytes)
        _check_count("max_batch_bytes", self.max_batch_bytes, minimum=1024)
        _check_positive("max_session_age", self.max_session_age)
        if self.max_event_age is not None:
            _check_positive("max_event_age", self.max_event_age)
        if self.offline_after is not None:
            _check_positive("offline_after", self.offline_after)
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry", self.retry, "must be a RetryPolicy")
        if self.ca_bundle is not None and not os.path.exists(self.ca_bundle):
            raise ConfigError("ca_bundle", self.ca_bundle, "file not found")


def is_loopback_host(host: str | None) -> bool:
    """Return True for ``localhost`` and loopback IP addresses."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(endpoint: Any, allow_insecure_http: bool) -> str:
    if not isinstance(endpoint, str):
        raise ConfigError("endpoint", endpoint, "must be a URL string")

    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("endpoint", endpoint, "must be an https:// URL with a host")
    if parts.query or parts.fragment:
        raise ConfigError("endpoint", endpoint, "must not carry a query or fragment")
    if parts.scheme == "http" and not (allow_insecure_http or is_loopback_host(parts.hostname)):
        raise ConfigError(
            "endpoint",
            endpoint,
            "plain http:// is allowed only for loopback hosts; use https:// or pass allow_insecure_http=True",
        )

    return endpoint.rstrip("/")


def _check_data_dir(data_dir: Any) -> Path:
    if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir):
        raise ConfigError("data_dir", data_dir, "must be a directory path")

    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError("data_dir", data_dir, "exists and is not a directory; pass a directory path")

    return path


def _check_durability(durability: Any) -> Durability:
    try:
        return Durability(durability)
    except ValueError:
        choices = ", ".join(repr(level.value) for level in Durability)
        raise ConfigError("durability", durability, f"must be one of {choices}") from None


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(name, value, "must be a number of seconds > 0")


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")
