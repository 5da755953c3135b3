#!/usr/bin/env bash
# Prepares this machine for netlab, idempotently, as root:
#   1. system packages (runc, nftables, iproute2, curl, …),
#   2. the netlab binary (cargo build --release → /usr/local/bin/netlab),
#   3. the demo images (nginx, radial/busyboxplus:curl) in the local store.
# Every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): netlab creates namespaces and runs containers"

# 1. System packages. runc runs the containers; iproute2 gives `ip netns`
#    for people debugging a lab and the baseline script; nftables for
#    Services; curl is what `netlab exec node/… -- curl` runs on nodes;
#    util-linux has setpriv for the not-root test; dnsutils (dig) and
#    dnsmasq-base are for the DNS tests and the DNS benchmark.
packages=(runc nftables iproute2 curl ca-certificates util-linux procps dnsutils dnsmasq-base)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The binary. sudo drops ~/.cargo/bin from PATH: look for cargo there too.
find_cargo() {
  command -v cargo && return
  for home in "${CARGO_HOME:-}" "/root/.cargo" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cargo"; do
    [ -n "$home" ] && [ -x "$home/bin/cargo" ] && { echo "$home/bin/cargo"; return; }
  done
  return 1
}
CARGO=$(find_cargo) || die "cargo not found: install a Rust toolchain (1.85 or newer, https://rustup.rs) and run again"
say "building netlab (release)"
"$CARGO" build --release --quiet
install -m 0755 target/release/netlab /usr/local/bin/netlab
export NETLAB=/usr/local/bin/netlab

# 3. Images, built from Debian packages (skipped when already in the store).
scripts/build-images.sh
say "ready: $(netlab --version)"
