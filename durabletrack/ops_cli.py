"""``durabletrack`` subcommands that show and act on a data directory.

``status``, ``inspect`` and ``dead-letters`` only read. ``requeue`` and
``purge`` change only what they are named for. ``drain`` runs a Tracker, so
it takes the drain lock if it is free. Identifier values (visitor and
customer IDs, see :mod:`durabletrack.redact`) are shown as ``<redacted>``
unless ``--show-values`` is passed.

Exit statuses:

- 0: success.
- 1: the work is incomplete. ``drain`` left events queued or dead-lettered
  some, ``requeue`` skipped dead letters, or a purge was cancelled at the prompt.
- 2: invalid usage or an unusable data directory.
- 3: another process holds the drain lock.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

from . import ops
from .errors import DurabletrackError
from .redact import identifier_values, redact_event, redact_text
from .tracker import Tracker

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3

DEFAULT_DRAIN_TIMEOUT = 300.0
# How long drain waits for its Tracker to take the drain lock before it
# reports the directory as busy. The worker tries as soon as it starts.
LOCK_WAIT_S = 5.0
PROGRESS_INTERVAL_S = 0.5
PROGRESS_WIDTH = 30

_EXIT_HELP = "exit status: 0 success, 1 incomplete, 2 invalid usage or data directory, 3 locked by another drainer"


def register(commands: Any) -> None:
    """Add the data-directory subcommands to ``commands`` (an argparse subparsers object)."""
    _add_status(commands)
    _add_inspect(commands)
    _add_dead_letters(commands)
    _add_requeue(commands)
    _add_purge(commands)
    _add_drain(commands)


# Parsers --------------------------------------------------------------------


def _parser(commands: Any, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=description, epilog=_EXIT_HELP
    )
    parser.add_argument("dir", metavar="DIR", help="data directory of a Tracker (the one with registry.db)")

    return parser


def _add_show_values(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show-values",
        action="store_true",
        help="show visitor and customer IDs instead of <redacted>",
    )


def _add_status(commands: Any) -> None:
    parser = _parser(
        commands,
        "status",
        "summarise what a data directory holds (read-only)",
        "Show sessions by state, queued events, the oldest event's age, dead letters, disk use, "
        "counters and the drainer's process ID. Opens the databases read-only.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    parser.set_defaults(run=run_status)


def _add_inspect(commands: Any) -> None:
    parser = _parser(
        commands,
        "inspect",
        "list the events a session still has to deliver, in order (read-only)",
        "List what each session still has to deliver, in the order a drainer sends it: the "
        "sessionStart while the session has no session ID, events to re-send after a resume, then "
        "queued events.",
    )
    parser.add_argument("--session", metavar="HANDLE", help="only this session (a handle or a unique prefix of one)")
    parser.add_argument("--json", action="store_true", help="print a JSON array for scripts")
    _add_show_values(parser)
    parser.set_defaults(run=run_inspect)


def _add_dead_letters(commands: Any) -> None:
    parser = _parser(
        commands,
        "dead-letters",
        "list the events the collector rejected, with its answers (read-only)",
        "List dead letters, oldest first, with the HTTP status, reason and response body.",
    )
    parser.add_argument("--session", metavar="HANDLE", help="only this session (a handle or a unique prefix of one)")
    parser.add_argument(
        "--export",
        metavar="FILE",
        help="write them to FILE as JSON Lines (mode 0600; an existing FILE is not overwritten), or to stdout with -",
    )
    _add_show_values(parser)
    parser.set_defaults(run=run_dead_letters)


def _add_requeue(commands: Any) -> None:
    parser = _parser(
        commands,
        "requeue",
        "put dead letters back in their session's queue",
        "Put dead letters back in their session's queue, each at the place it left. A rejected "
        "session is reopened, so its sessionStart is sent again. Dead letters of closed sessions "
        "stay. The events go out when an app or 'durabletrack drain' next drains the directory.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, nargs="+", dest="ids", metavar="N", help="dead-letter IDs (see dead-letters)")
    which.add_argument("--all", action="store_true", help="every dead letter (of --session, if given)")
    parser.add_argument("--session", metavar="HANDLE", help="only this session (a handle or a unique prefix of one)")
    parser.set_defaults(run=run_requeue)


def _add_purge(commands: Any) -> None:
    parser = _parser(
        commands,
        "purge",
        "delete every queued event, session and dead letter",
        "Delete every queued event, session and dead letter and compact the files. Counters and "
        "the opt-out setting stay. Asks for confirmation on the terminal unless --yes is given. "
        "Refuses while a process drains the directory.",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(run=run_purge)


def _add_drain(commands: Any) -> None:
    parser = _parser(
        commands,
        "drain",
        "deliver what a data directory holds, then exit",
        "Run a Tracker on DIR until every queued event is delivered or dead-lettered, or the "
        "timeout passes, showing progress and a summary. Exits with status 3 if another process "
        "already drains DIR.",
    )
    parser.add_argument(
        "--endpoint", required=True, metavar="URL", help="collector base URI (https://, or http:// on loopback)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help=f"stop waiting after this many seconds (default: {DEFAULT_DRAIN_TIMEOUT:g})",
    )
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the endpoint's TLS certificate with")
    parser.add_argument(
        "--allow-insecure-http", action="store_true", help="allow a plain http:// endpoint that is not loopback"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the library's log events on stderr")
    parser.set_defaults(run=run_drain)


# Shared helpers ---------------------------------------------------------------


def _fail(message: str, status: int) -> int:
    print(f"durabletrack: {message}", file=sys.stderr)
    return status


def _format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"

    return f"{hours // 24}d {hours % 24:02d}h"


def _format_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _show_body(text: str, show_values: bool, known_values: Iterable[str] = ()) -> str:
    if show_values:
        return text

    return redact_text(text, known_values)


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _resolve_session(directory: str, handle: str | None) -> str | None:
    return None if handle is None else ops.resolve_handle(directory, handle)


def _run_guarded(action: Any, args: argparse.Namespace) -> int:
    """Run ``action(args)`` and turn the errors every command shares into exit statuses."""
    try:
        return int(action(args))
    except ops.DirectoryLockedError as error:
        return _fail(str(error), EXIT_LOCKED)
    except (ops.DataDirError, ops.SessionNotFoundError) as error:
        return _fail(str(error), EXIT_USAGE)


# status -----------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    """Run ``durabletrack status``."""
    return _run_guarded(_status, args)


def _status(args: argparse.Namespace) -> int:
    status = ops.read_status(args.dir)
    now = time.time()
    if args.json:
        print(json.dumps(status.to_json(now), indent=2, sort_keys=True))
    else:
        _print_status(status, now, sys.stdout)

    return EXIT_OK


def _print_status(status: ops.DirectoryStatus, now: float, out: TextIO) -> None:
    oldest = status.oldest_queued_at
    states = ", ".join(f"{state} {count}" for state, count in sorted(status.sessions_by_state.items())) or "none"
    totals = ", ".join(f"{name} {value}" for name, value in sorted(status.totals.items())) or "none saved yet"
    drainer = "none" if status.drainer_pid is None else f"process {status.drainer_pid} holds the drain lock"
    lines = [
        f"data directory  {status.path} (mode {status.mode:04o})",
        f"drainer         {drainer}",
        f"opted out       {'yes' if status.opted_out else 'no'}",
        f"sessions        {states}",
        f"queued events   {status.queued_events}"
        + ("" if oldest is None else f", oldest queued {_format_age(now - oldest)} ago"),
        f"dead letters    {status.dead_letters}",
        f"on disk         {status.bytes_on_disk} bytes",
        f"totals          {totals}",
    ]
    for name in status.quarantined:
        lines.append(f"WARNING         {name} was moved aside as corrupt by a Tracker; it is kept for examination")
    for path in status.wide_permissions:
        lines.append(
            f"WARNING         {path} is readable by other users; expected mode 0700 for the directory, 0600 for files"
        )
    out.write("\n".join(lines) + "\n")

    if status.sessions:
        out.write(f"\n{'handle':32}  {'state':9} {'queued':>6} {'oldest':>9} {'dead':>5}  session ID\n")
    for session in status.sessions:
        age = None if session.oldest_queued_at is None else now - session.oldest_queued_at
        session_id = session.session_ids[-1] if session.session_ids else "-"
        out.write(
            f"{session.handle:32}  {session.state:9} {session.queued_events:>6}"
            f" {_format_age(age):>9} {session.dead_letters:>5}  {session_id}\n"
        )


# inspect ----------------------------------------------------------------------


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``durabletrack inspect``."""
    return _run_guarded(_inspect, args)


def _inspect(args: argparse.Namespace) -> int:
    handle = _resolve_session(args.dir, args.session)
    handles = [handle] if handle else [session.handle for session in ops.read_status(args.dir).sessions]
    listing = [(session_handle, ops.read_queued_events(args.dir, session_handle)) for session_handle in handles]

    if args.json:
        rows = [
            _item_json(session_handle, item, args.show_values) for session_handle, items in listing for item in items
        ]
        print(json.dumps(rows, indent=2))
    else:
        _print_queued(listing, args.show_values, sys.stdout)

    return EXIT_OK


def _item_json(handle: str, item: ops.QueuedItem, show_values: bool) -> dict[str, Any]:
    event = _decoded(item.body)

    return {
        "handle": handle,
        "kind": item.kind,
        "queue_id": item.queue_id,
        "queued_at": item.queued_at,
        "event": event if show_values else redact_event(event),
    }


def _print_queued(listing: list[tuple[str, list[ops.QueuedItem]]], show_values: bool, out: TextIO) -> None:
    if not listing:
        out.write("no session has anything queued\n")
    now = time.time()
    for handle, items in listing:
        out.write(f"session {handle}: {len(items)} item(s) to deliver\n")
        for position, item in enumerate(items, start=1):
            row = "-" if item.queue_id is None else str(item.queue_id)
            age = "-" if item.queued_at is None else _format_age(now - item.queued_at) + " ago"
            out.write(f"  {position:>4}  {item.kind:12} row {row:>6}  queued {age}\n")
            out.write(f"        {_show_body(item.body, show_values)}\n")


# dead-letters -------------------------------------------------------------------


def run_dead_letters(args: argparse.Namespace) -> int:
    """Run ``durabletrack dead-letters``."""
    return _run_guarded(_dead_letters, args)


def _dead_letters(args: argparse.Namespace) -> int:
    handle = _resolve_session(args.dir, args.session)
    rows = ops.read_dead_letters(args.dir, handle)
    # A collector may quote a rejected value in its response body in plain text.
    known: set[str] = set()
    for row in rows:
        known |= identifier_values(_decoded(row.event))

    if args.export:
        return _export_dead_letters(rows, args.export, args.show_values, known)

    _print_dead_letters(rows, args.show_values, known, sys.stdout)

    return EXIT_OK


def _dead_letter_json(row: ops.DeadLetterRow, show_values: bool, known: set[str]) -> dict[str, Any]:
    event = _decoded(row.event)

    return {
        "id": row.id,
        "handle": row.handle,
        "queue_id": row.queue_id,
        "status": row.status,
        "reason": row.reason,
        "created_at": row.created_at,
        "event": event if show_values else redact_event(event),
        "response": _show_body(row.response, show_values, known),
    }


def _export_dead_letters(rows: list[ops.DeadLetterRow], target: str, show_values: bool, known: set[str]) -> int:
    lines = "".join(json.dumps(_dead_letter_json(row, show_values, known), ensure_ascii=False) + "\n" for row in rows)
    if target == "-":
        sys.stdout.write(lines)
        return EXIT_OK

    try:
        # Dead letters are tracking data: the export gets the data files' mode.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _fail(f"{target}: already exists; choose another file name or delete it", EXIT_USAGE)
    except OSError as error:
        return _fail(f"{target}: cannot be created: {error.strerror}", EXIT_USAGE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(lines)
    print(f"wrote {len(rows)} dead letter(s) to {target}", file=sys.stderr)

    return EXIT_OK


def _print_dead_letters(rows: list[ops.DeadLetterRow], show_values: bool, known: set[str], out: TextIO) -> None:
    if not rows:
        out.write("no dead letters\n")
    for row in rows:
        status = "-" if row.status is None else str(row.status)
        out.write(
            f"dead letter {row.id}  session {row.handle}  row {row.queue_id}  status {status}  "
            f"reason {row.reason}  at {_format_time(row.created_at)}\n"
        )
        out.write(f"  event:    {_show_body(row.event, show_values, known)}\n")
        out.write(f"  response: {_show_body(row.response, show_values, known)}\n")


# requeue ----------------------------------------------------------------------


def run_requeue(args: argparse.Namespace) -> int:
    """Run ``durabletrack requeue``."""
    return _run_guarded(_requeue, args)


def _requeue(args: argparse.Namespace) -> int:
    handle = _resolve_session(args.dir, args.session)
    report = ops.requeue_dead_letters(args.dir, ids=None if args.all else args.ids, handle=handle)

    print(
        f"requeued {len(report.requeued)} dead letter(s)"
        + (f": {_id_list(report.requeued)}" if report.requeued else "")
    )
    for reopened in report.reopened:
        print(f"session {reopened} was rejected and is reopened: its sessionStart will be sent again")
    for dead_id, reason in report.skipped:
        print(f"skipped dead letter {dead_id}: {reason}", file=sys.stderr)
    if report.requeued:
        print("they are delivered when an app or 'durabletrack drain' next drains the directory")

    return EXIT_INCOMPLETE if report.skipped else EXIT_OK


def _id_list(ids: list[int]) -> str:
    return " ".join(str(dead_id) for dead_id in ids)


# purge ----------------------------------------------------------------------


def run_purge(args: argparse.Namespace) -> int:
    """Run ``durabletrack purge``."""
    return _run_guarded(_purge, args)


def _purge(args: argparse.Namespace) -> int:
    status = ops.read_status(args.dir)
    ops.check_not_drained(status.path)
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail(
                f"{status.path}: not purged: confirmation needs a terminal on stdin; "
                "pass --yes to purge without asking",
                EXIT_USAGE,
            )
        if not _confirm_purge(status):
            print("purge cancelled; nothing was deleted")
            return EXIT_INCOMPLETE

    report = ops.purge(status.path)
    print(
        f"purged {status.path}: {report.sessions} session(s), {report.queued_rows} queue row(s), "
        f"{report.dead_letters} dead letter(s)"
    )

    return EXIT_OK


def _confirm_purge(status: ops.DirectoryStatus) -> bool:
    sessions = sum(status.sessions_by_state.values())
    prompt = (
        f"Delete everything tracked in {status.path}: {sessions} session(s), {status.queued_events} queued "
        f"event(s), {status.dead_letters} dead letter(s)? This cannot be undone. Type 'yes' to confirm: "
    )
    try:
        answer = input(prompt)
    except EOFError:
        return False

    return answer.strip().lower() == "yes"


# drain ------------------------------------------------------------------------


def run_drain(args: argparse.Namespace) -> int:
    """Run ``durabletrack drain``."""
    return _run_guarded(_drain, args)


def _drain(args: argparse.Namespace) -> int:
    status = ops.read_status(args.dir)
    ops.check_not_drained(status.path)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    options: dict[str, Any] = {"allow_insecure_http": args.allow_insecure_http}
    if args.ca_bundle:
        options["ca_bundle"] = args.ca_bundle
    try:
        tracker = Tracker(args.endpoint, status.path, **options)
    except DurabletrackError as error:
        message = str(error).replace("pass allow_insecure_http=True", "pass --allow-insecure-http")
        return _fail(message, EXIT_USAGE)

    try:
        return _drain_with(tracker, status, args)
    finally:
        tracker.close(timeout=1.0)


def _drain_with(tracker: Tracker, status: ops.DirectoryStatus, args: argparse.Namespace) -> int:
    if not _wait_for_lock(tracker):
        raise ops.DirectoryLockedError(status.path, ops.find_drainer_pid(status.path))

    # Counted before the Tracker opened: its worker may have sent items by now.
    total = max(status.queued_events, tracker.stats().queued_events)
    print(f"draining {status.path} to {args.endpoint}: {total} item(s) queued", file=sys.stderr)
    started = time.monotonic()
    progress = _Progress(sys.stderr, total)
    done = False
    while not done and time.monotonic() - started < args.timeout:
        remaining = args.timeout - (time.monotonic() - started)
        done = tracker.flush(min(PROGRESS_INTERVAL_S, max(remaining, 0.0)))
        progress.show(tracker.stats())
    progress.finish(tracker.stats())

    return _print_drain_summary(tracker.stats(), time.monotonic() - started, args.timeout)


def _wait_for_lock(tracker: Tracker) -> bool:
    # The worker takes the lock from its own thread as it starts. Taking it
    # here would skip the recovery of a killed drainer's in-flight items.
    deadline = time.monotonic() + LOCK_WAIT_S
    pause = threading.Event()
    while time.monotonic() < deadline:
        if tracker.stats().is_draining:
            return True
        pause.wait(0.05)

    return bool(tracker.stats().is_draining)


class _Progress:
    """Draws a progress bar on a terminal, or a line per second elsewhere."""

    def __init__(self, out: TextIO, total: int) -> None:
        self._out = out
        self._total = total
        self._is_terminal = out.isatty()
        self._last_line_at = 0.0
        self._last_line = ""

    def show(self, stats: Any) -> None:
        line = self._line(stats)
        if self._is_terminal:
            self._out.write("\r" + line)
        elif time.monotonic() - self._last_line_at >= 1.0:
            self._out.write(line + "\n")
            self._last_line_at = time.monotonic()
            self._last_line = line
        self._out.flush()

    def finish(self, stats: Any) -> None:
        """Draw the final state, which a line-per-second output may not have shown yet."""
        line = self._line(stats)
        if self._is_terminal:
            self._out.write("\r" + line + "\n")
        elif line != self._last_line:
            self._out.write(line + "\n")
        self._out.flush()

    def _line(self, stats: Any) -> str:
        total = max(self._total, stats.queued_events)
        done = total - stats.queued_events
        counters = stats.counters
        filled = PROGRESS_WIDTH if total == 0 else PROGRESS_WIDTH * done // total
        bar = "#" * filled + "-" * (PROGRESS_WIDTH - filled)

        return (
            f"[{bar}] {done}/{total}  events delivered {counters.get('delivered', 0)}"
            f"  sessions opened {counters.get('sessions_opened', 0)}"
            f"  dead-lettered {counters.get('dead_lettered', 0)}  retries {counters.get('retried', 0)}"
        )


def _print_drain_summary(stats: Any, seconds: float, timeout: float) -> int:
    counters = stats.counters
    dead = counters.get("dead_lettered", 0)
    print(
        "Summary\n"
        f"  delivered          {counters.get('delivered', 0)}\n"
        f"  sessions opened    {counters.get('sessions_opened', 0)} (resumed {counters.get('sessions_resumed', 0)})\n"
        f"  dead-lettered      {dead}\n"
        f"  retries            {counters.get('retried', 0)}\n"
        f"  still queued       {stats.queued_events}\n"
        f"  time taken         {seconds:.1f} s"
    )
    if stats.queued_events:
        errors = sorted({session.last_error for session in stats.sessions if session.last_error})
        reason = f"; last errors: {', '.join(errors)}" if errors else ""
        return _fail(f"{stats.queued_events} item(s) still queued after {timeout:g} s{reason}", EXIT_INCOMPLETE)
    if dead:
        return _fail(
            f"{dead} item(s) were rejected and dead-lettered; see 'durabletrack dead-letters'", EXIT_INCOMPLETE
        )

    return EXIT_OK


__all__ = ["EXIT_INCOMPLETE", "EXIT_LOCKED", "EXIT_OK", "EXIT_USAGE", "register"]
