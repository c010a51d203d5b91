"""What is open in a session, and the events that reopen it after a resume.

The collector closes a session after 10 minutes without events, and responds
with 404 or 410 to later events. The worker then opens a resumed session and must
re-send what was open at that point: chapter, ad break, ad, player states and
the playback state. This module derives that context from delivered events.
"""

from __future__ import annotations

import json
from typing import Any

# Playback state each event type leaves the player in.
_PLAYBACK_STATES = {"play": "play", "pauseStart": "pauseStart", "bufferStart": "bufferStart"}


def update_context(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """Return the context after ``event`` was delivered, or None if it did not change.

    The context is a plain JSON object: ``playback`` (the event type that set
    the playback state), ``chapter``, ``ad_break`` and ``ad`` (the params and
    custom metadata of the open ones), and ``states`` (active player states).
    """
    event_type = event.get("eventType")
    new = dict(context)
    opened = {key: value for key, value in event.items() if key in ("params", "customMetadata")}

    if event_type in _PLAYBACK_STATES:
        new["playback"] = _PLAYBACK_STATES[event_type]
    elif event_type == "chapterStart":
        new["chapter"] = opened
    elif event_type in ("chapterComplete", "chapterSkip"):
        new.pop("chapter", None)
    elif event_type == "adBreakStart":
        new["ad_break"] = opened
        new.pop("ad", None)
    elif event_type == "adStart":
        new["ad"] = opened
    elif event_type in ("adComplete", "adSkip"):
        new.pop("ad", None)
    elif event_type == "adBreakComplete":
        new.pop("ad_break", None)
        new.pop("ad", None)
    elif event_type in ("stateStart", "stateEnd", "statesUpdate"):
        new["states"] = _update_states(new.get("states", []), event_type, event.get("params", {}))

    return new if new != context else None


def resume_events(
    start: dict[str, Any], context: dict[str, Any], playhead: float, next_ts: int
) -> tuple[str, list[str]]:
    """Build the resumed sessionStart and the events that reopen ``context``.

    Args:
        start: The session's original sessionStart body.
        context: What was open at the last delivered event.
        playhead: Playhead of the next event to send, in seconds.
        next_ts: ``ts`` of the next event to send, in epoch milliseconds. The
            resumed events take the milliseconds just before it, so the
            collector orders them first.

    Returns:
        The sessionStart body and the re-sent events, all as JSON text.
    """
    bodies = [_reopen_body(event_type, fields) for event_type, fields in _open_items(context)]
    first_ts = next_ts - len(bodies) - 1

    params = dict(start.get("params", {}))
    params["media.resume"] = True
    session_start = {key: value for key, value in start.items() if key != "playerTime"}
    session_start["params"] = params
    session_start["playerTime"] = {"playhead": playhead, "ts": first_ts}

    texts = []
    for offset, body in enumerate(bodies, start=1):
        body["playerTime"] = {"playhead": playhead, "ts": first_ts + offset}
        texts.append(_dumps(body))

    return _dumps(session_start), texts


def _open_items(context: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items: list[tuple[str, dict[str, Any]]] = []
    for key, event_type in (("chapter", "chapterStart"), ("ad_break", "adBreakStart"), ("ad", "adStart")):
        if key in context:
            items.append((event_type, context[key]))
    for name in context.get("states", []):
        items.append(("stateStart", {"params": {"media.state.name": name}}))
    if "playback" in context:
        items.append((context["playback"], {}))

    return items


def _reopen_body(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"eventType": event_type}
    body.update(fields)

    return body


def _update_states(states: list[str], event_type: str, params: dict[str, Any]) -> list[str]:
    active = list(states)
    if event_type == "stateStart":
        started, ended = [params.get("media.state.name")], []
    elif event_type == "stateEnd":
        started, ended = [], [params.get("media.state.name")]
    else:
        started = [item.get("media.state.name") for item in params.get("statesStart", [])]
        ended = [item.get("media.state.name") for item in params.get("statesEnd", [])]

    for name in ended:
        if name in active:
            active.remove(name)
    for name in started:
        if name is not None and name not in active:
            active.append(name)

    return active


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
