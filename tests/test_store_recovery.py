"""An unusable store is moved aside and replaced; the host app keeps running."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from durabletrack.emulator import Emulator, Faults
from tests.children import kill, read_until_tracked, start_child
from tests.support import event_types, make_tracker, records_for, session_params


def _fill_random(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("kept")


def _quarantined(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if ".corrupt-" in entry.name)


def _deliver_one_session(emulator: Emulator, directory: Path) -> list[str]:
    with make_tracker(emulator.url, directory) as tracker:
        session = tracker.start_session(session_params())
        session.track("play", 0.0)
        session.end(1.0)
        assert tracker.flush(timeout=20)
        return event_types(records_for(emulator, tracker, session.handle)[0])


class TestCorruptStore:
    @pytest.mark.parametrize(
        "name,damage",
        [
            ("registry.db", _fill_random),
            ("events.db", _fill_random),
            ("registry.db", _make_directory),
            ("events.db", _make_directory),
        ],
    )
    def test_unusable_file_quarantined(self, name, damage, emulator: Emulator, tmp_path, caplog) -> None:
        damage(tmp_path / name)
        caplog.set_level(logging.ERROR, logger="durabletrack")

        delivered_types = _deliver_one_session(emulator, tmp_path)

        moved = _quarantined(tmp_path)
        assert delivered_types == ["play", "sessionEnd"]
        assert any(entry.startswith(name + ".corrupt-") for entry in moved)
        assert any("store_quarantined" in record.getMessage() for record in caplog.records)

    def test_quarantined_directory_kept_with_contents(self, emulator: Emulator, tmp_path) -> None:
        _make_directory(tmp_path / "registry.db")

        _deliver_one_session(emulator, tmp_path)

        moved = [tmp_path / entry for entry in _quarantined(tmp_path) if entry.startswith("registry.db.corrupt-")]
        assert (moved[0] / "inside.txt").read_text() == "kept"

    def test_zero_length_files_are_an_empty_store(self, emulator: Emulator, tmp_path) -> None:
        (tmp_path / "registry.db").write_bytes(b"")
        (tmp_path / "events.db").write_bytes(b"")

        delivered_types = _deliver_one_session(emulator, tmp_path)

        assert delivered_types == ["play", "sessionEnd"]
        assert _quarantined(tmp_path) == []

    def test_truncated_wal_keeps_a_usable_prefix(self, tmp_path) -> None:
        with Emulator(faults=Faults(blackhole_rate=1.0)) as down:
            child = start_child(tmp_path, down.url, 10_000)
            handle, tracked = read_until_tracked(child, wanted=200)
            tracked += kill(child)
        wal = tmp_path / "events.db-wal"
        assert wal.stat().st_size > 0
        with open(wal, "r+b") as file:
            file.truncate(wal.stat().st_size // 2 + 100)  # cut through a frame

        with Emulator() as emulator:
            with make_tracker(emulator.url, tmp_path) as tracker:
                delivered = tracker.flush(timeout=30)
                records = records_for(emulator, tracker, handle)
            after = _deliver_one_session(emulator, tmp_path)

        assert delivered
        assert _quarantined(tmp_path) == []
        playheads = [int(body["playerTime"]["playhead"]) for body in records[0].events] if records else []
        assert playheads == tracked[: len(playheads)]  # an ordered prefix survives
        assert after == ["play", "sessionEnd"]
