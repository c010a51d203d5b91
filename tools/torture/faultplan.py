"""Fault phases for the chaos scenarios: every fault the emulator can inject, in turn.

The chaos scenarios rotate through these phases, ``phase_s`` seconds each, so
that every kind of failure hits sessions in every state. Rates are fractions
of requests; latencies are seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from durabletrack.emulator import Emulator, ExpiryPolicy, Faults

# Sessions idle this long expire, so a backlog held up by a fault phase meets
# 410 and the worker resumes the session.
CHAOS_IDLE_S = 5.0

# Sessions of the kill scenarios expire too, but less often.
KILL_IDLE_S = 8.0

PHASES: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "mixed",
        dict(
            session_latency=(0.0, 0.3),
            event_latency=(0.0, 0.05),
            error_rate=0.08,
            throttle_rate=0.04,
            retry_after=1,
            reset_rate=0.04,
            blackhole_rate=0.02,
            lost_response_rate=0.05,
        ),
    ),
    # Session creation takes tens of seconds, longer than the request timeout:
    # the collector creates sessions whose IDs the client never receives.
    ("slow-sessions", dict(session_latency=(1.0, 30.0), event_latency=(0.0, 0.05), error_rate=0.03)),
    ("throttled", dict(throttle_rate=0.5, retry_after=2, event_latency=(0.0, 0.02))),
    ("black-holes", dict(blackhole_rate=0.25, reset_rate=0.1)),
    ("lost-responses", dict(lost_response_rate=0.3, error_rate=0.2, event_latency=(0.0, 0.05))),
    ("captive-portal", dict(captive_portal=True)),
    ("clean", dict(event_latency=(0.0, 0.01))),
)

# Faults of the kill scenarios: only latency, so that kills land while a
# request is in flight and the collector still processes it after the kill.
KILL_FAULTS = dict(session_latency=(0.0, 0.2), event_latency=(0.0, 0.04))


def start_emulator(seed: int, *, chaos: bool, idle_s: float | None = None) -> Emulator:
    """Start a loopback emulator with the first chaos phase, or with kill-scenario latency.

    ``idle_s`` overrides the session expiry after that many seconds without events.
    """
    expiry = ExpiryPolicy(idle_s=idle_s or (CHAOS_IDLE_S if chaos else KILL_IDLE_S))
    settings = PHASES[0][1] if chaos else KILL_FAULTS
    emulator = Emulator(faults=Faults(seed=seed, **settings), expiry=expiry)
    emulator.start()

    return emulator


@dataclass
class PhaseClock:
    """Switches the emulator to the next phase every ``phase_s`` seconds.

    Attributes:
        emulator: The emulator to reconfigure.
        seed: Seed kept across phases, so the draws continue one sequence.
        phase_s: Length of one phase, in seconds.
    """

    emulator: Emulator
    seed: int
    phase_s: float
    _index: int = 0
    _next_at: float = 0.0
    switches: int = 0

    def start(self) -> None:
        self._index = 0
        self._apply()

    def tick(self) -> None:
        """Move to the next phase if the current one is over."""
        if time.monotonic() < self._next_at:
            return
        self._index = (self._index + 1) % len(PHASES)
        self._apply()

    def until_next(self) -> float:
        """Return seconds until the next phase switch."""
        return max(self._next_at - time.monotonic(), 0.0)

    def clear(self) -> None:
        """Turn every fault off (latency included), for the final drain."""
        self.emulator.set_faults(Faults(seed=self.seed))

    @property
    def phase(self) -> str:
        return PHASES[self._index][0]

    def _apply(self) -> None:
        name, settings = PHASES[self._index]
        self.emulator.set_faults(Faults(seed=self.seed, **settings))
        self._next_at = time.monotonic() + self.phase_s
        self.switches += 1
