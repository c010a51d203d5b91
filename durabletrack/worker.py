"""The delivery worker: sender threads that drain the session queues in order."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from ._log import RateLimiter, get_logger
from .clock import age_seconds
from .config import TrackerConfig
from .context import resume_events, update_context
from .counters import (
    DEAD_LETTERED,
    DELIVERED,
    EXPIRED,
    RETRIED,
    SESSIONS_OPENED,
    SESSIONS_RESUMED,
    Counters,
)
from .eventtypes import SESSION_CLOSING_TYPES, SESSION_END
from .protocol import CollectionApiClient, Result, Verdict
from .registry import OPEN_STATES, SESSION_START_QUEUE_ID, SessionRecord, SessionState
from .schedule import Schedule, SessionSlot
from .session_queue import QueuedEvent
from .store import Store

# Acked rows stay in a persist-queue table and every get scans past them, so
# they are deleted after this many acks and whenever a queue runs empty.
CLEAR_ACKED_EVERY = 200

# Dead-letter reason of an event that waited longer than max_event_age.
EXPIRED_REASON = "expired"

# Result of one step: seconds before the session may run again, and whether
# it may have more work.
StepOutcome = tuple[float, bool]


class DeliveryWorker:
    """Delivers queued sessions through ``sender_threads`` daemon threads.

    Each session has at most one request in flight, and its events go out in
    queue order: the head is retried until the collector accepts or rejects
    it. Sessions wait out their own backoff without holding a thread, so one
    slow or failing session delays the others by one request timeout at most.
    Only the process holding the data directory's drain lock delivers; the
    others retry the lock every ``poll_interval``.
    """

    def __init__(
        self,
        store: Store,
        client: CollectionApiClient,
        config: TrackerConfig,
        counters: Counters,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._client = client
        self._config = config
        self._counters = counters
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._monotonic = monotonic
        self._schedule = Schedule(monotonic)
        self._log = get_logger(config.logger)
        self._errors = RateLimiter()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._scan_lock = threading.Lock()
        self._next_scan_at = 0.0
        self._is_drainer = False
        self._threads: list[threading.Thread] = []

    # Lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Take the drain lock if it is free, then start the sender threads (named daemon threads)."""
        if self._threads:
            return
        # Taken here, not only on the first scan, so that stats() right after
        # the constructor reports whether this process delivers.
        self._scan_if_due()
        for index in range(self._config.sender_threads):
            thread = threading.Thread(target=self._run, name=f"durabletrack-sender-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float) -> bool:
        """Stop the threads, interrupting backoff waits; return True if all ended in ``timeout`` seconds."""
        self._stop.set()
        self._schedule.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

        return not any(thread.is_alive() for thread in self._threads)

    def wake(self, handle: str) -> None:
        """Tell the worker that ``handle`` has new work."""
        if self._store.drain_lock.is_held:
            self._schedule.mark_work(handle)

    def wait_for_progress(self, timeout: float) -> None:
        """Block until a sender thread finishes a step, or ``timeout`` seconds pass."""
        with self._progress:
            self._progress.wait(timeout)

    def next_retry_in(self, handle: str) -> float | None:
        """Return seconds until ``handle`` is tried again, or None if it is not waiting."""
        return self._schedule.next_retry_in(handle)

    def last_error(self, handle: str) -> str | None:
        """Return the reason of the last failed attempt for ``handle``, or None."""
        return self._schedule.last_error(handle)

    # Thread loop ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._scan_if_due()
                slot = self._schedule.claim(max_wait=self._until_next_scan())
                if slot is not None:
                    self._run_burst(slot)
            except Exception as error:  # the worker must outlive any bug or bad row
                self._log_error("worker_error", error)
                self._stop.wait(1.0)

    def _run_burst(self, slot: SessionSlot) -> None:
        """Step one claimed session until it waits, runs dry or used its time slice.

        A session's backlog goes out in one run rather than one event per
        round over all sessions: with many sessions, a round can take longer
        than the collector's idle timeout, and every event would then meet an
        expired session. The slice is one request timeout, so a session that
        keeps succeeding holds a thread no longer than a failing one does.
        """
        deadline = self._monotonic() + self._config.request_timeout
        delay, has_work = 0.0, True
        try:
            while True:
                delay, has_work = self._run_step(slot)
                if delay > 0 or not has_work or self._stop.is_set() or self._monotonic() >= deadline:
                    break
        finally:
            self._schedule.release(slot, delay=delay, has_work=has_work)

    def _run_step(self, slot: SessionSlot) -> StepOutcome:
        try:
            return self._step(slot)
        except Exception as error:
            self._log_error("step_failed", error, handle=slot.handle)
            delay = 0.0 if self._store.release_reserve_if_full(error) else self._backoff(slot, None)
            return delay, True
        finally:
            with self._progress:
                self._progress.notify_all()

    def _until_next_scan(self) -> float:
        return max(self._next_scan_at - self._monotonic(), 0.05)

    def _scan_if_due(self) -> None:
        """Take the drain lock if free and pick up sessions that other processes wrote."""
        if self._monotonic() < self._next_scan_at or not self._scan_lock.acquire(blocking=False):
            return
        try:
            first_scan = self._next_scan_at == 0.0
            self._next_scan_at = self._monotonic() + self._config.poll_interval
            self._store.ensure_reserve()
            if not first_scan and not self._store.budget_counted:
                self._store.recount_budget()
            self._save_counters()
            taking_over = not self._is_drainer
            if taking_over and not self._store.drain_lock.try_acquire():
                return
            self._is_drainer = True
            for record in self._store.registry.sessions(OPEN_STATES + (SessionState.REJECTED,)):
                self._schedule.add(record.handle)
            if taking_over:
                self._log.info("drain_lock_taken", path=str(self._store.directory))
        finally:
            self._scan_lock.release()

    def _save_counters(self) -> None:
        unsaved = self._counters.take_unsaved()
        try:
            self._store.registry.add_to_counters(unsaved)
        except Exception:
            self._counters.restore_unsaved(unsaved)
            raise

    # One step of one session --------------------------------------------

    def _step(self, slot: SessionSlot) -> StepOutcome:
        record = self._store.registry.get(slot.handle)
        if record is None or record.state is SessionState.CLOSED:
            self._schedule.remove(slot.handle)
            return 0.0, False
        if record.state is SessionState.REJECTED:
            return self._dead_letter_rest(slot, record)
        if record.session_id is None:
            if self._is_batch_due(record):
                return self._upload_batch(slot, record)
            return self._open_session(slot, record)
        if record.replay:
            return self._send_replay(slot, record)

        if slot.unsaved_ack:
            # The collector accepted the head but its ack could not be stored
            # (full or read-only disk): store the ack, never send it again.
            return self._on_delivered(slot, record, slot.head)

        head = self._head(slot)
        if head is None:
            return self._on_queue_empty(slot)
        if self._is_expired(head):
            return self._expire(slot, head)
        if self._is_session_too_old(record):
            return self._split_session(slot, record)

        result = self._client.send_event(record.session_id, head.text)

        return self._apply_event_result(slot, record, head, result)

    def _head(self, slot: SessionSlot) -> QueuedEvent | None:
        if slot.head is None:
            with self._store.queue(slot.handle) as queue:
                slot.head = queue.take_head()

        return slot.head

    def _on_queue_empty(self, slot: SessionSlot) -> StepOutcome:
        if slot.acked_since_clear:
            self._clear_acked(slot)

        return 0.0, False

    def _clear_acked(self, slot: SessionSlot) -> None:
        with self._store.queue(slot.handle) as queue:
            queue.clear_acked_data(max_delete=None, keep_latest=None)
            queue.give_back_free_pages()
        slot.acked_since_clear = 0

    # Session creation and resume ----------------------------------------

    def _open_session(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        resuming = record.state is SessionState.RESUMING
        if resuming:
            start_text, replay = self._resume_bodies(slot, record)
        else:
            start_text, replay = json.dumps(record.start, separators=(",", ":")), []

        result = self._client.create_session(start_text)
        if result.verdict is Verdict.ACCEPTED:
            assert result.session_id is not None
            self._store.registry.set_session_id(record.handle, result.session_id, replay)
            self._counters.add(SESSIONS_RESUMED if resuming else SESSIONS_OPENED)
            self._log.info(
                "session_resumed" if resuming else "session_resolved",
                handle=record.handle,
                replayed=len(replay),
            )
            slot.attempt = 0
            return 0.0, True
        if result.verdict is Verdict.REJECTED:
            self._reject_session(slot, record, start_text, result)
            return 0.0, True

        return self._retry(slot, result), True

    def _resume_bodies(self, slot: SessionSlot, record: SessionRecord) -> tuple[str, list[str]]:
        head = self._head(slot)
        if head is not None:
            player_time = json.loads(head.text)["playerTime"]
            playhead, next_ts = player_time["playhead"], player_time["ts"]
        else:
            playhead = record.start["playerTime"]["playhead"]
            next_ts = int(time.time() * 1000)

        return resume_events(record.start, record.context, playhead, next_ts)

    def _reject_session(self, slot: SessionSlot, record: SessionRecord, start_text: str, result: Result) -> None:
        registry = self._store.registry
        registry.add_dead_letter(
            record.handle, SESSION_START_QUEUE_ID, start_text, result.status, "session_rejected", result.detail
        )
        registry.set_state(record.handle, SessionState.REJECTED)
        self._counters.add(DEAD_LETTERED)
        self._log.error("session_rejected", handle=record.handle, status=result.status)

    def _dead_letter_rest(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        """Move the events of a session whose sessionStart was rejected to dead letters."""
        head = self._head(slot)
        if head is None:
            return self._on_queue_empty(slot)

        rejection = Result(Verdict.REJECTED, None, "session_rejected", "the collector rejected sessionStart")
        self._dead_letter(slot, head, rejection)

        return 0.0, True

    def _send_replay(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        """Send the first event that reopens the context of a resumed session."""
        assert record.session_id is not None
        result = self._client.send_event(record.session_id, record.replay[0])
        verdict = result.verdict
        if verdict is Verdict.SESSION_GONE:
            return self._session_gone(slot, record, result)
        if verdict in (Verdict.RETRY, Verdict.MISCONFIGURED):
            return self._retry(slot, result), True
        if verdict is Verdict.REJECTED:
            # The event was rebuilt from delivered ones; the user's originals are safe.
            self._log.warning("replay_event_rejected", handle=record.handle, status=result.status)

        self._store.registry.set_replay(record.handle, record.replay[1:])
        slot.attempt = 0

        return 0.0, True

    def _session_gone(self, slot: SessionSlot, record: SessionRecord, result: Result) -> StepOutcome:
        self._store.registry.set_state(record.handle, SessionState.RESUMING)
        slot.gone_streak += 1
        self._log.warning("session_gone", handle=record.handle, status=result.status, streak=slot.gone_streak)
        if slot.gone_streak == 1:
            return 0.0, True

        # A collector that drops every new session must not be flooded with sessionStarts.
        return self._backoff(slot, None), True

    # Events ----------------------------------------------------------------

    def _apply_event_result(
        self, slot: SessionSlot, record: SessionRecord, head: QueuedEvent, result: Result
    ) -> StepOutcome:
        verdict = result.verdict
        if verdict is Verdict.ACCEPTED:
            return self._on_delivered(slot, record, head)
        if verdict is Verdict.REJECTED:
            self._dead_letter(slot, head, result)
            return 0.0, True
        if verdict is Verdict.SESSION_GONE:
            if json.loads(head.text).get("eventType") == SESSION_END:
                return self._end_closed_session(slot, record, head, result)
            return self._session_gone(slot, record, result)

        return self._retry(slot, result), True

    def _end_closed_session(
        self, slot: SessionSlot, record: SessionRecord, head: QueuedEvent, result: Result
    ) -> StepOutcome:
        """Keep a sessionEnd that met a closed session, then close the session here too.

        The collector closed the session already: by this sessionEnd when its
        response was lost, or by expiry, when it never recorded it. Resuming
        would only open a second session to end it at once, so the event is
        kept as a dead letter instead, with the collector's response.
        """
        closed = Result(Verdict.REJECTED, result.status, "session_already_closed", result.detail)
        self._dead_letter(slot, head, closed)

        return self._close_if_done(slot, record)

    def _on_delivered(self, slot: SessionSlot, record: SessionRecord, head: QueuedEvent | None) -> StepOutcome:
        assert head is not None
        event = json.loads(head.text)
        try:
            self._save_delivery(record, head, event)
        except sqlite3.OperationalError as error:
            slot.unsaved_ack = True
            self._log_error("ack_not_saved", error, handle=record.handle)
            if self._store.release_reserve_if_full(error):
                return 0.0, True
            return self._backoff(slot, None), True

        slot.unsaved_ack = False
        self._store.release(1, len(head.text))
        self._counters.add(DELIVERED)
        slot.head = None
        slot.attempt = 0
        slot.gone_streak = 0
        slot.last_error = None
        slot.acked_since_clear += 1
        self._log.debug("event_delivered", handle=record.handle, event_type=event.get("eventType"))

        if event.get("eventType") == SESSION_END:
            return self._close_if_done(slot, record)
        if slot.acked_since_clear >= CLEAR_ACKED_EVERY:
            self._clear_acked(slot)

        return 0.0, True

    def _save_delivery(self, record: SessionRecord, head: QueuedEvent, event: dict[str, Any]) -> None:
        context = update_context(record.context, event)
        if context is not None:
            # The context is stored before the ack: a crash in between re-sends
            # the event, which the at-least-once rule allows, and never loses
            # an open ad or chapter from a later resume.
            self._store.registry.set_context(record.handle, context)

        with self._store.queue(record.handle) as queue:
            queue.ack(id=head.queue_id)

    def _close_if_done(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        if self._store.pending_summary(record.handle)[0]:
            return 0.0, True

        self._store.registry.set_state(record.handle, SessionState.CLOSED)
        self._store.drop_queue(record.handle)
        self._schedule.remove(record.handle)
        self._log.info("session_closed", handle=record.handle)

        return 0.0, False

    def _dead_letter(self, slot: SessionSlot, head: QueuedEvent, result: Result) -> None:
        # Stored before the ack; the (handle, queue_id) key keeps a crash in
        # between from storing the same dead letter twice.
        self._store.registry.add_dead_letter(
            slot.handle, head.queue_id, head.text, result.status, result.reason, result.detail
        )
        with self._store.queue(slot.handle) as queue:
            queue.ack(id=head.queue_id)
        self._store.release(1, len(head.text))
        self._counters.add(EXPIRED if result.reason == EXPIRED_REASON else DEAD_LETTERED)
        slot.head = None
        slot.attempt = 0
        slot.acked_since_clear += 1
        if result.reason != EXPIRED_REASON:
            self._log.error("event_dead_lettered", handle=slot.handle, status=result.status, reason=result.reason)

    # Age limits --------------------------------------------------------------

    def _is_expired(self, head: QueuedEvent) -> bool:
        limit = self._config.max_event_age
        return limit is not None and age_seconds(head.queued_at, head.queued_boot) > limit

    def _expire(self, slot: SessionSlot, head: QueuedEvent) -> StepOutcome:
        detail = f"waited longer than max_event_age={self._config.max_event_age:g} s"
        self._dead_letter(slot, head, Result(Verdict.REJECTED, None, EXPIRED_REASON, detail))
        allowed, suppressed = self._errors.allow(f"expired:{slot.handle}")
        if allowed:
            self._log.warning("events_expired", handle=slot.handle, count=1 + suppressed)

        return 0.0, True

    def _is_session_too_old(self, record: SessionRecord) -> bool:
        if record.opened_at is None:
            return False
        return age_seconds(record.opened_at, record.opened_boot) > self._config.max_session_age

    def _split_session(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        """Continue a server session that reached the maximum age in a resumed one."""
        self._store.registry.set_state(record.handle, SessionState.RESUMING)
        self._log.info("session_split", handle=record.handle, max_session_age_s=self._config.max_session_age)

        return 0.0, True

    # Offline batches -----------------------------------------------------------

    def _is_batch_due(self, record: SessionRecord) -> bool:
        config = self._config
        if not config.offline_upload or record.state is not SessionState.PENDING or record.session_ids:
            return False
        if (
            config.offline_after is not None
            and age_seconds(record.created_at, record.created_boot) > config.offline_after
        ):
            return True

        return self._is_finished(record.handle)

    def _is_finished(self, handle: str) -> bool:
        with self._store.queue(handle) as queue:
            items = queue.pending_items()
        return any(json.loads(item.text)["eventType"] in SESSION_CLOSING_TYPES for item in items)

    def _upload_batch(self, slot: SessionSlot, record: SessionRecord) -> StepOutcome:
        """Send a session that never got a session ID as one downloaded batch."""
        with self._store.queue(record.handle) as queue:
            items = queue.pending_items()
        bodies = [json.dumps(record.start, separators=(",", ":"))] + [item.text for item in items]
        if sum(len(body) + 1 for body in bodies) + 2 > self._config.max_batch_bytes:
            return self._open_session(slot, record)

        result = self._client.send_batch(bodies)
        if result.verdict is Verdict.ACCEPTED:
            self._on_batch_delivered(slot, record, items)
            return 0.0, True
        if result.verdict is Verdict.REJECTED:
            self._reject_batch(slot, record, bodies[0], items, result)
            return 0.0, True

        return self._retry(slot, result), True

    def _on_batch_delivered(self, slot: SessionSlot, record: SessionRecord, items: list[QueuedEvent]) -> None:
        context = record.context
        events = [json.loads(item.text) for item in items]
        for event in events:
            context = update_context(context, event) or context
        registry = self._store.registry
        registry.set_context(record.handle, context)

        with self._store.queue(record.handle) as queue:
            queue.ack_many([item.queue_id for item in items])
        self._store.release(len(items), sum(len(item.text) for item in items))
        self._counters.add(DELIVERED, len(items) + 1)
        self._log.info("batch_uploaded", handle=record.handle, events=len(items) + 1)

        if any(event["eventType"] == SESSION_END for event in events):
            registry.set_state(record.handle, SessionState.CLOSED)
            self._store.drop_queue(record.handle)
            self._schedule.remove(record.handle)
        else:
            # Events tracked after the batch go to a resumed live session.
            registry.set_state(record.handle, SessionState.RESUMING)

    def _reject_batch(
        self, slot: SessionSlot, record: SessionRecord, start_text: str, items: list[QueuedEvent], result: Result
    ) -> None:
        """Keep every item of a rejected batch: the collector discarded all of it."""
        registry = self._store.registry
        registry.add_dead_letter(
            record.handle, SESSION_START_QUEUE_ID, start_text, result.status, "batch_rejected", result.detail
        )
        for item in items:
            registry.add_dead_letter(
                record.handle, item.queue_id, item.text, result.status, "batch_rejected", result.detail
            )
        with self._store.queue(record.handle) as queue:
            queue.ack_many([item.queue_id for item in items])
        self._store.release(len(items), sum(len(item.text) for item in items))
        registry.set_state(record.handle, SessionState.REJECTED)
        self._counters.add(DEAD_LETTERED, len(items) + 1)
        self._log.error("batch_rejected", handle=record.handle, status=result.status, events=len(items) + 1)

    # Retries ---------------------------------------------------------------

    def _retry(self, slot: SessionSlot, result: Result) -> float:
        slot.last_error = result.reason
        if result.verdict is Verdict.MISCONFIGURED:
            delay = max(self._config.retry.misconfigured_delay, result.retry_after or 0.0)
            self._log_misconfigured(slot, result, delay)
        else:
            delay = self._backoff(slot, result.retry_after)
            self._log.warning(
                "retry_scheduled",
                handle=slot.handle,
                attempt=slot.attempt,
                delay_s=round(delay, 3),
                status=result.status,
                reason=result.reason,
            )
        self._counters.add(RETRIED)

        return delay

    def _backoff(self, slot: SessionSlot, retry_after: float | None) -> float:
        slot.attempt += 1
        with self._rng_lock:
            return self._config.retry.delay(slot.attempt, self._rng, retry_after)

    def _log_misconfigured(self, slot: SessionSlot, result: Result, delay: float) -> None:
        allowed, suppressed = self._errors.allow(f"misconfigured:{result.reason}")
        if allowed:
            self._log.error(
                "endpoint_rejects_requests",
                handle=slot.handle,
                status=result.status,
                reason=result.reason,
                delay_s=delay,
                suppressed=suppressed,
            )

    def _log_error(self, event: str, error: BaseException, **keys: Any) -> None:
        allowed, suppressed = self._errors.allow(f"{event}:{type(error).__name__}")
        if allowed:
            self._log.error(event, error=repr(error), suppressed=suppressed, exc_info=error, **keys)
