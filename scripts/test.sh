#!/usr/bin/env bash
# Runs netlab's whole test suite as root: unit tests (pure layers) and the
# end-to-end tests in tests/ that build real labs. Does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CARGO=$(command -v cargo || echo /root/.cargo/bin/cargo)
# Unit and end-to-end tests together; e2e tests use unique lab names and run in parallel.
exec "$CARGO" test --release "$@"
