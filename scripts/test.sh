#!/usr/bin/env bash
# The whole test suite: installs the external tools tests need (ffmpeg, chromium, WebKitWebDriver
# and Xvfb, nats-server), then runs every test.
# Tests that need a missing tool print a loud SKIPPED line; with MJPEGD_REQUIRE_TOOLS=1 (set by
# CI) they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! scripts/install-test-deps.sh; then
  echo "test.sh: could not install test tools; tests that need them will be skipped" >&2
fi
exec cargo test --locked --workspace --all-targets "$@"
