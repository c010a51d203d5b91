"""Run the emulator with ``python -m durabletrack.emulator``, as ``durabletrack emulate`` does."""

import sys

from durabletrack.emulator.cli import main

sys.exit(main())
