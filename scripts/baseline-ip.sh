#!/usr/bin/env bash
# Benchmark baseline for netlab's network layer (src/net): the same topology,
# same namespace names and same addresses, built the naive way, with one `ip`
# command per step.
#
#   scripts/baseline-ip.sh LAB N [MASK] dc + 2 nodes + N pods (MASK: the
#                                       nodes' pod subnet prefix, default 24)
#   scripts/baseline-ip.sh --down LAB   remove every netlab-LAB.* namespace
#
#   time scripts/baseline-ip.sh bench 100
#
# Topology (as built by net::apply with the test plan in tests/net_layer.rs):
#   netlab-LAB.dc                lo; bridge lan0 172.18.0.1/24
#   netlab-LAB.node.node-I       lo; eth0 172.18.0.(I+1)/24 (peer of n-node-I on lan0);
#                                bridge cni0 10.244.I.1/24; route to the other
#                                node's pod /24 via its lan IP; ip_forward=1
#   netlab-LAB.pod.default.pod-K on node I = K%2+1: lo; eth0 10.244.I.(K/2+2)/24
#                                (peer of vethXXXXXXXX on cni0); default via 10.244.I.1
# With MASK (e.g. 22, as podCIDRMaskSize: 22), node I's pod subnet is the
# I-th /MASK of 10.244.0.0/16 (node-1 10.244.4.0/22, node-2 10.244.8.0/22).
# Interface names differ from netlab's (no sha256 per pod: hashing in bash
# would cost a process per pod and skew the benchmark); lengths are the same.
# Needs root.
set -euo pipefail

usage() {
	echo "usage: $0 LAB N [MASK] | $0 --down LAB" >&2
	exit 2
}

check_lab() {
	[[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9-]*$ ]] || {
		echo "LAB must be [A-Za-z0-9-]+, got '$1'" >&2
		exit 2
	}
}

down() {
	local prefix="netlab-$1." kind ns
	# Pods first, then nodes, then the dc (same order as net::teardown).
	for kind in pod. node. ""; do
		for ns in $(ip netns list | awk -v p="$prefix$kind" 'index($1, p) == 1 { print $1 }'); do
			ip netns del "$ns"
		done
	done
}

# dotted IPv4 of a 32-bit number, without a subprocess
ip4() {
	printf -v "$1" '%d.%d.%d.%d' $(($2 >> 24 & 255)) $(($2 >> 16 & 255)) $(($2 >> 8 & 255)) $(($2 & 255))
}

up() {
	local lab=$1 n=$2 mask=$3
	local size=$((1 << (32 - mask))) base=$(((10 << 24) + (244 << 16)))
	local gw other addr
	local p="netlab-$lab" dc="netlab-$lab.dc"
	local i j k idx node pod veth

	ip netns add "$dc"
	ip -n "$dc" link set lo up
	ip -n "$dc" link add lan0 address 02:00:ac:12:00:01 type bridge
	ip -n "$dc" link set lan0 up
	ip -n "$dc" addr add 172.18.0.1/24 dev lan0

	for i in 1 2; do
		node="$p.node.node-$i"
		j=$((3 - i)) # the other node
		ip netns add "$node"
		ip -n "$dc" link add "n-node-$i" type veth peer name eth0 netns "$node"
		ip -n "$dc" link set "n-node-$i" master lan0 up
		ip -n "$node" link set lo up
		ip -n "$node" link set eth0 up
		ip -n "$node" addr add "172.18.0.$((i + 1))/24" dev eth0
		ip4 gw $((base + i * size + 1))
		ip4 other $((base + j * size))
		ip -n "$node" link add cni0 address "02:00:0a:f4:0$i:01" type bridge
		ip -n "$node" link set cni0 up
		ip -n "$node" addr add "$gw/$mask" dev cni0
		ip -n "$node" route add "$other/$mask" via "172.18.0.$((j + 1))"
		ip netns exec "$node" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
	done

	for ((k = 0; k < n; k++)); do
		i=$((k % 2 + 1))
		idx=$((k / 2))
		node="$p.node.node-$i"
		pod="$p.pod.default.pod-$k"
		printf -v veth 'veth%08x' "$k"
		ip netns add "$pod"
		ip -n "$node" link add "$veth" type veth peer name eth0 netns "$pod"
		ip -n "$node" link set "$veth" master cni0 up
		ip -n "$pod" link set lo up
		ip -n "$pod" link set eth0 up
		ip4 addr $((base + i * size + idx + 2))
		ip4 gw $((base + i * size + 1))
		ip -n "$pod" addr add "$addr/$mask" dev eth0
		ip -n "$pod" route add default via "$gw"
	done
}

[[ $# -eq 2 || $# -eq 3 ]] || usage
if [[ $1 == --down ]]; then
	[[ $# -eq 2 ]] || usage
	check_lab "$2"
	down "$2"
else
	check_lab "$1"
	mask=${3:-24}
	if ! [[ $mask =~ ^[0-9]+$ ]] || ((mask < 17 || mask > 28)); then
		echo "MASK must be 17..28" >&2
		exit 2
	fi
	max=$((2 * ((1 << (32 - mask)) - 3)))
	if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 > max)); then
		echo "N must be 0..$max (pods in two node subnets of /$mask)" >&2
		exit 2
	fi
	up "$1" "$2" "$mask"
fi
