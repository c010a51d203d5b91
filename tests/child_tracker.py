"""Child process for crash and multi-process tests.

Usage: python -m tests.child_tracker DATA_DIR ENDPOINT COUNT [--exit] [--media-id ID]

Prints ``started HANDLE draining=BOOL`` once, then ``tracked N`` after the
``track()`` of event N returned, flushing stdout each time, so the parent
knows which events the library had accepted when it killed this process.
With ``--exit`` the child returns from main after the last event without
calling ``close()``, and prints ``exiting`` first; otherwise it then waits
to be killed.
"""

from __future__ import annotations

import argparse
import sys
import threading

from durabletrack import Tracker
from tests.support import FAST_RETRY, session_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--exit", action="store_true")
    parser.add_argument("--media-id", default="ep-0042")
    args = parser.parse_args()

    tracker = Tracker(args.endpoint, args.data_dir, retry=FAST_RETRY, request_timeout=5.0, poll_interval=0.5)
    session = tracker.start_session(session_params(**{"media.id": args.media_id}))
    draining = tracker.stats().is_draining
    print(f"started {session.handle} draining={draining}", flush=True)

    for index in range(args.count):
        session.track("ping", float(index))
        print(f"tracked {index}", flush=True)

    if args.exit:
        print("exiting", flush=True)
        return
    threading.Event().wait(600)  # parked until the parent kills it


if __name__ == "__main__":
    main()
    sys.exit(0)
