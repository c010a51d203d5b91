"""Library logging: structlog on top of the stdlib ``durabletrack`` logger.

The library never configures logging for the application. Records go to the
stdlib logger named ``durabletrack``, which has only a ``NullHandler``, so they
stay silent until the application opts in, for example with
``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

LOGGER_NAME = "durabletrack"

_stdlib_logger = logging.getLogger(LOGGER_NAME)
_stdlib_logger.addHandler(logging.NullHandler())


def _render(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """Render ``event key=value ...`` with keys sorted, so a plain handler shows them."""
    event = event_dict.pop("event", "")
    pairs = " ".join(f"{key}={value!r}" for key, value in sorted(event_dict.items()))

    return f"{event} {pairs}" if pairs else str(event)


def get_logger(logger: Any = None, **bound: Any) -> Any:
    """Return a structlog logger with ``bound`` key/values.

    Args:
        logger: An application's own structlog logger to use instead of the
            library default, or None.
        bound: Key/values added to every event, such as ``handle``.
    """
    if logger is not None:
        return logger.bind(**bound)

    base = structlog.wrap_logger(
        _stdlib_logger,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.format_exc_info,
            _render,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )

    return base.bind(**bound)


class RateLimiter:
    """Lets one log line per key through per period, counting the rest.

    Used for errors that repeat on every attempt, such as a misconfigured
    endpoint, so logs show them once a period with how often they happened.
    """

    def __init__(self, period_s: float = 60.0) -> None:
        self._period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        """Return whether to log now, and how many lines were held back since the last one."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)

        return True, suppressed
