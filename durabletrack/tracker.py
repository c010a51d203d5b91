"""Public facade: ``Tracker`` and ``Session``."""

from __future__ import annotations

import atexit
import dataclasses
import os
import random
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ._log import get_logger
from .budget import Limits
from .clock import SessionClock
from .config import Durability, TrackerConfig
from .counters import Counters
from .errors import SessionClosedError, StorageError, TrackerClosedError
from .eventtypes import EVENT_SPECS, SESSION_COMPLETE, SESSION_END, SESSION_START
from .protocol import CollectionApiClient
from .registry import OPTED_OUT, DeadLetter
from .stats import SessionStats, TrackerStats, collect_session_stats, directory_size
from .store import Store
from .validation import (
    check_custom_metadata,
    check_event_type,
    check_params,
    check_playhead,
    check_qoe_data,
    serialize,
)
from .worker import DeliveryWorker

DEFAULT_FLUSH_TIMEOUT = 5.0
DEFAULT_CLOSE_TIMEOUT = 2.0
OPT_OUT_STOP_TIMEOUT = 1.0

# Objects of a parent process that a child after fork() must neither use nor
# close: closing the parent's SQLite connections from the child is unsafe.
_left_by_parent: list[Any] = []


class Tracker:
    """Tracks media sessions durably and delivers them to a collection API endpoint.

    Every ``track()`` returns after the event is committed to the store in
    ``data_dir``; delivery happens on background threads. A new Tracker on the
    same ``data_dir``, in this process or a later one, delivers whatever an
    earlier one left. Methods are thread-safe.

    Args:
        endpoint: Base URI of the collector, e.g. ``https://<ns>.hb-api.omtrdc.net``.
        data_dir: Directory of the local store.
        **options: Any other :class:`~durabletrack.config.TrackerConfig` setting.

    Raises:
        ConfigError: if a setting is invalid.
        StorageError: if the data directory cannot be opened.
    """

    def __init__(self, endpoint: str, data_dir: str | os.PathLike[str], **options: Any) -> None:
        unknown = sorted(set(options) - _SETTING_NAMES)
        if unknown:
            raise TypeError(f"Tracker() got unknown settings {unknown}; valid settings are {sorted(_SETTING_NAMES)}")
        self.config = TrackerConfig(endpoint=endpoint, data_dir=Path(data_dir), **options)
        self._log = get_logger(self.config.logger)
        self._store: Store
        self._worker: DeliveryWorker
        self._store_error: StorageError
        self._closed = False
        self._open_lock = threading.Lock()
        self._open()
        _open_trackers.add(self)

    # Public API ------------------------------------------------------------

    def start_session(
        self,
        params: Mapping[str, Any],
        custom_metadata: Mapping[str, str] | None = None,
        qoe_data: Mapping[str, Any] | None = None,
        *,
        playhead: float = 0,
    ) -> Session:
        """Start a session: commit its sessionStart locally and return at once.

        No network call happens here. The worker obtains the session ID later
        and sends the session's events after it, in order.

        Args:
            params: sessionStart params; the eight required keys of the
                collection API must be present with their JSON types.
            custom_metadata: Session-level custom metadata (string values).
            qoe_data: QoE data for the sessionStart event.
            playhead: Playhead at session start, in seconds.

        Raises:
            InvalidEventError, InvalidFieldTypeError: if an argument breaks a
                collection API rule; nothing is stored.
            StorageError: if the sessionStart could not be committed.
        """
        self._check_open()
        spec = EVENT_SPECS[SESSION_START]
        fields = _optional_fields(
            check_params(spec, params), check_custom_metadata(custom_metadata), check_qoe_data(qoe_data)
        )
        checked_playhead = check_playhead(playhead)

        clock = SessionClock()
        body = {"playerTime": {"playhead": checked_playhead, "ts": clock.next_ts()}, "eventType": SESSION_START}
        body.update(fields)
        serialize(body, self.config.max_event_bytes)

        handle = uuid.uuid4().hex
        if not self._opted_out:
            self._store.start_session(handle, body)
            self._worker.wake(handle)

        return Session(self, handle, clock, checked_playhead)

    def flush(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> bool:
        """Wait until every stored event is delivered or dead-lettered.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            True if nothing is left to deliver, False if ``timeout`` passed first.
        """
        self._check_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._store.undelivered_count() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Progress in another process that holds the drain lock does not
            # notify this one, hence the short cap on each wait.
            self._worker.wait_for_progress(min(remaining, 0.2))

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop.

        Never blocks longer than ``timeout``. Undelivered events stay on disk
        for the next Tracker on the same ``data_dir``. Calling it again does
        nothing.
        """
        if self._closed:
            return

        deadline = time.monotonic() + max(timeout, 0.0)
        if os.getpid() == self._pid and self._available:
            self.flush(max(timeout - 0.1, 0.0) * 0.9)
        self._shut_down(max(deadline - time.monotonic(), 0.0))

    def stats(self) -> TrackerStats:
        """Return a snapshot of sessions, queued events, disk use and counters."""
        self._check_open()
        sessions = [self._with_worker_state(item) for item in collect_session_stats(self._store)]
        ages = [item.oldest_event_age_s for item in sessions if item.oldest_event_age_s is not None]

        return TrackerStats(
            sessions_by_state=self._store.registry.count_by_state(),
            sessions=sessions,
            queued_events=sum(item.queued_events for item in sessions),
            oldest_event_age_s=max(ages) if ages else None,
            dead_letters=self._store.registry.dead_letter_count(),
            bytes_on_disk=directory_size(self.config.data_dir),
            counters=self._counters.snapshot(),
            totals=self._totals(),
            is_draining=self._store.drain_lock.is_held,
        )

    def session_ids(self, handle: str) -> list[str]:
        """Return the server session IDs a session has had, oldest first (several after resumes)."""
        self._check_open()
        record = self._store.registry.get(handle)

        return list(record.session_ids) if record else []

    def opt_out(self) -> None:
        """Delete everything stored and stop tracking until :meth:`opt_in`.

        Queued events, sessions and dead letters are deleted and the files
        compacted, so no tracked value stays on disk. The choice is stored in
        the data directory and holds for later Trackers too. While opted out,
        ``start_session()`` and ``track()`` still check their input but store
        nothing. Blocks for at most about one second while delivery stops.
        """
        self._check_open()
        self._store.registry.set_setting(OPTED_OUT, "1")
        self._opted_out = True

        self._worker.stop(OPT_OUT_STOP_TIMEOUT)
        self._store.delete_all()
        self._worker = self._new_worker()
        self._log.info("opted_out")

    def opt_in(self) -> None:
        """Resume tracking after :meth:`opt_out`."""
        self._check_open()
        self._store.registry.set_setting(OPTED_OUT, None)
        self._opted_out = False
        self._log.info("opted_in")

    @property
    def opted_out(self) -> bool:
        """True while tracking is off after :meth:`opt_out`."""
        return self._opted_out

    def dead_letters(self, handle: str | None = None) -> list[DeadLetter]:
        """Return the events the collector rejected, oldest first, with its responses."""
        self._check_open()
        return self._store.registry.dead_letters(handle)

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return self.config.data_dir

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _with_worker_state(self, item: SessionStats) -> SessionStats:
        return dataclasses.replace(
            item,
            last_error=self._worker.last_error(item.handle),
            next_retry_in_s=self._worker.next_retry_in(item.handle),
        )

    def _totals(self) -> dict[str, int]:
        totals = self._store.registry.counters()
        for name, amount in self._counters.pending().items():
            totals[name] = totals.get(name, 0) + amount

        return totals

    # Internals used by Session -------------------------------------------

    def _enqueue(self, handle: str, text: str) -> None:
        self._check_open()
        if self._opted_out:
            return
        self._store.put(handle, text)
        self._worker.wake(handle)

    # Lifecycle -------------------------------------------------------------

    def _open(self) -> None:
        self._pid = os.getpid()
        self._counters = Counters()
        self._client = CollectionApiClient(
            self.config.endpoint,
            timeout=self.config.request_timeout,
            ca_bundle=self.config.ca_bundle,
            max_response_bytes=self.config.max_response_bytes,
        )
        self._available = False
        self._next_open_at = 0.0
        self._open_store()

    def _open_store(self) -> None:
        """Open the store and start the worker, or remember why the store is unusable.

        A data directory on a read-only file system cannot even be read,
        because SQLite cannot open a WAL database there. The tracker then
        starts without it and tries again when it is used, at most once per
        ``poll_interval``. Until then ``start_session()`` and ``track()``
        raise ``StorageError`` and the host app goes on.
        """
        self._next_open_at = time.monotonic() + self.config.poll_interval
        limits = Limits(max_events=self.config.max_queued_events, max_bytes=self.config.max_queued_bytes)
        try:
            self._store = Store(
                self.config.data_dir, self.config.durability, limits, self._counters, self.config.logger
            )
        except StorageError as error:
            self._store_error = error
            self._log.error("store_unavailable", path=str(self.config.data_dir), error=str(error))
            return

        self._opted_out = self._store.registry.get_setting(OPTED_OUT) == "1"
        self._worker = self._new_worker()
        self._available = True

    def _new_worker(self) -> DeliveryWorker:
        worker = DeliveryWorker(self._store, self._client, self.config, self._counters, rng=random.Random())
        # Starting a thread while the interpreter shuts down raises.
        if not sys.is_finalizing():
            worker.start()

        return worker

    def _check_open(self) -> None:
        if self._closed:
            raise TrackerClosedError()
        if os.getpid() != self._pid:
            self._reopen_after_fork()
        if not self._available:
            self._retry_store()

    def _retry_store(self) -> None:
        with self._open_lock:
            if not self._available and time.monotonic() >= self._next_open_at:
                self._open_store()
        if not self._available:
            raise self._store_error

    def _reopen_after_fork(self) -> None:
        with self._open_lock:
            if os.getpid() == self._pid:
                return
            # The parent's threads do not exist here and its connections must
            # not be touched: keep them referenced so they are never closed.
            if self._available:
                self._store.drain_lock.release()
                _left_by_parent.extend([self._store, self._worker])
            _left_by_parent.append(self._client)
            self._open()
            self._log.info("reopened_after_fork", pid=self._pid)

    def _shut_down(self, timeout: float) -> None:
        with self._open_lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._pid or not self._available:
            return

        stopped = self._worker.stop(timeout)
        try:
            self._store.registry.add_to_counters(self._counters.take_unsaved())
        except Exception as error:
            self._log.warning("counters_not_saved", error=repr(error))
        if stopped:
            self._store.close()
            self._client.close()
            return

        # A sender thread still waits on a request. Closing a SQLite connection
        # that a thread may use at that moment can crash the process, so the
        # connections stay open until exit and only the drain lock is handed
        # on. The thread's event is then acked late or sent again by the next
        # drainer.
        self._log.warning("close_timed_out", timeout_s=timeout)
        self._store.release_drain_lock()


class Session:
    """A tracked media session, created by :meth:`Tracker.start_session`.

    Attributes:
        handle: Local session handle (32 hex digits). It stays the same when
            the worker resumes the session under a new server session ID.
    """

    def __init__(self, tracker: Tracker, handle: str, clock: SessionClock, playhead: float) -> None:
        self.handle = handle
        self._tracker = tracker
        self._clock = clock
        self._last_playhead = playhead
        self._ended = False
        # Held across stamping and committing, so events from several threads
        # are queued in ts order. Never held across network I/O.
        self._lock = threading.Lock()

    @property
    def ended(self) -> bool:
        """True after sessionEnd was tracked."""
        return self._ended

    def track(
        self,
        event_type: str,
        playhead: float,
        params: Mapping[str, Any] | None = None,
        custom_metadata: Mapping[str, str] | None = None,
        qoe_data: Mapping[str, Any] | None = None,
    ) -> None:
        """Commit one event to the session's queue and return.

        ``playerTime.ts`` is stamped now, in epoch milliseconds, strictly
        increasing within the session.

        Args:
            event_type: A collection API ``eventType`` other than sessionStart.
            playhead: Playhead in seconds (main content position during ads).
            params: Event params; required for adBreakStart, adStart,
                chapterStart, stateStart, stateEnd and statesUpdate, and not
                allowed on ping.
            custom_metadata: Custom metadata with string values.
            qoe_data: QoE data, such as ``{"media.qoe.bitrate": 4000000}``.

        Raises:
            InvalidEventError, InvalidFieldTypeError: if an argument breaks a
                collection API rule; nothing is stored.
            QueueFullError: if the store is at ``max_queued_events`` or
                ``max_queued_bytes`` and no ping is left to shed.
            SessionClosedError: if sessionEnd was already tracked.
            StorageError: if the event could not be committed.
            TrackerClosedError: if the tracker is closed.
        """
        spec = check_event_type(event_type)
        fields = _optional_fields(
            check_params(spec, params), check_custom_metadata(custom_metadata), check_qoe_data(qoe_data)
        )
        checked_playhead = check_playhead(playhead)

        with self._lock:
            if self._ended:
                raise SessionClosedError(self.handle)
            body = {"playerTime": {"playhead": checked_playhead, "ts": self._clock.next_ts()}, "eventType": spec.name}
            body.update(fields)
            text = serialize(body, self._tracker.config.max_event_bytes)
            self._tracker._enqueue(self.handle, text)
            self._last_playhead = checked_playhead
            if spec.name == SESSION_END:
                self._ended = True

    def complete(self, playhead: float | None = None) -> None:
        """Track sessionComplete: the content played to its end.

        The session stays open for trailing events; call :meth:`end` after.
        ``playhead`` defaults to the last tracked one.
        """
        self.track(SESSION_COMPLETE, self._last_playhead if playhead is None else playhead)

    def end(self, playhead: float | None = None) -> None:
        """Track sessionEnd: the viewer left. No event may follow.

        ``playhead`` defaults to the last tracked one.
        """
        self.track(SESSION_END, self._last_playhead if playhead is None else playhead)


def _optional_fields(
    params: dict[str, Any] | None, custom_metadata: dict[str, str] | None, qoe_data: dict[str, Any] | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if params is not None:
        fields["params"] = params
    if custom_metadata is not None:
        fields["customMetadata"] = custom_metadata
    if qoe_data is not None:
        fields["qoeData"] = qoe_data

    return fields


_open_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()

# Keyword settings Tracker() passes on to TrackerConfig.
_SETTING_NAMES = {item.name for item in dataclasses.fields(TrackerConfig)} - {"endpoint", "data_dir"}


@atexit.register
def _stop_trackers_at_exit() -> None:
    # Everything tracked is already on disk; stopping only keeps exit quick.
    for tracker in list(_open_trackers):
        tracker._shut_down(0.5)


__all__ = ["Durability", "Session", "Tracker"]
