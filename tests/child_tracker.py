"""Child process for crash tests: tracks events and reports each one after track() returns.

Usage: python -m tests.child_tracker DATA_DIR ENDPOINT COUNT

Prints ``started HANDLE`` once, then ``tracked N`` after the ``track()`` of
event N returned, and flushes stdout each time, so the parent knows which
events the library had accepted when it killed this process.
"""

from __future__ import annotations

import sys

from durabletrack import Tracker
from tests.support import FAST_RETRY, session_params


def main(data_dir: str, endpoint: str, count: int) -> None:
    tracker = Tracker(endpoint, data_dir, retry=FAST_RETRY, request_timeout=5.0)
    session = tracker.start_session(session_params())
    print(f"started {session.handle}", flush=True)

    for index in range(count):
        session.track("ping", float(index))
        print(f"tracked {index}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
