//! Network policies as one node's `ip netlab-policy` table (pure): what
//! `cluster::reachability` resolved for the node's isolated pods (who may
//! reach them, whom they may reach, as addresses and port numbers) turned
//! into chains, verdict maps and address sets.
//!
//! ```text
//! chain forward { type filter hook forward priority 0 ;
//!     ct state established,related accept
//!     ip saddr vmap @egress        # 10.244.1.5 : jump egress-10.244.1.5
//!     ip daddr vmap @ingress       # 10.244.1.5 : jump ingress-10.244.1.5
//! }
//! chain ingress-10.244.1.5 {
//!     ip saddr 10.244.1.5 accept                        # the pod itself
//!     ip saddr @peers-… meta l4proto tcp th dport 80 accept
//!     reject with icmp admin-prohibited comment "x/a: denied by x/deny-all"
//! }
//! ```
//!
//! * Only the first packet of a connection is judged: replies and later
//!   packets are `established`. A denied connection is rejected (ICMP
//!   "administratively prohibited") rather than dropped, so that a client
//!   learns at once, and why.
//! * Egress is judged on the source pod's node, ingress on the destination
//!   pod's: the maps hold the node's own pods only. An allowed egress
//!   `return`s, so that the destination's ingress is judged next.
//! * A packet costs one map lookup, then its pod's chain: one rule per
//!   distinct port (and one for "any port"), whatever the number of
//!   policies, because the peers of every policy allowing the same port
//!   are one set. The set is named after the clauses it unites, so a pod
//!   whose labels bring it into or out of a peer list changes elements,
//!   not rules.
//! * Traffic from the node itself (the kubelet's probes) takes the output
//!   hook, not forward: always allowed, as Kubernetes requires.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use super::model::Protocol;
use super::rule::{then, IpField, KeyField, Rule, Stmt, Verdict};
use super::ruleset::{
    Chain, ChainType, Element, Hook, HookPoint, Key, KeyPart, KeyType, Ruleset, Set, SetKind, Value,
};

/// The table of the policies, beside the proxy's `ip netlab`.
pub const TABLE: &str = "netlab-policy";

/// Ports of one protocol, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ports {
    pub proto: Protocol,
    pub first: u16,
    pub last: u16,
}

/// What one clause of a policy (an ingress or egress rule) allows, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Allow {
    /// Which clause: `x/allow-b ingress[0]` (with a resolved named port:
    /// `x/web egress[1] 8080/TCP`). Names the rule and its peers' set.
    pub by: String,
    /// The peers' addresses, as disjoint ranges; None: any address.
    pub peers: Option<Vec<(Ipv4Addr, Ipv4Addr)>>,
    /// None: every port of every protocol.
    pub ports: Option<Vec<Ports>>,
}

/// One direction of a pod's isolation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Direction {
    /// The policies that select the pod for this direction (`ns/name`).
    pub policies: Vec<String>,
    /// What they allow (nothing: everything is denied).
    pub allows: Vec<Allow>,
}

/// A pod of the node that at least one policy selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Isolated {
    pub ip: Ipv4Addr,
    /// `namespace/name`.
    pub pod: String,
    pub ingress: Option<Direction>,
    pub egress: Option<Direction>,
}

/// The node's table for its isolated `pods`.
pub fn ruleset(pods: &[Isolated]) -> Ruleset {
    let mut rs = Ruleset::default();
    let map = |name: &str| Set {
        kind: SetKind::Map,
        name: name.into(),
        key: vec![KeyType::Ipv4Addr],
        timeout: None,
        comment: None,
    };
    rs.sets.push(map("egress"));
    rs.sets.push(map("ingress"));
    let mut sets: BTreeMap<String, Set> = BTreeMap::new();
    let mut elements: BTreeMap<(String, u32, u32), Element> = BTreeMap::new();
    let mut pods: Vec<&Isolated> = pods.iter().collect();
    pods.sort_by_key(|p| p.ip);
    for p in pods {
        for (out, dir) in [(true, &p.egress), (false, &p.ingress)] {
            let Some(dir) = dir else { continue };
            let chain = format!("{}-{}", if out { "egress" } else { "ingress" }, p.ip);
            rs.chains
                .push(pod_chain(p, out, dir, &chain, &mut sets, &mut elements));
            rs.elements.push(Element {
                set: if out { "egress" } else { "ingress" }.into(),
                key: Key(vec![KeyPart::Ip(p.ip)]),
                value: Some(Value::Verdict(Verdict::Jump(chain))),
            });
        }
    }
    rs.sets.extend(sets.into_values());
    rs.elements.extend(elements.into_values());
    rs.chains.push(Chain {
        name: "forward".into(),
        hook: Some(Hook {
            kind: ChainType::Filter,
            hook: HookPoint::Forward,
            priority: 0,
        }),
        rules: vec![
            then(vec![Stmt::CtStateEstablishedRelated], Verdict::Accept),
            Rule::new(vec![Stmt::Vmap {
                key: vec![KeyField::IpSaddr],
                map: "egress".into(),
            }]),
            Rule::new(vec![Stmt::Vmap {
                key: vec![KeyField::IpDaddr],
                map: "ingress".into(),
            }]),
        ],
    });
    rs
}

/// A pod's chain for one direction: itself, one rule per port (and one for
/// any port) whose peers are the union of every clause allowing it, then
/// the rejection.
fn pod_chain(
    p: &Isolated,
    out: bool,
    dir: &Direction,
    name: &str,
    sets: &mut BTreeMap<String, Set>,
    elements: &mut BTreeMap<(String, u32, u32), Element>,
) -> Chain {
    // The peer's address: the destination going out, the source coming in.
    let (peer, allowed) = if out {
        (IpField::Daddr, Verdict::Return)
    } else {
        (IpField::Saddr, Verdict::Accept)
    };
    let mut rules = vec![then(
        vec![Stmt::Ip {
            field: peer,
            neq: false,
            net: p.ip.into(),
        }],
        allowed.clone(),
    )
    .comment("the pod itself")];
    // Per port (None: any), the clauses allowing it.
    let mut groups: BTreeMap<Option<Ports>, Vec<&Allow>> = BTreeMap::new();
    for a in &dir.allows {
        match &a.ports {
            None => groups.entry(None).or_default().push(a),
            Some(ports) => {
                for port in ports {
                    groups.entry(Some(*port)).or_default().push(a);
                }
            }
        }
    }
    for (ports, allows) in groups {
        let mut stmts = Vec::new();
        if allows.iter().all(|a| a.peers.is_some()) {
            let mut ids: Vec<&str> = allows.iter().map(|a| a.by.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let set = set_name(&ids, ports);
            let ranges = merge(
                allows
                    .iter()
                    .flat_map(|a| a.peers.iter().flatten())
                    .map(|(a, b)| (u32::from(*a), u32::from(*b)))
                    .collect(),
            );
            if ranges.is_empty() {
                // Clauses whose peers are no one (yet): nothing to allow.
                continue;
            }
            for (a, b) in ranges {
                elements
                    .entry((set.clone(), a, b))
                    .or_insert_with(|| Element {
                        set: set.clone(),
                        key: Key(vec![KeyPart::IpRange(a.into(), b.into())]),
                        value: None,
                    });
            }
            sets.entry(set.clone()).or_insert_with(|| Set {
                kind: SetKind::Ranges,
                name: set.clone(),
                key: vec![KeyType::Ipv4Addr],
                timeout: None,
                comment: Some(clip(&ids.join(", "))),
            });
            stmts.push(Stmt::IpInSet { field: peer, set });
        }
        if let Some(p) = ports {
            stmts.push(Stmt::L4Proto(p.proto));
            stmts.push(Stmt::ThDport(p.first, p.last));
        }
        let by: Vec<&str> = allows.iter().map(|a| a.by.as_str()).collect();
        rules.push(then(stmts, allowed.clone()).comment(&clip(&by.join(", "))));
    }
    let what = if out { "egress" } else { "ingress" };
    rules.push(
        Rule::new(vec![Stmt::RejectAdminProhibited]).comment(&clip(&format!(
            "{} {what} denied: isolated by {}",
            p.pod,
            dir.policies.join(", ")
        ))),
    );
    Chain {
        name: name.into(),
        hook: None,
        rules,
    }
}

/// `peers-<16 hex digits>`: the same clauses and port, the same set.
fn set_name(ids: &[&str], ports: Option<Ports>) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ids.hash(&mut h);
    ports.hash(&mut h);
    format!("peers-{:016x}", h.finish())
}

/// A comment nft keeps (its user data holds at most 256 bytes).
fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX - 1;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_string();
    let _ = write!(out, "…");
    out
}

/// Sorted, disjoint ranges that do not touch: what an interval set takes.
pub fn merge(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `ranges` without the addresses of `holes` (an ipBlock's `except`).
pub fn subtract(ranges: &[(u32, u32)], holes: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let holes = merge(holes.to_vec());
    let mut out = Vec::new();
    for &(mut a, b) in &merge(ranges.to_vec()) {
        let mut whole = true;
        for &(h0, h1) in &holes {
            if h1 < a || h0 > b {
                continue;
            }
            if h0 > a {
                out.push((a, h0 - 1));
            }
            if h1 >= b {
                whole = false;
                break;
            }
            a = h1 + 1;
        }
        if whole {
            out.push((a, b));
        }
    }
    out
}

/// The addresses of a CIDR as a range.
pub fn cidr_range(net: ipnet::Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn one(s: &str) -> (Ipv4Addr, Ipv4Addr) {
        (ip(s), ip(s))
    }

    #[test]
    fn ranges_merge_and_subtract() {
        assert_eq!(
            merge(vec![(4, 6), (1, 2), (3, 3), (9, 10)]),
            [(1, 6), (9, 10)]
        );
        assert_eq!(merge(vec![(0, u32::MAX), (4, 5)]), [(0, u32::MAX)]);
        assert_eq!(
            subtract(&[(0, 100)], &[(10, 19), (50, 200)]),
            [(0, 9), (20, 49)]
        );
        assert_eq!(subtract(&[(0, 9)], &[(0, 9)]), []);
        assert_eq!(
            subtract(&[(0, 9), (20, 29)], &[(5, 24)]),
            [(0, 4), (25, 29)]
        );
        let net: ipnet::Ipv4Net = "10.244.0.0/16".parse().unwrap();
        assert_eq!(
            cidr_range(net),
            (u32::from(ip("10.244.0.0")), u32::from(ip("10.244.255.255")))
        );
    }

    #[test]
    fn a_pod_chain_has_one_rule_per_port_whatever_the_policies() {
        let allow = |by: &str, peer: &str, port: Option<u16>| Allow {
            by: by.into(),
            peers: Some(vec![one(peer)]),
            ports: port.map(|p| {
                vec![Ports {
                    proto: Protocol::Tcp,
                    first: p,
                    last: p,
                }]
            }),
        };
        let pod = Isolated {
            ip: ip("10.244.1.5"),
            pod: "x/a".into(),
            ingress: Some(Direction {
                policies: vec!["x/p1".into(), "x/p2".into(), "x/p3".into()],
                allows: vec![
                    allow("x/p1 ingress[0]", "10.244.1.7", Some(80)),
                    allow("x/p2 ingress[0]", "10.244.1.6", Some(80)),
                    allow("x/p3 ingress[0]", "10.244.2.9", None),
                ],
            }),
            egress: Some(Direction {
                policies: vec!["x/deny".into()],
                allows: vec![],
            }),
        };
        let rs = ruleset(&[pod]);
        let text = rs.render_in(TABLE);
        let chain = rs.chain("ingress-10.244.1.5").unwrap();
        let rules: Vec<String> = chain.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(rules.len(), 4, "{text}");
        assert_eq!(
            rules[0],
            "ip saddr 10.244.1.5 accept comment \"the pod itself\""
        );
        assert!(rules[1].starts_with("ip saddr @peers-"), "{text}");
        assert!(
            rules[1].ends_with("accept comment \"x/p3 ingress[0]\""),
            "{text}"
        );
        assert!(
            rules[2].contains(
                " meta l4proto tcp th dport 80 accept comment \"x/p1 ingress[0], x/p2 ingress[0]\""
            ),
            "{text}"
        );
        assert_eq!(
            rules[3],
            "reject with icmp admin-prohibited comment \"x/a ingress denied: isolated by x/p1, x/p2, x/p3\""
        );
        // p1's and p2's peers are one set of one range.
        assert!(text.contains("{ 10.244.1.6/31 }"), "{text}");
        assert!(text.contains("flags interval ;"), "{text}");
        let egress = rs.chain("egress-10.244.1.5").unwrap();
        assert_eq!(egress.rules.len(), 2);
        assert_eq!(
            egress.rules[0].to_string(),
            "ip daddr 10.244.1.5 return comment \"the pod itself\""
        );
        assert!(text.contains(
            "add element ip netlab-policy ingress { 10.244.1.5 : jump ingress-10.244.1.5 }"
        ));
        assert!(text.contains(
            "add element ip netlab-policy egress { 10.244.1.5 : jump egress-10.244.1.5 }"
        ));
        let fwd = rs.chain("forward").unwrap();
        assert_eq!(
            fwd.rules[0].to_string(),
            "ct state established,related accept"
        );
        // Order: a chain after the chains it jumps to (through the maps).
        assert_eq!(rs.chains.last().unwrap().name, "forward");
    }

    #[test]
    fn each_protocol_and_range_is_its_own_rule() {
        let ports = |proto, first, last| Ports { proto, first, last };
        let pod = Isolated {
            ip: ip("10.244.1.5"),
            pod: "x/a".into(),
            ingress: None,
            egress: Some(Direction {
                policies: vec!["x/p".into()],
                allows: vec![Allow {
                    by: "x/p egress[0]".into(),
                    peers: None,
                    ports: Some(vec![
                        ports(Protocol::Udp, 53, 53),
                        ports(Protocol::Tcp, 53, 53),
                        ports(Protocol::Sctp, 3868, 3870),
                    ]),
                }],
            }),
        };
        let rs = ruleset(&[pod]);
        let rules: Vec<String> = rs
            .chain("egress-10.244.1.5")
            .unwrap()
            .rules
            .iter()
            .map(|r| r.to_string())
            .collect();
        let text = rs.render_in(TABLE);
        assert_eq!(rules.len(), 5, "{text}");
        for want in [
            "meta l4proto tcp th dport 53 return",
            "meta l4proto udp th dport 53 return",
            "meta l4proto sctp th dport 3868-3870 return",
        ] {
            assert!(rules.iter().any(|r| r.starts_with(want)), "{want}\n{text}");
        }
    }

    #[test]
    fn a_peer_label_change_is_an_element_change() {
        let pod = |peers: Vec<(Ipv4Addr, Ipv4Addr)>| Isolated {
            ip: ip("10.244.1.5"),
            pod: "x/a".into(),
            ingress: Some(Direction {
                policies: vec!["x/p".into()],
                allows: vec![Allow {
                    by: "x/p ingress[0]".into(),
                    peers: Some(peers),
                    ports: None,
                }],
            }),
            egress: None,
        };
        let old = ruleset(&[pod(vec![one("10.244.1.9")])]);
        let new = ruleset(&[pod(vec![one("10.244.1.9"), one("10.244.2.3")])]);
        let tx = super::super::ruleset::diff(&old, &new);
        let c = tx.changes;
        assert_eq!(
            (
                c.chains_rewritten,
                c.chains_added,
                c.elements_added,
                c.elements_deleted
            ),
            (0, 0, 1, 0),
            "{}",
            tx.text()
        );
        // No peers at all: the clause allows nothing, and has no rule.
        let none = ruleset(&[pod(vec![])]);
        assert_eq!(none.chain("ingress-10.244.1.5").unwrap().rules.len(), 2);
        assert!(none.sets.iter().all(|s| s.kind != SetKind::Ranges));
    }

    #[test]
    fn address_ranges_print_as_nft_lists_them() {
        let k = |a: &str, b: &str| KeyPart::IpRange(ip(a), ip(b)).to_string();
        assert_eq!(k("10.0.0.1", "10.0.0.1"), "10.0.0.1");
        assert_eq!(k("10.244.0.0", "10.244.255.255"), "10.244.0.0/16");
        assert_eq!(k("10.0.0.1", "10.0.0.3"), "10.0.0.1-10.0.0.3");
        assert_eq!(k("0.0.0.0", "255.255.255.255"), "0.0.0.0/0");
    }
}
