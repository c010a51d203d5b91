"""A player that tracks planned sessions with markers and writes the ledger."""

from __future__ import annotations

import random
import threading

from durabletrack import Tracker

from .ledger import LedgerWriter
from .workload import SESSION_START, Step, make_marker, plan_session, with_marker

# Bounds of the number of events in one planned session.
MIN_SESSION_EVENTS = 5
MAX_SESSION_EVENTS = 80


class Player:
    """Tracks sessions through one Tracker, marking every event.

    Args:
        tracker: The Tracker to track through.
        ledger: Where to note each call that returned.
        run: Run name, the first part of every marker.
        cycle: Number of this child process (or player thread) within the run.
        rng: Random source for session plans and pacing.
        pace_s: Maximum pause between two calls, in seconds. 0 tracks at full speed.
        stop: Set to end the session being played after the current call.
    """

    def __init__(
        self,
        tracker: Tracker,
        ledger: LedgerWriter,
        run: str,
        cycle: int,
        rng: random.Random,
        *,
        pace_s: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        self._tracker = tracker
        self._ledger = ledger
        self._run = run
        self._cycle = cycle
        self._rng = rng
        self._pace_s = pace_s
        self._stop = stop or threading.Event()
        self._next_index = 0
        self.tracked = 0

    def play(self, max_events: int) -> None:
        """Track sessions until about ``max_events`` calls returned or ``stop`` is set."""
        while self.tracked < max_events and not self._stop.is_set():
            length = min(max_events - self.tracked, self._rng.randint(MIN_SESSION_EVENTS, MAX_SESSION_EVENTS))
            self.play_session(plan_session(self._rng, max(length, 2)))

    def play_session(self, steps: list[Step]) -> None:
        """Start one session and track its steps; the first step must be sessionStart."""
        assert steps[0].event_type == SESSION_START
        start = with_marker(steps[0], self._new_marker())
        session = self._tracker.start_session(
            start.params or {}, start.custom_metadata, start.qoe_data, playhead=start.playhead
        )
        self._ledger.started(session.handle, _marker(start))
        self.tracked += 1

        for step in steps[1:]:
            if self._pause():
                return
            marked = with_marker(step, self._new_marker())
            session.track(marked.event_type, marked.playhead, marked.params, marked.custom_metadata, marked.qoe_data)
            self._ledger.tracked(_marker(marked))
            self.tracked += 1

    def _new_marker(self) -> str:
        marker = make_marker(self._run, self._cycle, self._next_index)
        self._next_index += 1

        return marker

    def _pause(self) -> bool:
        """Wait up to ``pace_s`` as a player between two events; return True if stopped."""
        if self._pace_s <= 0:
            return self._stop.is_set()

        return self._stop.wait(self._rng.uniform(0.0, self._pace_s))


def _marker(step: Step) -> str:
    assert step.custom_metadata is not None
    return step.custom_metadata["dtmark"]
