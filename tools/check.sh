#!/usr/bin/env bash
# Runs the checks a change should pass before it is committed: lint, types
# and the test suite (the same test command as CI). Needs the dev extra:
#   .venv/bin/pip install -e '.[dev]'
set -euo pipefail

cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

"$python" -m ruff check durabletrack tests tools
"$python" -m ruff format --check durabletrack tests
"$python" -m mypy durabletrack
"$python" -m pytest -q
