"""Every bundled player trace reaches the emulator whole, in order, with rising ts."""

from __future__ import annotations

from itertools import pairwise

import pytest

from durabletrack.emulator import Emulator
from durabletrack.trace import bundled_trace_names, load_bundled_trace, replay
from tests.support import all_ts, make_tracker, records_for

TRACE_NAMES = ["adobe-timeline-1", "adobe-timeline-2", "adobe-timeline-3"]


def test_bundled_traces_are_the_three_timelines() -> None:
    assert bundled_trace_names() == TRACE_NAMES


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_trace_delivered_whole_and_in_order(name: str, emulator: Emulator, tmp_path) -> None:
    trace = load_bundled_trace(name)
    with make_tracker(emulator.url, tmp_path) as tracker:
        sessions = replay(trace, tracker)
        delivered = tracker.flush(timeout=30)
        records = records_for(emulator, tracker, sessions[0].handle)

    assert delivered
    assert len(records) == 1
    sent = [(event.event_type, event.playhead, event.params) for event in trace.events[1:]]
    received = [(body["eventType"], body["playerTime"]["playhead"], body.get("params")) for body in records[0].events]
    assert received == sent
    assert records[0].start["params"] == trace.events[0].params
    stamps = all_ts(records[0])
    assert all(later > earlier for earlier, later in pairwise(stamps))


def test_trace_custom_metadata_and_qoe_kept(emulator: Emulator, tmp_path) -> None:
    trace = load_bundled_trace("adobe-timeline-2")
    with make_tracker(emulator.url, tmp_path) as tracker:
        sessions = replay(trace, tracker)
        tracker.flush(timeout=30)
        record = records_for(emulator, tracker, sessions[0].handle)[0]

    qoe = [body.get("qoeData") for body in record.events if body["eventType"] == "play"]
    assert qoe[0] == {"media.qoe.bitrate": 10000}
