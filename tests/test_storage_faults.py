"""Full and read-only disks, each on a tmpfs in a mount namespace of a child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.children import REPO


def _run_in_mount_namespace(scenario: str, mount_dir) -> dict:
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.child_storage"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [*command, scenario, str(mount_dir)], capture_output=True, text=True, cwd=REPO, env=env, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]

    return json.loads(result.stdout.strip().splitlines()[-1])


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs unshare --mount (root or user namespaces)")


@needs_mount
class TestFullDisk:
    def test_track_raises_delivery_goes_on_writes_resume(self, tmp_path) -> None:
        report = _run_in_mount_namespace("full", tmp_path)

        assert report["tracked_before_full"] > 0
        assert report["error"] == "StorageError"
        assert report["error_names_path"]
        assert report["delivered_while_full"]
        assert report["in_order"]
        assert report["writes_after_space"]


@needs_mount
class TestReadOnlyDisk:
    def test_tracker_opens_raises_then_recovers(self, tmp_path) -> None:
        report = _run_in_mount_namespace("read-only", tmp_path)

        assert report["opened_while_read_only"]
        assert report["start_while_read_only"] == "StorageError"
        assert report["start_after_rw"]
        assert report["flushed_after_rw"]
        assert report["old_events_delivered"] == 20
