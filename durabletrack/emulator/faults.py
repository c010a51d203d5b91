"""Fault settings of the emulator and the seeded decisions drawn from them.

A :class:`Faults` value sets how often each kind of network failure happens.
A :class:`FaultDecider` draws, for each request in arrival order, whether a
fault applies and how long to delay the answer. All draws come from one
``random.Random(seed)``, so the same seed and the same request sequence give
the same decisions.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

# Path kinds that faults can apply to, named after the endpoint paths.
SESSIONS = "sessions"
EVENTS = "events"
DOWNLOADED = "downloaded"
API_KINDS = (SESSIONS, EVENTS, DOWNLOADED)

# Actions a fault can take instead of, or on top of, the normal response.
STATUS = "status"
RESET = "reset"
BLACKHOLE = "blackhole"
LOST_RESPONSE = "lost_response"
CAPTIVE_PORTAL = "captive_portal"
ACTIONS = (STATUS, RESET, BLACKHOLE, LOST_RESPONSE, CAPTIVE_PORTAL)

DEFAULT_ERROR_STATUSES = (500, 502, 503, 504)
DEFAULT_RETRY_AFTER_S = 1

Latency = float | tuple[float, float]

logger = logging.getLogger(__name__)


class _Default(enum.Enum):
    LOCATION = "server-chosen Location"


SERVER_LOCATION = _Default.LOCATION


@dataclass(frozen=True)
class Answer:
    """A fault response: one entry of a script, or the one a random fault chose.

    Attributes:
        status: HTTP status to send when ``action`` is ``"status"``. A 2xx
            status means the request is processed normally and only the
            status (and ``location``) of a successful reply is replaced.
            Any other status is sent without processing the request.
        retry_after: Seconds for the ``Retry-After`` header, or None. A 429
            without it gets ``Faults.retry_after``.
        location: ``Location`` header of a successful sessions or downloaded
            reply. ``SERVER_LOCATION`` keeps the emulator's value and None
            omits the header.
        action: One of ``"status"``, ``"reset"``, ``"blackhole"``,
            ``"lost_response"``, ``"captive_portal"``.
        kind: Path kind (``"sessions"``, ``"events"``, ``"downloaded"``) the
            answer is restricted to, or None for any of them.
    """

    status: int | None = None
    retry_after: int | None = None
    location: str | None | _Default = SERVER_LOCATION
    action: str = STATUS
    kind: str | None = None

    RESET: ClassVar[Answer]
    BLACKHOLE: ClassVar[Answer]
    LOST_RESPONSE: ClassVar[Answer]
    CAPTIVE: ClassVar[Answer]

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"Answer.action={self.action!r} is invalid: use one of {ACTIONS}")
        if self.action == STATUS and not _is_http_status(self.status):
            raise ValueError(f"Answer.status={self.status!r} is invalid: use an int from 100 to 599")
        if self.action != STATUS and self.status is not None:
            raise ValueError(f"Answer.status must be None for action {self.action!r}")
        if self.kind is not None and self.kind not in API_KINDS:
            raise ValueError(f"Answer.kind={self.kind!r} is invalid: use None or one of {API_KINDS}")
        _check_retry_after("Answer.retry_after", self.retry_after, allow_none=True)

    @property
    def name(self) -> str:
        """Fault name used in the fault log and counts."""
        if self.action != STATUS:
            return self.action
        if self.status == 429:
            return "throttle"
        if self.status is not None and self.status >= 500:
            return "error"
        return f"status_{self.status}"

    @property
    def is_success(self) -> bool:
        """True for a 2xx status, which lets the request be processed."""
        return self.action == STATUS and self.status is not None and 200 <= self.status < 300

    def only_for(self, kind: str) -> Answer:
        """Return a copy restricted to one path kind."""
        return replace(self, kind=kind)

    def applies_to(self, kind: str) -> bool:
        """Return True if this answer may be used for a request of ``kind``."""
        return self.kind is None or self.kind == kind


@dataclass(frozen=True)
class Faults:
    """Failure settings of one emulator. Rates are fractions of requests.

    Attributes:
        session_latency: Delay in seconds before responding to ``/sessions`` and
            ``/downloaded``: a fixed value or a ``(lo, hi)`` uniform range.
        event_latency: The same for ``/sessions/{sid}/events``.
        error_rate: Fraction of requests that get a status drawn from ``error_statuses``.
        error_statuses: Statuses for ``error_rate`` (default 500, 502, 503, 504).
        throttle_rate: Fraction of requests that get 429 with ``Retry-After``.
        retry_after: ``Retry-After`` value in whole seconds for 429 responses.
        reset_rate: Fraction whose connection is reset before processing.
        blackhole_rate: Fraction of requests read and never responded to. The
            connection stays open until the client closes it or the emulator
            stops.
        lost_response_rate: Fraction that is processed and recorded, then
            reset without a response. This is how duplicates arise.
        captive_portal: If True, every request except the inspection paths
            gets a 200 HTML page, as behind a hotel Wi-Fi login.
        script: Answers used one per request, in order, before any random
            fault. An answer restricted to another path kind waits for a
            request of its kind.
        seed: Seed of the random generator for all draws.
        applies_to: Path kinds that random faults and latency apply to.

    The rates are drawn from one number per request, so their sum must not
    exceed 1.
    """

    session_latency: Latency = 0.0
    event_latency: Latency = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    throttle_rate: float = 0.0
    retry_after: int = DEFAULT_RETRY_AFTER_S
    reset_rate: float = 0.0
    blackhole_rate: float = 0.0
    lost_response_rate: float = 0.0
    captive_portal: bool = False
    script: tuple[Answer, ...] = field(default_factory=tuple)
    seed: int = 0
    applies_to: tuple[str, ...] = API_KINDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "script", tuple(self.script))
        object.__setattr__(self, "error_statuses", tuple(self.error_statuses))
        object.__setattr__(self, "applies_to", tuple(self.applies_to))
        _check_latency("session_latency", self.session_latency)
        _check_latency("event_latency", self.event_latency)
        self._check_rates()
        self._check_statuses()
        _check_retry_after("Faults.retry_after", self.retry_after, allow_none=False)
        self._check_script_and_kinds()

    def _check_rates(self) -> None:
        total = 0.0
        for name in ("error_rate", "throttle_rate", "reset_rate", "blackhole_rate", "lost_response_rate"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name}={rate!r} is invalid: use a fraction from 0.0 to 1.0")
            total += rate

        if total > 1.0:
            raise ValueError(f"Faults rates sum to {total}, over 1.0: lower some of them")

    def _check_statuses(self) -> None:
        if not self.error_statuses:
            raise ValueError("Faults.error_statuses is empty: give at least one status")
        for status in self.error_statuses:
            if not _is_http_status(status) or status < 400:
                raise ValueError(f"Faults.error_statuses has {status!r}: use ints from 400 to 599")

    def _check_script_and_kinds(self) -> None:
        for answer in self.script:
            if not isinstance(answer, Answer):
                raise TypeError(f"Faults.script has {answer!r}: each item must be an Answer")
        for kind in self.applies_to:
            if kind not in API_KINDS:
                raise ValueError(f"Faults.applies_to has {kind!r}: use kinds from {API_KINDS}")

    def latency_for(self, kind: str) -> Latency:
        """Return the latency setting for a path kind."""
        return self.event_latency if kind == EVENTS else self.session_latency


@dataclass(frozen=True)
class Decision:
    """Fault decision for one request.

    Attributes:
        answer: The fault's :class:`Answer`, or None for the normal response.
        latency_s: Seconds to wait before responding.
    """

    answer: Answer | None
    latency_s: float


NO_FAULT = Decision(None, 0.0)


class FaultDecider:
    """Draws fault decisions in request-arrival order and logs them.

    Thread-safe: one lock orders all draws. With one client sending one
    request at a time the decisions repeat exactly for the same seed. With
    concurrent clients the order in which requests reach the lock decides.
    """

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._random = random.Random(faults.seed)
        self._script_position = 0
        self._log: list[tuple[int, str, str]] = []
        self._counts: Counter[str] = Counter()

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults, *, restart_script: bool = True) -> None:
        """Replace the settings. A new seed reseeds the generator.

        Args:
            faults: The new settings.
            restart_script: If True, the next request uses ``faults.script[0]``.
        """
        with self._lock:
            if faults.seed != self._faults.seed:
                self._random = random.Random(faults.seed)
            if restart_script or faults.script != self._faults.script:
                self._script_position = 0
            self._faults = faults

    def decide(self, seq: int, kind: str) -> Decision:
        """Draw the decision for request ``seq`` of path kind ``kind``."""
        with self._lock:
            faults = self._faults
            answer = self._next_scripted(kind)
            eligible = kind in faults.applies_to
            if answer is None and eligible:
                answer = self._draw_answer(faults)
            latency_s = self._draw_latency(faults.latency_for(kind)) if eligible else 0.0

            if answer is not None:
                self._note(seq, kind, answer.name)

            return Decision(answer, latency_s)

    def note_captive(self, seq: int, kind: str) -> bool:
        """Log a captive-portal answer if ``captive_portal`` is on, and return whether it is.

        The handler calls this before any other check, because a captive
        portal returns its page for every request.
        """
        with self._lock:
            if not self._faults.captive_portal:
                return False

            self._note(seq, kind, CAPTIVE_PORTAL)
            return True

    def log(self) -> list[tuple[int, str, str]]:
        with self._lock:
            return list(self._log)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._counts.clear()

    def _note(self, seq: int, kind: str, name: str) -> None:
        logger.debug("fault_injected seq=%d kind=%s fault=%s", seq, kind, name)
        self._log.append((seq, kind, name))
        self._counts[name] += 1

    def _next_scripted(self, kind: str) -> Answer | None:
        script = self._faults.script
        if self._script_position >= len(script):
            return None

        answer = script[self._script_position]
        if not answer.applies_to(kind):
            return None

        self._script_position += 1
        return answer

    def _draw_answer(self, faults: Faults) -> Answer | None:
        bands: Sequence[tuple[float, str]] = (
            (faults.reset_rate, RESET),
            (faults.blackhole_rate, BLACKHOLE),
            (faults.lost_response_rate, LOST_RESPONSE),
            (faults.throttle_rate, "throttle"),
            (faults.error_rate, "error"),
        )
        if not any(rate for rate, _ in bands):
            return None

        draw = self._random.random()
        for rate, name in bands:
            if draw < rate:
                return self._answer_named(faults, name)
            draw -= rate

        return None

    def _answer_named(self, faults: Faults, name: str) -> Answer:
        if name == "throttle":
            return Answer(status=429, retry_after=faults.retry_after)
        if name == "error":
            return Answer(status=self._random.choice(faults.error_statuses))

        return Answer(action=name)

    def _draw_latency(self, latency: Latency) -> float:
        if isinstance(latency, tuple):
            low, high = latency
            return self._random.uniform(low, high)

        return float(latency)


def _is_http_status(status: object) -> bool:
    return isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599


def _check_retry_after(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid: use whole seconds as an int >= 0")


def _check_latency(name: str, latency: object) -> None:
    if isinstance(latency, tuple) and len(latency) == 2:
        low, high = latency
        if _is_seconds(low) and _is_seconds(high) and low <= high:
            return
    elif _is_seconds(latency):
        return

    raise ValueError(f"Faults.{name}={latency!r} is invalid: use seconds >= 0 or a (lo, hi) tuple with lo <= hi")


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


# Answers for the non-status actions. They are set after the helpers above
# exist because the constructor validates its fields with them.
Answer.RESET = Answer(action=RESET)
Answer.BLACKHOLE = Answer(action=BLACKHOLE)
Answer.LOST_RESPONSE = Answer(action=LOST_RESPONSE)
Answer.CAPTIVE = Answer(action=CAPTIVE_PORTAL)
