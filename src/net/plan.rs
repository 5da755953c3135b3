//! What the network should look like: pure data, built by the caller, plus
//! the consistency checks run before anything touches the kernel.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::error::NetError;
use super::link::invalid_ifname;
use super::netns::{invalid_netns_name, NETNS_PREFIX};

/// The whole flat pod network of one lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    /// The lab's "datacenter" namespace joining the nodes.
    pub dc: DcPlan,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcPlan {
    pub netns: String,
    /// The LAN bridge, e.g. "lan0".
    pub bridge: String,
    /// Address of the bridge, e.g. 172.18.0.1/24; nodes live in this subnet.
    pub addr: Ipv4Net,
    /// Each node's pod subnet via its LAN address: the lab's API listens
    /// here for pods, and answers them without NAT.
    #[serde(default)]
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// "node-1"
    pub name: String,
    /// "netlab-<lab>.node.node-1"
    pub netns: String,
    /// The node's veth end in the dc netns, ≤15 bytes, e.g. "n-1a2b3c4d".
    pub dc_port: String,
    /// Address of "eth0" in the node netns, e.g. 172.18.0.2/24.
    pub lan_addr: Ipv4Net,
    /// The pod bridge in the node netns, e.g. "cni0".
    pub bridge: String,
    /// Address of the pod bridge, e.g. 10.244.1.1/24 (the pods' subnet).
    pub gateway: Ipv4Net,
    /// Other nodes' pod subnets via their LAN address.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// "netlab-<lab>.pod.default.my-nginx-abc-xyz12"
    pub netns: String,
    /// The netns of the node the pod lives on.
    pub node_netns: String,
    /// Node-side veth end, ≤15 bytes, e.g. "veth1a2b3c4d".
    pub host_veth: String,
    /// The node bridge it is enslaved to.
    pub bridge: String,
    /// Address of "eth0" in the pod netns, e.g. 10.244.1.5/24.
    pub addr: Ipv4Net,
    /// Default route.
    pub gateway: Ipv4Addr,
}

/// Collects every problem instead of stopping at the first one.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, p: String) {
        self.0.push(p);
    }

    fn netns(&mut self, what: &str, name: &str) {
        if let Some(why) = invalid_netns_name(name) {
            self.push(format!("{what} netns {name:?}: {why}"));
        } else if !name.starts_with(NETNS_PREFIX) {
            self.push(format!(
                "{what} netns {name:?} does not start with {NETNS_PREFIX:?}"
            ));
        }
    }

    fn ifname(&mut self, what: &str, name: &str) {
        if let Some(why) = invalid_ifname(name) {
            self.push(format!("{what} interface name {name:?}: {why}"));
        } else if name == "lo" || name == "eth0" {
            self.push(format!("{what} interface name {name:?} is reserved"));
        }
    }

    fn unique(&mut self, seen: &mut HashSet<String>, kind: &str, value: impl Into<String>) {
        let v = value.into();
        if !seen.insert(v.clone()) {
            self.push(format!("duplicate {kind} {v}"));
        }
    }

    fn finish(self) -> Result<(), NetError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(NetError::InvalidPlan(self.0.join("; ")))
        }
    }
}

/// Is `net.addr()` usable as a host address in its subnet?
fn host_addr_ok(net: &Ipv4Net) -> bool {
    net.prefix_len() >= 31 || (net.addr() != net.network() && net.addr() != net.broadcast())
}

impl NetPlan {
    /// Check names, lengths, subnets and cross references. Touches nothing.
    pub fn validate(&self) -> Result<(), NetError> {
        let mut p = Problems::default();
        let mut netns_seen = HashSet::new();

        let dc = &self.dc;
        p.netns("dc", &dc.netns);
        p.unique(&mut netns_seen, "netns", &dc.netns);
        p.ifname("dc bridge", &dc.bridge);
        if !host_addr_ok(&dc.addr) {
            p.push(format!("dc address {} is not a host address", dc.addr));
        }
        let lan = dc.addr.trunc();
        for (dst, via) in &dc.routes {
            if !lan.contains(via) {
                p.push(format!(
                    "dc route {dst} via {via}: gateway not in the dc subnet {lan}"
                ));
            }
        }

        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut lan_addrs = HashSet::new();
        lan_addrs.insert(dc.addr.addr().to_string());
        let mut pod_nets: Vec<(&str, Ipv4Net)> = Vec::new();
        for n in &self.nodes {
            let w = format!("node {}", n.name);
            p.unique(&mut names, "node name", &n.name);
            p.netns(&w, &n.netns);
            p.unique(&mut netns_seen, "netns", &n.netns);
            p.ifname(&format!("{w} dc port"), &n.dc_port);
            if n.dc_port == dc.bridge {
                p.push(format!(
                    "{w} dc port {} has the dc bridge's name",
                    n.dc_port
                ));
            }
            p.unique(&mut ports, "dc port", &n.dc_port);
            p.ifname(&format!("{w} bridge"), &n.bridge);
            if n.lan_addr.trunc() != lan {
                p.push(format!(
                    "{w} lan address {} is not in the dc subnet {lan}",
                    n.lan_addr
                ));
            }
            if !host_addr_ok(&n.lan_addr) {
                p.push(format!(
                    "{w} lan address {} is not a host address",
                    n.lan_addr
                ));
            }
            p.unique(&mut lan_addrs, "lan address", n.lan_addr.addr().to_string());
            if !host_addr_ok(&n.gateway) {
                p.push(format!("{w} gateway {} is not a host address", n.gateway));
            }
            let pods_net = n.gateway.trunc();
            if pods_net.contains(&lan) || lan.contains(&pods_net) {
                p.push(format!(
                    "{w} pod subnet {pods_net} overlaps the dc subnet {lan}"
                ));
            }
            for (other, net) in &pod_nets {
                if net.contains(&pods_net) || pods_net.contains(net) {
                    p.push(format!(
                        "{w} pod subnet {pods_net} overlaps node {other}'s {net}"
                    ));
                }
            }
            pod_nets.push((&n.name, pods_net));
            for (dst, via) in &n.routes {
                if !n.lan_addr.trunc().contains(via) {
                    p.push(format!(
                        "{w} route {dst} via {via}: gateway not in the lan subnet {}",
                        n.lan_addr.trunc()
                    ));
                }
                if dst.trunc().contains(&pods_net) || pods_net.contains(&dst.trunc()) {
                    p.push(format!(
                        "{w} route {dst} overlaps its own pod subnet {pods_net}"
                    ));
                }
            }
        }

        let nodes: HashMap<&str, &NodePlan> =
            self.nodes.iter().map(|n| (n.netns.as_str(), n)).collect();
        check_pods(&mut p, &mut netns_seen, &self.pods);
        for pod in &self.pods {
            let w = format!("pod {}", pod.netns);
            match nodes.get(pod.node_netns.as_str()) {
                None => p.push(format!(
                    "{w}: node netns {} is not in the plan",
                    pod.node_netns
                )),
                Some(n) => {
                    if pod.bridge != n.bridge {
                        p.push(format!(
                            "{w}: bridge {} is not node {}'s bridge {}",
                            pod.bridge, n.name, n.bridge
                        ));
                    }
                    if pod.addr.trunc() != n.gateway.trunc() {
                        p.push(format!(
                            "{w}: address {} is not in node {}'s pod subnet {}",
                            pod.addr,
                            n.name,
                            n.gateway.trunc()
                        ));
                    }
                    if pod.gateway != n.gateway.addr() {
                        p.push(format!(
                            "{w}: gateway {} is not node {}'s bridge address {}",
                            pod.gateway,
                            n.name,
                            n.gateway.addr()
                        ));
                    }
                }
            }
        }
        p.finish()
    }
}

/// Checks for pods added to nodes that already exist ([`super::add_pods`]).
pub fn validate_pods(pods: &[PodPlan]) -> Result<(), NetError> {
    let mut p = Problems::default();
    check_pods(&mut p, &mut HashSet::new(), pods);
    p.finish()
}

fn check_pods(p: &mut Problems, netns_seen: &mut HashSet<String>, pods: &[PodPlan]) {
    let mut addrs = HashSet::new();
    let mut veths = HashSet::new();
    for pod in pods {
        let w = format!("pod {}", pod.netns);
        p.netns(&w, &pod.netns);
        p.netns(&format!("{w} node"), &pod.node_netns);
        p.unique(netns_seen, "netns", &pod.netns);
        p.ifname(&format!("{w} host veth"), &pod.host_veth);
        p.ifname(&format!("{w} bridge"), &pod.bridge);
        if pod.host_veth == pod.bridge {
            p.push(format!(
                "{w}: host veth and bridge are both named {}",
                pod.bridge
            ));
        }
        p.unique(
            &mut veths,
            "host veth",
            format!("{} in netns {}", pod.host_veth, pod.node_netns),
        );
        p.unique(&mut addrs, "pod address", pod.addr.addr().to_string());
        if !host_addr_ok(&pod.addr) {
            p.push(format!("{w}: address {} is not a host address", pod.addr));
        }
        if !pod.addr.contains(&pod.gateway) {
            p.push(format!(
                "{w}: gateway {} is not in its subnet {}",
                pod.gateway,
                pod.addr.trunc()
            ));
        }
        if pod.gateway == pod.addr.addr() {
            p.push(format!("{w}: gateway is its own address {}", pod.gateway));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn plan() -> NetPlan {
        let node = |i: u8| NodePlan {
            name: format!("node-{i}"),
            netns: format!("netlab-t.node.node-{i}"),
            dc_port: format!("n-{i}"),
            lan_addr: net(&format!("172.18.0.{}/24", i + 1)),
            bridge: "cni0".into(),
            gateway: net(&format!("10.244.{i}.1/24")),
            routes: vec![(
                net(&format!("10.244.{}.0/24", 3 - i)),
                format!("172.18.0.{}", 4 - i).parse().unwrap(),
            )],
        };
        let pod = |i: u8, j: u8| PodPlan {
            netns: format!("netlab-t.pod.default.p{i}{j}"),
            node_netns: format!("netlab-t.node.node-{i}"),
            host_veth: format!("veth{i}{j}"),
            bridge: "cni0".into(),
            addr: net(&format!("10.244.{i}.{}/24", j + 2)),
            gateway: format!("10.244.{i}.1").parse().unwrap(),
        };
        NetPlan {
            dc: DcPlan {
                netns: "netlab-t.dc".into(),
                bridge: "lan0".into(),
                addr: net("172.18.0.1/24"),
                routes: Vec::new(),
            },
            nodes: vec![node(1), node(2)],
            pods: vec![pod(1, 0), pod(1, 1), pod(2, 0)],
        }
    }

    fn problems(p: &NetPlan) -> String {
        match p.validate() {
            Err(NetError::InvalidPlan(s)) => s,
            other => panic!("expected InvalidPlan, got {other:?}"),
        }
    }

    #[test]
    fn good_plan_passes() {
        plan().validate().unwrap();
        validate_pods(&plan().pods).unwrap();
    }

    #[test]
    fn catches_long_and_reserved_ifnames() {
        let mut p = plan();
        p.pods[0].host_veth = "veth-much-too-long".into();
        p.nodes[1].bridge = "eth0".into();
        let s = problems(&p);
        assert!(s.contains("longer than 15 bytes"), "{s}");
        assert!(s.contains("\"eth0\" is reserved"), "{s}");
    }

    #[test]
    fn catches_foreign_and_duplicate_netns() {
        let mut p = plan();
        p.pods[1].netns = p.pods[0].netns.clone();
        p.nodes[0].netns = "cni-1234".into();
        let s = problems(&p);
        assert!(
            s.contains("duplicate netns netlab-t.pod.default.p10"),
            "{s}"
        );
        assert!(s.contains("does not start with \"netlab-\""), "{s}");
    }

    #[test]
    fn catches_address_mistakes() {
        let mut p = plan();
        p.pods[0].addr = net("10.244.2.9/24"); // on node-1 but in node-2's subnet
        p.pods[1].gateway = "10.244.1.254".parse().unwrap();
        p.nodes[1].lan_addr = net("172.19.0.3/24");
        p.nodes[0].routes[0].1 = "192.168.1.1".parse().unwrap();
        let s = problems(&p);
        assert!(s.contains("not in node node-1's pod subnet"), "{s}");
        assert!(s.contains("is not node node-1's bridge address"), "{s}");
        assert!(s.contains("not in the dc subnet"), "{s}");
        assert!(s.contains("gateway not in the lan subnet"), "{s}");
    }

    #[test]
    fn catches_overlapping_pod_subnets_and_duplicate_addresses() {
        let mut p = plan();
        p.nodes[1].gateway = net("10.244.0.1/16");
        p.pods[2].addr = p.pods[0].addr;
        let s = problems(&p);
        assert!(s.contains("overlaps node node-1's 10.244.1.0/24"), "{s}");
        assert!(s.contains("duplicate pod address 10.244.1.2"), "{s}");
    }

    #[test]
    fn pods_must_reference_planned_nodes() {
        let mut p = plan();
        p.pods[0].node_netns = "netlab-t.node.node-9".into();
        assert!(problems(&p).contains("is not in the plan"));
    }

    #[test]
    fn serde_round_trip() {
        let p = plan();
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<NetPlan>(&s).unwrap(), p);
    }
}
