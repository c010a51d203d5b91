"""The ``durabletrack`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__, ops_cli
from .demo import add_demo_arguments, add_replay_arguments, run_demo, run_replay
from .trace import TraceFormatError

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every ``durabletrack`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="durabletrack",
        description="Durable media-tracking delivery to a Media Collection API endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"durabletrack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="replay a bundled trace through a Tracker to an embedded emulator and report delivery",
        description="Start an emulator on 127.0.0.1 whose session responses are slow, replay a "
        "bundled player trace through a Tracker and print what was delivered, dead-lettered and lost.",
    )
    add_demo_arguments(demo)
    demo.set_defaults(run=run_demo)

    replay = commands.add_parser(
        "replay",
        help="replay any trace file to an endpoint (default: an embedded emulator)",
        description="Replay a trace file (JSON Lines) through a Tracker and report delivery.",
    )
    add_replay_arguments(replay)
    replay.set_defaults(run=run_replay)

    ops_cli.register(commands)

    commands.add_parser(
        "emulate",
        add_help=False,
        help="run the collection API emulator on loopback (see: durabletrack emulate --help)",
    )

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulate"]:
        from .emulator.cli import main as emulate_main

        return emulate_main(args_list[1:])

    args = build_parser().parse_args(args_list)
    run: Command = args.run
    try:
        return run(args)
    except TraceFormatError as error:
        print(f"durabletrack: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away; send the rest nowhere and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
