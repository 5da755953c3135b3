#!/usr/bin/env bash
# netlab's benchmark, side by side with the tools people would otherwise
# use, measured in one run on this machine. Writes bench/report.md (every
# figure, the baselines, the ratios, the targets met or missed) and
# bench/report.svg (the chart); the raw figures go to bench/results/*.json.
#
#   sudo scripts/bench.sh                 everything (about 10 minutes here)
#   sudo scripts/bench.sh podnet proxy    some parts (the others' figures of
#                                         the last run stay in the report)
#   sudo scripts/bench.sh --quick         small sizes, to try it out
#
# Parts: podnet (pod network bring-up/teardown: netlab, CNI bridge plugin,
# ip script, ip -batch floor), proxy (service rules at 1 000/10 000/30 000
# services, connect latency, linear chain), datapath (iperf3 and TCP round
# trips: clusterIP, pod to pod, bare veth), convergence (endpoint
# convergence in a small lab), scale (a lab of 1 000 pods and 10 000
# services: up, serving, convergence, controller memory, down, leftovers),
# api (the lab's Kubernetes API at 1 000 pods over HTTPS: GET, LIST as JSON
# and as a Table, CREATE/PATCH/DELETE, watch delivery, the lab process's
# memory; baselines: kubectl and netlab get pods as processes, the store's
# commit against the whole-file store it replaced), streams (kubectl exec
# through SPDY and WebSocket against runc exec, the floor; port-forward
# throughput against a direct connection to the pod), dns (the cluster DNS's
# queries per second and latency against dnsmasq in the same namespace),
# netpol (connect latency under 0, 100 and 1 000 NetworkPolicies against a
# linear chain of them; kubectl apply/delete/label to the node's verdict;
# the policy twin's recompute at 1 000 pods, in process).
# Environment knobs are described at the top of each benches/*.rs.
#
# Needs root. Installs what is missing with apt (containernetworking-plugins,
# iperf3, nftables, iproute2, runc, curl, dnsmasq-base) and, when the local registry has
# no images yet, runs scripts/setup.sh. Run it on a quiet machine: figures
# taken while something compiles are wrong (the load average is recorded
# in the report).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD

if [[ $EUID -ne 0 ]]; then
	echo "scripts/bench.sh needs root: sudo scripts/bench.sh" >&2
	exit 1
fi

quick=0
parts=()
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	podnet | proxy | datapath | convergence | scale | api | streams | dns | netpol) parts+=("$a") ;;
	-h | --help)
		sed -n '2,31p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument $a (parts: podnet proxy datapath convergence scale api streams dns netpol; --quick)" >&2
		exit 2
		;;
	esac
done
full=0
if [[ ${#parts[@]} -eq 0 ]]; then
	parts=(podnet proxy datapath convergence scale api streams dns netpol)
	full=1
fi

# What the benches need.
need=()
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || need+=(containernetworking-plugins)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v runc >/dev/null || need+=(runc)
command -v curl >/dev/null || need+=(curl)
# dns measures dnsmasq beside the lab's DNS.
[[ " ${parts[*]} " != *" dns "* ]] || command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
# convergence opens the lab's page in headless Chromium.
[[ " ${parts[*]} " != *" convergence "* || -x /usr/bin/chromium ]] || need+=(chromium)
if [[ ${#need[@]} -gt 0 ]]; then
	echo "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null; }
fi
if [[ " ${parts[*]} " == *" api "* && ! -x /usr/bin/kubectl ]]; then
	echo "the api part measures /usr/bin/kubectl, which is missing (install kubectl, or leave out api)" >&2
	exit 1
fi
if [[ " ${parts[*]} " == *" streams "* && ! ( -x /usr/bin/kubectl && -x /usr/lib/google-cloud-sdk/bin/kubectl.1.27 ) ]]; then
	echo "the streams part measures /usr/bin/kubectl (WebSocket) and kubectl.1.27 (SPDY), which are missing (or leave out streams)" >&2
	exit 1
fi
command -v cargo >/dev/null || { echo "cargo is missing (a Rust toolchain 1.85+ is needed)" >&2; exit 1; }

# Images come from the local registry (datapath, convergence, scale, api).
if ! curl -fsS -m 2 http://127.0.0.1:5000/v2/radial/busyboxplus/tags/list >/dev/null 2>&1; then
	scripts/registry.sh start >/dev/null 2>&1 || true
	if ! curl -fsS -m 2 http://127.0.0.1:5000/v2/radial/busyboxplus/tags/list >/dev/null 2>&1; then
		echo "no local registry with the demo images: running scripts/setup.sh"
		scripts/setup.sh
	fi
fi

if [[ $quick -eq 1 ]]; then
	export NETLAB_BENCH_PODNET_SIZES=${NETLAB_BENCH_PODNET_SIZES:-20,100}
	export NETLAB_PROXY_SERVICES=${NETLAB_PROXY_SERVICES:-100,1000}
	export NETLAB_BENCH_DP_SECS=${NETLAB_BENCH_DP_SECS:-2}
	export NETLAB_BENCH_DP_ROUNDS=${NETLAB_BENCH_DP_ROUNDS:-1}
	export NETLAB_BENCH_KILLS=${NETLAB_BENCH_KILLS:-8}
	export NETLAB_BENCH_SCALE_PODS=${NETLAB_BENCH_SCALE_PODS:-40}
	export NETLAB_BENCH_SCALE_SERVICES=${NETLAB_BENCH_SCALE_SERVICES:-200}
	export NETLAB_BENCH_SCALE_DELETES=${NETLAB_BENCH_SCALE_DELETES:-4}
	export NETLAB_BENCH_API_PODS=${NETLAB_BENCH_API_PODS:-50}
	export NETLAB_BENCH_STREAMS_EXECS=${NETLAB_BENCH_STREAMS_EXECS:-20}
	export NETLAB_BENCH_STREAMS_PROCS=${NETLAB_BENCH_STREAMS_PROCS:-5}
	export NETLAB_BENCH_STREAMS_MIB=${NETLAB_BENCH_STREAMS_MIB:-16}
fi

export NETLAB_BENCH_DIR=$REPO/bench/results
export NETLAB_BENCH_REPORT=$REPO/bench
mkdir -p "$NETLAB_BENCH_DIR"
# A full run starts from nothing: no figure of an older run in the report.
[[ $full -eq 1 ]] && rm -f "$NETLAB_BENCH_DIR"/*.json

echo "building (release)"
cargo bench --no-run "${parts[@]/#/--bench=}" --bench report 2>&1 | grep -E '^(error|warning: unused)' || true

load() { cut -d' ' -f1 /proc/loadavg; }
for p in "${parts[@]}"; do
	# Wait (up to a minute) for a quiet machine; the load is in the report.
	for _ in $(seq 30); do
		awk -v l="$(load)" 'BEGIN { exit !(l < 1.0) }' && break
		sleep 2
	done
	echo
	echo "=== $p (load $(load)) ==="
	cargo bench -q --bench "$p"
done

cargo bench -q --bench report
echo
echo "report: bench/report.md, chart: bench/report.svg"
