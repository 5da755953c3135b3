#!/usr/bin/env bash
# registry.sh - netlab's local image registry (Debian's docker-registry, the
# CNCF "distribution" registry), on loopback only, as root, idempotently.
#
# Usage: scripts/registry.sh start|stop|status
#
#   start   run it unless it already answers (config /etc/netlab/registry.yml,
#           storage /var/lib/netlab/registry, log /var/log/netlab-registry.log,
#           pid /run/netlab-registry.pid); wait until it answers
#   stop    stop the instance this script started (by its pid file)
#   status  exit 0 when it answers
#
# Environment: NETLAB_REGISTRY_ADDR (default 127.0.0.1:5000; must be a
# loopback address: the registry is for this host only).
set -euo pipefail

ADDR=${NETLAB_REGISTRY_ADDR:-127.0.0.1:5000}
CONFIG=/etc/netlab/registry.yml
STORAGE=/var/lib/netlab/registry
LOG=/var/log/netlab-registry.log
PIDFILE=/run/netlab-registry.pid

say() { printf 'registry: %s\n' "$*" >&2; }
die() { printf 'registry: error: %s\n' "$*" >&2; exit 1; }

case "$ADDR" in
  127.*:*|localhost:*|\[::1\]:*) ;;
  *) die "NETLAB_REGISTRY_ADDR=$ADDR is not a loopback address: the local registry must not be reachable from other hosts" ;;
esac

answers() { curl -fsS -m 2 -o /dev/null "http://$ADDR/v2/" 2>/dev/null; }

ours() {  # the pid in our pid file is a running docker-registry
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

start() {
  if answers; then return 0; fi
  command -v docker-registry >/dev/null || die "docker-registry not found: apt-get install docker-registry (scripts/setup.sh does)"
  [ "$(id -u)" = 0 ] || die "run as root"
  mkdir -p "$(dirname "$CONFIG")" "$STORAGE"
  # No auth (loopback only), deletes allowed (tests clean up), and the
  # in-memory blob descriptor cache off so that a blob changed on disk is
  # served as it is (the digest-mismatch test relies on the client checking).
  cat > "$CONFIG.tmp" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: netlab-registry
storage:
  filesystem:
    rootdirectory: $STORAGE
  delete:
    enabled: true
http:
  addr: $ADDR
EOF
  mv "$CONFIG.tmp" "$CONFIG"
  say "starting docker-registry on $ADDR (storage $STORAGE, log $LOG)"
  # setsid: its own session, so it outlives this script and a CI step.
  setsid docker-registry serve "$CONFIG" >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    answers && return 0
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.1
  done
  tail -5 "$LOG" >&2 || true
  die "docker-registry did not answer on http://$ADDR/v2/ (is the port taken? see $LOG)"
}

stop() {
  local pid
  if pid=$(ours); then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
    say "stopped (pid $pid)"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
