#!/usr/bin/env python3
"""Crash and chaos harness for durabletrack.

Examples (each run stops by itself at --cycles or --seconds)::

    python tools/torture.py kill-producer --cycles 1000 --seconds 3600 --seed 1
    python tools/torture.py kill-worker --cycles 200 --seed 2
    python tools/torture.py chaos --seconds 600 --seed 3
    python tools/torture.py combined --seconds 600 --seed 4

It prints one table and exits 1 if any event was lost, reordered or
duplicated beyond one per fault. See docs/RELIABILITY.md.
"""

import sys
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent

# The package tools/torture/ must be importable, and so must durabletrack: an
# installed or PYTHONPATH copy wins, the repository root is the fallback.
sys.path.insert(0, str(TOOLS_DIR))
sys.path.append(str(TOOLS_DIR.parent))

from torture.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
