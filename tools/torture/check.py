"""The checker: compare what ``track()`` accepted with what the emulator recorded.

Rules, per session handle (its server sessions grouped by the marker of the
sessionStart, which a resumed sessionStart copies):

* An event is delivered when its marker reaches the emulator, or dead-lettered
  when it is in the dead-letter store. A marker in the ledger that is neither
  is lost.
* A body whose (marker, ``ts``) pair arrived before is a duplicate. Right
  after its sessionStart, a resumed session re-sends the open chapter, ad
  break, ad, states and playback state with new ``ts`` values. Those copies
  are counted as replayed, not as duplicates.
* Markers carry the index at which ``track()`` accepted them, so the first
  arrival of each marker must come in increasing index order across all the
  server sessions of a handle.
* Within one server session ``playerTime.ts`` must grow by at least 1 ms from
  body to body; exact duplicates are left out of that check.
* Each duplicate needs a fault to explain it: a kill, a lost response or a
  request that timed out. A handle with more duplicates than the kills of the
  run plus its own lost responses and timeouts fails the run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from durabletrack import DeadLetter
from durabletrack.emulator import Delivery, SessionRecord

from .ledger import Ledger
from .workload import REOPEN_TYPES, marker_of, parse_marker

LOST_RESPONSE = "lost_response"

PASSED = "PASS: nothing lost, reordered or duplicated beyond the bound"

# Failure examples printed under the table.
MAX_EXAMPLES = 5


@dataclass
class Evidence:
    """Everything a run leaves behind for the checker.

    Attributes:
        scenario: Scenario name.
        cycles: Child processes started (kill scenarios) or player threads (chaos).
        kills: SIGKILLs that hit a running child.
        wall_s: Wall time of the run, in seconds.
        ledger: The merged ledgers of every child or player thread.
        sessions: ``Emulator.sessions()``.
        deliveries: ``Emulator.accepted()``.
        fault_log: ``Emulator.fault_log()``.
        fault_counts: ``Emulator.fault_counts()``.
        session_ids: Session handle to ``Tracker.session_ids()``, read by the drainer.
        dead_letters: ``Tracker.dead_letters()`` of every data directory.
        undrained: Items still queued when the final drain gave up.
        queued: Markers of the events still queued after the final drain.
    """

    scenario: str
    cycles: int
    kills: int
    wall_s: float
    ledger: Ledger
    sessions: list[SessionRecord]
    deliveries: list[Delivery]
    fault_log: list[tuple[int, str, str]]
    fault_counts: dict[str, int]
    session_ids: dict[str, list[str]]
    dead_letters: list[DeadLetter]
    undrained: int = 0
    queued: set[str] = field(default_factory=set)


@dataclass
class Report:
    """The checker's findings; :meth:`failures` lists what breaks the guarantee."""

    scenario: str = ""
    cycles: int = 0
    kills: int = 0
    wall_s: float = 0.0
    accepted: int = 0
    delivered: int = 0
    maybe: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    still_queued: int = 0
    duplicates: int = 0
    duplicate_starts: int = 0
    lost_responses: int = 0
    timeouts: int = 0
    beyond_bound: dict[str, int] = field(default_factory=dict)
    order_violations: dict[str, int] = field(default_factory=dict)
    ts_violations: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    unexplained_copies: int = 0
    unmarked: int = 0
    replayed: int = 0
    server_sessions: int = 0
    resumed_sessions: int = 0
    orphan_sessions: int = 0
    registry_mismatches: int = 0
    undrained: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    library_errors: dict[str, int] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """Return one line per broken rule; empty when the run passed."""
        checks = [
            (len(self.lost), "events lost"),
            (sum(self.order_violations.values()), "order violations"),
            (sum(self.ts_violations.values()), "ts violations"),
            (sum(self.beyond_bound.values()), "duplicates beyond one per fault"),
            (self.unexplained_copies, "copies of an event with another ts outside a resume"),
            (self.unmarked, "unmarked events outside a resume"),
            (self.registry_mismatches, "session IDs missing from the emulator or out of order"),
            (self.undrained, "items left undelivered after the final drain"),
            (self.still_queued, "accepted events still queued (not lost, not delivered in time)"),
        ]

        return [f"{count} {what}" for count, what in checks if count]


@dataclass
class _HandleState:
    seen_pairs: set[tuple[str, int]] = field(default_factory=set)
    seen_markers: set[str] = field(default_factory=set)
    last_index: int = -1
    duplicates: int = 0
    order_violations: int = 0


def check(evidence: Evidence) -> Report:
    """Compare the evidence of a run and return the report."""
    report = Report(
        scenario=evidence.scenario,
        cycles=evidence.cycles,
        kills=evidence.kills,
        wall_s=evidence.wall_s,
        accepted=len(evidence.ledger.accepted),
        undrained=evidence.undrained,
        faults=dict(evidence.fault_counts),
        library_errors=dict(evidence.ledger.library_errors),
        server_sessions=len(evidence.sessions),
    )
    groups = _group_by_start_marker(evidence.sessions, report)
    delivered: set[str] = set()
    group_of_sid: dict[str, str] = {}
    duplicates_by_group: dict[str, int] = {}

    for start_marker, records in groups.items():
        state = _HandleState()
        for record in records:
            group_of_sid[record.sid] = start_marker
            _walk_session(record, state, report, delivered)
        duplicates_by_group[start_marker] = state.duplicates
        if state.order_violations:
            report.order_violations[start_marker] = state.order_violations

    dead_lettered = _count_dead_letters(evidence.dead_letters, report)
    _compare_with_ledger(evidence.ledger, delivered, dead_lettered | evidence.queued, report)
    report.still_queued = len(evidence.ledger.accepted & evidence.queued - delivered)
    _check_duplicate_bound(evidence, group_of_sid, duplicates_by_group, report)
    _compare_with_registry(evidence, groups, report)

    return report


def _group_by_start_marker(sessions: Iterable[SessionRecord], report: Report) -> dict[str, list[SessionRecord]]:
    groups: dict[str, list[SessionRecord]] = {}
    for record in sessions:
        marker = marker_of(record.start)
        if marker is None:
            report.unmarked += 1
            continue
        groups.setdefault(marker, []).append(record)

    return groups


def _is_resumed(start: dict[str, Any]) -> bool:
    params = start.get("params")
    return isinstance(params, dict) and params.get("media.resume") is True


def _walk_session(record: SessionRecord, state: _HandleState, report: Report, delivered: set[str]) -> None:
    """Classify every body of one server session and check its ``ts`` order."""
    _check_ts(record, report)
    start_marker = marker_of(record.start)
    assert start_marker is not None

    resumed = _is_resumed(record.start)
    if resumed:
        report.resumed_sessions += 1
    else:
        _classify(start_marker, _ts(record.start), state, report, delivered, is_start=True)

    events = record.events
    position = 0
    if resumed:
        position = _skip_replayed_prefix(events, state)
        report.replayed += position

    for event in events[position:]:
        marker = marker_of(event)
        if marker is None:
            report.unmarked += 1
            continue
        _classify(marker, _ts(event), state, report, delivered, is_start=False)


def _skip_replayed_prefix(events: list[dict[str, Any]], state: _HandleState) -> int:
    """Return how many leading events of a resumed session re-open its context."""
    position = 0
    for event in events:
        marker = marker_of(event)
        reopens = event.get("eventType") in REOPEN_TYPES
        if not reopens or (marker is not None and marker not in state.seen_markers):
            break
        position += 1

    return position


def _classify(
    marker: str, ts: int, state: _HandleState, report: Report, delivered: set[str], *, is_start: bool
) -> None:
    pair = (marker, ts)
    if pair in state.seen_pairs:
        state.duplicates += 1
        if is_start:
            report.duplicate_starts += 1
        else:
            report.duplicates += 1
        return
    if marker in state.seen_markers:
        report.unexplained_copies += 1
        return

    state.seen_pairs.add(pair)
    state.seen_markers.add(marker)
    delivered.add(marker)
    index = parse_marker(marker)[2]
    if index < state.last_index:
        state.order_violations += 1
    state.last_index = max(state.last_index, index)


def _check_ts(record: SessionRecord, report: Report) -> None:
    """Count bodies of one server session whose ts is not at least 1 ms after the previous one."""
    # A body sent again unchanged (same ts) is a duplicate, counted elsewhere.
    seen: set[str] = set()
    previous: int | None = None
    violations = 0
    for body in [record.start, *record.events]:
        text = json.dumps(body, sort_keys=True)
        if text in seen:
            continue
        seen.add(text)
        ts = _ts(body)
        if previous is not None and ts <= previous:
            violations += 1
            _note_example(report, f"ts {ts} after {previous} in {record.sid[:12]}: {_describe(record)}")
        previous = ts

    if violations:
        report.ts_violations[record.sid] = violations


def _note_example(report: Report, text: str) -> None:
    if len(report.examples) < MAX_EXAMPLES:
        report.examples.append(text)


def _describe(record: SessionRecord) -> str:
    """Return the event types, markers and ts of a session's bodies, for a failure example."""
    bodies = [record.start, *record.events]
    return " ".join(f"{body.get('eventType')}/{marker_of(body)}/{_ts(body)}" for body in bodies[:40])


def _ts(body: dict[str, Any]) -> int:
    return int(body["playerTime"]["ts"])


def _count_dead_letters(dead_letters: list[DeadLetter], report: Report) -> set[str]:
    markers: set[str] = set()
    for letter in dead_letters:
        marker = marker_of(json.loads(letter.event))
        if marker is not None:
            markers.add(marker)
        report.dead_letter_reasons[f"{letter.status} {letter.reason}"] += 1
    report.dead_lettered = len(dead_letters)

    return markers


def _compare_with_ledger(ledger: Ledger, delivered: set[str], retained: set[str], report: Report) -> None:
    """Count the ledger's markers that are neither delivered nor ``retained`` (dead letters, still queued) as lost."""
    report.delivered = len(delivered)
    report.maybe = len(delivered - ledger.accepted)
    report.lost = sorted(ledger.accepted - delivered - retained)


def _check_duplicate_bound(
    evidence: Evidence, group_of_sid: dict[str, str], duplicates_by_group: dict[str, int], report: Report
) -> None:
    """Fail every handle with more duplicates than faults that could explain them."""
    sid_of_seq = {delivery.seq: delivery.sid for delivery in evidence.deliveries}
    lost_by_group: Counter[str] = Counter()
    for seq, _kind, name in evidence.fault_log:
        if name == LOST_RESPONSE and sid_of_seq.get(seq) in group_of_sid:
            lost_by_group[group_of_sid[sid_of_seq[seq]]] += 1
    report.lost_responses = evidence.fault_counts.get(LOST_RESPONSE, 0)
    report.timeouts = sum(evidence.ledger.unknown_outcomes.values())

    for start_marker, duplicates in duplicates_by_group.items():
        handle = evidence.ledger.handles.get(start_marker, "")
        allowed = evidence.kills + lost_by_group[start_marker] + evidence.ledger.unknown_outcomes.get(handle, 0)
        if duplicates > allowed:
            report.beyond_bound[start_marker] = duplicates - allowed


def _compare_with_registry(evidence: Evidence, groups: dict[str, list[SessionRecord]], report: Report) -> None:
    """Check each handle's stored session IDs against the emulator's sessions of its marker.

    The stored IDs must appear in the emulator in the same order. Emulator
    sessions that the registry does not list are orphans: sessionStarts the
    collector processed while the client never learned the ID (lost response,
    timeout, or a kill before the ID was stored).
    """
    for start_marker, handle in evidence.ledger.handles.items():
        stored = evidence.session_ids.get(handle)
        if stored is None:
            continue
        recorded = [record.sid for record in groups.get(start_marker, [])]
        if not _is_subsequence(stored, recorded):
            report.registry_mismatches += 1
        report.orphan_sessions += len(set(recorded) - set(stored))


def _is_subsequence(items: list[str], sequence: list[str]) -> bool:
    remaining = iter(sequence)
    return all(item in remaining for item in items)


def render(report: Report) -> str:
    """Render the report as one Markdown table, then the verdict."""
    rows = [
        ("scenario", report.scenario),
        ("cycles (child processes or player threads)", report.cycles),
        ("kills that landed (SIGKILL of a running child)", report.kills),
        ("events accepted by track() (ledger, sessionStart included)", report.accepted),
        ("delivered (distinct markers at the emulator)", report.delivered),
        ("  of them returned but not in the ledger (killed before the line)", report.maybe),
        ("dead-lettered", f"{report.dead_lettered} {_reasons(report.dead_letter_reasons)}"),
        ("still queued when the final drain timed out", report.still_queued),
        ("lost", len(report.lost)),
        ("duplicate events", report.duplicates),
        ("duplicate sessionStarts (orphan server sessions)", report.duplicate_starts),
        (
            "faults that could explain duplicates",
            f"{report.kills + report.lost_responses + report.timeouts} "
            f"(kills {report.kills}, lost responses {report.lost_responses}, timeouts {report.timeouts})",
        ),
        ("handles with duplicates beyond one per fault", len(report.beyond_bound)),
        ("order violations (handles / events)", _pair(report.order_violations)),
        ("ts violations (server sessions / bodies)", _pair(report.ts_violations)),
        (
            "server sessions / resumed / orphan",
            f"{report.server_sessions} / {report.resumed_sessions} / {report.orphan_sessions}",
        ),
        ("events re-sent to reopen a resumed session", report.replayed),
        ("faults injected by the emulator", _reasons(Counter(report.faults)) or "none"),
        ("library errors logged", _reasons(Counter(report.library_errors)) or "none"),
        ("wall time", f"{report.wall_s:.0f} s"),
    ]
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]

    failures = report.failures()
    verdict = "FAIL: " + "; ".join(failures) if failures else PASSED
    if report.lost:
        verdict += "\nfirst lost markers: " + " ".join(report.lost[:10])
    for example in report.examples:
        verdict += "\nexample: " + example

    return "\n".join(lines) + "\n\n" + verdict


def _reasons(counts: Counter[str]) -> str:
    if not counts:
        return ""
    return "(" + ", ".join(f"{name}: {count}" for name, count in sorted(counts.items())) + ")"


def _pair(per_key: dict[str, int]) -> str:
    return f"{len(per_key)} / {sum(per_key.values())}"
