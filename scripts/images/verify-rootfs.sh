#!/usr/bin/env bash
# verify-rootfs.sh - smoke-test the rootfs trees written by
#   scripts/build-images.sh --rootfs-only OUTDIR
#
# Usage (as root): scripts/images/verify-rootfs.sh OUTDIR
#
# For both images: chroot ROOTFS /bin/sh -c 'hostname; printenv PATH; curl --version'.
# For nginx: `nginx -t`, then nginx is started in the chroot inside a throwaway
# network namespace; the welcome page is fetched with the host's curl, the
# image's own curl and busyboxplus-curl's curl and wget (and a UDP answer from
# busyboxplus-curl's perl), the access-log line is
# checked on nginx's stdout, and exactly that nginx (by pid) is stopped and the
# namespace deleted.  /dev and /proc are mounted into the chroot only inside a
# private mount namespace (unshare -m / ip netns exec), so nothing is left
# mounted on the host.
set -Eeuo pipefail

log() { printf 'verify: %s\n' "$*" >&2; }
die() { printf 'verify: FAILED: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$(realpath -- "$1")
NGX=$OUT/nginx/rootfs
BBC=$OUT/busyboxplus-curl/rootfs
[ "$(id -u)" -eq 0 ] || die "must run as root"
for r in "$NGX" "$BBC"; do [ -d "$r" ] || die "$r missing"; done
PATH_EXPECTED=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# run CMD... inside ROOTFS with /dev and /proc, in a private mount namespace
in_root() {
    local r=$1; shift
    unshare -m --propagation private sh -c '
        r=$1; shift
        mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" || exit 97
        exec chroot "$r" env -i PATH='"$PATH_EXPECTED"' HOME=/root "$@"' sh "$r" "$@"
}

for r in "$NGX" "$BBC"; do
    log "== $r"
    out=$(in_root "$r" /bin/sh -c 'hostname; printenv PATH; curl --version | head -1; id nginx 2>/dev/null || true; ls -ld /tmp') \
        || die "basic commands failed in $r"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    grep -qx "$PATH_EXPECTED" <<< "$out" || die "PATH not printed in $r"
    grep -q '^curl ' <<< "$out" || die "curl --version failed in $r"
    # the same without any mounts, exactly as in the brief
    # (no redirections inside: without /dev mounted they would create files in ROOTFS/dev)
    chroot "$r" /bin/sh -c 'hostname; printenv PATH; curl --version | head -1' >/dev/null \
        || die "plain chroot test failed in $r"
    [ -z "$(ls -A "$r/dev")" ] || die "$r/dev is not empty"
    in_root "$r" /bin/sh -c 'nslookup localhost >/dev/null 2>&1 || true; cat /etc/passwd >/dev/null; ls / >/dev/null; kill -0 $$' \
        || die "busybox applets failed in $r"
done

log "== nginx -t / nginx -V"
in_root "$NGX" nginx -t || die "nginx -t"
in_root "$NGX" nginx -V 2>&1 | grep -q -- '--with-http_ssl_module' || die "nginx lacks http_ssl_module"

NS=nlimg$$
LOGDIR=$(mktemp -d)
PID=
# run CMD... inside ROOTFS with /dev, in the test's network namespace (perl
# needs /dev/null; `ip netns exec` gives the command a mount namespace of
# its own, so the mount goes with it)
in_ns_root() {
    local r=$1; shift
    ip netns exec "$NS" sh -c 'r=$1; shift; mount --rbind /dev "$r/dev" || exit 97
        exec chroot "$r" env -i PATH='"$PATH_EXPECTED"' "$@"' sh "$r" "$@"
}
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -QUIT "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    if ip netns list | grep -qw "$NS"; then
        # anything still inside is ours (nginx workers); there should be none
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    rm -rf "$LOGDIR"
}
trap cleanup EXIT

log "== nginx in netns $NS"
ip netns add "$NS"
ip -n "$NS" link set lo up
# ip netns exec runs the command in its own mount namespace, so the /dev and
# /proc mounts below disappear with the process; every step exec()s, so $! is
# nginx's master pid
ip netns exec "$NS" unshare -m --propagation private sh -c '
    r=$1
    mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" || exit 97
    exec chroot "$r" env -i PATH='"$PATH_EXPECTED"' nginx -g "daemon off;"' sh "$NGX" \
    >"$LOGDIR/stdout" 2>"$LOGDIR/stderr" &
PID=$!
for _ in $(seq 50); do
    ip netns exec "$NS" curl -sf -o /dev/null http://127.0.0.1/ 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOGDIR/stderr" >&2; die "nginx exited"; }
    sleep 0.1
done
[ "$(readlink "/proc/$PID/exe" 2>/dev/null)" != "" ] || die "nginx pid $PID gone"
log "nginx master pid $PID ($(tr '\0' ' ' < "/proc/$PID/cmdline"))"

page=$(ip netns exec "$NS" curl -s http://127.0.0.1/) || die "host curl failed"
grep -q '<title>Welcome to nginx!</title>' <<< "$page" || die "welcome page not served"
grep -q '<h1>Welcome to nginx!</h1>' <<< "$page" || die "welcome page h1 missing"
printf '%s\n' "$page" | sed -n '4p;10p' | sed 's/^/    host curl: /' >&2
ip netns exec "$NS" chroot "$NGX" curl -s -A image-curl http://127.0.0.1/ | grep -q 'Welcome to nginx!' \
    || die "nginx image's own curl failed"
ip netns exec "$NS" chroot "$BBC" curl -s -A busyboxplus-curl http://127.0.0.1/ | grep -q 'Welcome to nginx!' \
    || die "busyboxplus-curl's curl failed"
ip netns exec "$NS" chroot "$BBC" wget -q -O - http://127.0.0.1/ | grep -q 'Welcome to nginx!' \
    || die "busyboxplus-curl's wget failed"
# UDP (busybox's nc has none): perl answers a datagram; the one perl in
# the namespace is stopped after (the cleanup's kill of everything in the
# namespace ends it if this script fails first)
in_ns_root "$BBC" perl -MIO::Socket::INET -e \
    '$s = IO::Socket::INET->new(LocalPort => 5353, Proto => "udp") or die; while (defined($p = $s->recv($d, 512))) { $s->send("udp-ok", 0, $p) }' &
for _ in $(seq 20); do
    ans=$(in_ns_root "$BBC" perl -MIO::Socket::INET -e \
        '$s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:5353", Proto => "udp") or die; $s->send("hi"); $r = ""; vec($r, fileno($s), 1) = 1; select($r, undef, undef, 0.3) and defined($s->recv($a, 512)) and print $a' 2>/dev/null) || true
    [ "$ans" = udp-ok ] && break
done
[ "$ans" = udp-ok ] || die "busyboxplus-curl's perl did not answer over UDP (got '$ans')"
for p in $(ip netns pids "$NS"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" != perl ] || kill "$p"
done
code=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/nope) || true
[ "$code" = 404 ] || die "expected 404 for /nope, got $code"
sleep 0.3
log "nginx stdout (access log):"
sed 's/^/    /' "$LOGDIR/stdout" >&2
grep -q '"GET / HTTP/1.1" 200 615 "-" "curl/' "$LOGDIR/stdout" || die "access log line for host curl not on stdout"
grep -q '"busyboxplus-curl"' "$LOGDIR/stdout" || die "access log line for busyboxplus curl not on stdout"
grep -q '"GET /nope HTTP/1.1" 404' "$LOGDIR/stdout" || die "404 not logged"
log "nginx stderr (error log):"
sed 's/^/    /' "$LOGDIR/stderr" >&2

log "stopping nginx pid $PID with SIGQUIT"
kill -QUIT "$PID"
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$PID" 2>/dev/null || die "nginx $PID did not stop on SIGQUIT"
wait "$PID" || true
PID=
left=$(ip netns pids "$NS" 2>/dev/null || true)
[ -z "$left" ] || die "processes left in $NS: $(ps -o pid,ppid,args -p "$(echo $left | tr " " ,)")"
ip netns del "$NS"
for r in "$NGX" "$BBC"; do
    [ -z "$(ls -A "$r/dev")$(ls -A "$r/proc")" ] || die "$r/dev or $r/proc is not empty afterwards"
done
log "all checks passed"
