#!/usr/bin/env bash
# Prepares this machine for netlab, idempotently, as root:
#   1. system packages (runc, nftables, iproute2, curl, …),
#   2. the netlab binary (cargo build --release → /usr/local/bin/netlab),
#   3. the demo images (nginx, bprashanth/nginxhttps:1.0,
#      radial/busyboxplus:curl), built from Debian packages, pushed into a
#      local registry (docker-registry on 127.0.0.1:5000, started here) that
#      is docker.io's mirror in /etc/netlab/registries.yaml, and pulled from
#      it into the local store: the quick start and the tests pull for real,
#      with no internet.
# Every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): netlab creates namespaces and runs containers"

# 1. System packages. runc runs the containers; iproute2 gives `ip netns`
#    for people debugging a lab and the baseline script; nftables for
#    Services; curl is what `netlab exec node/… -- curl` runs on nodes;
#    util-linux has setpriv for the not-root test; docker-registry is the
#    local registry the demo images are pulled from; dnsutils (dig) and
#    dnsmasq-base are for the DNS tests and the DNS benchmark; e2fsprogs
#    (mkfs.ext4) makes each lab's disk for its containers' writable layers;
#    python3-kubernetes (Debian's Python client) and openssl are for the
#    raw-protocol tests of the lab's API (tests/raw_clients.rs); ping
#    (iputils-ping) measures the failure drills' netem (tests/drills.rs).
packages=(runc nftables iproute2 iputils-ping curl ca-certificates util-linux procps docker-registry dnsutils dnsmasq-base python3-kubernetes openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package enables a system-wide registry on *:5000 (all interfaces);
  # netlab runs its own on loopback only (scripts/registry.sh).
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
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

# 3. Images: built from Debian packages into a staging store (skipped when
#    already there), pushed into the local registry, pulled from it into the
#    local store as any registry image is. A push or pull of what is already
#    there transfers nothing.
REGISTRY=${NETLAB_REGISTRY_ADDR:-127.0.0.1:5000}
scripts/registry.sh start
mkdir -p /etc/netlab
if [ ! -e /etc/netlab/registries.yaml ]; then
  say "writing /etc/netlab/registries.yaml (docker.io mirror: http://$REGISTRY)"
  cat > /etc/netlab/registries.yaml <<EOF
# Registry mirrors and credentials for netlab (k3s/containerd registries.yaml).
# The local registry (scripts/registry.sh) stands in for Docker Hub.
mirrors:
  docker.io:
    endpoint:
      - "http://$REGISTRY"
EOF
fi
STAGING=/var/lib/netlab/build
NETLAB_DATA_DIR=$STAGING scripts/build-images.sh
for ref in nginx bprashanth/nginxhttps:1.0 radial/busyboxplus:curl; do
  name=${ref%%:*}; tag=latest; [ "$name" = "$ref" ] || tag=${ref#*:}
  case "$name" in */*) ;; *) name=library/$name ;; esac
  NETLAB_DATA_DIR=$STAGING netlab push --quiet "$ref" "$REGISTRY/$name:$tag" >/dev/null
  netlab pull --quiet --registry-mirror "docker.io=http://$REGISTRY" "$ref" >&2
done
say "ready: $(netlab --version)"
