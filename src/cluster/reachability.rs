//! What the NetworkPolicies say, resolved (pure): for each node, its pods
//! that a policy selects, and for each direction what the policies allow
//! them, as addresses and port numbers (`proxy::policy` makes the node's
//! rules of it).
//!
//! Kubernetes' semantics (`networking.k8s.io/v1`):
//! * a pod is isolated for ingress (egress) when a policy of its namespace
//!   whose `podSelector` selects it has `Ingress` (`Egress`) in its
//!   `policyTypes` (by default `Ingress`, plus `Egress` if it has egress
//!   rules); an isolated pod accepts (sends) only what some rule of one of
//!   those policies allows: the union;
//! * a rule without peers allows every address, without ports every port;
//! * a peer is an `ipBlock` (a CIDR minus its `except`s), or pods: those of
//!   the policy's namespace that `podSelector` selects, or of the
//!   namespaces `namespaceSelector` selects (every pod there, or those both
//!   select when both are given); an empty selector selects everything;
//! * a named port is the selected pod's container port of that name and
//!   protocol for ingress, the peer pod's for egress; `endPort` makes a
//!   range.
//!
//! Pods on the host's network are neither selected nor peers (their
//! address is the node's). Every namespace has the
//! `kubernetes.io/metadata.name` label, as the API server sets it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector::label_selector_selects;
use super::state;
use crate::proxy::model::Protocol;
use crate::proxy::policy::{self, Allow, Direction, Isolated, Ports};

/// The label every namespace has.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A pod as policies see it.
struct Member<'a> {
    namespace: &'a str,
    name: &'a str,
    ip: Ipv4Addr,
    node: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
    /// Its containers' named ports.
    named: Vec<(&'a str, Protocol, u16)>,
}

fn member(p: &Pod) -> Option<Member<'_>> {
    let spec = p.spec.as_ref()?;
    let status = p.status.as_ref()?;
    if spec.host_network == Some(true)
        || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let named = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|cp| {
            let name = cp.name.as_deref()?;
            let port = u16::try_from(cp.container_port).ok()?;
            Some((name, protocol(cp.protocol.as_deref())?, port))
        })
        .collect();
    Some(Member {
        namespace: state::namespace(&p.metadata),
        name: p.metadata.name.as_deref().unwrap_or_default(),
        ip,
        node: spec.node_name.as_deref()?,
        labels: p.metadata.labels.as_ref(),
        named,
    })
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// One rule of a policy, either direction.
struct Clause<'a> {
    by: String,
    peers: Option<&'a [NetworkPolicyPeer]>,
    ports: Option<&'a [NetworkPolicyPort]>,
}

/// Each node's policy table (`proxy::policy`) for the lab's policies,
/// pods and namespaces: what the policy twin applies (nodes without an
/// isolated pod are left out: they have no table).
pub fn node_tables(
    policies: &[&NetworkPolicy],
    pods: &[&Pod],
    namespaces: &[&Namespace],
) -> BTreeMap<String, crate::proxy::Ruleset> {
    isolated(policies, pods, namespaces)
        .into_iter()
        .map(|(node, isolated)| (node, policy::ruleset(&isolated)))
        .collect()
}

/// What every policy of `policies` means for the pods of `pods`, by node
/// (nodes without an isolated pod are left out).
pub fn isolated(
    policies: &[&NetworkPolicy],
    pods: &[&Pod],
    namespaces: &[&Namespace],
) -> BTreeMap<String, Vec<Isolated>> {
    let members: Vec<Member> = pods.iter().filter_map(|p| member(p)).collect();
    // Every namespace's labels, with the name label the API server adds.
    let mut ns_labels: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
    for ns in namespaces {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let mut labels = ns.metadata.labels.clone().unwrap_or_default();
        labels.insert(NAME_LABEL.into(), name.into());
        ns_labels.insert(name, labels);
    }
    for m in &members {
        ns_labels
            .entry(m.namespace)
            .or_insert_with(|| [(NAME_LABEL.to_string(), m.namespace.to_string())].into());
    }

    // Per pod (index into members): its two directions.
    let mut found: BTreeMap<usize, (Option<Direction>, Option<Direction>)> = BTreeMap::new();
    for np in policies {
        let Some(spec) = &np.spec else { continue };
        let ns = state::namespace(&np.metadata);
        let name = format!("{ns}/{}", np.metadata.name.as_deref().unwrap_or_default());
        let empty = Default::default();
        let selector = spec.pod_selector.as_ref().unwrap_or(&empty);
        let targets: Vec<usize> = (0..members.len())
            .filter(|&i| {
                members[i].namespace == ns && label_selector_selects(selector, members[i].labels)
            })
            .collect();
        if targets.is_empty() {
            continue;
        }
        let types: Vec<&str> = match &spec.policy_types {
            Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
            _ if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => vec!["Ingress", "Egress"],
            _ => vec!["Ingress"],
        };
        for out in [false, true] {
            if !types.contains(&if out { "Egress" } else { "Ingress" }) {
                continue;
            }
            let clauses: Vec<Clause> = if out {
                let rules = spec.egress.as_deref().unwrap_or_default();
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Clause {
                        by: format!("{name} egress[{i}]"),
                        peers: r.to.as_deref(),
                        ports: r.ports.as_deref(),
                    })
                    .collect()
            } else {
                let rules = spec.ingress.as_deref().unwrap_or_default();
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Clause {
                        by: format!("{name} ingress[{i}]"),
                        peers: r.from.as_deref(),
                        ports: r.ports.as_deref(),
                    })
                    .collect()
            };
            // Each clause's peers once, not once per selected pod.
            let peers: Vec<Option<Vec<usize>>> = clauses
                .iter()
                .map(|c| peer_pods(c.peers, ns, &members, &ns_labels))
                .collect();
            let blocks: Vec<Vec<(u32, u32)>> = clauses.iter().map(|c| ip_blocks(c.peers)).collect();
            for &t in &targets {
                let entry = found.entry(t).or_default();
                let dir = if out { &mut entry.1 } else { &mut entry.0 };
                let dir = dir.get_or_insert_with(Direction::default);
                dir.policies.push(name.clone());
                for ((c, pods), blocks) in clauses.iter().zip(&peers).zip(&blocks) {
                    dir.allows
                        .extend(allows(c, pods.as_deref(), blocks, &members, t, out));
                }
            }
        }
    }

    let mut by_node: BTreeMap<String, Vec<Isolated>> = BTreeMap::new();
    for (i, (ingress, egress)) in found {
        let m = &members[i];
        let sort = |d: Option<Direction>| {
            d.map(|mut d| {
                d.policies.sort();
                d.policies.dedup();
                d
            })
        };
        by_node
            .entry(m.node.to_string())
            .or_default()
            .push(Isolated {
                ip: m.ip,
                pod: format!("{}/{}", m.namespace, m.name),
                ingress: sort(ingress),
                egress: sort(egress),
            });
    }
    by_node
}

/// The pods a clause's peers name (indices into `members`); None: the
/// clause has no peers, so any address.
fn peer_pods(
    peers: Option<&[NetworkPolicyPeer]>,
    policy_ns: &str,
    members: &[Member],
    ns_labels: &HashMap<&str, BTreeMap<String, String>>,
) -> Option<Vec<usize>> {
    let peers = peers.filter(|p| !p.is_empty())?;
    let mut out = Vec::new();
    for p in peers {
        if p.pod_selector.is_none() && p.namespace_selector.is_none() {
            continue; // an ipBlock
        }
        for (i, m) in members.iter().enumerate() {
            let in_ns = match &p.namespace_selector {
                None => m.namespace == policy_ns,
                Some(sel) => label_selector_selects(sel, ns_labels.get(m.namespace)),
            };
            let pod = p
                .pod_selector
                .as_ref()
                .is_none_or(|sel| label_selector_selects(sel, m.labels));
            if in_ns && pod {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// A clause's ipBlocks as address ranges.
fn ip_blocks(peers: Option<&[NetworkPolicyPeer]>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for b in peers
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip_block.as_ref())
    {
        out.extend(block(b));
    }
    policy::merge(out)
}

fn block(b: &IPBlock) -> Vec<(u32, u32)> {
    // IPv6 blocks (and what validation let through) match no IPv4 address.
    let Ok(net) = b.cidr.parse::<ipnet::Ipv4Net>() else {
        return Vec::new();
    };
    let holes: Vec<(u32, u32)> = b
        .except
        .iter()
        .flatten()
        .filter_map(|e| e.parse::<ipnet::Ipv4Net>().ok())
        .map(policy::cidr_range)
        .collect();
    policy::subtract(&[policy::cidr_range(net)], &holes)
}

/// What clause `c` allows pod `target`: its peers on its numbered ports,
/// and per named port the peers on the number it resolves to (the
/// target's own port going in; each peer's going out).
fn allows(
    c: &Clause,
    pods: Option<&[usize]>,
    blocks: &[(u32, u32)],
    members: &[Member],
    target: usize,
    out: bool,
) -> Vec<Allow> {
    let peers = pods.map(|p| addresses(blocks, p, members));
    let Some(ports) = c.ports.filter(|p| !p.is_empty()) else {
        return vec![Allow {
            by: c.by.clone(),
            peers,
            ports: None,
        }];
    };
    let mut numbered = Vec::new();
    // Named ports going out, by the number each peer gives them.
    let mut named_out: BTreeMap<Ports, Vec<usize>> = BTreeMap::new();
    for p in ports {
        let Some(proto) = protocol(p.protocol.as_deref()) else {
            continue;
        };
        match &p.port {
            None => numbered.push(Ports {
                proto,
                first: 0,
                last: u16::MAX,
            }),
            Some(IntOrString::Int(n)) => {
                let Ok(first) = u16::try_from(*n) else {
                    continue;
                };
                let last = p
                    .end_port
                    .and_then(|e| u16::try_from(e).ok())
                    .unwrap_or(first)
                    .max(first);
                numbered.push(Ports { proto, first, last });
            }
            Some(IntOrString::String(name)) if !out => {
                if let Some(n) = resolve(&members[target], name, proto) {
                    numbered.push(Ports {
                        proto,
                        first: n,
                        last: n,
                    });
                }
            }
            Some(IntOrString::String(name)) => {
                // Any destination: every pod with that port is a peer.
                let candidates: Vec<usize> = match pods {
                    Some(p) => p.to_vec(),
                    None => (0..members.len()).collect(),
                };
                for i in candidates {
                    if let Some(n) = resolve(&members[i], name, proto) {
                        let key = Ports {
                            proto,
                            first: n,
                            last: n,
                        };
                        named_out.entry(key).or_default().push(i);
                    }
                }
            }
        }
    }
    let mut v = Vec::new();
    if !numbered.is_empty() {
        v.push(Allow {
            by: c.by.clone(),
            peers,
            ports: Some(numbered),
        });
    }
    for (port, peers) in named_out {
        v.push(Allow {
            by: format!("{} {}/{}", c.by, port.first, port.proto),
            peers: Some(addresses(&[], &peers, members)),
            ports: Some(vec![port]),
        });
    }
    v
}

/// The addresses of `blocks` and of the pods `pods`, as disjoint ranges.
fn addresses(
    blocks: &[(u32, u32)],
    pods: &[usize],
    members: &[Member],
) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut r: Vec<(u32, u32)> = blocks.to_vec();
    r.extend(pods.iter().map(|&i| {
        let ip = u32::from(members[i].ip);
        (ip, ip)
    }));
    policy::merge(r)
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect()
}

fn resolve(m: &Member, name: &str, proto: Protocol) -> Option<u16> {
    m.named
        .iter()
        .find(|(n, p, _)| *n == name && *p == proto)
        .map(|(_, _, port)| *port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Pods a, b, c in namespaces x and y (x/a is 10.244.1.1, y/c is
    /// 10.244.1.6): `pod: a` labels, node-1 for x, node-2 for y; a's
    /// container names port 80 `http`, c's names 8080 `http`.
    fn world() -> (Vec<Pod>, Vec<Namespace>) {
        let mut pods = Vec::new();
        for (n, ns) in ["x", "y"].iter().enumerate() {
            for (i, name) in ["a", "b", "c"].iter().enumerate() {
                let port = if *name == "c" { 8080 } else { 80 };
                pods.push(
                    serde_json::from_value(json!({
                        "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                        "spec": {"nodeName": format!("node-{}", n + 1), "containers": [
                            {"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
                        "status": {"podIP": format!("10.244.1.{}", n * 3 + i + 1), "phase": "Running"}
                    }))
                    .unwrap(),
                );
            }
        }
        let nss = ["x", "y"]
            .iter()
            .map(|n| {
                serde_json::from_value(json!({"metadata": {"name": n, "labels": {"team": n}}}))
                    .unwrap()
            })
            .collect();
        (pods, nss)
    }

    fn run(policies: serde_json::Value) -> BTreeMap<String, Vec<Isolated>> {
        let (pods, nss) = world();
        let policies: Vec<NetworkPolicy> = serde_json::from_value(policies).unwrap();
        isolated(
            &policies.iter().collect::<Vec<_>>(),
            &pods.iter().collect::<Vec<_>>(),
            &nss.iter().collect::<Vec<_>>(),
        )
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp(p: u16) -> Ports {
        Ports {
            proto: Protocol::Tcp,
            first: p,
            last: p,
        }
    }

    #[test]
    fn default_deny_isolates_the_namespace_only() {
        let got = run(json!([{"metadata": {"name": "deny", "namespace": "x"},
            "spec": {"podSelector": {}}}]));
        assert_eq!(got.keys().collect::<Vec<_>>(), ["node-1"]);
        let pods = &got["node-1"];
        assert_eq!(pods.len(), 3);
        for p in pods {
            let d = p.ingress.as_ref().unwrap();
            assert_eq!(d.policies, ["x/deny"]);
            assert!(d.allows.is_empty());
            assert!(p.egress.is_none());
        }
        // Egress too when asked for.
        let got = run(json!([{"metadata": {"name": "deny", "namespace": "y"},
            "spec": {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"]}}]));
        let pods = &got["node-2"];
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].pod, "y/b");
        assert!(pods[0].ingress.is_none() && pods[0].egress.is_some());
    }

    #[test]
    fn peers_by_namespace_and_pod_one_peer_or_two() {
        // One peer with both selectors: pods a of namespaces team=y.
        let one = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"team": "y"}},
                 "podSelector": {"matchLabels": {"pod": "a"}}}],
                "ports": [{"port": 80}]}]}}]));
        let a = &one["node-1"][0];
        let allow = &a.ingress.as_ref().unwrap().allows[0];
        assert_eq!(allow.by, "x/p ingress[0]");
        assert_eq!(
            allow.peers.as_deref().unwrap(),
            [(ip("10.244.1.4"), ip("10.244.1.4"))]
        );
        assert_eq!(allow.ports.as_deref().unwrap(), [tcp(80)]);
        // Two peers: every pod of y, and pods a of x.
        let two = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
                {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}}]));
        let allow = &two["node-1"][0].ingress.as_ref().unwrap().allows[0];
        assert_eq!(
            allow.peers.as_deref().unwrap(),
            [
                (ip("10.244.1.1"), ip("10.244.1.1")),
                (ip("10.244.1.4"), ip("10.244.1.6"))
            ]
        );
        assert!(allow.ports.is_none());
    }

    #[test]
    fn named_ports_resolve_on_the_right_pod() {
        // Ingress: the selected pod's port (a: 80, c: 8080).
        let got = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}}]));
        let ports = |pod: &str| {
            got["node-1"]
                .iter()
                .find(|p| p.pod == pod)
                .unwrap()
                .ingress
                .as_ref()
                .unwrap()
                .allows[0]
                .ports
                .clone()
                .unwrap()
        };
        assert_eq!(ports("x/a"), [tcp(80)]);
        assert_eq!(ports("x/c"), [tcp(8080)]);
        // Egress: each peer's own number, one allow per number.
        let got = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
              "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
                          "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]}]}}]));
        let allows = &got["node-1"][0].egress.as_ref().unwrap().allows;
        assert_eq!(allows.len(), 3, "{allows:?}");
        assert_eq!(allows[0].ports.as_deref().unwrap()[0].proto, Protocol::Udp);
        assert_eq!(allows[1].by, "x/p egress[0] 80/tcp");
        assert_eq!(
            allows[1].peers.as_deref().unwrap(),
            [(ip("10.244.1.4"), ip("10.244.1.5"))]
        );
        assert_eq!(allows[2].by, "x/p egress[0] 8080/tcp");
        assert_eq!(
            allows[2].peers.as_deref().unwrap(),
            [(ip("10.244.1.6"), ip("10.244.1.6"))]
        );
    }

    #[test]
    fn protocols_count_and_a_named_port_is_its_name_and_protocol() {
        // a's `http` is TCP: asked for as UDP, it names no port of a; the
        // SCTP port stands, and a port with no number is all of its
        // protocol's.
        let got = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [
                {"port": "http", "protocol": "UDP"},
                {"port": 3868, "protocol": "SCTP"},
                {"protocol": "UDP"}]}]}}]));
        let allows = &got["node-1"][0].ingress.as_ref().unwrap().allows;
        assert_eq!(allows.len(), 1, "{allows:?}");
        assert_eq!(
            allows[0].ports.as_deref().unwrap(),
            [
                Ports {
                    proto: Protocol::Sctp,
                    first: 3868,
                    last: 3868
                },
                Ports {
                    proto: Protocol::Udp,
                    first: 0,
                    last: u16::MAX
                }
            ]
        );
        // Only a port that names nothing: the clause allows nothing.
        let got = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [
                {"port": "http", "protocol": "UDP"}]}]}}]));
        let d = got["node-1"][0].ingress.as_ref().unwrap();
        assert_eq!(d.policies, ["x/p"]);
        assert!(d.allows.is_empty(), "{:?}", d.allows);
    }

    #[test]
    fn ip_blocks_with_except_and_port_ranges() {
        let got = run(json!([{"metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}],
                "ports": [{"port": 8000, "endPort": 8080, "protocol": "UDP"}]}]}}]));
        let allow = &got["node-1"][0].ingress.as_ref().unwrap().allows[0];
        assert_eq!(
            allow.peers.as_deref().unwrap(),
            [
                (ip("10.244.0.0"), ip("10.244.0.255")),
                (ip("10.244.2.0"), ip("10.244.255.255"))
            ]
        );
        assert_eq!(
            allow.ports.as_deref().unwrap(),
            [Ports {
                proto: Protocol::Udp,
                first: 8000,
                last: 8080
            }]
        );
    }
}
