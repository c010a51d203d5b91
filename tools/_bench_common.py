"""Shared parts of the benchmark: result rows, statistics, event bodies, process figures."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Size of each event body as compact JSON, in bytes, for every enqueue contender.
EVENT_BYTES = 330

# A port on which nothing listens on 127.0.0.1 (the discard service is not run here).
CLOSED_LOOPBACK_URL = "http://127.0.0.1:9"

SESSION_PARAMS = {
    "analytics.trackingServer": "bench.sc.omtrdc.net",
    "analytics.reportSuite": "benchsuite",
    "visitor.marketingCloudOrgId": "0123456789ABCDEF@AdobeOrg",
    "media.id": "bench-0001",
    "media.length": 1800.0,
    "media.contentType": "vod",
    "media.playerName": "bench-player",
    "media.channel": "bench-app",
}


@dataclass
class Row:
    """One line of the result table.

    Attributes:
        group: Benchmark and setting, such as ``enqueue power_loss 1 thread``.
        contender: What was measured, such as ``durabletrack track()``.
        figure: The quantity, such as ``events/s`` or ``p99 latency``.
        unit: Unit of ``median``.
        median: Median over the repetitions.
        samples: The value of each repetition.
        baseline: Contender in the same group that ``ratio`` divides by, or "".
        ratio: ``median / baseline's median``, or None.
        target: The target as text (such as ``>= 0.9``), or "".
        met: Whether ``ratio`` meets ``target``, or None when there is no target.
    """

    group: str
    contender: str
    figure: str
    unit: str
    median: float
    samples: list[float]
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return asdict(self)


def median(values: list[float]) -> float:
    """Return the median, or NaN for an empty list."""
    return statistics.median(values) if values else float("nan")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list (``fraction`` 0.99 for p99)."""
    if not sorted_values:
        return float("nan")
    index = max(math.ceil(fraction * len(sorted_values)) - 1, 0)

    return sorted_values[min(index, len(sorted_values) - 1)]


def latency_figures(latencies_ns: list[int], elapsed_s: float) -> dict[str, float]:
    """Return throughput (events/s) and p50/p99/p99.9 latencies (microseconds) of one run."""
    ordered = sorted(value / 1000.0 for value in latencies_ns)

    return {
        "events/s": len(ordered) / elapsed_s if elapsed_s > 0 else float("nan"),
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "p99.9": percentile(ordered, 0.999),
    }


def event_fields() -> dict[str, Any]:
    """Return the params of a ``bitrateChange`` whose body is about ``EVENT_BYTES`` as JSON.

    The custom metadata is padded so that the body, with a 13-digit ``ts`` and
    a playhead such as ``1234.5``, serialises to ``EVENT_BYTES`` bytes.
    """
    qoe = {"media.qoe.bitrate": 4000000, "media.qoe.droppedFrames": 2, "media.qoe.framesPerSecond": 30}
    metadata = {"app.build": "7.3.1", "device.model": "stb-4k", "cdn": "edge-17", "pad": ""}
    probe = event_body(1_700_000_000_000, 1234.5, {"qoeData": qoe, "customMetadata": metadata})
    metadata["pad"] = "x" * max(EVENT_BYTES - len(probe), 0)

    return {"qoeData": qoe, "customMetadata": metadata}


def event_body(ts: int, playhead: float, fields: dict[str, Any]) -> str:
    """Return a ``bitrateChange`` event as compact JSON, as ``track()`` serialises it."""
    body = {"playerTime": {"playhead": playhead, "ts": ts}, "eventType": "bitrateChange", **fields}

    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def read_rss_kib() -> tuple[int, int]:
    """Return this process's resident set size and its peak (VmRSS, VmHWM), in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1])

    return values["VmRSS"], values["VmHWM"]


def directory_bytes(path: Path) -> int:
    """Return the bytes of the regular files under ``path`` (apparent sizes)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue

    return total


def child_environment() -> dict[str, str]:
    """Return the environment for a child process that imports durabletrack from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))

    return env
