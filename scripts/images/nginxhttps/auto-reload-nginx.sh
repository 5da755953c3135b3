#!/bin/sh
# bprashanth/nginxhttps's entrypoint, rebuilt: run nginx, and reload it when
# the configuration in /etc/nginx/conf.d changes (a ConfigMap update).
# busybox has no inotifywait: poll a checksum every 2 s instead.
sum() { cat /etc/nginx/conf.d/* /etc/nginx/ssl/* 2>/dev/null | md5sum; }
nginx -g 'daemon off;' "$@" &
pid=$!
trap 'nginx -s quit; wait $pid; exit 0' TERM QUIT INT
old=$(sum)
while kill -0 "$pid" 2>/dev/null; do
    sleep 2 &
    wait $!
    new=$(sum)
    if [ "$new" != "$old" ]; then
        echo "configuration changed: nginx -s reload" >&2
        nginx -s reload
        old=$new
    fi
done
wait $pid
