"""The ``durabletrack emulate`` command: run the emulator until stopped.

The command prints the base URL on its first line of output, serves until
Ctrl-C, SIGTERM or ``--duration`` seconds, then prints a summary of what it
received.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TextIO

from durabletrack.emulator.faults import DEFAULT_RETRY_AFTER_S, Faults, Latency
from durabletrack.emulator.server import DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, Emulator, is_loopback_host
from durabletrack.emulator.state import ExpiryPolicy

DEFAULT_PORT = 8080

# How often the main loop wakes up to notice Ctrl-C or the end of --duration.
MAIN_LOOP_POLL_S = 0.2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``durabletrack emulate``."""
    parser = argparse.ArgumentParser(
        prog="durabletrack emulate",
        description="Run a loopback emulator of the Adobe Media Collection API, with optional fault injection. "
        "Records are readable as JSON at GET /_emulator/sessions, /_emulator/accepted, /_emulator/rejected "
        "and /_emulator/faults.",
    )
    _add_server_options(parser)
    _add_fault_options(parser)
    _add_expiry_options(parser)
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on; loopback only unless --allow-remote (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port; 0 picks a free port (default: {DEFAULT_PORT})"
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a --host that is not a loopback address")
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest request body in bytes; larger bodies get 413 (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.add_argument(
        "--duration",
        type=_non_negative_float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C or SIGTERM)",
    )


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fault injection (rates are fractions of requests, from 0 to 1)")
    group.add_argument(
        "--session-latency",
        type=parse_latency,
        default=0.0,
        help="delay before responding to /sessions and /downloaded, in seconds, "
        "or a LO:HI range in seconds (default: 0)",
    )
    group.add_argument(
        "--event-latency",
        type=parse_latency,
        default=0.0,
        help="delay before responding to /events, in seconds, or a LO:HI range in seconds (default: 0)",
    )
    group.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests that get 500, 502, 503 or 504 (default: 0)",
    )
    group.add_argument(
        "--throttle-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests that get 429 with Retry-After (default: 0)",
    )
    group.add_argument(
        "--retry-after",
        type=_non_negative_int,
        default=DEFAULT_RETRY_AFTER_S,
        help=f"Retry-After value of 429 responses, in whole seconds (default: {DEFAULT_RETRY_AFTER_S})",
    )
    group.add_argument(
        "--reset-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests whose connection is reset before processing (default: 0)",
    )
    group.add_argument(
        "--blackhole-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests read and never responded to (default: 0)",
    )
    group.add_argument(
        "--lost-response-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests processed and recorded, then reset without a response (default: 0)",
    )
    group.add_argument(
        "--captive-portal", action="store_true", help="respond to every request with a 200 HTML login page"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the random fault decisions (default: 0)")


def _add_expiry_options(parser: argparse.ArgumentParser) -> None:
    defaults = ExpiryPolicy()
    group = parser.add_argument_group("session expiry")
    group.add_argument(
        "--idle-expiry",
        type=_positive_float,
        default=defaults.idle_s,
        help=f"close a session after this many seconds without events (default: {defaults.idle_s:g})",
    )
    group.add_argument(
        "--stalled-expiry",
        type=_positive_float,
        default=defaults.stalled_playhead_s,
        help="close a session after this many seconds without playhead movement "
        f"(default: {defaults.stalled_playhead_s:g})",
    )
    group.add_argument(
        "--max-age",
        type=_positive_float,
        default=defaults.max_age_s,
        help=f"close a session this many seconds after its creation (default: {defaults.max_age_s:g})",
    )


def parse_latency(text: str) -> Latency:
    """Parse ``"2.5"`` into seconds or ``"1:3"`` into a (lo, hi) range in seconds."""
    try:
        if ":" in text:
            low, high = (float(part) for part in text.split(":", 1))
            if 0 <= low <= high:
                return (low, high)
        elif float(text) >= 0:
            return float(text)
    except ValueError:
        pass

    raise argparse.ArgumentTypeError(
        f"invalid latency {text!r}: use seconds >= 0, such as 2.5, or a range LO:HI with LO <= HI"
    )


def _fraction(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"invalid fraction {text!r}: use a number from 0 to 1")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number of seconds > 0")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number of seconds >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use an integer >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use an integer >= 0")
    return value


def _number(text: str, kind: Callable[[str], float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def faults_from_args(args: argparse.Namespace) -> Faults:
    """Build the fault settings from parsed options. Raises ValueError if their rates sum over 1."""
    return Faults(
        session_latency=args.session_latency,
        event_latency=args.event_latency,
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        retry_after=args.retry_after,
        reset_rate=args.reset_rate,
        blackhole_rate=args.blackhole_rate,
        lost_response_rate=args.lost_response_rate,
        captive_portal=args.captive_portal,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``durabletrack emulate`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        0 after a clean stop. Invalid options exit with status 2, as
        argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback_host(args.host):
        parser.error(
            f"--host {args.host} is not a loopback address: use 127.0.0.1, ::1 or localhost, or pass --allow-remote"
        )

    try:
        faults = faults_from_args(args)
    except ValueError as error:
        parser.error(str(error))

    expiry = ExpiryPolicy(args.idle_expiry, args.stalled_expiry, args.max_age)
    emulator = Emulator(faults, expiry, args.max_body_bytes, args.host, args.port, allow_remote=args.allow_remote)
    try:
        emulator.start()
    except OSError as error:
        message = (
            f"cannot listen on {args.host}:{args.port}: {error.strerror}; choose another --port (0 picks a free one)"
        )
        print(f"durabletrack emulate: {message}", file=sys.stderr)
        return 2
    try:
        print(f"durabletrack emulator listening on {emulator.url}", flush=True)
        _serve_until_stopped(args.duration)
    finally:
        emulator.stop()

    print_summary(emulator, sys.stdout)
    return 0


def _serve_until_stopped(duration_s: float | None) -> None:
    stop_requested = threading.Event()
    previous = _install_sigterm_handler(stop_requested)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while not stop_requested.wait(MAIN_LOOP_POLL_S):
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _install_sigterm_handler(
    stop_requested: threading.Event,
) -> signal.Handlers | Callable[[int, FrameType | None], object] | int | None:
    # Python can install signal handlers only from the main thread.
    if threading.current_thread() is not threading.main_thread():
        return None

    def handle_sigterm(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    return signal.signal(signal.SIGTERM, handle_sigterm)


def print_summary(emulator: Emulator, output: TextIO) -> None:
    """Write what the emulator received as one JSON object."""
    sessions = emulator.sessions()
    deliveries = emulator.accepted()
    rejection_statuses = Counter(str(rejection.status) for rejection in emulator.rejected())
    summary = {
        "requests": emulator.requests_seen(),
        "sessions": len(sessions),
        "sessionsOpen": sum(1 for record in sessions if record.closed_reason is None),
        "eventsAccepted": sum(len(record.events) for record in sessions),
        "acceptedRequests": len(deliveries),
        "rejectedByStatus": dict(rejection_statuses),
        "faults": emulator.fault_counts(),
    }
    output.write("durabletrack emulator summary: " + json.dumps(summary, sort_keys=True) + "\n")
    output.flush()


if __name__ == "__main__":
    sys.exit(main())
