#!/usr/bin/env bash
# Headless Chromium for the end-to-end browser test (tests/test_web_e2e.py): Debian's chromium
# package, driven by Playwright for Python through the system browser's path (Playwright's own
# browser download does not work offline). Called by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PLAYWRIGHT_VERSION=1.65.2

if ! command -v chromium >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
# Into the project's virtual environment, which `make test` then completes.
[ -x .venv/bin/pip ] || "$PYTHON" -m venv .venv
.venv/bin/pip install "playwright==${PLAYWRIGHT_VERSION}"
