"""Map request paths to the emulator's path kinds and their allowed methods."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from durabletrack.emulator.faults import DOWNLOADED, EVENTS, SESSIONS

SCHEMAS = "schemas"
INSPECT = "inspect"
UNKNOWN = "unknown"

_EVENTS_PATH = re.compile(r"^/api/v1/sessions/([^/]+)/events$")
_SCHEMA_PATH = re.compile(r"^/api/v1/schemas/([^/]+)$")
_INSPECT_PATH = re.compile(r"^/_emulator/(sessions|accepted|rejected|faults)$")

ALLOWED_METHODS = {
    SESSIONS: ("OPTIONS", "POST"),
    EVENTS: ("OPTIONS", "POST"),
    DOWNLOADED: ("OPTIONS", "POST"),
    SCHEMAS: ("GET", "OPTIONS"),
    INSPECT: ("GET",),
}


@dataclass(frozen=True)
class Route:
    """A parsed request path.

    Attributes:
        kind: ``"sessions"``, ``"events"``, ``"downloaded"``, ``"schemas"``,
            ``"inspect"`` or ``"unknown"``.
        path: The path without the query string.
        argument: The session ID, schema event type or inspection record
            name taken from the path, or None.
    """

    kind: str
    path: str
    argument: str | None = None

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return ALLOWED_METHODS.get(self.kind, ())


def parse_route(target: str) -> Route:
    """Parse a request target such as ``/api/v1/sessions/<sid>/events?x=1``."""
    path = urlsplit(target).path
    if path == "/api/v1/sessions":
        return Route(SESSIONS, path)
    if path == "/api/v1/downloaded":
        return Route(DOWNLOADED, path)

    for kind, pattern in ((EVENTS, _EVENTS_PATH), (SCHEMAS, _SCHEMA_PATH), (INSPECT, _INSPECT_PATH)):
        match = pattern.match(path)
        if match:
            return Route(kind, path, match.group(1))

    return Route(UNKNOWN, path)
