//! `netlab trace`: one real probe through the lab's kernel, explained in
//! Kubernetes terms.
//!
//! The probe is a real connection (TCP) or datagram (UDP) from a pod's (or
//! a node's) network namespace, from a source port of its own. While it
//! runs, a temporary base chain in the source node's `ip netlab` table
//! (`trace-<addr>-<port>`, filter hook prerouting and output, priority
//! -500) marks exactly that flow with `meta nftrace set 1`, and the node's
//! nf_tables trace events ([`crate::proxy::netlink::trace`]) say which
//! chains and rules the packets went through; the chain is deleted before
//! the command ends. Those chain names carry the Service and port
//! (`service-<hash>-<ns>/<name>/<proto>/<port>`); the headers of the
//! packets after the DNAT carry the endpoint the kernel chose; the lab's
//! objects name its pod and node. [`explain`] turns that into steps (pure,
//! unit-tested), [`probe`] does the I/O.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::net::NetNs;
use crate::proxy::model::Protocol;
use crate::proxy::netlink::trace::{Conntrack, Event, Packet, Tracer, Verdict};

pub mod run;

/// What the lab holds that a trace names: services and pods.
#[derive(Debug, Default, Clone)]
pub struct LabView {
    pub services: Vec<ServiceView>,
    pub pods: Vec<PodView>,
    /// Node name → its pod CIDR and its address on the dc LAN.
    pub nodes: Vec<(String, String, String)>,
    /// When the lab has NetworkPolicies: the pods they select, by
    /// address, with the policies isolating each for ingress and egress.
    pub isolated: Option<std::collections::BTreeMap<Ipv4Addr, Isolation>>,
}

/// The policies isolating a pod for ingress, and for egress.
pub type Isolation = (Option<Vec<String>>, Option<Vec<String>>);

#[derive(Debug, Clone)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Option<Ipv4Addr>,
    /// (name, port, protocol)
    pub ports: Vec<(String, u16, String)>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub node: String,
}

/// Where a probe starts.
#[derive(Debug, Clone)]
pub struct Source {
    /// `pod default/curl-…` or `node node-1`.
    pub what: String,
    pub ip: Ipv4Addr,
    /// The namespace the probe is sent from.
    pub netns: String,
    /// The node whose rules it meets first (empty from outside the
    /// cluster).
    pub node: String,
    /// Every node of the lab and its namespace: the trace chain goes in
    /// each, so that the second node's rules are seen too.
    pub nodes: Vec<(String, String)>,
    /// From the node itself (the output hook), not a pod behind it.
    pub from_node: bool,
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// dns, source, rule, dnat, route, reject, drop, result
    pub kind: &'static str,
    pub text: String,
}

/// A trace's outcome, as data (`-o json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace {
    pub from: String,
    pub to: String,
    pub steps: Vec<Step>,
    /// connected, refused, timeout, sent (UDP), nxdomain
    pub result: String,
    /// `namespace/name` of the Service the packet met.
    pub service: Option<String>,
    /// The Service port's name (or number).
    pub service_port: Option<String>,
    /// The endpoint the kernel chose, `ip:port`.
    pub endpoint: Option<String>,
    /// How: `random`, or `session affinity` (the client was sent there
    /// before, and the Service pins clients).
    pub chosen_by: Option<&'static str>,
    /// `namespace/name` of the endpoint's pod, and its node.
    pub endpoint_pod: Option<String>,
    pub endpoint_node: Option<String>,
    /// Why it failed, in Kubernetes terms.
    pub reason: Option<String>,
    /// The connection's conntrack entry on the node that did the DNAT.
    pub conntrack_id: Option<u32>,
    pub elapsed_ms: f64,
}

/// What the probe saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The events of each node, by node name.
    pub events: Vec<(String, Event)>,
    /// The connection's conntrack entries, by node name.
    pub conntrack: Vec<(String, Conntrack)>,
    /// The rules that sent the packet to an endpoint's chain.
    pub picks: Vec<Pick>,
    /// The comments of the network policy rules that rejected it, by node
    /// (`x/a ingress denied: isolated by x/deny`).
    pub denials: Vec<(String, String)>,
    pub dst: SocketAddrV4,
    pub sport: u16,
    pub proto: Protocol,
    /// connected, refused, timeout, sent
    pub outcome: &'static str,
    pub elapsed: Duration,
}

/// A rule that sent a packet to an endpoint's chain, and what it is made
/// of (a trace event names the rule by its handle only).
#[derive(Debug, Clone)]
pub struct Pick {
    pub node: String,
    /// The Service's chain the rule is in, and the rule's handle there.
    pub chain: String,
    pub handle: u64,
    /// The endpoint's chain.
    pub to: String,
    /// Its expressions' names: `lookup` is the endpoint's affinity set
    /// (the client was pinned there), `numgen` a random draw.
    pub exprs: Vec<String>,
}

impl Pick {
    pub fn pinned(&self) -> bool {
        self.exprs.iter().any(|x| x == "lookup")
    }
}

/// A service chain's name → (kind, namespace/name, proto, port name).
fn service_of_chain(chain: &str) -> Option<(&str, String, String, String)> {
    let kinds = ["service-", "external-", "local-", "firewall-", "endpoint-"];
    let kind = kinds.iter().find(|k| chain.starts_with(**k))?;
    let rest = &chain[kind.len()..];
    let (hash, readable) = rest.split_once('-')?;
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parts = readable.split('/');
    let (ns, name, proto, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let port = port.split("__").next().unwrap_or(port);
    Some((
        kind.trim_end_matches('-'),
        format!("{ns}/{name}"),
        proto.to_string(),
        port.to_string(),
    ))
}

/// Pure: the steps of a trace from what the probe saw and the lab's
/// objects.
pub fn explain(src: &Source, seen: &Seen, lab: &LabView, mut t: Trace) -> Trace {
    let proto = match seen.proto {
        Protocol::Udp => "UDP",
        _ => "TCP",
    };
    let dst = seen.dst;
    let svc_by_ip = lab
        .services
        .iter()
        .find(|s| s.cluster_ip == Some(*dst.ip()));
    let pod_by_ip = |ip: Ipv4Addr| lab.pods.iter().find(|p| p.ip == ip);
    let gateway = if src.from_node {
        format!("{}'s own stack", src.node)
    } else if src.node.is_empty() {
        "its route to the public network".to_string()
    } else {
        format!("the default route to {}'s bridge", src.node)
    };
    let text = if src.node.is_empty() && seen.outcome == "unreachable" {
        format!(
            "{}:{} → {dst}/{proto}: {} has no route to {}",
            src.ip,
            seen.sport,
            src.what,
            dst.ip()
        )
    } else {
        format!(
            "{}:{} → {dst}/{proto} leaves {} by {gateway}",
            src.ip, seen.sport, src.what
        )
    };
    t.steps.push(Step {
        kind: "source",
        text,
    });
    // The packets of this probe: trace ids whose first event carries its
    // headers (source address and port), then every event of those ids.
    let ours: std::collections::HashSet<(&str, u32)> = seen
        .events
        .iter()
        .filter(|(_, e)| {
            e.packet
                .is_some_and(|p| p.saddr == src.ip && p.sport == seen.sport)
        })
        .map(|(n, e)| (n.as_str(), e.id))
        .collect();
    // The source's node first (where the Service's rules act), then the
    // others, each in the order of its events.
    let mut events: Vec<(&str, &Event)> = seen
        .events
        .iter()
        .filter(|(n, e)| ours.contains(&(n.as_str(), e.id)) && !e.chain.starts_with("trace-"))
        .map(|(n, e)| (n.as_str(), e))
        .collect();
    events.sort_by_key(|(n, _)| *n != src.node);
    // From outside, and no node saw it: it never left the host.
    let stayed_out = src.node.is_empty() && events.is_empty();
    let mut masqueraded: Option<&str> = None;
    // Dropped by a no-local-endpoint set (externalTrafficPolicy: Local).
    let mut local_drop: Option<&str> = None;
    let mut endpoint: Option<SocketAddrV4> = None;
    let mut dnat_node = src.node.as_str();
    let mut rejected = false;
    let mut dropped_in: Option<String> = None;
    // Whether the endpoint's chain was chosen through the affinity set.
    let mut pinned: Option<bool> = None;
    for &(node, e) in &events {
        if let Some(p) = e.packet {
            if p.saddr == src.ip
                && p.sport == seen.sport
                && p.daddr != *dst.ip()
                && endpoint.is_none()
            {
                endpoint = Some(SocketAddrV4::new(p.daddr, p.dport));
                dnat_node = node;
            }
        }
        if e.kind != "rule" {
            continue;
        }
        match &e.verdict {
            Some(Verdict::Goto(c)) | Some(Verdict::Jump(c)) => {
                if let Some((kind, svc, sproto, port)) = service_of_chain(c) {
                    if t.service.is_none() {
                        t.service = Some(svc.clone());
                        t.service_port = Some(port.clone());
                    }
                    if kind == "endpoint" && pinned.is_none() {
                        pinned = seen
                            .picks
                            .iter()
                            .find(|p| {
                                p.node == node && p.chain == e.chain && Some(p.handle) == e.handle
                            })
                            .map(Pick::pinned);
                    }
                    let what = match kind {
                        "service" => "Service",
                        "external" => "external or NodePort entry of Service",
                        "local" => "node-local endpoints (externalTrafficPolicy: Local) of Service",
                        "firewall" => "loadBalancerSourceRanges of Service",
                        _ => "endpoint chain (session affinity) of Service",
                    };
                    t.steps.push(Step {
                        kind: "rule",
                        text: format!(
                            "{node} nft: {} matched {} . {} . {} → chain {c} ({what} {svc} port {port}/{sproto})",
                            e.chain,
                            dst.ip(),
                            proto.to_lowercase(),
                            dst.port()
                        ),
                    });
                } else if c == "reject-chain" {
                    rejected = true;
                    t.steps.push(Step {
                        kind: "reject",
                        text: format!("{node} nft: {} sends it to reject-chain", e.chain),
                    });
                }
            }
            Some(Verdict::Accept) if e.chain == "masquerading" && masqueraded.is_none() => {
                masqueraded = Some(node);
            }
            Some(Verdict::Drop) if e.table == crate::proxy::policy::TABLE => {
                let why = seen
                    .denials
                    .iter()
                    .find(|(n, _)| n == node)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_else(|| format!("chain {}", e.chain));
                // A retransmitted SYN is rejected again: said once.
                let text = format!("{node} nft: NetworkPolicy rejects it: {why}");
                if !t.steps.iter().any(|st| st.text == text) {
                    t.steps.push(Step {
                        kind: "policy",
                        text,
                    });
                }
                dropped_in.get_or_insert_with(|| format!("rejected by NetworkPolicy ({why})"));
            }
            Some(Verdict::Drop) => {
                if e.chain.ends_with("-endpoints-check") && local_drop.is_none() {
                    local_drop = Some(node);
                }
                dropped_in
                    .get_or_insert_with(|| format!("dropped by {node} nft chain {}", e.chain));
                if e.chain == "reject-chain" {
                    rejected = true;
                }
            }
            _ => {}
        }
    }
    if let Some(ep) = endpoint {
        t.endpoint = Some(ep.to_string());
        let pod = pod_by_ip(*ep.ip());
        t.endpoint_pod = pod.map(|p| format!("{}/{}", p.namespace, p.name));
        t.endpoint_node = pod.map(|p| p.node.clone());
        let affinity = t
            .service
            .as_ref()
            .and_then(|name| {
                lab.services
                    .iter()
                    .find(|s| format!("{}/{}", s.namespace, s.name) == *name)
            })
            .and_then(|s| s.affinity_timeout);
        let how = match (pinned, affinity) {
            (Some(true), Some(timeout)) => {
                t.chosen_by = Some("session affinity");
                format!(
                    " by session affinity: {} was sent to it within the last {timeout} s, and Service {} pins clients (sessionAffinity: ClientIP)",
                    src.ip,
                    t.service.clone().unwrap_or_default()
                )
            }
            (Some(true), None) => {
                t.chosen_by = Some("session affinity");
                format!(" by session affinity: {} was sent to it before", src.ip)
            }
            _ if t.service.is_some() => {
                t.chosen_by = Some("random");
                match affinity {
                    Some(timeout) => format!(
                        " at random ({} had no endpoint yet; it keeps this one for {timeout} s: sessionAffinity ClientIP)",
                        src.ip
                    ),
                    None => " at random".to_string(),
                }
            }
            _ => String::new(),
        };
        t.steps.push(Step {
            kind: "dnat",
            text: format!(
                "{dnat_node} nft: endpoint chosen{how} → DNAT {ep}{}",
                pod.map(|p| format!(" (pod {}/{} on {})", p.namespace, p.name, p.node))
                    .unwrap_or_default()
            ),
        });
    }
    // The conntrack entry of the node that did the DNAT (else the first):
    // the reply's source is the endpoint, un-DNATed on the way back.
    let ct = seen
        .conntrack
        .iter()
        .find(|(n, _)| n == dnat_node)
        .or(seen.conntrack.first());
    if let Some((node, c)) = ct {
        t.conntrack_id = Some(c.id);
        let (o, r) = (c.original, c.reply);
        let nat = if r.saddr != o.daddr || r.sport != o.dport {
            format!(
                "; replies come from {}:{} and are un-DNATed to {}:{}",
                r.saddr, r.sport, o.daddr, o.dport
            )
        } else {
            String::new()
        };
        let snat = if r.daddr != o.saddr {
            format!("; the endpoint answers {} (masqueraded)", r.daddr)
        } else {
            String::new()
        };
        t.steps.push(Step {
            kind: "conntrack",
            text: format!(
                "{node} conntrack id {}: {}:{} → {}:{}{nat}{snat}",
                c.id, o.saddr, o.sport, o.daddr, o.dport
            ),
        });
    }
    if let Some(node) = masqueraded {
        let why = match endpoint {
            Some(ep) if *ep.ip() == src.ip => "hairpin: the pod reached itself through the Service, so the answer must come back through the node",
            _ if src.from_node || src.node.is_empty() => "the client is outside the pod network, so the answer must come back through the node that did the DNAT",
            _ => "the packet was marked for masquerade",
        };
        t.steps.push(Step {
            kind: "masquerade",
            text: format!("{node} nft: masquerading → the source becomes {node}'s address ({why})"),
        });
    }
    // Where the packet goes after the rules.
    let routing = if src.node.is_empty() {
        dnat_node
    } else {
        src.node.as_str()
    };
    let to_ip = endpoint.map(|e| *e.ip()).unwrap_or(*dst.ip());
    if let Some(pod) = pod_by_ip(to_ip).filter(|_| !stayed_out) {
        if t.endpoint_pod.is_none() {
            t.endpoint_pod = Some(format!("{}/{}", pod.namespace, pod.name));
            t.endpoint_node = Some(pod.node.clone());
        }
        let text = if pod.node == routing {
            format!(
                "{} bridges to pod {}/{} ({}) on the same node",
                routing, pod.namespace, pod.name, pod.ip
            )
        } else {
            let via = lab
                .nodes
                .iter()
                .find(|(n, _, _)| *n == pod.node)
                .map(|(n, cidr, addr)| format!("routes {cidr} via {addr} ({n})"))
                .unwrap_or_else(|| format!("routes to {}", pod.node));
            let keeps = match masqueraded {
                None if !src.from_node && !src.node.is_empty() => {
                    "; no masquerade (pod to pod keeps the client address)"
                }
                _ => "",
            };
            format!(
                "{} {via}{keeps}; {} bridges to pod {}/{} ({})",
                routing, pod.node, pod.namespace, pod.name, pod.ip
            )
        };
        t.steps.push(Step {
            kind: "route",
            text,
        });
    }
    t.result = seen.outcome.to_string();
    t.elapsed_ms = seen.elapsed.as_secs_f64() * 1e3;
    let svc_name = t
        .service
        .clone()
        .or_else(|| svc_by_ip.map(|s| format!("{}/{}", s.namespace, s.name)));
    if t.result != "connected" && t.result != "sent" {
        t.reason = Some(match (svc_by_ip, rejected) {
            _ if stayed_out && pod_by_ip(*dst.ip()).is_some() => format!(
                "{} is a pod's IP: pods are reached from outside the cluster only through a Service (NodePort, LoadBalancer or externalIPs); {} has no route to the pod network",
                dst.ip(),
                src.what
            ),
            (Some(s), _) if stayed_out => format!(
                "{} is the clusterIP of Service {}/{}: it answers inside the cluster only (pods and nodes); from outside use its NodePort, a LoadBalancer IP or externalIPs",
                dst.ip(),
                s.namespace,
                s.name
            ),
            (Some(s), _) if !s.ports.iter().any(|(_, p, _)| *p == dst.port()) => format!(
                "Service {}/{} has no port {} (its ports: {})",
                s.namespace,
                s.name,
                dst.port(),
                s.ports
                    .iter()
                    .map(|(n, p, pr)| match *n == p.to_string() {
                        true => format!("{p}/{pr}"),
                        false => format!("{n} {p}/{pr}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(_), true) => format!(
                "Service {} has no ready endpoints (rejected by the no-endpoint-services set)",
                svc_name.clone().unwrap_or_default()
            ),
            (None, true) => "rejected by the node's rules".to_string(),
            _ if local_drop.is_some() => format!(
                "Service {} has externalTrafficPolicy: Local and {} runs none of its endpoints: dropped (no-local-endpoint set), so that the client's address is kept",
                svc_name.clone().unwrap_or_default(),
                local_drop.unwrap_or_default()
            ),
            _ => match (&dropped_in, endpoint) {
                (Some(c), _) => c.clone(),
                (None, Some(ep)) => format!(
                    "the endpoint {ep} did not accept the connection ({})",
                    t.result
                ),
                (None, None) => match pod_by_ip(*dst.ip()) {
                    Some(_) => format!(
                        "pod {} did not accept the connection on port {} ({})",
                        dst.ip(),
                        dst.port(),
                        t.result
                    ),
                    None => format!("nothing in the lab answers at {dst} ({})", t.result),
                },
            },
        });
    }
    // What the NetworkPolicies say of the two pods, when the lab has any.
    if let Some(isolated) = &lab.isolated {
        let about = |ip: Ipv4Addr, ingress: bool| {
            let pod = pod_by_ip(ip)?;
            let (way, other) = if ingress {
                ("ingress", "every source may reach it")
            } else {
                ("egress", "it may reach every destination")
            };
            let by = isolated
                .get(&ip)
                .and_then(|(i, e)| if ingress { i.as_ref() } else { e.as_ref() });
            Some(match by {
                Some(p) => format!(
                    "NetworkPolicy: pod {}/{} is isolated for {way} by {}: only what they allow passes",
                    pod.namespace,
                    pod.name,
                    p.join(", ")
                ),
                None => format!(
                    "NetworkPolicy: no policy selects pod {}/{} for {way}: {other}",
                    pod.namespace, pod.name
                ),
            })
        };
        let to = endpoint.map(|e| *e.ip()).unwrap_or(*dst.ip());
        let lines = [
            (!src.from_node).then(|| about(src.ip, false)).flatten(),
            about(to, true),
        ];
        for text in lines.into_iter().flatten() {
            t.steps.push(Step {
                kind: "policy",
                text,
            });
        }
    }
    let result = match t.result.as_str() {
        "connected" => format!(
            "connected in {:.2} ms to {}{}",
            t.elapsed_ms,
            t.endpoint_pod
                .as_ref()
                .map(|p| format!("pod {p}"))
                .unwrap_or_else(|| dst.to_string()),
            match (&svc_name, &t.service_port) {
                (Some(s), Some(p)) if t.endpoint.is_some() =>
                    format!(" through Service {s} port {p}"),
                _ => String::new(),
            }
        ),
        "sent" => format!("sent to {dst}; UDP has no handshake"),
        other => format!("{other}: {}", t.reason.clone().unwrap_or_default()),
    };
    t.steps.push(Step {
        kind: "result",
        text: result,
    });
    t
}

/// Sends one probe from `src` to `dst` and records what the source node's
/// rules did with it. The trace chain is removed whatever happens.
pub async fn probe(src: &Source, dst: SocketAddrV4, proto: Protocol) -> anyhow::Result<Seen> {
    use crate::proxy::ruleset::{Op, Transaction};
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let from = NetNs::open(&src.netns)?;
    let nodes: Vec<(String, NetNs)> = src
        .nodes
        .iter()
        .map(|(n, ns)| Ok((n.clone(), NetNs::open(ns)?)))
        .collect::<anyhow::Result<_>>()?;
    // The socket first: its port names the flow.
    let kind = match proto {
        Protocol::Udp => SockType::Datagram,
        _ => SockType::Stream,
    };
    let ip = src.ip;
    let sock = from.run(move || -> nix::Result<std::os::fd::OwnedFd> {
        let s = socket::socket(
            AddressFamily::Inet,
            kind,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        socket::bind(s.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(ip, 0)))?;
        // ICMP errors queued whatever the socket's state (see `connect`).
        socket::setsockopt(&s, socket::sockopt::Ipv4RecvErr, &true)?;
        Ok(s)
    })??;
    let sport = socket::getsockname::<SockaddrIn>(sock.as_raw_fd())?.port();
    let chains = crate::proxy::rules::trace_chains(src.ip, sport);
    let mut ops = Vec::new();
    for c in &chains {
        ops.push(Op::CreateChain(c));
        ops.push(Op::AddRule(&c.name, &c.rules[0]));
    }
    let mut tracers = Vec::new();
    for (name, ns) in &nodes {
        tracers.push((name.clone(), Tracer::open(ns)?));
    }
    let mut added = Vec::new();
    let mut failed = None;
    for (_, ns) in &nodes {
        match crate::proxy::netlink::apply(ns, &Transaction::from_ops(ops.clone())).await {
            Ok(()) => added.push(ns),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let sent = match failed {
        None => Some(send(sock, dst, proto).await),
        Some(_) => None,
    };
    // Events still on their way: a moment more.
    let until = Instant::now() + Duration::from_millis(30);
    let events = tokio::task::spawn_blocking(move || {
        tracers
            .into_iter()
            .map(|(n, t)| {
                Ok(t.read_until(until)?
                    .into_iter()
                    .map(|e| (n.clone(), e))
                    .collect::<Vec<_>>())
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await??
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    tracing::debug!(events = events.len(), ?events, "trace events");
    let proto_number = match proto {
        Protocol::Udp => 17,
        _ => 6,
    };
    let original = Packet {
        saddr: src.ip,
        daddr: *dst.ip(),
        proto: proto_number,
        sport,
        dport: dst.port(),
    };
    let mut conntrack = Vec::new();
    for (name, ns) in &nodes {
        if let Ok(Some(c)) = crate::proxy::netlink::trace::conntrack(ns, original) {
            conntrack.push((name.clone(), c));
        }
    }
    // What the rules that chose an endpoint's chain are made of.
    let mut picks = Vec::new();
    for (node, e) in &events {
        let (Some(handle), Some(Verdict::Goto(to) | Verdict::Jump(to))) = (e.handle, &e.verdict)
        else {
            continue;
        };
        if !to.starts_with("endpoint-") {
            continue;
        }
        let Some((_, ns)) = nodes.iter().find(|(n, _)| n == node) else {
            continue;
        };
        if let Ok(exprs) =
            crate::proxy::netlink::trace::rule_expressions(ns, &e.table, &e.chain, handle)
        {
            picks.push(Pick {
                node: node.clone(),
                chain: e.chain.clone(),
                handle,
                to: to.clone(),
                exprs,
            });
        }
    }
    // A connection that drew its endpoint at random leaves its client
    // pinned there (the endpoint chain's `update @affinity-…`) when the
    // Service has session affinity: taken back, so that the trace changes
    // nothing that outlives it. (No pin existed: a pinned client would
    // have matched a `lookup` first. A client pinned before stays pinned,
    // its timeout restarted, as by any connection.)
    for p in picks.iter().filter(|p| !p.pinned()) {
        let (Some(set), Some((_, ns))) = (
            crate::proxy::rules::affinity_set_of(&p.to),
            nodes.iter().find(|(n, _)| *n == p.node),
        ) else {
            continue;
        };
        let pin = crate::proxy::ruleset::Element {
            set,
            key: crate::proxy::ruleset::Key(vec![crate::proxy::ruleset::KeyPart::Ip(src.ip)]),
            value: None,
        };
        // No such set: the Service has no session affinity.
        let _ =
            crate::proxy::netlink::apply(ns, &Transaction::from_ops(vec![Op::DeleteElement(&pin)]))
                .await;
    }
    // What the network policy rules that rejected it say.
    let mut denials = Vec::new();
    for (node, e) in &events {
        let (Some(handle), Some(Verdict::Drop)) = (e.handle, &e.verdict) else {
            continue;
        };
        if e.table != crate::proxy::policy::TABLE {
            continue;
        }
        let Some((_, ns)) = nodes.iter().find(|(n, _)| n == node) else {
            continue;
        };
        let comment = crate::proxy::netlink::trace::rule_comment(ns, &e.table, &e.chain, handle)
            .ok()
            .flatten()
            .unwrap_or_else(|| format!("chain {}", e.chain));
        denials.push((node.clone(), comment));
    }
    let mut ops = Vec::new();
    for c in &chains {
        ops.push(Op::FlushChain(&c.name));
        ops.push(Op::DeleteChain(&c.name));
    }
    for ns in added {
        crate::proxy::netlink::apply(ns, &Transaction::from_ops(ops.clone())).await?;
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    let (outcome, elapsed) = sent.expect("sent when nothing failed");
    Ok(Seen {
        events,
        conntrack,
        picks,
        denials,
        dst,
        sport,
        proto,
        outcome,
        elapsed,
    })
}

/// Connects (TCP) or sends one datagram (UDP): the outcome and its time.
/// A datagram's outcome is `sent`, unless an ICMP error (a closed port, a
/// rejection) comes back within 100 ms: in a lab it comes at once.
async fn send(
    sock: std::os::fd::OwnedFd,
    dst: SocketAddrV4,
    proto: Protocol,
) -> (&'static str, Duration) {
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let r = if proto == Protocol::Udp {
            sendto(&sock, dst, Duration::from_millis(100))
        } else {
            connect(&sock, dst, Duration::from_secs(1))
        };
        let outcome = match r {
            Ok(()) if proto == Protocol::Udp => "sent",
            Ok(()) => "connected",
            Err(nix::errno::Errno::ECONNREFUSED) => "refused",
            Err(nix::errno::Errno::EHOSTUNREACH) | Err(nix::errno::Errno::ENETUNREACH) => {
                "unreachable"
            }
            Err(_) if proto == Protocol::Udp => "refused",
            Err(_) => "timeout",
        };
        (outcome, t.elapsed())
    })
    .await
    .unwrap_or(("timeout", Duration::ZERO))
}

/// One datagram to `dst`, then `wait` for an ICMP error about it (the
/// socket has IP_RECVERR: an unconnected UDP socket hears none otherwise).
fn sendto(
    sock: &std::os::fd::OwnedFd,
    dst: SocketAddrV4,
    wait: Duration,
) -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{self, MsgFlags, SockaddrIn};
    use std::os::fd::AsRawFd;
    socket::sendto(
        sock.as_raw_fd(),
        b"netlab trace\n",
        &SockaddrIn::from(dst),
        MsgFlags::empty(),
    )?;
    // An answer ends the wait too.
    match ready(sock, nix::poll::PollFlags::POLLIN, Instant::now() + wait) {
        Err(nix::errno::Errno::ETIMEDOUT) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// A TCP connect within `timeout`, that hears an ICMP error even when it
/// comes back while `connect` itself still holds the socket. In a lab the
/// whole path runs in one softirq: the rejection of a SYN by a node's rule
/// (a NetworkPolicy's `reject`) reaches the client's socket before the
/// `connect` call that sent the SYN has returned, and the kernel then keeps
/// it only as a "soft" error that `connect` never reports (LockDroppedIcmps
/// in /proc/net/netstat), so a blocking connect waits for its retransmit.
/// With IP_RECVERR (set on the probe's socket) the error is queued on the
/// socket whatever its lock.
fn connect(
    sock: &std::os::fd::OwnedFd,
    dst: SocketAddrV4,
    timeout: Duration,
) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::sys::socket::{self, sockopt, SockaddrIn};
    use std::os::fd::AsRawFd;
    match socket::connect(sock.as_raw_fd(), &SockaddrIn::from(dst)) {
        Ok(()) => return Ok(()),
        Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    ready(
        sock,
        nix::poll::PollFlags::POLLOUT,
        Instant::now() + timeout,
    )?;
    // Writable: connected, or closed by a hard error.
    match socket::getsockopt(sock, sockopt::SocketError)? {
        0 => Ok(()),
        err => Err(Errno::from_raw(err)),
    }
}

/// Waits until `sock` has one of `events`, or an error: the ICMP error
/// queued on it (IP_RECVERR), if any; ETIMEDOUT at `deadline`.
fn ready(
    sock: &std::os::fd::OwnedFd,
    events: nix::poll::PollFlags,
    deadline: Instant,
) -> Result<nix::poll::PollFlags, nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrIn};
    use std::os::fd::{AsFd, AsRawFd};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(sock.as_fd(), events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO),
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(0) => return Err(Errno::ETIMEDOUT),
            Ok(_) => {}
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLERR) {
            return Ok(revents);
        }
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match socket::recvmsg::<SockaddrIn>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE,
        ) {
            Ok(msg) => {
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::Ipv4RecvErr(e, _) = c {
                        return Err(Errno::from_raw(e.ee_errno as i32));
                    }
                }
            }
            // Nothing queued: a hard error, which the caller reads.
            Err(Errno::EAGAIN) => return Ok(revents),
            Err(e) => return Err(e),
        }
    }
}

/// A DNS A query for `name` from `netns` to `server`, as a pod's resolver
/// asks: each name of the search path in turn. The address and the name
/// that answered, or every name tried.
pub fn resolve(
    netns: &str,
    server: Ipv4Addr,
    name: &str,
    search: &[String],
) -> anyhow::Result<Result<(Ipv4Addr, String), Vec<String>>> {
    let ns = NetNs::open(netns)?;
    let mut tried = Vec::new();
    let candidates: Vec<String> = if name.ends_with('.') {
        vec![name.to_string()]
    } else {
        search
            .iter()
            .map(|s| format!("{name}.{s}."))
            .chain(std::iter::once(format!("{name}.")))
            .collect()
    };
    for fqdn in candidates {
        let q = query_bytes(&fqdn);
        let answer = ns.run(move || -> std::io::Result<Vec<u8>> {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            s.send_to(&q, (server, 53))?;
            let mut buf = vec![0u8; 4096];
            let n = s.recv(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })??;
        let m = hickory_proto::op::Message::from_vec(&answer)?;
        let a = m.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0),
            _ => None,
        });
        match a {
            Some(ip) => return Ok(Ok((ip, fqdn.trim_end_matches('.').to_string()))),
            None => tried.push(fqdn.trim_end_matches('.').to_string()),
        }
    }
    Ok(Err(tried))
}

/// A recursive A query for `fqdn`.
fn query_bytes(fqdn: &str) -> Vec<u8> {
    let id: u16 = rand::random();
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in fqdn.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

#[cfg(test)]
mod tests;
