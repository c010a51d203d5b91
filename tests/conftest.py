"""Shared fixtures. The emulator fixtures serve on 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from durabletrack.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fault-free emulator on a free loopback port, stopped after the test."""
    with Emulator() as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session with keep-alive, closed after the test."""
    with requests.Session() as session:
        yield session
