#!/usr/bin/env bash
# A bounded soak of the failure drills (issue 19). Not in CI.
#
#   sudo bash scripts/soak.sh [SECONDS]        # default 600 (10 minutes)
#
# Brings up a 3-node lab (lab name soak-$$) on a compressed clock (a stopped
# node turns NotReady after 2 s, its pods are evicted 3 s later), with a
# 3-replica nginx Deployment behind a Service. A client on node-1 asks the
# Service every 20 ms (each request allowed 2 s) for the whole run, while
# every few seconds a random drill happens: a pod killed, node-2 or node-3
# stopped and later started, netem loss or delay on a node, the lab's
# process killed with SIGKILL (and started again). At the end the lab goes
# down and the script reports:
#   - failed requests, each put down to the drill whose window it fell in
#     (what the drills predict) or to none (unexplained: must be 0);
#   - what the lab left behind (namespaces, links, mounts, processes,
#     files): must be nothing.
# Exit code: 0 when both hold.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
lab=soak-$$
work=$(mktemp -d /tmp/netlab-soak.XXXXXX)
say() { printf 'soak: %s\n' "$*" >&2; }
die() { printf 'soak: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the soak brings a lab up"

bash scripts/setup.sh
netlab=/usr/local/bin/netlab
now() { date +%s.%N; }
drill() { printf '%s %s\n' "$(now)" "$*" >>"$work/drills"; say "$*"; }

links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort)
# netem drills only where the kernel has the qdisc (sch_netem).
probe=netlab-soak-probe-$$
ip netns add "$probe"
if ip netns exec "$probe" tc qdisc replace dev lo root netem delay 1ms 2>/dev/null; then kinds=5; else
  kinds=3; say "this kernel has no netem qdisc: no netem drills"; fi
ip netns del "$probe"

cat >"$work/lab.yaml" <<EOF
apiVersion: netlab.dev/v1alpha1
kind: Lab
spec:
  nodes: 3
  timing:
    nodeMonitorGracePeriod: 2s
    defaultTolerationSeconds: 3
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {run: web}
  template:
    metadata:
      labels: {run: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {run: web}
  ports:
  - port: 80
EOF

$netlab up --name "$lab" "$work/lab.yaml" >&2
ip=$($netlab --lab "$lab" get svc web -o json | sed -n 's/.*"clusterIP": "\([0-9.]*\)".*/\1/p' | head -1)
[ -n "$ip" ] || die "no clusterIP for Service web"

# The client: "EPOCH CODE" per request.
$netlab --lab "$lab" exec node/node-1 -- sh -c \
  "end=\$((\$(date +%s) + $duration)); while [ \$(date +%s) -lt \$end ]; do echo \"\$(date +%s.%N) \$(curl -s -o /dev/null -m 2 -w '%{http_code}' http://$ip/)\"; sleep 0.02; done" \
  >"$work/client" 2>/dev/null &
client=$!

end=$(( $(date +%s) + duration ))
stopped=""
while [ "$(date +%s)" -lt "$end" ]; do
  sleep $(( 3 + RANDOM % 5 ))
  kind=$(( RANDOM % kinds ))
  # Without netem: pod kills, node stops, process kills (0, 1, 4).
  [ "$kinds" = 3 ] && [ "$kind" = 2 ] && kind=4
  case $kind in
    0)
      pod=$($netlab --lab "$lab" get pods -l run=web -o name | shuf -n 1)
      [ -n "$pod" ] && { drill "pod-kill $pod"; $netlab --lab "$lab" delete "$pod" --wait=false >/dev/null 2>&1 || true; } ;;
    1)
      if [ -z "$stopped" ]; then
        stopped=node-$(( 2 + RANDOM % 2 ))
        drill "node-stop $stopped"; $netlab --lab "$lab" node stop "$stopped" >/dev/null
      else
        drill "node-start $stopped"; $netlab --lab "$lab" node start "$stopped" >/dev/null; stopped=""
      fi ;;
    2)
      node=node-$(( 2 + RANDOM % 2 ))
      drill "netem-loss $node"; $netlab --lab "$lab" netem "node/$node" --loss 20% >/dev/null
      sleep 2
      drill "netem-clear $node"; $netlab --lab "$lab" netem "node/$node" --clear >/dev/null ;;
    3)
      node=node-$(( 2 + RANDOM % 2 ))
      drill "netem-delay $node"; $netlab --lab "$lab" netem "node/$node" --delay 100ms --jitter 20ms >/dev/null
      sleep 2
      drill "netem-clear $node"; $netlab --lab "$lab" netem "node/$node" --clear >/dev/null ;;
    4)
      pid=$(cat "/run/netlab/$lab/controller.pid" 2>/dev/null || true)
      if [ -n "$pid" ]; then
        drill "kill-9 lab-process $pid"; kill -9 "$pid" || true
        sleep 1; $netlab --lab "$lab" controller start >/dev/null 2>&1 || true
      fi ;;
  esac
done
[ -n "$stopped" ] && { drill "node-start $stopped"; $netlab --lab "$lab" node start "$stopped" >/dev/null; }
wait "$client" || true

# Each failure is put down to the last drill before it, when it fell in
# that drill's window: a node stop until its endpoints leave (the 2 s
# grace, the sync, and a request's 2 s), a pod kill for 3 s, loss while it
# is on (and a request's 2 s after), others not at all.
requests_ok=0
python3 - "$work/drills" "$work/client" >"$work/report" <<'EOF' || requests_ok=1
import sys
drills = [l.split(None, 1) for l in open(sys.argv[1]) if l.strip()]
drills = [(float(t), d.split()[0]) for t, d in drills]
window = {"node-stop": 5.0, "pod-kill": 3.0, "netem-loss": 4.5, "netem-delay": 4.5}
rows = [l.split() for l in open(sys.argv[2]) if len(l.split()) == 2]
total = len(rows)
explained, unexplained = {}, []
for t, code in rows:
    if code == "200":
        continue
    t = float(t)
    cause = None
    for dt, kind in drills:
        if dt <= t + 0.05 and t - dt <= window.get(kind, 0):
            cause = kind
    if cause:
        explained[cause] = explained.get(cause, 0) + 1
    else:
        unexplained.append((t, code))
print(f"requests: {total}, failed: {sum(explained.values()) + len(unexplained)}")
for kind in sorted({k for _, k in drills}):
    n = sum(1 for _, k in drills if k == kind)
    print(f"  {kind}: {n} drills, {explained.get(kind, 0)} failed requests in their windows")
print(f"unexplained failures: {len(unexplained)}")
if unexplained:
    print("  drills: " + ", ".join(f"{k}@{t:.1f}" for t, k in drills))
for t, code in unexplained[:10]:
    before = [(dt, k) for dt, k in drills if dt <= t]
    last = f"{t - before[-1][0]:.1f} s after {before[-1][1]}" if before else "before any drill"
    print(f"  at {t:.2f} ({last}): {code}")
sys.exit(1 if unexplained or total == 0 else 0)
EOF
cat "$work/report"

say "down"
$netlab down "$lab" >&2
leaks=0
leak() { say "left behind: $*"; leaks=$((leaks + 1)); }
ip netns list | grep -q "netlab-$lab\." && leak "namespaces: $(ip netns list | grep "netlab-$lab\." | tr '\n' ' ')"
links_after=$(ip -o link show | awk -F': ' '{print $2}' | sort)
[ "$links_before" = "$links_after" ] || leak "links: $(comm -13 <(echo "$links_before") <(echo "$links_after") | tr '\n' ' ')"
grep -q "/netlab/$lab/\|/labs/$lab/" /proc/mounts && leak "mounts"
pgrep -f "netlab.*$lab" >/dev/null && leak "processes: $(pgrep -af "netlab.*$lab" | tr '\n' ' ')"
[ -e "/run/netlab/$lab" ] && leak "/run/netlab/$lab"
[ -e "/var/lib/netlab/labs/$lab" ] && leak "/var/lib/netlab/labs/$lab"
echo "leaks: $leaks"
rm -rf "$work"
[ "$requests_ok" = 0 ] && [ "$leaks" = 0 ]
