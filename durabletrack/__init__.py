"""durabletrack: media-tracking events that survive flaky networks and crashes.

A player calls :meth:`Tracker.start_session` and :meth:`Session.track`; each
call returns once the event is committed to a local SQLite queue, and
background threads deliver it to a Media Collection API endpoint in order.
"""

from .config import Durability, TrackerConfig
from .errors import (
    ConfigError,
    DurabletrackError,
    InvalidEventError,
    InvalidFieldTypeError,
    QueueFullError,
    SessionClosedError,
    StorageError,
    TrackerClosedError,
)
from .registry import DeadLetter, SessionState
from .retry import RetryPolicy
from .tracker import Session, Tracker

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DeadLetter",
    "Durability",
    "DurabletrackError",
    "InvalidEventError",
    "InvalidFieldTypeError",
    "QueueFullError",
    "RetryPolicy",
    "Session",
    "SessionClosedError",
    "SessionState",
    "StorageError",
    "Tracker",
    "TrackerClosedError",
    "TrackerConfig",
    "__version__",
]
