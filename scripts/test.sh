#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs it:
# Python packages (CPU torch 2.13.0 pinned), Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements.txt
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# pyproject's default selection, the same as a plain `python -m pytest`: everything but the slow
# marker (browser tests included), on two worker processes (pytest-xdist, one file a unit; see
# tests/conftest.py). ANN_TEST_WORKERS=0 runs it in one process, as a plain `python -m pytest` does.
python -m pytest -q -n "${ANN_TEST_WORKERS:-2}" "$@"
