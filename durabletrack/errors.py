"""Exceptions raised by durabletrack.

Every exception derives from :class:`DurabletrackError` and from the builtin
that fits the failure, so callers can catch either. Each carries the data that
explains it as attributes, not only in its message.
"""

from __future__ import annotations

from typing import Any


class DurabletrackError(Exception):
    """Base class of every exception raised by durabletrack."""


class _Missing:
    """Marker for the ``value`` of a field that was not given at all."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class InvalidEventError(DurabletrackError, ValueError):
    """An event or session field breaks a rule of the collection API.

    Attributes:
        field: Path of the offending field, for example ``params["media.length"]``.
        value: The value that was passed, or ``MISSING`` for an absent field.
        rule: The rule it breaks, in words.
    """

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        if value is MISSING:
            super().__init__(f"missing {field}: {rule}")
        else:
            super().__init__(f"invalid {field}: {rule} (got {_describe(value)})")


class InvalidFieldTypeError(DurabletrackError, TypeError):
    """A field has the wrong JSON type.

    Attributes:
        field: Path of the offending field.
        value: The value that was passed.
        expected: The JSON type the collection API requires.
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"invalid {field}: expected {expected}, got {_describe(value)}")


class ConfigError(DurabletrackError, ValueError):
    """A tracker setting is invalid.

    Attributes:
        setting: Name of the setting.
        value: The value that was passed.
    """

    def __init__(self, setting: str, value: Any, rule: str) -> None:
        self.setting = setting
        self.value = value
        super().__init__(f"invalid setting {setting}={value!r}: {rule}")


class SessionClosedError(DurabletrackError, RuntimeError):
    """An event was tracked on a session that has already ended."""

    def __init__(self, handle: str) -> None:
        self.handle = handle
        super().__init__(f"session {handle} has ended (sessionEnd was tracked); start a new session")


class TrackerClosedError(DurabletrackError, RuntimeError):
    """The tracker was used after ``close()``."""

    def __init__(self) -> None:
        super().__init__("the tracker is closed; create a new Tracker on the same data_dir")


class StorageError(DurabletrackError, OSError):
    """The local store could not commit an event; nothing was enqueued.

    Attributes:
        path: The file or directory involved.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"could not write to {path}: {reason}")


class QueueFullError(DurabletrackError, RuntimeError):
    """The queue reached its configured ceiling and nothing more can be shed.

    Attributes:
        limit: Name of the limit setting that was reached.
        value: The configured value of that limit.
    """

    def __init__(self, limit: str, value: int) -> None:
        self.limit = limit
        self.value = value
        super().__init__(f"queue is full: {limit}={value} reached; raise the limit or restore delivery")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
