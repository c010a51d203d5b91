"""What the emulator accepted and rejected, numbered in request-arrival order."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Delivery:
    """One accepted request body.

    Attributes:
        seq: Request number, counted from 1 over every request except the
            ``/_emulator`` inspection paths.
        sid: The session the body created or was added to.
        kind: ``"sessions"``, ``"events"`` or ``"downloaded"``: the path kind.
        body: The decoded JSON body (an object, or the array of a batch).
    """

    seq: int
    sid: str
    kind: str
    body: Any


@dataclass(frozen=True)
class Rejection:
    """One request the emulator answered with an error status of its own.

    Injected faults are not rejections; they are in the fault log.

    Attributes:
        seq: Request number, as in :class:`Delivery`.
        method: HTTP method.
        path: Request path.
        status: The status sent, such as 400, 404 or 410.
        reason: Short machine string, such as ``"schema_violation"``.
        detail: The JSON error body sent, or a message.
    """

    seq: int
    method: str
    path: str
    status: int
    reason: str
    detail: dict[str, Any] | str


class Journal:
    """Thread-safe request counter and lists of deliveries and rejections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._deliveries: list[Delivery] = []
        self._rejections: list[Rejection] = []

    def next_seq(self) -> int:
        """Number a newly arrived request."""
        with self._lock:
            self._seq += 1
            return self._seq

    def requests_seen(self) -> int:
        with self._lock:
            return self._seq

    def add_delivery(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def add_rejection(self, rejection: Rejection) -> None:
        with self._lock:
            self._rejections.append(rejection)

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return copy.deepcopy(self._deliveries)

    def rejections(self) -> list[Rejection]:
        with self._lock:
            return copy.deepcopy(self._rejections)

    def clear(self) -> None:
        """Forget all records and restart the request count from 1."""
        with self._lock:
            self._seq = 0
            self._deliveries.clear()
            self._rejections.clear()
