"""A loopback emulator of Adobe's Media Collection API, with fault injection.

Start one in a test and point the client at :attr:`Emulator.url`::

    with Emulator(faults=Faults(error_rate=0.1, seed=7)) as emulator:
        ...  # track events against emulator.url
        assert emulator.wait_for(lambda emu: len(emu.sessions()) == 1, timeout=5.0)
"""

from durabletrack.emulator.faults import Answer, Faults
from durabletrack.emulator.records import Delivery, Rejection
from durabletrack.emulator.server import Emulator
from durabletrack.emulator.state import ExpiryPolicy, SessionRecord
from durabletrack.emulator.validation import SchemaViolation, validate_event

__all__ = [
    "Answer",
    "Delivery",
    "Emulator",
    "ExpiryPolicy",
    "Faults",
    "Rejection",
    "SchemaViolation",
    "SessionRecord",
    "validate_event",
]
