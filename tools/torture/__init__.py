"""Crash and chaos harness for durabletrack.

Child processes track marked events through a Tracker and are killed with
SIGKILL at random moments while the loopback emulator injects network faults.
A fresh Tracker then drains the data directory, and the checker compares what
``track()`` returned for with what the emulator recorded. See
``docs/RELIABILITY.md`` for the scenarios and the figures.
"""
