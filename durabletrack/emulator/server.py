"""The :class:`Emulator`: a loopback HTTP server that acts as the collection API."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from durabletrack.config import is_loopback_host
from durabletrack.emulator.faults import FaultDecider, Faults
from durabletrack.emulator.handler import EmulatorRequestHandler, HandlerContext
from durabletrack.emulator.records import Delivery, Journal, Rejection
from durabletrack.emulator.state import Clock, ExpiryPolicy, SessionRecord, SessionTable

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 64 * 1024

# Upper bound on how long wait_for() sleeps between two predicate checks, so
# that changes not signalled by a request, such as expiry, are still seen.
WAIT_POLL_S = 0.05

# How often serve_forever() checks for shutdown(); this bounds stop() latency.
SERVE_POLL_S = 0.05


class _Server(ThreadingHTTPServer):
    """Threading server that tracks open connections so stop() can close them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: HandlerContext) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection, which wakes handlers blocked on reads."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-answer are normal under fault injection.
        logger.debug("emulator_connection_error client=%s", client_address, exc_info=True)


class Emulator:
    """A Media Collection API emulator on a loopback port, with fault injection.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. The
    server accepts connections when :meth:`start` returns. All methods are
    thread-safe, and every record method returns a copy.

    Args:
        faults: Failure settings; ``Faults()`` (no faults) by default.
        expiry: Session expiry times; the collection API's by default.
        max_body_bytes: Largest accepted request body; larger ones get 413.
        host: Address to bind; must be a loopback address unless
            ``allow_remote`` is True.
        port: TCP port; 0 picks a free one (see :attr:`url`).
        clock: Monotonic time source in seconds used for expiry.
        allow_remote: Allow a non-loopback ``host``.

    Raises:
        ValueError: ``host`` is not loopback, or ``max_body_bytes`` < 1.
    """

    def __init__(
        self,
        faults: Faults | None = None,
        expiry: ExpiryPolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        clock: Clock = time.monotonic,
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"host={host!r} is not a loopback address: use 127.0.0.1, ::1 or localhost, or pass allow_remote=True"
            )
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes!r} is invalid: use an int >= 1")

        self._address = (host, port)
        self._journal = Journal()
        self._sessions = SessionTable(expiry or ExpiryPolicy(), clock)
        self._decider = FaultDecider(faults or Faults())
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._context = HandlerContext(
            self._journal, self._sessions, self._decider, self._stopping, max_body_bytes, self._inspect, self._notify
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. Raises RuntimeError if already started."""
        if self._server is not None:
            raise RuntimeError("Emulator.start() was already called: create a new Emulator")

        self._server = _Server(self._address, self._context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_S},
            name="durabletrack-emulator",
            daemon=True,
        )
        self._thread.start()

        logger.info("emulator_started url=%s", self.url)

    def stop(self) -> None:
        """Stop serving and close open connections. Idempotent.

        Latency waits and black-holed requests end at once, without a response.
        """
        if self._server is None or self._stopping.is_set():
            return

        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._notify()

        logger.info("emulator_stopped requests=%d", self.requests_seen())

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:8080``. Raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("Emulator.url is unknown before start()")

        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if ":" in host:
            host = f"[{host}]"

        return f"http://{host}:{port}"

    @property
    def faults(self) -> Faults:
        """The current fault settings."""
        return self._decider.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings and restart the script. A new seed reseeds draws."""
        self._decider.set_faults(faults)

    def update_faults(self, **changes: Any) -> Faults:
        """Change some fault settings, as ``dataclasses.replace`` does, and return the result.

        The script keeps its position unless ``script`` is among the changes.
        """
        faults = dataclasses.replace(self._decider.faults, **changes)
        self._decider.set_faults(faults, restart_script="script" in changes)
        return faults

    def sessions(self) -> list[SessionRecord]:
        """Return all sessions in creation order, with expiry applied."""
        return self._sessions.snapshots()

    def session(self, sid: str) -> SessionRecord:
        """Return one session. Raises KeyError for an unknown session ID."""
        return self._sessions.snapshot(sid)

    def accepted(self) -> list[Delivery]:
        """Return every accepted request body in arrival order."""
        return self._journal.deliveries()

    def rejected(self) -> list[Rejection]:
        """Return every request that got an error status from the emulator's own checks."""
        return self._journal.rejections()

    def fault_log(self) -> list[tuple[int, str, str]]:
        """Return ``(seq, path_kind, fault_name)`` for each injected fault, in decision order."""
        return self._decider.log()

    def fault_counts(self) -> dict[str, int]:
        """Return the number of injected faults by name, such as ``{"lost_response": 2}``."""
        return self._decider.counts()

    def requests_seen(self) -> int:
        """Return the number of requests received, not counting ``/_emulator`` paths."""
        return self._journal.requests_seen()

    def wait_for(self, predicate: Callable[[Emulator], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` is true.

        Args:
            predicate: Called after each request and at least every 50 ms.
            timeout: Seconds to wait at most.

        Returns:
            True once the predicate holds, False at the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True

            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False

            with self._changed:
                self._changed.wait(min(remaining, WAIT_POLL_S))

    def reset_records(self) -> None:
        """Forget sessions, deliveries, rejections and the fault log.

        The request count restarts from 1. Fault settings, the random
        generator and the script position are kept.
        """
        self._sessions.clear()
        self._journal.clear()
        self._decider.clear_log()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _inspect(self, name: str) -> Any:
        if name == "sessions":
            return [dataclasses.asdict(record) for record in self.sessions()]
        if name == "accepted":
            return [dataclasses.asdict(delivery) for delivery in self.accepted()]
        if name == "rejected":
            return [dataclasses.asdict(rejection) for rejection in self.rejected()]

        return {
            "log": [list(entry) for entry in self.fault_log()],
            "counts": self.fault_counts(),
            "requestsSeen": self.requests_seen(),
        }
