"""Marked player sessions: bundled traces and random sessions.

Every event the harness tracks carries a unique marker in its custom metadata
under ``MARKER_KEY``. A marker is ``<run>.<cycle>.<index>``: the run, the child
process (cycle) that tracked it, and its position among that child's events,
so the index of a session's markers grows in the order ``track()`` accepted
them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from durabletrack.trace import TraceEvent, bundled_trace_names, load_bundled_trace

# Custom metadata keys must match ^[a-zA-Z0-9_.]+$ and must not start with
# "media." or "a.", which the collection API reserves.
MARKER_KEY = "dtmark"

SESSION_START = "sessionStart"

# Event types a resumed session re-sends to reopen its context.
REOPEN_TYPES = frozenset({"chapterStart", "adBreakStart", "adStart", "stateStart", "play", "pauseStart", "bufferStart"})

_START_PARAMS = {
    "analytics.trackingServer": "acme.sc.omtrdc.net",
    "analytics.reportSuite": "acmeprod",
    "visitor.marketingCloudOrgId": "0123456789ABCDEF@AdobeOrg",
    "media.id": "torture",
    "media.length": 1800.0,
    "media.contentType": "vod",
    "media.playerName": "torture-player",
    "media.channel": "torture",
}

_AD_BREAK = {"media.ad.podFriendlyName": "mid", "media.ad.podIndex": 1, "media.ad.podSecond": 0.0}
_AD = {
    "media.ad.name": "Ad",
    "media.ad.id": "ad-1",
    "media.ad.length": 15,
    "media.ad.podPosition": 1,
    "media.ad.playerName": "torture-player",
}
_CHAPTER = {"media.chapter.index": 1, "media.chapter.offset": 0.0, "media.chapter.length": 300.0}
_STATE = {"media.state.name": "fullscreen"}


@dataclass(frozen=True)
class Step:
    """One call of a planned session: sessionStart first, then ``track()`` calls.

    Attributes:
        event_type: The collection API ``eventType``.
        playhead: Playhead in seconds.
        params, custom_metadata, qoe_data: Optional fields, or None.
    """

    event_type: str
    playhead: float
    params: dict[str, Any] | None = None
    custom_metadata: dict[str, str] | None = None
    qoe_data: dict[str, Any] | None = None


def make_marker(run: str, cycle: int, index: int) -> str:
    """Return the marker of event ``index`` tracked by child ``cycle`` of ``run``."""
    return f"{run}.{cycle}.{index}"


def parse_marker(marker: str) -> tuple[str, int, int]:
    """Split a marker into (run, cycle, index). Raises ValueError if it is not one."""
    run, cycle, index = marker.rsplit(".", 2)

    return run, int(cycle), int(index)


def marker_of(body: dict[str, Any]) -> str | None:
    """Return the marker of an event body, or None if it has none."""
    metadata = body.get("customMetadata")
    if not isinstance(metadata, dict):
        return None

    value = metadata.get(MARKER_KEY)
    return value if isinstance(value, str) else None


def with_marker(step: Step, marker: str) -> Step:
    """Return ``step`` with ``marker`` added to its custom metadata."""
    metadata = dict(step.custom_metadata or {})
    metadata[MARKER_KEY] = marker

    return dataclasses.replace(step, custom_metadata=metadata)


def plan_session(rng: random.Random, max_events: int) -> list[Step]:
    """Plan one session: a bundled trace (cut to ``max_events``) or a random one."""
    if rng.random() < 0.4:
        return _trace_steps(rng.choice(bundled_trace_names()), max_events)

    return _random_steps(rng, max_events)


def _trace_steps(name: str, max_events: int) -> list[Step]:
    events: list[TraceEvent] = load_bundled_trace(name).events
    steps = [Step(e.event_type, e.playhead, e.params, e.custom_metadata, e.qoe_data) for e in events]

    return steps[: max(max_events, 1)]


def _random_steps(rng: random.Random, max_events: int) -> list[Step]:
    steps = [Step(SESSION_START, 0.0, dict(_START_PARAMS))]
    playhead = 0.0
    for event_type, params, qoe in _random_blocks(rng):
        if len(steps) >= max_events:
            break
        playhead += rng.choice((0.0, 1.0, 10.0))
        steps.append(Step(event_type, playhead, params, None, qoe))

    if rng.random() < 0.3:
        steps.append(Step("sessionComplete", playhead))
    if rng.random() < 0.6:
        steps.append(Step("sessionEnd", playhead))

    return steps


def _random_blocks(rng: random.Random) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    # Blocks keep the sequence plausible for a player: an ad opens inside an
    # ad break, a pause is followed by play, and so on.
    yield "play", None, None
    while True:
        choice = rng.random()
        if choice < 0.45:
            yield "ping", None, None
        elif choice < 0.55:
            yield from (("adBreakStart", dict(_AD_BREAK), None), ("adStart", dict(_AD), None), ("ping", None, None))
            yield from (("adComplete", None, None), ("adBreakComplete", None, None), ("play", None, None))
        elif choice < 0.65:
            yield from (("chapterStart", dict(_CHAPTER), None), ("ping", None, None), ("chapterComplete", None, None))
        elif choice < 0.75:
            yield from (("stateStart", dict(_STATE), None), ("ping", None, None), ("stateEnd", dict(_STATE), None))
        elif choice < 0.85:
            yield from (("pauseStart", None, None), ("play", None, None))
        elif choice < 0.92:
            yield from (("bufferStart", None, None), ("play", None, None))
        else:
            yield "bitrateChange", None, {"media.qoe.bitrate": rng.choice((800_000, 2_500_000, 6_000_000))}
