#!/usr/bin/env bash
# Runs netlab's whole test suite as root: the code checks (format, lints,
# the benches type-check), the unit tests (pure layers) and the end-to-end
# tests in tests/ that build real labs. Does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CARGO=$(command -v cargo || echo /root/.cargo/bin/cargo)
say() { printf 'test: %s\n' "$*" >&2; }
# The lab's page is tested in a real browser: Debian's headless Chromium
# (tests/ui.rs), with a font for its screenshot.
browser=()
for p in chromium fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || browser+=("$p")
done
if [ "${#browser[@]}" -gt 0 ]; then
  say "installing ${browser[*]} (the page's test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${browser[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${browser[@]}" >/dev/null; }
fi
# The habits every change keeps: a formatting difference, a lint or a bench
# that no longer compiles fails the suite before any lab is built.
# (`clippy --all-targets` type-checks the benches too.)
for tool in fmt clippy; do
  "$CARGO" "$tool" --version >/dev/null 2>&1 || { say "error: cargo $tool is missing: rustup component add ${tool/fmt/rustfmt}"; exit 1; }
done
say "cargo fmt --check"
"$CARGO" fmt --check
say "cargo clippy --all-targets -- -D warnings"
"$CARGO" clippy --release --quiet --all-targets -- -D warnings
# Unit and end-to-end tests together; e2e tests use unique lab names and run in parallel.
say "cargo test"
exec "$CARGO" test --release "$@"
