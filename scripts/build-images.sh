#!/usr/bin/env bash
# build-images.sh - build netlab's stand-in container images from Debian packages.
#
# Usage: scripts/build-images.sh [--force] [--rootfs-only OUTDIR]
#
# Builds three images without Docker, chroot, debootstrap or maintainer scripts:
# the dependency closure is fetched with `apt-get download` into a cache
# (/var/cache/netlab/debs), every .deb is unpacked into a fresh rootfs and the
# few files that maintainer scripts would have created are written by hand.
#
#   nginx                     Debian's nginx + curl + busybox, laid out like
#                             the official Docker Hub nginx image
#   bprashanth/nginxhttps:1.0 the nginx image plus the tutorial's HTTPS
#                             entrypoint: nginx reloaded when /etc/nginx/conf.d
#                             changes; serves 80 and 443 (certs in /etc/nginx/ssl)
#   radial/busyboxplus:curl   busybox (all applets) + curl + perl-base (busybox's
#                             nc has no UDP: the NetworkPolicy tests serve and
#                             probe UDP with perl's IO::Socket)
#
# Default: each image is imported with
#     $NETLAB images import-rootfs ROOTFS --tag REF --config CONFIG_JSON
# and skipped if `$NETLAB images inspect REF` already succeeds (unless --force).
# --rootfs-only OUTDIR: only write OUTDIR/NAME/{rootfs,config.json,packages.txt}
# for NAME in nginx, nginxhttps and busyboxplus-curl; netlab is not
# called (existing directories there are replaced).
#
# Environment: NETLAB (default: netlab on PATH), NETLAB_CACHE_DIR (default
# /var/cache/netlab: debs/ = downloaded .debs, unpacked/ = their contents,
# apt/ = apt's binary package cache when the host disables apt's own),
# TMPDIR (parent of the temporary build dir in import mode, default /var/tmp).
# Needs root and a Debian/Ubuntu host with apt-get, apt-cache, dpkg-deb, tar.

set -Eeuo pipefail
umask 022

PROG=build-images
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap
trap 'rc=$?; printf "%s: ERROR: command failed (exit %s) at line %s: %s\n" "$PROG" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit $rc' ERR

usage() {  # usage EXIT_CODE: the header comment, on stdout for --help, else stderr
    if [ "$1" -eq 0 ]; then
        sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
    else
        sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
    fi
    exit "$1"
}

FORCE=0
OUTDIR=
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --rootfs-only)
            if [ $# -lt 2 ] || [ -z "$2" ]; then die "--rootfs-only needs an OUTDIR argument"; fi
            OUTDIR=$2; shift ;;
        --rootfs-only=*) OUTDIR=${1#*=}; [ -n "$OUTDIR" ] || die "--rootfs-only needs an OUTDIR argument" ;;
        -h|--help) usage 0 ;;
        *) printf '%s: unknown argument: %s\n' "$PROG" "$1" >&2; usage 2 ;;
    esac
    shift
done
# resolve OUTDIR against the caller's cwd before we cd to the repo
if [ -n "$OUTDIR" ]; then OUTDIR=$(realpath -m -- "$OUTDIR"); fi

cd "$(dirname "$0")/.."
IMGDIR=$PWD/scripts/images
NETLAB=${NETLAB:-netlab}
STATE=${NETLAB_CACHE_DIR:-/var/cache/netlab}
CACHE=$STATE/debs
START=$SECONDS

[ "$(id -u)" -eq 0 ] || die "must run as root (rootfs files must be owned by root/nginx; apt-get update may be needed)"
for c in apt-get apt-cache dpkg dpkg-deb tar awk sha256sum flock realpath; do
    command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
done
for f in resolve-deps.awk printenv nginx/nginx.conf nginx/default.conf nginx/50x.html nginx/index.html \
         nginx/config.json nginxhttps/config.json nginxhttps/auto-reload-nginx.sh \
         nginxhttps/index2.html busyboxplus-curl/config.json; do
    [ -f "$IMGDIR/$f" ] || die "missing $IMGDIR/$f"
done

# ---------------------------------------------------------------- images
NAMES=(nginx nginxhttps busyboxplus-curl)
declare -A REF=(
    [nginx]=nginx
    [nginxhttps]=bprashanth/nginxhttps:1.0
    [busyboxplus-curl]=radial/busyboxplus:curl
)
# the packages each image is built from (plus their dependency closure)
declare -A ROOTS=(
    [nginx]="nginx curl busybox-static ca-certificates base-files libc-bin"
    [nginxhttps]="nginx curl busybox-static ca-certificates base-files libc-bin"
    [busyboxplus-curl]="busybox-static curl ca-certificates perl-base"
)
# Packages never unpacked (a dependency on them is dropped): packaging and
# init machinery that only maintainer scripts use, iproute2 (only nginx's
# postinst uses it, `ss` to see whether port 80 is free), the openssl CLI
# (ca-certificates' postinst uses it; we write the CA bundle ourselves), awk
# (busybox has one) and nginx's dynamic modules (our nginx.conf loads none;
# ssl and http2 are built into Debian's nginx).
EXCLUDE='debconf|debconf-2\.0|cdebconf|dpkg|install-info|iproute2|openssl|awk|mawk|gawk|original-awk'
EXCLUDE+='|lsb-base|sysvinit-utils|init-system-helpers|systemd|systemd-sysv|usrmerge|usr-is-merged'
EXCLUDE+='|adduser|passwd|perl-base|sensible-utils|libnginx-mod-.*'
EXCLUDE="^($EXCLUDE)$"

# ---------------------------------------------------------------- apt helpers
# Docker-style hosts disable apt's binary cache (docker-clean), which makes every
# apt call re-parse all package lists (~1 s); keep our own copy in that case.
APT_OPTS=()
PKGCACHE=
eval "$(apt-config shell PKGCACHE Dir::Cache::pkgcache)"
if [ -z "$PKGCACHE" ]; then
    APT_OPTS=(-o "Dir::Cache::pkgcache=$STATE/apt/pkgcache.bin")
fi
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" -eq 0 ] || return 1
    log "running apt-get update"
    apt-get "${APT_OPTS[@]}" update -q >&2 || die "apt-get update failed"
    APT_UPDATED=1
}

apt_has_lists() {
    local LISTS=
    eval "$(apt-config shell LISTS Dir::State::lists/d)"
    [ -n "$LISTS" ] && compgen -G "${LISTS%/}/*_Packages*" >/dev/null
}

declare -A IMGPKGS=()  # image name -> "pkg pkg ..." (its dependency closure)
declare -A DEB=()      # package -> cached .deb path
declare -A PKGVER=()   # package -> version

hash_ok() {  # hash_ok FILE TYPE:HEX
    local sum
    case "${2%%:*}" in
        SHA256) sum=$(sha256sum < "$1") ;;
        SHA512) sum=$(sha512sum < "$1") ;;
        *) return 0 ;;   # apt checked it when downloading
    esac
    [ "${sum%% *}" = "${2#*:}" ]
}

# fetch PKG... : make sure the candidate .deb of every package is in $CACHE
fetch() {
    local uris f hash p v missing=()
    declare -A fresh=()
    # --print-uris says nothing about files already in the cwd, so ask from an empty dir
    uris=$(cd "$STATE/empty" && apt-get "${APT_OPTS[@]}" download --print-uris "$@") || return 1
    [ "$(printf '%s\n' "$uris" | grep -c .)" -eq $# ] \
        || { log "apt-get download --print-uris did not list all of: $*"; return 1; }
    while read -r _ f _ hash; do
        p=${f%%_*}; v=${f#*_}; v=${v%_*}; v=${v//%3a/:}
        DEB[$p]=$CACHE/$f; PKGVER[$p]=$v; fresh[$p]=$hash
        if [ -f "$CACHE/$f" ] && hash_ok "$CACHE/$f" "$hash"; then unset 'fresh[$p]'; continue; fi
        rm -f -- "$CACHE/$f"
        missing+=("$p=$v")
    done <<< "$uris"
    if [ ${#missing[@]} -gt 0 ]; then
        log "downloading ${#missing[@]} package(s) into $CACHE"
        (cd "$CACHE" && apt-get "${APT_OPTS[@]}" download -q -o APT::Sandbox::User=root "${missing[@]}" >&2) || return 1
    fi
    for p in "${!fresh[@]}"; do
        [ -f "${DEB[$p]}" ] || { log "downloading $p did not produce ${DEB[$p]}"; return 1; }
        hash_ok "${DEB[$p]}" "${fresh[$p]}" || { log "checksum mismatch: ${DEB[$p]}"; rm -f -- "${DEB[$p]}"; return 1; }
    done
}

# plan_try NAME... : dependency closure of each image (one apt-cache call for all), then fetch
plan_try() {
    local n roots=() rs graph out
    for n in "$@"; do read -r -a rs <<< "${ROOTS[$n]}"; roots+=("${rs[@]}"); done
    graph=$(apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
                --no-breaks --no-replaces --no-enhances "${roots[@]}") || return 1
    : > "$STATE/.resolve-notes"
    for n in "$@"; do
        if ! out=$(awk -v roots="${ROOTS[$n]}" -v excl="$EXCLUDE" -f "$IMGDIR/resolve-deps.awk" \
                       <<< "$graph" 2>>"$STATE/.resolve-notes"); then
            sed "s/^/$PROG: /" "$STATE/.resolve-notes" >&2
            return 1
        fi
        IMGPKGS[$n]=$(printf '%s\n' "$out" | tr '\n' ' ')
    done
    sort -u "$STATE/.resolve-notes" | sed "s/^resolve-deps: /$PROG: /" >&2
    # shellcheck disable=SC2046
    fetch $(printf '%s\n' "${IMGPKGS[@]}" | tr ' ' '\n' | grep . | sort -u)
}

# drop cached .debs / unpacked trees of older versions of the packages just fetched
prune_stale() {
    local p f cur
    for p in "${!DEB[@]}"; do
        cur=$(basename "${DEB[$p]}" .deb)
        for f in "$CACHE/${p}"_*.deb "$STATE/unpacked/${p}"_*; do
            [ -e "$f" ] || continue
            case "$(basename "$f")" in "$cur"|"$cur".deb|"$cur".applets) continue ;; esac
            rm -rf -- "$f"
        done
    done
}

plan() {
    log "resolving and fetching packages for: $*"
    if plan_try "$@"; then prune_stale; return 0; fi
    apt_update || die "could not resolve or download the packages for: $*"
    plan_try "$@" || die "could not resolve or download the packages for: $* (even after apt-get update)"
    prune_stale
}

# prune DIR: drop what is useless in a container from an unpacked package:
# docs (but copyright files), man/info pages, translations, lintian overrides,
# init/systemd/logrotate glue, and glibc's iconv modules (8 MB; nothing in these
# images converts charsets beyond those built into libc: UTF-8, ASCII, ...)
prune() {
    local u=$1 d
    for d in usr/share/man usr/share/info usr/share/lintian usr/share/locale usr/share/bug \
             usr/share/vim usr/share/apport usr/share/initramfs-tools lib/systemd usr/lib/systemd \
             etc/init.d etc/logrotate.d etc/ufw etc/update-motd.d; do
        rm -rf "${u:?}/$d"
    done
    rm -rf "$u"/usr/lib/*-linux-gnu*/gconv
    if [ -d "$u/usr/share/doc" ]; then
        find "$u/usr/share/doc" ! -type d ! -name copyright -delete
        find "$u/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
    fi
}

# unpacked PKG -> directory holding the unpacked, pruned .deb (cached next to the debs)
unpacked() {
    local deb=${DEB[$1]} u tmp
    u=$STATE/unpacked/$(basename "$deb" .deb)
    if [ ! -d "$u" ]; then
        tmp=$u.tmp.$$
        rm -rf "$tmp"; mkdir -p "$tmp"
        dpkg-deb --fsys-tarfile "$deb" | tar -x --numeric-owner -C "$tmp" || die "unpacking $deb failed"
        prune "$tmp"
        mv "$tmp" "$u"
    fi
    printf '%s\n' "$u"
}

# applet_links BUSYBOX_UNPACKED_DIR -> dir with one symlink per busybox applet
# (the `busybox --install -s` result, canonicalised for merged /usr), cached
applet_links() {
    local u=$1 l=$1.applets tmp bb app
    if [ ! -d "$l" ]; then
        for bb in usr/bin/busybox bin/busybox; do if [ -x "$u/$bb" ]; then break; fi; done
        [ -x "$u/$bb" ] || die "no busybox binary in $u"
        tmp=$l.tmp.$$
        rm -rf "$tmp"; mkdir -p "$tmp/usr/bin" "$tmp/usr/sbin"
        "$u/$bb" --list-full > "$tmp.list" || die "cannot run $u/$bb --list-full on this host"
        while read -r app; do
            case "$app" in */dpkg|*/dpkg-deb|*/rpm|*/rpm2cpio|*/linuxrc|*/busybox) continue ;; esac
            case "$app" in
                bin/*|usr/bin/*)   ln -sfn "/$bb" "$tmp/usr/bin/${app##*/}" ;;
                sbin/*|usr/sbin/*) ln -sfn "/$bb" "$tmp/usr/sbin/${app##*/}" ;;
            esac
        done < "$tmp.list"
        rm -f "$tmp.list"
        mv "$tmp" "$l"
    fi
    printf '%s\n' "$l"
}

# ---------------------------------------------------------------- rootfs helpers
# create the merged-/usr layout first, like debootstrap does for bookworm+
new_rootfs() {
    local r=$1 d
    mkdir -p "$r/usr/bin" "$r/usr/sbin" "$r/usr/lib" "$r/usr/lib64"
    for d in bin sbin lib lib64; do ln -s "usr/$d" "$r/$d"; done
    mkdir -p "$r/run/lock" "$r/var"
    ln -s ../run "$r/var/run"
    ln -s ../run/lock "$r/var/lock"
}

# unpack ROOTFS PKG... : copy the unpacked packages in, in one tar stream
unpack() {
    local r=$1 p args=(); shift
    for p in "$@"; do args+=(-C "$(unpacked "$p")" .); done
    # --keep-directory-symlink: keep /bin -> usr/bin etc. when a package ships ./bin/
    tar -c --numeric-owner "${args[@]}" | tar -x --numeric-owner -C "$r" --keep-directory-symlink \
        || die "unpacking into $r failed"
}

write_file() {  # write_file MODE PATH  (content on stdin)
    install -D -m "$1" /dev/stdin "$2"
}

# things maintainer scripts / base-passwd / libc-bin would have created
common_setup() {
    local r=$1 extra_users=$2 extra_groups=$3 nologin=/bin/false bbdir links
    mkdir -p "$r/dev" "$r/proc" "$r/sys" "$r/etc" "$r/home" "$r/root" "$r/tmp" "$r/var/tmp" \
             "$r/var/log" "$r/var/cache" "$r/var/lib" "$r/usr/local/bin" "$r/usr/local/sbin"
    chmod 1777 "$r/tmp" "$r/var/tmp"
    chmod 0700 "$r/root"
    [ -n "$(ls -A "$r/usr/lib64")" ] || rm -rf "${r:?}/lib64" "${r:?}/usr/lib64"

    # busybox: a symlink for every applet that no package provides (busybox --install -s)
    [ -n "${DEB[busybox-static]:-}" ] || die "busybox-static is not in the package set of $r"
    bbdir=$(unpacked busybox-static)
    links=$(applet_links "$bbdir")
    tar -c --numeric-owner -C "$links" . \
        | tar -x --numeric-owner -C "$r" --keep-directory-symlink --skip-old-files \
        || die "adding busybox applet links to $r failed"
    # Debian's busybox has no printenv applet: add a busybox-awk stand-in
    if ! [ -e "$r/usr/bin/printenv" ] && ! [ -L "$r/usr/bin/printenv" ]; then
        [ -e "$r/usr/bin/awk" ] || [ -L "$r/usr/bin/awk" ] || die "no awk in $r for printenv"
        install -m 0755 "$IMGDIR/printenv" "$r/usr/bin/printenv"
    fi

    if [ -e "$r/usr/sbin/nologin" ] || [ -L "$r/usr/sbin/nologin" ]; then nologin=/usr/sbin/nologin; fi

    write_file 0644 "$r/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:$nologin
bin:x:2:2:bin:/bin:$nologin
sys:x:3:3:sys:/dev:$nologin
www-data:x:33:33:www-data:/var/www:$nologin
${extra_users:+$extra_users
}nobody:x:65534:65534:nobody:/nonexistent:$nologin
EOF
    write_file 0644 "$r/etc/group" <<EOF
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
www-data:x:33:
shadow:x:42:
staff:x:50:
${extra_groups:+$extra_groups
}nogroup:x:65534:
EOF
    cut -d: -f1 "$r/etc/passwd" | sed 's/$/:*:19000:0:99999:7:::/' | write_file 0640 "$r/etc/shadow"
    chgrp 42 "$r/etc/shadow"
    write_file 0644 "$r/etc/nsswitch.conf" <<'EOF'
passwd:         files
group:          files
shadow:         files
hosts:          files dns
networks:       files
protocols:      files
services:       files
ethers:         files
rpc:            files
EOF
    # runtime bind-mount targets (the runtime normally provides the content)
    write_file 0644 "$r/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
    : | write_file 0644 "$r/etc/hostname"
    : | write_file 0644 "$r/etc/resolv.conf"
    printf 'include /etc/ld.so.conf.d/*.conf\n' | write_file 0644 "$r/etc/ld.so.conf"

    # ca-certificates: update-ca-certificates did not run; build the bundle curl/openssl use
    if [ -d "$r/usr/share/ca-certificates" ]; then
        mkdir -p "$r/etc/ssl/certs"
        (cd "$r/usr/share/ca-certificates" && find . -name '*.crt' | sed 's|^\./||' | LC_ALL=C sort) \
            | write_file 0644 "$r/etc/ca-certificates.conf"
        find "$r/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z \
            | xargs -0 cat | write_file 0644 "$r/etc/ssl/certs/ca-certificates.crt"
    fi

    # base-files' postinst copies these
    if [ -f "$r/usr/share/base-files/profile" ] && [ ! -e "$r/etc/profile" ]; then
        install -m 0644 "$r/usr/share/base-files/profile" "$r/etc/profile"
    fi
    # dynamic linker cache (libc-bin's ldconfig trigger did not run)
    if command -v ldconfig >/dev/null 2>&1; then
        ldconfig -r "$r" || die "ldconfig -r $r failed"
    fi
}

setup_nginx() {
    local r=$1
    [ -x "$r/usr/sbin/nginx" ] || die "nginx image: /usr/sbin/nginx is missing (packages: ${IMGPKGS[nginx]})"
    grep -aq ngx_http_ssl_module "$r/usr/sbin/nginx" || die "nginx image: nginx binary lacks ngx_http_ssl_module"
    common_setup "$r" 'nginx:x:101:101:nginx user:/nonexistent:/bin/false' 'nginx:x:101:'

    # official layout: nginx.conf + conf.d/, no Debian sites-*/modules-*
    rm -rf "$r/etc/nginx/sites-available" "$r/etc/nginx/sites-enabled" \
           "$r/etc/nginx/modules-available" "$r/etc/nginx/modules-enabled"
    install -m 0644 "$IMGDIR/nginx/nginx.conf" "$r/etc/nginx/nginx.conf"
    install -D -m 0644 "$IMGDIR/nginx/default.conf" "$r/etc/nginx/conf.d/default.conf"
    mkdir -p "$r/etc/nginx/ssl"

    mkdir -p "$r/usr/share/nginx/html"
    if ! grep -q 'Welcome to nginx!' "$r/usr/share/nginx/html/index.html" 2>/dev/null; then
        install -m 0644 "$IMGDIR/nginx/index.html" "$r/usr/share/nginx/html/index.html"
    fi
    install -m 0644 "$IMGDIR/nginx/50x.html" "$r/usr/share/nginx/html/50x.html"

    # logs go to the container's stdout/stderr
    mkdir -p "$r/var/log/nginx"
    rm -f "$r/var/log/nginx/access.log" "$r/var/log/nginx/error.log"
    ln -s /dev/stdout "$r/var/log/nginx/access.log"
    ln -s /dev/stderr "$r/var/log/nginx/error.log"

    # temp dirs (Debian's nginx is built with /var/lib/nginx/*; the official image uses /var/cache/nginx)
    local d
    for d in var/lib/nginx/body var/lib/nginx/fastcgi var/lib/nginx/proxy var/lib/nginx/scgi \
             var/lib/nginx/uwsgi var/cache/nginx; do
        mkdir -p "$r/$d"; chown 101:101 "$r/$d"; chmod 0700 "$r/$d"
    done
    chmod 0755 "$r/var/cache/nginx"
}

setup_nginxhttps() {
    local r=$1
    setup_nginx "$r"
    install -m 0644 "$IMGDIR/nginxhttps/index2.html" "$r/usr/share/nginx/html/index2.html"
    install -D -m 0755 "$IMGDIR/nginxhttps/auto-reload-nginx.sh" "$r/home/auto-reload-nginx.sh"
}

setup_busyboxplus_curl() {
    common_setup "$1" '' ''
}

# recipe NAME: a hash of everything an image is built from (its package
# roots, its files, this script). It is stored as the image's
# dev.netlab.recipe label, so a changed recipe rebuilds the image on the
# next run instead of leaving a stale one in the store.
recipe() {
    local name=$1
    { printf '%s\n' "${ROOTS[$name]}"; cat "$0"; find "$IMGDIR/$name" -type f -print0 | sort -z | xargs -0 cat; } \
        | sha256sum | cut -c1-16
}

# build NAME DEST : DEST/rootfs, DEST/config.json, DEST/packages.txt
build() {
    local name=$1 dest=$2 t0=$SECONDS p pkgs
    read -r -a pkgs <<< "${IMGPKGS[$name]}"
    log "$name: ${#pkgs[@]} packages: ${pkgs[*]}"
    rm -rf "$dest"
    mkdir -p "$dest"
    new_rootfs "$dest/rootfs"
    unpack "$dest/rootfs" "${pkgs[@]}"
    "setup_${name//-/_}" "$dest/rootfs"
    sed "s/\"Labels\": {/\"Labels\": {\n    \"dev.netlab.recipe\": \"$(recipe "$name")\",/" \
        "$IMGDIR/$name/config.json" > "$dest/config.json"
    for p in "${pkgs[@]}"; do printf '%s %s\n' "$p" "${PKGVER[$p]}"; done > "$dest/packages.txt"
    log "$name: rootfs built in $((SECONDS - t0))s ($(du -sh "$dest/rootfs" | cut -f1))"
}

# ---------------------------------------------------------------- main
mkdir -p "$CACHE" "$STATE/unpacked" "$STATE/empty" "$STATE/apt"
exec 9> "$STATE/.build-images.lock"
flock 9 || die "cannot lock $STATE/.build-images.lock"
rm -rf "$STATE"/unpacked/*.tmp.*

TODO=()
if [ -n "$OUTDIR" ]; then
    for name in "${NAMES[@]}"; do
        dest=$OUTDIR/$name
        if [ -e "$dest" ] && ! { [ -d "$dest/rootfs" ] || [ -f "$dest/config.json" ]; }; then
            die "$dest exists and does not look like an earlier build output; refusing to replace it"
        fi
    done
    TODO=("${NAMES[@]}")
else
    command -v "$NETLAB" >/dev/null 2>&1 \
        || die "netlab binary '$NETLAB' not found (set NETLAB=/path/to/netlab, or use --rootfs-only OUTDIR)"
    for name in "${NAMES[@]}"; do
        if [ "$FORCE" -eq 0 ] && "$NETLAB" images inspect "${REF[$name]}" 2>/dev/null \
                | grep -q "\"dev.netlab.recipe\": \"$(recipe "$name")\""; then
            log "${REF[$name]}: already in the image store, skipping (use --force to rebuild)"
        else
            TODO+=("$name")
        fi
    done
fi
if [ ${#TODO[@]} -eq 0 ]; then log "nothing to do"; exit 0; fi

if ! apt_has_lists; then
    log "apt package lists are empty"
    apt_update || true
fi
plan "${TODO[@]}"

if [ -n "$OUTDIR" ]; then
    mkdir -p "$OUTDIR"
    trap 'for n in "${TODO[@]}"; do rm -rf "$OUTDIR/.$n.tmp"; done' EXIT
    for name in "${TODO[@]}"; do
        dest=$OUTDIR/$name
        build "$name" "$OUTDIR/.$name.tmp"
        rm -rf "$dest"
        mv "$OUTDIR/.$name.tmp" "$dest"
        log "$name (${REF[$name]}): $dest/rootfs + $dest/config.json"
    done
else
    WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/netlab-images.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    for name in "${TODO[@]}"; do
        ref=${REF[$name]}
        build "$name" "$WORK/$name"
        log "$ref: importing into netlab"
        "$NETLAB" images import-rootfs "$WORK/$name/rootfs" --tag "$ref" --config "$WORK/$name/config.json" \
            || die "'$NETLAB images import-rootfs $WORK/$name/rootfs --tag $ref --config ...' failed"
        rm -rf "${WORK:?}/$name"
        log "$ref: imported"
    done
fi
log "done in $((SECONDS - START))s"
