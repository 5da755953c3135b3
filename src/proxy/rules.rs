//! Services and endpoints → the node's `ip netlab` table. Pure: no I/O.
//!
//! The layout follows kube-proxy's nftables mode where it can, so that what
//! a user sees with `nft list table ip netlab` is close to what they would
//! see on a real node; it departs from it in one place, how a service port
//! picks its endpoint (see "Why" below):
//!
//! ```text
//! nat-prerouting / nat-output ─ jump services
//!   services: ip daddr . l4proto . dport vmap @service-ips       (cluster and external IPs)
//!             ip daddr @nodeport-ips l4proto . dport vmap @service-nodeports
//!       └─ goto service-<hash>-<ns>/<name>/<proto>/<port>   (clusterIP: masquerade non-pod sources)
//!       └─ goto external-<hash>-…                          (external IPs, NodePorts)
//!       └─ goto firewall-<hash>-…   (LoadBalancer IPs with loadBalancerSourceRanges:
//!                                   allowed sources goto external-…, the rest drop)
//!            └─ service-… or local-… (externalTrafficPolicy: Local)
//!                 meta l4proto tcp dnat ip to numgen random mod 65536 offset <slot…>
//!                     map @service-endpoints-tcp-<n>
//!                   (the map: an interval of 65536/N numbers per endpoint → ip . port)
//!                 [session affinity: ip saddr @affinity-… goto endpoint-…,
//!                  numgen random mod N == 0 goto endpoint-…, …, goto endpoint-…
//!                    endpoint-<hash>-…__<ip>/<port>: update @affinity-…, dnat to <ip>:<port>]
//! nat-postrouting ─ jump masquerading:
//!   ct status dnat ip saddr . ip daddr @hairpin-endpoints → mark (a pod reaching itself),
//!   then masquerade what carries the mark
//! filter-forward / filter-input / filter-output ─ ct state new:
//!   @no-endpoint-services, @no-endpoint-nodeports → reject-chain,
//!   @no-local-endpoint-services, @no-local-endpoint-nodeports → drop,
//!   cluster-ips-check: wrong port of a cluster IP → reject, unallocated → drop
//! ```
//!
//! The cost per packet does not grow with the number of services: finding
//! the service is one lookup in a verdict map, and only a connection's first
//! packet goes further (picking the endpoint is one lookup in a map of at
//! most 256 service ports). Names carry a hash of the full service port
//! name, so they stay unique when the readable part is cut to fit nft's
//! name limit.
//!
//! # Why an endpoint change touches set elements only
//!
//! Target: one endpoint change in well under 10 ms, at 10 or 10 000
//! services. The kernel's nf_tables commit re-validates the whole table
//! (`nft_table_validate`: every chain reachable from the base chains,
//! through the `service-ips` verdict map) whenever a transaction adds a
//! rule with an expression that can be validated (jump, goto, NAT, lookup,
//! reject, masquerade, …) or a verdict map element with a jump or goto:
//! 50 to 70 ms at 10 000 services, whatever the size of the change.
//! kube-proxy's layout (a chain per endpoint, `numgen random mod N vmap`
//! in the service chain) adds such rules at every endpoint change. Here an
//! endpoint change, including a service's last endpoint going away or its
//! first coming back, adds and deletes plain set and map elements only
//! (measured: under 1 ms of kernel time at 10 000 services):
//!
//! * a service port's chain, its `service-ips` element and its DNAT rule
//!   exist as long as the port does, endpoints or not. The rule draws
//!   `numgen random mod 65536` plus the port's offset, and looks the number
//!   up in an interval map whose elements give each endpoint an equal
//!   share of the port's 65536 numbers; N is in the elements, not in the
//!   rule. A port with no endpoint has no elements: the lookup fails, the
//!   packet goes on un-DNATed to the filter chains, where it is found in
//!   `no-endpoint-services` (a plain set) and rejected by a fixed rule.
//! * maps hold 256 ports each (`service-endpoints-<proto>-<n>`), one family
//!   per protocol. One map for everything was tried: the kernel rebuilds an
//!   interval map's lookup array from the whole map at every commit that
//!   changes it, and walks every rule using the map for every element
//!   added, so a change cost 10-20 ms at 10 000 services and a full sync
//!   3.8 s. A map per port makes the kernel find sets by name among
//!   thousands (a linear walk). Per protocol because nft 1.0.6 refuses to
//!   compile `meta l4proto udp dnat … map @m` when it reads `m` back from
//!   the kernel with a `tcp dport` (or `th dport`) typeof.
//! * which numbers are a port's is its *slot* ([`Slots`]): kept while the
//!   port lives (the proxier records them in its state file), so that the
//!   rule never changes.
//! * hairpin (a pod reaching itself through a service) is found after DNAT,
//!   in postrouting, by one lookup of `saddr . daddr` in a set of
//!   `endpoint . endpoint` pairs, instead of a rule per endpoint. The pairs
//!   and `cluster-ips` are shared by the services that have them and stay
//!   while any does ([`Piece::shared`]).
//! * `Local` policy: `local-…` draws from a second slot holding only this
//!   node's endpoints; without any, nothing matches and the filter chains
//!   drop the packet (`no-local-endpoint-…`, plain sets).
//!
//! Session affinity keeps kube-proxy's per-endpoint chains: the endpoint
//! chain must refresh the client's entry in that endpoint's affinity set,
//! which an element lookup cannot do. An endpoint change of a service with
//! `sessionAffinity: ClientIP` therefore rewrites its chains and pays the
//! kernel's validation (tens of ms at 10 000 services); so does adding or
//! removing a service, or changing its ports or type (a new `service-ips`
//! element with a goto).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Endpoint, HostPort, Node, Protocol, Service, ServicePort};
use super::rule::{then, IpField, KeyField, Rule, Stmt, Verdict};
use super::ruleset::Chain;
use super::ruleset::{
    ChainType, Element, FastMap, FastSet, Hook, HookPoint, Key, KeyPart, KeyType, Ruleset, Set,
    SetKind, Value,
};

/// The packet mark meaning "masquerade me in postrouting" (kube-proxy's value).
pub const MASQ_MARK: u32 = 0x4000;

/// Longest set or chain name the kernel accepts (NFT_NAME_MAXLEN - 1).
const NAME_MAX: usize = 255;

// The fixed objects.
const CLUSTER_IPS: &str = "cluster-ips";
const NODEPORT_IPS: &str = "nodeport-ips";
const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const HAIRPIN_ENDPOINTS: &str = "hairpin-endpoints";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const NO_LOCAL_ENDPOINT_SERVICES: &str = "no-local-endpoint-services";
const NO_LOCAL_ENDPOINT_NODEPORTS: &str = "no-local-endpoint-nodeports";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";
const REJECT_CHAIN: &str = "reject-chain";
const SERVICES: &str = "services";
const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
const HOSTPORTS: &str = "hostports";

/// The desired table of `node` for `services`. Deterministic: services are
/// taken in (namespace, name) order whatever order they are given in.
///
/// The table is the [`base`] plus one [`Piece`] per service, merged by
/// [`assemble`]; the proxier keeps the pieces, so that a change to one
/// service regenerates and diffs only that service's piece.
///
/// Slots (see [`Slots`]) are numbered in that order too, from 0; a
/// proxier that adds and removes services keeps each port's slot, so its
/// table may number them differently.
pub fn ruleset(node: &Node, services: &[Service]) -> Ruleset {
    ruleset_with(node, services, &mut Slots::default())
}

/// [`ruleset`], the ports that have a slot in `slots` keeping it (what a
/// proxier that kept them applies). Slots of services no longer there are
/// not released.
pub fn ruleset_with(node: &Node, services: &[Service], slots: &mut Slots) -> Ruleset {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let pieces: Vec<Piece> = sorted.iter().map(|s| service(node, s, slots)).collect();
    assemble(&base(node), &pieces).ruleset
}

/// Buckets per slot: `numgen random mod BUCKETS`. A service port's
/// endpoints split them evenly (N endpoints: 65536/N each, ±1), so the
/// pick is uniform to 1/65536 for any N up to 65536.
pub const BUCKETS: u32 = 1 << 16;

/// How many slots there are.
pub const SLOTS: usize = u16::MAX as usize;

/// Slots per endpoints map: slot `s` of protocol `p` is map
/// `service-endpoints-<p>-<s / 256>`, numbers `(s % 256) × 65536 ..` of
/// it. Maps are created when a port first needs them and deleted with the
/// last such port.
///
/// Why not one map: the kernel (6.18) rebuilds an interval set's lookup
/// array from the whole set at every commit that changes it, and adding a
/// map element walks every rule that uses the map: at 10 000 services one
/// map made an endpoint change cost 10 to 20 ms. Why not one map per port:
/// the kernel finds a set by name with a linear walk of the table's sets,
/// so 10 000 of them would load in seconds. 256 ports a map keep both
/// walks short.
pub const SLOTS_PER_MAP: usize = 256;

/// The slots of the endpoints maps, by owner: a service port's name
/// ("default/web/tcp/http"), or that name + "#local" for the `Local`
/// policy's node-local endpoints. A slot is the `offset` baked into the
/// service chain's DNAT rule, so it must not change while the port lives:
/// only its endpoints (map elements) do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    by_name: FastMap<String, u16>,
    taken: Vec<bool>,
    /// Every slot below this one is taken.
    lowest_free: usize,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots {
            by_name: FastMap::default(),
            taken: vec![false; SLOTS],
            lowest_free: 0,
        }
    }
}

impl Slots {
    /// The slot of `name`, allocating the lowest free one if it has none.
    /// None: all taken.
    pub fn get(&mut self, name: &str) -> Option<u16> {
        if let Some(&s) = self.by_name.get(name) {
            return Some(s);
        }
        let free = (self.lowest_free..SLOTS).find(|&i| !self.taken[i])?;
        self.taken[free] = true;
        self.lowest_free = free + 1;
        self.by_name.insert(name.to_string(), free as u16);
        Some(free as u16)
    }

    /// Give `name` this slot (a state file's record). False if the slot is
    /// out of range or another name has it.
    pub fn assign(&mut self, name: &str, slot: u16) -> bool {
        let i = slot as usize;
        if let Some(&s) = self.by_name.get(name) {
            return s == slot;
        }
        if i >= SLOTS || self.taken[i] {
            return false;
        }
        self.taken[i] = true;
        self.by_name.insert(name.to_string(), slot);
        true
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The names that have a slot.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn release(&mut self, name: &str) {
        if let Some(s) = self.by_name.remove(name) {
            self.taken[s as usize] = false;
            self.lowest_free = self.lowest_free.min(s as usize);
        }
    }
}

/// The objects of one service (all its ports), before they are merged with
/// the other services' objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Piece {
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
    pub elements: Vec<Claimed>,
    /// Elements other services may hold too, each once in the table for as
    /// long as any service has it (`cluster-ips`, `hairpin-endpoints`): not
    /// a conflict, and not the service's alone to delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<Element>,
    /// Sets other services may need too: the endpoints maps of its slots.
    /// Each is in the table while any service needs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_sets: Vec<Set>,
    /// The service's port names ("default/web/tcp/http"), for [`Claim`]s.
    pub ports: Vec<String>,
    /// The slots of the endpoints maps its rules use, by owner name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<(String, u16)>,
    /// Problems inside the service itself (a port declared twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// An element, and the address and port it claims for one service port.
/// Two service ports cannot have the same address and port (or node port):
/// the first claim wins, later ones become warnings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claimed {
    pub element: Element,
    /// None: an element only this service port can have (its intervals in
    /// an endpoints map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// Index into [`Piece::ports`].
    pub port: u16,
    pub kind: ClaimKind,
}

/// What is claimed: `<ip> . <proto> . <port>` (the cluster IP's or an
/// external IP's, one space shared by `service-ips` and
/// `no-endpoint-services`), or `<proto> . <node port>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClaimKind {
    ClusterIp,
    ExternalIp,
    NodePort,
}

impl ClaimKind {
    fn space(self) -> &'static str {
        match self {
            ClaimKind::ClusterIp | ClaimKind::ExternalIp => "ip",
            ClaimKind::NodePort => "nodeport",
        }
    }
}

impl Claimed {
    /// Two elements with the same owner key belong to the same service
    /// port, or conflict: the claim's space and key, or (unclaimed) the
    /// set and key.
    pub fn owner_key(&self) -> (&str, &Key) {
        match &self.claim {
            Some(c) => (c.kind.space(), &self.element.key),
            None => (self.element.set.as_str(), &self.element.key),
        }
    }
}

impl Piece {
    /// No conflict inside the service: no warnings, no element twice, and
    /// each owner key claimed by one port only. Merging clean pieces whose
    /// owner keys are disjoint is plain concatenation.
    pub fn is_clean(&self) -> bool {
        if !self.warnings.is_empty() {
            return false;
        }
        let mut elems: FastSet<(&str, &Key)> = FastSet::default();
        let mut owners: FastMap<(&str, &Key), Option<u16>> = FastMap::default();
        self.elements.iter().all(|c| {
            elems.insert((c.element.set.as_str(), &c.element.key))
                && *owners
                    .entry(c.owner_key())
                    .or_insert(c.claim.map(|c| c.port))
                    == c.claim.map(|c| c.port)
        })
    }

    /// The piece as a (partial) ruleset, claims not checked, shared
    /// elements left out (they are the proxier's to count).
    pub fn to_ruleset(&self) -> Ruleset {
        Ruleset {
            sets: self.sets.clone(),
            chains: self.chains.clone(),
            elements: self.elements.iter().map(|c| c.element.clone()).collect(),
            warnings: self.warnings.clone(),
        }
    }
}

/// A merged table.
pub struct Assembly {
    pub ruleset: Ruleset,
    /// Elements left out (claims lost to an earlier service, duplicates)
    /// and services' own warnings: 0 means the pieces were disjoint.
    pub collisions: usize,
}

/// Merge `base` and the services' pieces, in order. An element whose
/// address and port an earlier service port claimed is left out, with a
/// warning; an element already present is added once (shared elements
/// first, in the order they first appear).
pub fn assemble(base: &Ruleset, pieces: &[Piece]) -> Assembly {
    assemble_refs(base, pieces.iter())
}

/// [`assemble`] for pieces held elsewhere.
pub fn assemble_refs<'a>(base: &Ruleset, pieces: impl Iterator<Item = &'a Piece>) -> Assembly {
    let mut r = base.clone();
    let mut collisions = 0;
    // (space, key) → the service port that has it.
    let mut claims: FastMap<(&str, &Key), &str> = FastMap::default();
    let mut warned: FastSet<(&str, &Key, &str)> = FastSet::default();
    let mut seen: FastSet<(&str, &Key)> = FastSet::default();
    let mut shared: FastSet<(&str, &Key)> = FastSet::default();
    let mut shared_sets: FastSet<&str> = FastSet::default();
    for p in pieces {
        r.warnings.extend(p.warnings.iter().cloned());
        collisions += p.warnings.len();
        for s in &p.shared_sets {
            if shared_sets.insert(&s.name) {
                r.sets.push(s.clone());
            }
        }
        r.sets.extend(p.sets.iter().cloned());
        r.chains.extend(p.chains.iter().cloned());
        for e in &p.shared {
            if shared.insert((e.set.as_str(), &e.key)) {
                r.elements.push(e.clone());
            }
        }
        for c in &p.elements {
            let e = &c.element;
            if let Some(claim) = c.claim {
                let owner = p.ports[claim.port as usize].as_str();
                let (space, key) = c.owner_key();
                let holder = *claims.entry((space, key)).or_insert(owner);
                if holder != owner {
                    collisions += 1;
                    if warned.insert((space, key, owner)) {
                        r.warnings.push(claim_warning(owner, claim.kind, key));
                    }
                    continue;
                }
            }
            if !seen.insert((e.set.as_str(), &e.key)) {
                collisions += 1;
                continue;
            }
            r.elements.push(e.clone());
        }
    }
    Assembly {
        ruleset: r,
        collisions,
    }
}

fn claim_warning(port_name: &str, kind: ClaimKind, key: &Key) -> String {
    let parts = &key.0;
    match (kind, parts.as_slice()) {
        (ClaimKind::ClusterIp, [KeyPart::Ip(ip), _, KeyPart::Port(p)]) => {
            format!("service port {port_name}: {ip}:{p} is already used by another service")
        }
        (ClaimKind::ExternalIp, [KeyPart::Ip(ip), _, KeyPart::Port(p)]) => format!(
            "service port {port_name}: external IP {ip}:{p} is already used by another service"
        ),
        (ClaimKind::NodePort, [KeyPart::Proto(proto), KeyPart::Port(np)]) => format!(
            "service port {port_name}: node port {proto}/{np} is already used by another service"
        ),
        _ => format!("service port {port_name}: {key} is already used by another service"),
    }
}

/// Collects one service's objects.
#[derive(Default)]
struct Builder {
    p: Piece,
}

impl Builder {
    fn chain(&mut self, name: String, rules: Vec<Rule>) {
        self.p.chains.push(Chain {
            name,
            hook: None,
            rules,
        });
    }

    fn element(
        &mut self,
        set: &str,
        key: Vec<KeyPart>,
        value: Option<Value>,
        claim: Option<Claim>,
    ) {
        self.p.elements.push(Claimed {
            element: Element {
                set: set.to_string(),
                key: Key(key),
                value,
            },
            claim,
        });
    }

    fn shared(&mut self, set: &str, key: Vec<KeyPart>) {
        let e = Element {
            set: set.to_string(),
            key: Key(key),
            value: None,
        };
        if !self.p.shared.contains(&e) {
            self.p.shared.push(e);
        }
    }
}

fn jump(chain: &str) -> Verdict {
    Verdict::Jump(chain.to_string())
}

fn goto(chain: &str) -> Verdict {
    Verdict::Goto(chain.to_string())
}

fn verdict(v: Verdict) -> Rule {
    Rule::new(vec![Stmt::Verdict(v)])
}

fn ip_is(field: IpField, net: Ipv4Net) -> Stmt {
    Stmt::Ip {
        field,
        neq: false,
        net,
    }
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

fn map(name: &str, key: &[KeyType], comment: &str) -> Set {
    Set {
        kind: SetKind::Map,
        name: name.into(),
        key: key.to_vec(),
        timeout: None,
        comment: Some(comment.into()),
    }
}

fn set(name: &str, key: &[KeyType], comment: &str) -> Set {
    Set {
        kind: SetKind::Set,
        name: name.into(),
        key: key.to_vec(),
        timeout: None,
        comment: Some(comment.into()),
    }
}

fn base_chain(
    name: &str,
    kind: ChainType,
    hook: HookPoint,
    priority: i32,
    rules: Vec<Rule>,
) -> Chain {
    Chain {
        name: name.into(),
        hook: Some(Hook {
            kind,
            hook,
            priority,
        }),
        rules,
    }
}

fn plain_chain(name: &str, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        hook: None,
        rules,
    }
}

/// The objects every node has, services or not.
pub fn base(node: &Node) -> Ruleset {
    use KeyType::{InetProto, InetService, Ipv4Addr as Addr};
    let mut r = Ruleset::default();
    let vmap = |key: &[KeyField], map: &str| Stmt::Vmap {
        key: key.to_vec(),
        map: map.into(),
    };
    let addr_proto_port = [KeyField::IpDaddr, KeyField::L4Proto, KeyField::ThDport];
    let proto_port = [KeyField::L4Proto, KeyField::ThDport];
    let daddr_in = |set: &str| Stmt::IpInSet {
        field: IpField::Daddr,
        set: set.into(),
    };
    let ct_new_jump = |c: &str| then(vec![Stmt::CtStateNew], jump(c));
    let in_set = |key: &[KeyField], set: &str| Stmt::InSet {
        key: key.to_vec(),
        set: set.into(),
    };
    r.sets = vec![
        set(CLUSTER_IPS, &[Addr], "active cluster IPs"),
        set(NODEPORT_IPS, &[Addr], "addresses NodePorts answer on"),
        map(
            SERVICE_IPS,
            &[Addr, InetProto, InetService],
            "cluster and external IPs",
        ),
        map(SERVICE_NODEPORTS, &[InetProto, InetService], "NodePorts"),
        set(
            HAIRPIN_ENDPOINTS,
            &[Addr, Addr],
            "endpoint . endpoint: a pod reaching itself",
        ),
        set(
            NO_ENDPOINT_SERVICES,
            &[Addr, InetProto, InetService],
            "reject: no endpoints",
        ),
        set(
            NO_ENDPOINT_NODEPORTS,
            &[InetProto, InetService],
            "reject: no endpoints",
        ),
        set(
            NO_LOCAL_ENDPOINT_SERVICES,
            &[Addr, InetProto, InetService],
            "drop: policy Local, no endpoint here",
        ),
        set(
            NO_LOCAL_ENDPOINT_NODEPORTS,
            &[InetProto, InetService],
            "drop: policy Local, no endpoint here",
        ),
    ];

    r.chains = vec![
        // Helper chains first: the base chains jump to them.
        plain_chain(
            MARK_FOR_MASQUERADE,
            vec![Rule::new(vec![Stmt::MarkOr(MASQ_MARK)])],
        ),
        plain_chain(
            MASQUERADING,
            vec![
                // Hairpin: a pod reaching itself through a service. Without
                // SNAT it would answer itself directly (its own address is
                // local to it), and the client socket would see a reply from
                // the wrong address. After DNAT the source and destination
                // are then the same endpoint: one lookup in a set of
                // `endpoint . endpoint` pairs, whatever the service.
                then(
                    vec![
                        Stmt::CtStatusDnat,
                        Stmt::InSet {
                            key: vec![KeyField::IpSaddr, KeyField::IpDaddr],
                            set: HAIRPIN_ENDPOINTS.into(),
                        },
                    ],
                    jump(MARK_FOR_MASQUERADE),
                ),
                then(vec![Stmt::MarkUnset(MASQ_MARK)], Verdict::Return),
                // Clear the mark: it stays on the packet, and a packet passing
                // postrouting once more (looped back) must not be masqueraded twice.
                Rule::new(vec![Stmt::MarkXor(MASQ_MARK)]),
                Rule::new(vec![Stmt::MasqueradeFullyRandom]),
            ],
        ),
        // A TCP reset makes connect() fail with "connection refused" at once;
        // the ICMP port unreachable does the same for UDP (and SCTP).
        plain_chain(
            REJECT_CHAIN,
            vec![
                Rule::new(vec![Stmt::L4Proto(Protocol::Tcp), Stmt::RejectTcpReset]),
                Rule::new(vec![Stmt::Reject]),
            ],
        ),
        plain_chain(
            SERVICES,
            vec![
                Rule::new(vec![vmap(&addr_proto_port, SERVICE_IPS)]),
                Rule::new(vec![
                    daddr_in(NODEPORT_IPS),
                    vmap(&proto_port, SERVICE_NODEPORTS),
                ]),
            ],
        ),
        // Fixed rules over plain sets: a service gaining or losing its
        // endpoints changes elements only (a verdict map element with a
        // goto would make the kernel re-validate the whole table).
        plain_chain(
            SERVICE_ENDPOINTS_CHECK,
            vec![
                then(
                    vec![in_set(&addr_proto_port, NO_ENDPOINT_SERVICES)],
                    goto(REJECT_CHAIN),
                ),
                then(
                    vec![in_set(&addr_proto_port, NO_LOCAL_ENDPOINT_SERVICES)],
                    Verdict::Drop,
                ),
            ],
        ),
        plain_chain(
            NODEPORT_ENDPOINTS_CHECK,
            vec![
                then(
                    vec![
                        daddr_in(NODEPORT_IPS),
                        in_set(&proto_port, NO_ENDPOINT_NODEPORTS),
                    ],
                    goto(REJECT_CHAIN),
                ),
                then(
                    vec![
                        daddr_in(NODEPORT_IPS),
                        in_set(&proto_port, NO_LOCAL_ENDPOINT_NODEPORTS),
                    ],
                    Verdict::Drop,
                ),
            ],
        ),
        plain_chain(
            CLUSTER_IPS_CHECK,
            vec![
                then(vec![daddr_in(CLUSTER_IPS)], goto(REJECT_CHAIN))
                    .comment("no such port on this cluster IP"),
                then(
                    vec![ip_is(IpField::Daddr, node.service_cidr.trunc())],
                    Verdict::Drop,
                )
                .comment("unallocated cluster IP"),
            ],
        ),
        // DNAT happens in the nat chains, before routing. The no-endpoint
        // checks run in the filter chains, after DNAT: by then a service with
        // endpoints has a pod address as destination and no longer matches.
        base_chain(
            "nat-prerouting",
            ChainType::Nat,
            HookPoint::Prerouting,
            -100,
            vec![verdict(jump(SERVICES))],
        ),
        base_chain(
            "nat-output",
            ChainType::Nat,
            HookPoint::Output,
            -100,
            vec![verdict(jump(SERVICES))],
        ),
        base_chain(
            "nat-postrouting",
            ChainType::Nat,
            HookPoint::Postrouting,
            100,
            vec![verdict(jump(MASQUERADING))],
        ),
        base_chain(
            "filter-forward",
            ChainType::Filter,
            HookPoint::Forward,
            0,
            vec![
                ct_new_jump(SERVICE_ENDPOINTS_CHECK),
                ct_new_jump(CLUSTER_IPS_CHECK),
            ],
        ),
        base_chain(
            "filter-input",
            ChainType::Filter,
            HookPoint::Input,
            0,
            vec![
                ct_new_jump(NODEPORT_ENDPOINTS_CHECK),
                ct_new_jump(SERVICE_ENDPOINTS_CHECK),
            ],
        ),
        base_chain(
            "filter-output",
            ChainType::Filter,
            HookPoint::Output,
            0,
            vec![
                ct_new_jump(SERVICE_ENDPOINTS_CHECK),
                ct_new_jump(CLUSTER_IPS_CHECK),
            ],
        ),
    ];

    // NodePorts answer on the node's own addresses only. kube-proxy's
    // default (`nodePortAddresses: primary`) lists them, as here; the older
    // `fib daddr type local` would also catch the cni0 gateway and 127/8.
    let mut seen = HashSet::new();
    for ip in node.node_ips.iter().filter(|ip| seen.insert(**ip)) {
        r.elements.push(Element {
            set: NODEPORT_IPS.into(),
            key: Key(vec![KeyPart::Ip(*ip)]),
            value: None,
        });
    }
    host_ports(node, &mut r);
    partition(node, &mut r);
    r
}

/// A drill's partition (`netlab partition`): what comes from or goes to
/// the nodes this one is cut off from is dropped, after the Services'
/// DNAT (so a Service's endpoint over there is unreachable too), for
/// forwarded and the node's own traffic alike. Silent drops, as a cut
/// cable: connections time out.
///
/// ```text
/// partition-in  (filter prerouting 0): ip saddr|daddr <net> drop
/// partition-out (filter output 0):     ip saddr|daddr <net> drop
/// ```
fn partition(node: &Node, r: &mut Ruleset) {
    if node.partitioned.is_empty() {
        return;
    }
    let rules = || {
        node.partitioned
            .iter()
            .flat_map(|net| {
                [IpField::Saddr, IpField::Daddr].map(|field| {
                    Rule::new(vec![
                        Stmt::Ip {
                            field,
                            neq: false,
                            net: *net,
                        },
                        Stmt::Verdict(Verdict::Drop),
                    ])
                })
            })
            .collect::<Vec<_>>()
    };
    r.chains.push(base_chain(
        "partition-in",
        ChainType::Filter,
        HookPoint::Prerouting,
        0,
        rules(),
    ));
    r.chains.push(base_chain(
        "partition-out",
        ChainType::Filter,
        HookPoint::Output,
        0,
        rules(),
    ));
}

/// The pods' `hostPort`s, as the CNI portmap plugin does them: DNAT of
/// `<node address> . <proto> . <hostPort>` to the pod, for traffic coming
/// in (prerouting) and the node's own (output), before the services:
///
/// ```text
/// nat-prerouting / nat-output ─ jump hostports
///   hostports: ip daddr . meta l4proto . th dport vmap @hostports
///     └─ goto hostport-<hash>-<ns>/<pod>/<proto>/<hostPort>
///          ip saddr <pod> jump mark-for-masquerade   (hairpin: the pod itself)
///          dnat to <pod>:<containerPort>
/// ```
///
/// Other sources keep their address, as with portmap: the reply goes back
/// through the node (the pod's gateway), which un-NATs it. Nothing of this
/// exists on a node without hostPorts. They are part of the base table
/// (the node's, not a service's): a pod with hostPorts coming or going
/// rewrites the node's table, which is rare and small.
///
/// Two pods with the same address, protocol and port: the scheduler keeps
/// them on different nodes; should they meet anyway (a pod bound by
/// `nodeName`), the first in (protocol, port, pod) order keeps the port
/// and the other is a warning. A `hostIP` that is not one of the node's
/// addresses publishes nothing (the kubelet would fail the pod).
fn host_ports(node: &Node, r: &mut Ruleset) {
    use KeyType::{InetProto, InetService, Ipv4Addr as Addr};
    if node.host_ports.is_empty() {
        return;
    }
    let mut ports: Vec<&HostPort> = node.host_ports.iter().collect();
    ports.sort();
    let mut chains = vec![plain_chain(
        HOSTPORTS,
        vec![Rule::new(vec![Stmt::Vmap {
            key: vec![KeyField::IpDaddr, KeyField::L4Proto, KeyField::ThDport],
            map: HOSTPORTS.into(),
        }])],
    )];
    let mut taken: HashSet<(Ipv4Addr, Protocol, u16)> = HashSet::new();
    for hp in ports {
        let readable = format!("{}/{}/{}", hp.pod, hp.protocol, hp.host_port);
        let chain = NameBase::new(&readable).name("hostport");
        let addrs: Vec<Ipv4Addr> = match hp.host_ip {
            Some(ip) => node.node_ips.iter().copied().filter(|a| *a == ip).collect(),
            None => node.node_ips.clone(),
        };
        let mut used = false;
        for a in addrs {
            if !taken.insert((a, hp.protocol, hp.host_port)) {
                r.warnings.push(format!(
                    "pod {}: hostPort {a}:{}/{} is already used by another pod on node {}",
                    hp.pod, hp.host_port, hp.protocol, node.name
                ));
                continue;
            }
            used = true;
            r.elements.push(Element {
                set: HOSTPORTS.into(),
                key: Key(vec![
                    KeyPart::Ip(a),
                    KeyPart::Proto(hp.protocol),
                    KeyPart::Port(hp.host_port),
                ]),
                value: Some(Value::Verdict(goto(&chain))),
            });
        }
        if used && !chains.iter().any(|c| c.name == chain) {
            chains.push(plain_chain(
                &chain,
                vec![
                    then(
                        vec![ip_is(IpField::Saddr, host(hp.pod_ip))],
                        jump(MARK_FOR_MASQUERADE),
                    ),
                    Rule::new(vec![Stmt::Dnat {
                        ip: hp.pod_ip,
                        port: Some(hp.container_port),
                    }]),
                ],
            ));
        }
    }
    r.sets.push(map(
        HOSTPORTS,
        &[Addr, InetProto, InetService],
        "pods' hostPorts: node address . protocol . hostPort",
    ));
    // Before the base chains that jump to them, and first in nat-prerouting
    // and nat-output (portmap's chain runs before kube-proxy's there too).
    let at = r
        .chains
        .iter()
        .position(|c| c.hook.is_some())
        .unwrap_or(r.chains.len());
    for c in r.chains.iter_mut() {
        if c.name == "nat-prerouting" || c.name == "nat-output" {
            c.rules.insert(0, verdict(jump(HOSTPORTS)));
        }
    }
    r.chains.splice(at..at, chains);
}

/// Where slot `slot` of protocol `proto` lives: its map and its offset
/// there (see [`SLOTS_PER_MAP`]).
fn endpoints_map(proto: Protocol, slot: u16) -> (Set, u32) {
    let shard = slot as usize / SLOTS_PER_MAP;
    let offset = (slot as usize % SLOTS_PER_MAP) as u32 * BUCKETS;
    let map = Set {
        kind: SetKind::Buckets {
            modulus: BUCKETS,
            proto,
        },
        name: format!("service-endpoints-{proto}-{shard}"),
        key: vec![],
        timeout: None,
        comment: Some("slot * 65536 + bucket: endpoint".into()),
    };
    (map, offset)
}

/// One service's objects on `node`. Its ports' slots come from `slots`:
/// the ones they already have, or new ones (see [`Piece::slots`]).
pub fn service(node: &Node, svc: &Service, slots: &mut Slots) -> Piece {
    let mut b = Builder::default();
    // Headless: DNS only, no virtual IP to catch.
    let Some(cluster_ip) = svc.cluster_ip else {
        return b.p;
    };
    b.shared(CLUSTER_IPS, vec![KeyPart::Ip(cluster_ip)]);
    for sp in &svc.ports {
        service_port(&mut b, node, svc, cluster_ip, sp, slots);
    }
    b.p
}

/// The names of one service port's objects.
struct Names {
    /// "default/web/tcp/http", for warnings and chain names.
    port_name: String,
    service: String,
    external: String,
    local: String,
    firewall: String,
}

impl Names {
    fn new(svc: &Service, sp: &ServicePort) -> Names {
        // An unnamed port is the service's only port; its number reads better
        // than nothing (and a port name always contains a letter).
        let port = if sp.name.is_empty() {
            sp.port.to_string()
        } else {
            sp.name.clone()
        };
        let port_name = format!("{}/{}/{}/{}", svc.namespace, svc.name, sp.protocol, port);
        let base = NameBase::new(&port_name);
        Names {
            service: base.name("service"),
            external: base.name("external"),
            local: base.name("local"),
            firewall: base.name("firewall"),
            port_name,
        }
    }

    fn endpoint<'a>(&self, ep: &'a Endpoint) -> EndpointNames<'a> {
        let base = NameBase::new(&format!("{}__{}/{}", self.port_name, ep.ip, ep.port));
        EndpointNames {
            ep,
            chain: base.name("endpoint"),
            affinity: base.name("affinity"),
        }
    }
}

/// The affinity set of an endpoint's chain: `endpoint-…` → `affinity-…`
/// (the same hash and readable part; the kinds are as long, so both names
/// are cut short alike).
pub fn affinity_set_of(endpoint_chain: &str) -> Option<String> {
    endpoint_chain
        .strip_prefix("endpoint-")
        .map(|rest| format!("affinity-{rest}"))
}

/// An endpoint with the names of its chain and affinity set.
struct EndpointNames<'a> {
    ep: &'a Endpoint,
    chain: String,
    affinity: String,
}

/// `<kind>-<hash>-<readable>`: the hash of the readable part keeps names
/// unique even when the readable part is cut short or sanitized. Characters
/// nft does not allow in an unquoted name become `_`.
struct NameBase {
    hash: String,
    readable: String,
}

impl NameBase {
    fn new(readable: &str) -> NameBase {
        let digest = Sha256::digest(readable.as_bytes());
        NameBase {
            hash: hex::encode(&digest[..4]),
            readable: readable
                .chars()
                .map(|c| {
                    let ok = c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.');
                    if ok {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        }
    }

    fn name(&self, kind: &str) -> String {
        let mut name = format!("{kind}-{}-{}", self.hash, self.readable);
        name.truncate(NAME_MAX); // ASCII only by now
        name
    }
}

#[cfg(test)]
fn object_name(kind: &str, readable: &str) -> String {
    NameBase::new(readable).name(kind)
}

fn service_port(
    b: &mut Builder,
    node: &Node,
    svc: &Service,
    cluster_ip: Ipv4Addr,
    sp: &ServicePort,
    slots: &mut Slots,
) {
    let n = Names::new(svc, sp);
    if b.p.ports.contains(&n.port_name) {
        b.p.warnings.push(format!(
            "service port {}: declared twice, keeping the first",
            n.port_name
        ));
        return;
    }
    let port_idx = b.p.ports.len() as u16;
    b.p.ports.push(n.port_name.clone());
    let claim = |kind| {
        Some(Claim {
            port: port_idx,
            kind,
        })
    };
    let proto = sp.protocol;

    let mut seen = HashSet::new();
    let endpoints: Vec<EndpointNames> = sp
        .endpoints
        .iter()
        .filter(|e| seen.insert((e.ip, e.port)))
        .map(|e| n.endpoint(e))
        .collect();
    let local: Vec<&EndpointNames> = endpoints
        .iter()
        .filter(|e| e.ep.node == node.name)
        .collect();
    let all: Vec<&EndpointNames> = endpoints.iter().collect();
    let has_endpoints = !endpoints.is_empty();
    let is_external = !svc.external_ips.is_empty() || sp.node_port.is_some();
    let local_policy = svc.external_traffic_local;
    let affinity = svc.affinity_timeout.map(|t| t.max(1));

    // How this port picks an endpoint: through its slots of the endpoints
    // maps (elements only), or, with session affinity (or
    // no slot left), through one chain per endpoint.
    let mut owners = vec![n.port_name.clone()];
    if is_external && local_policy {
        owners.push(format!("{}#local", n.port_name));
    }
    let mut by_chains = affinity.is_some();
    let mut got: Vec<(String, u16, bool)> = Vec::new();
    if !by_chains {
        for owner in owners {
            let fresh = !slots.has(&owner);
            match slots.get(&owner) {
                Some(s) => got.push((owner, s, fresh)),
                None => {
                    by_chains = true;
                    break;
                }
            }
        }
        if by_chains {
            for (owner, _, fresh) in got.drain(..) {
                if fresh {
                    slots.release(&owner);
                }
            }
        }
    }
    let slot_of = |i: usize| got.get(i).map(|g| g.1);
    let (all_slot, local_slot) = (slot_of(0), slot_of(1));
    b.p.slots
        .extend(got.iter().map(|(o, s, _)| (o.clone(), *s)));

    if by_chains {
        if let Some(timeout) = affinity {
            for e in &endpoints {
                b.p.sets.push(Set {
                    kind: SetKind::Set,
                    name: e.affinity.clone(),
                    key: vec![KeyType::Ipv4Addr],
                    timeout: Some(timeout),
                    comment: None,
                });
            }
        }
        for e in &endpoints {
            let ep = e.ep;
            let mut rules = Vec::new();
            if affinity.is_some() {
                rules.push(Rule::new(vec![Stmt::UpdateSaddr(e.affinity.clone())]));
            }
            rules.push(Rule::new(vec![
                Stmt::L4Proto(proto),
                Stmt::Dnat {
                    ip: ep.ip,
                    port: Some(ep.port),
                },
            ]));
            b.chain(e.chain.clone(), rules);
        }
    }

    // The chain that picks among all endpoints. Traffic from outside the
    // pod network (the node itself, the LAN) to the cluster IP is
    // masqueraded, so that replies come back through this node to be
    // un-DNATed. Pods keep their own source address. Without endpoints
    // nothing matches: the packet goes on to the filter chains, which
    // reject it (`no-endpoint-services`).
    let mut rules = vec![then(
        vec![
            ip_is(IpField::Daddr, host(cluster_ip)),
            Stmt::Ip {
                field: IpField::Saddr,
                neq: true,
                net: node.cluster_cidr.trunc(),
            },
        ],
        jump(MARK_FOR_MASQUERADE),
    )];
    pick_endpoint(b, &mut rules, proto, all_slot, &all, affinity.is_some());
    b.chain(n.service.clone(), rules);

    if is_external {
        if local_policy {
            // Only this node's endpoints; none: nothing matches, and the
            // filter chains drop the packet (`no-local-endpoint-services`).
            let mut rules = Vec::new();
            pick_endpoint(b, &mut rules, proto, local_slot, &local, affinity.is_some());
            b.chain(n.local.clone(), rules);
        }
        let rules = if !local_policy {
            // Cluster policy: the endpoint may be on another node, whose
            // reply must come back here; so masquerade.
            vec![
                verdict(jump(MARK_FOR_MASQUERADE)),
                verdict(goto(&n.service)),
            ]
        } else {
            // Local policy: keep the client's address and only use this
            // node's endpoints, except for traffic that starts inside
            // the cluster, which is treated like cluster IP traffic.
            vec![
                then(
                    vec![ip_is(IpField::Saddr, node.cluster_cidr.trunc())],
                    goto(&n.service),
                )
                .comment("short-circuit pod traffic"),
                then(vec![Stmt::FibSaddrLocal], jump(MARK_FOR_MASQUERADE))
                    .comment("masquerade local traffic"),
                then(vec![Stmt::FibSaddrLocal], goto(&n.service))
                    .comment("short-circuit local traffic"),
                verdict(goto(&n.local)),
            ]
        };
        b.chain(n.external.clone(), rules);
        // loadBalancerSourceRanges (kube-proxy's firewall chain): the
        // LoadBalancer addresses lead here instead of to external-….
        if !svc.source_ranges.is_empty() && !svc.load_balancer_ips.is_empty() {
            let mut rules: Vec<Rule> = svc
                .source_ranges
                .iter()
                .map(|r| then(vec![ip_is(IpField::Saddr, r.trunc())], goto(&n.external)))
                .collect();
            rules.push(verdict(Verdict::Drop).comment("not in loadBalancerSourceRanges"));
            b.chain(n.firewall.clone(), rules);
        }
    }

    // A pod reaching itself (see `masquerading`).
    for e in &endpoints {
        b.shared(
            HAIRPIN_ENDPOINTS,
            vec![KeyPart::Ip(e.ep.ip), KeyPart::Ip(e.ep.ip)],
        );
    }

    // The verdict map entries: always there, whatever the endpoints, so
    // that endpoints coming and going change only set elements.
    let key = |ip: Ipv4Addr| {
        vec![
            KeyPart::Ip(ip),
            KeyPart::Proto(proto),
            KeyPart::Port(sp.port),
        ]
    };
    let verdict_to = |chain: &str| Some(Value::Verdict(goto(chain)));
    b.element(
        SERVICE_IPS,
        key(cluster_ip),
        verdict_to(&n.service),
        claim(ClaimKind::ClusterIp),
    );
    if !has_endpoints {
        b.element(
            NO_ENDPOINT_SERVICES,
            key(cluster_ip),
            None,
            claim(ClaimKind::ClusterIp),
        );
    }
    // No endpoints at all: refuse at once. Endpoints, but none on this node
    // for `Local` external traffic: drop, like kube-proxy (the client's
    // load balancer is expected to use another node).
    let no_external = if !has_endpoints {
        Some((NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS))
    } else if local_policy && local.is_empty() {
        Some((NO_LOCAL_ENDPOINT_SERVICES, NO_LOCAL_ENDPOINT_NODEPORTS))
    } else {
        None
    };
    let firewalled =
        |ip: &Ipv4Addr| !svc.source_ranges.is_empty() && svc.load_balancer_ips.contains(ip);
    for &ip in &svc.external_ips {
        let to = if firewalled(&ip) {
            &n.firewall
        } else {
            &n.external
        };
        b.element(
            SERVICE_IPS,
            key(ip),
            verdict_to(to),
            claim(ClaimKind::ExternalIp),
        );
        if let Some((set, _)) = no_external {
            b.element(set, key(ip), None, claim(ClaimKind::ExternalIp));
        }
    }
    if let Some(np) = sp.node_port {
        let key = || vec![KeyPart::Proto(proto), KeyPart::Port(np)];
        b.element(
            SERVICE_NODEPORTS,
            key(),
            verdict_to(&n.external),
            claim(ClaimKind::NodePort),
        );
        if let Some((_, set)) = no_external {
            b.element(set, key(), None, claim(ClaimKind::NodePort));
        }
    }
}

/// The rules that pick one of `endpoints`, appended to `rules`.
///
/// With a slot: one rule, `dnat ip to numgen random mod 65536 offset <o>
/// map @service-endpoints-<proto>-<n>`, and the endpoints as elements of
/// that map, each owning an equal share of the slot's 65536 numbers (see
/// the module documentation for why).
///
/// Without (session affinity, or no slot left): session affinity first,
/// then a random pick through one chain per endpoint. Each rule `numgen
/// random mod K == 0 goto endpoint-i` draws its own number, with K = N,
/// N-1, ..., 2 and the last endpoint as the fallthrough: the i-th endpoint
/// is taken with probability (1 - 1/N)···1/(N-i) = 1/N, so the pick is
/// uniform (kube-proxy's iptables mode does the same with `statistic`).
/// The endpoint chain refreshes the client's entry in the affinity set.
/// (Why not kube-proxy nftables' single `numgen random mod N vmap { 0 :
/// goto …, 1 : … }`: every inline vmap is an anonymous set, and the kernel
/// names a new anonymous set by scanning every set of the table
/// (nf_tables_set_alloc_name), so a first sync of 10 000 services took 56 s
/// here.)
///
/// Only a connection's first packet gets here either way: nat chains see
/// nothing else, conntrack replays the decision for the rest.
fn pick_endpoint(
    b: &mut Builder,
    rules: &mut Vec<Rule>,
    proto: Protocol,
    slot: Option<u16>,
    endpoints: &[&EndpointNames],
    affinity: bool,
) {
    if let Some(slot) = slot {
        let (map, offset) = endpoints_map(proto, slot);
        rules.push(Rule::new(vec![
            Stmt::L4Proto(proto),
            Stmt::DnatBuckets {
                modulus: BUCKETS,
                offset,
                map: map.name.clone(),
            },
        ]));
        let count = endpoints.len().min(BUCKETS as usize) as u64;
        for (i, e) in endpoints.iter().take(count as usize).enumerate() {
            let i = i as u64;
            let first = (i * u64::from(BUCKETS) / count) as u32;
            let last = ((i + 1) * u64::from(BUCKETS) / count) as u32 - 1;
            b.element(
                &map.name,
                vec![KeyPart::Range(offset + first, offset + last)],
                Some(Value::Endpoint(e.ep.ip, e.ep.port)),
                None,
            );
        }
        if !b.p.shared_sets.contains(&map) {
            b.p.shared_sets.push(map);
        }
        return;
    }
    if affinity {
        // A client seen recently goes back to the same endpoint; the
        // endpoint chain refreshes the entry (and its timeout).
        for e in endpoints {
            rules.push(then(
                vec![Stmt::IpInSet {
                    field: IpField::Saddr,
                    set: e.affinity.clone(),
                }],
                goto(&e.chain),
            ));
        }
    }
    let count = endpoints.len();
    for (i, e) in endpoints.iter().enumerate() {
        if i + 1 < count {
            rules.push(then(
                vec![Stmt::NumgenIsZero((count - i) as u32)],
                goto(&e.chain),
            ));
        } else {
            rules.push(verdict(goto(&e.chain)));
        }
    }
}

#[cfg(test)]
mod firewall_tests {
    use super::*;

    #[test]
    fn load_balancer_source_ranges_make_a_firewall_chain() {
        let node = Node {
            name: "node-1".into(),
            node_ips: vec!["172.18.0.2".parse().unwrap()],
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            host_ports: vec![],
            partitioned: vec![],
        };
        let svc = Service {
            namespace: "default".into(),
            name: "lb".into(),
            cluster_ip: Some("10.0.0.9".parse().unwrap()),
            external_ips: vec![
                "203.0.113.200".parse().unwrap(),
                "192.0.2.9".parse().unwrap(),
            ],
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 443,
                node_port: Some(30443),
                endpoints: vec![Endpoint {
                    ip: "10.244.1.2".parse().unwrap(),
                    port: 443,
                    node: "node-1".into(),
                }],
            }],
            affinity_timeout: None,
            external_traffic_local: false,
            source_ranges: vec!["203.0.113.0/25".parse().unwrap()],
            load_balancer_ips: vec!["203.0.113.200".parse().unwrap()],
        };
        let text = ruleset(&node, &[svc]).render();
        let (fw, ext) = (
            "firewall-10ef8908-default/lb/tcp/443",
            "external-10ef8908-default/lb/tcp/443",
        );
        for want in [
            format!("service-ips {{ 203.0.113.200 . tcp . 443 : goto {fw} }}"),
            // An externalIP (not a LoadBalancer address) is not filtered.
            format!("service-ips {{ 192.0.2.9 . tcp . 443 : goto {ext} }}"),
            format!("add rule ip netlab {fw} ip saddr 203.0.113.0/25 goto {ext}\n"),
            format!("add rule ip netlab {fw} drop comment \"not in loadBalancerSourceRanges\"\n"),
        ] {
            assert!(text.contains(&want), "{want}\n{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;
    use crate::proxy::ruleset::diff;

    fn node() -> Node {
        Node {
            name: "node-1".into(),
            node_ips: vec!["172.18.0.2".parse().unwrap()],
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            host_ports: vec![],
            partitioned: vec![],
        }
    }

    fn ep(ip: &str, node: &str) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            node: node.into(),
        }
    }

    fn svc(name: &str, ip: &str, endpoints: Vec<Endpoint>) -> Service {
        Service {
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: Some(ip.parse().unwrap()),
            external_ips: vec![],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
                endpoints,
            }],
            affinity_timeout: None,
            external_traffic_local: false,
            source_ranges: vec![],
            load_balancer_ips: vec![],
        }
    }

    fn web() -> Service {
        svc(
            "web",
            "10.0.0.10",
            vec![ep("10.244.1.2", "node-1"), ep("10.244.2.2", "node-2")],
        )
    }

    // The parts of every table: sets and maps, chains, elements.
    const BASE_SETS: &str = r#"add table ip netlab
add set ip netlab cluster-ips { type ipv4_addr ; comment "active cluster IPs" ; }
add set ip netlab nodeport-ips { type ipv4_addr ; comment "addresses NodePorts answer on" ; }
add map ip netlab service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "cluster and external IPs" ; }
add map ip netlab service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePorts" ; }
add set ip netlab hairpin-endpoints { type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: a pod reaching itself" ; }
add set ip netlab no-endpoint-services { type ipv4_addr . inet_proto . inet_service ; comment "reject: no endpoints" ; }
add set ip netlab no-endpoint-nodeports { type inet_proto . inet_service ; comment "reject: no endpoints" ; }
add set ip netlab no-local-endpoint-services { type ipv4_addr . inet_proto . inet_service ; comment "drop: policy Local, no endpoint here" ; }
add set ip netlab no-local-endpoint-nodeports { type inet_proto . inet_service ; comment "drop: policy Local, no endpoint here" ; }
"#;
    const BASE_CHAINS: &str = r#"add chain ip netlab mark-for-masquerade
add rule ip netlab mark-for-masquerade mark set mark or 0x4000
add chain ip netlab masquerading
add rule ip netlab masquerading ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade
add rule ip netlab masquerading mark and 0x4000 == 0 return
add rule ip netlab masquerading mark set mark xor 0x4000
add rule ip netlab masquerading masquerade fully-random
add chain ip netlab reject-chain
add rule ip netlab reject-chain meta l4proto tcp reject with tcp reset
add rule ip netlab reject-chain reject
add chain ip netlab services
add rule ip netlab services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip netlab services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add chain ip netlab service-endpoints-check
add rule ip netlab service-endpoints-check ip daddr . meta l4proto . th dport @no-endpoint-services goto reject-chain
add rule ip netlab service-endpoints-check ip daddr . meta l4proto . th dport @no-local-endpoint-services drop
add chain ip netlab nodeport-endpoints-check
add rule ip netlab nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport @no-endpoint-nodeports goto reject-chain
add rule ip netlab nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport @no-local-endpoint-nodeports drop
add chain ip netlab cluster-ips-check
add rule ip netlab cluster-ips-check ip daddr @cluster-ips goto reject-chain comment "no such port on this cluster IP"
add rule ip netlab cluster-ips-check ip daddr 10.0.0.0/16 drop comment "unallocated cluster IP"
add chain ip netlab nat-prerouting { type nat hook prerouting priority -100 ; }
add rule ip netlab nat-prerouting jump services
add chain ip netlab nat-output { type nat hook output priority -100 ; }
add rule ip netlab nat-output jump services
add chain ip netlab nat-postrouting { type nat hook postrouting priority 100 ; }
add rule ip netlab nat-postrouting jump masquerading
add chain ip netlab filter-forward { type filter hook forward priority 0 ; }
add rule ip netlab filter-forward ct state new jump service-endpoints-check
add rule ip netlab filter-forward ct state new jump cluster-ips-check
add chain ip netlab filter-input { type filter hook input priority 0 ; }
add rule ip netlab filter-input ct state new jump nodeport-endpoints-check
add rule ip netlab filter-input ct state new jump service-endpoints-check
add chain ip netlab filter-output { type filter hook output priority 0 ; }
add rule ip netlab filter-output ct state new jump service-endpoints-check
add rule ip netlab filter-output ct state new jump cluster-ips-check
"#;
    const MAP_TCP_0: &str = "add map ip netlab service-endpoints-tcp-0 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; comment \"slot * 65536 + bucket: endpoint\" ; }\n";
    const BASE_ELEMENTS: &str = "add element ip netlab nodeport-ips { 172.18.0.2 }\n";

    /// The full table: the base objects plus these per-service lines.
    fn table(sets: &str, chains: &str, elements: &str) -> String {
        format!("{BASE_SETS}{sets}{BASE_CHAINS}{chains}{BASE_ELEMENTS}{elements}")
    }

    /// Compare line by line first: a failure then names the first line
    /// that differs instead of dumping two walls of text.
    fn assert_table(services: &[Service], expected: &str) {
        let r = ruleset(&node(), services);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let got = r.render();
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "line {} differs; whole table:\n{got}", i + 1);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn no_services_is_just_the_base() {
        assert_table(&[], &table("", "", ""));
    }

    #[test]
    fn one_service_two_endpoints() {
        assert_table(
            &[web()],
            r#"add table ip netlab
add set ip netlab cluster-ips { type ipv4_addr ; comment "active cluster IPs" ; }
add set ip netlab nodeport-ips { type ipv4_addr ; comment "addresses NodePorts answer on" ; }
add map ip netlab service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "cluster and external IPs" ; }
add map ip netlab service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePorts" ; }
add set ip netlab hairpin-endpoints { type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: a pod reaching itself" ; }
add set ip netlab no-endpoint-services { type ipv4_addr . inet_proto . inet_service ; comment "reject: no endpoints" ; }
add set ip netlab no-endpoint-nodeports { type inet_proto . inet_service ; comment "reject: no endpoints" ; }
add set ip netlab no-local-endpoint-services { type ipv4_addr . inet_proto . inet_service ; comment "drop: policy Local, no endpoint here" ; }
add set ip netlab no-local-endpoint-nodeports { type inet_proto . inet_service ; comment "drop: policy Local, no endpoint here" ; }
add map ip netlab service-endpoints-tcp-0 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; comment "slot * 65536 + bucket: endpoint" ; }
add chain ip netlab mark-for-masquerade
add rule ip netlab mark-for-masquerade mark set mark or 0x4000
add chain ip netlab masquerading
add rule ip netlab masquerading ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade
add rule ip netlab masquerading mark and 0x4000 == 0 return
add rule ip netlab masquerading mark set mark xor 0x4000
add rule ip netlab masquerading masquerade fully-random
add chain ip netlab reject-chain
add rule ip netlab reject-chain meta l4proto tcp reject with tcp reset
add rule ip netlab reject-chain reject
add chain ip netlab services
add rule ip netlab services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip netlab services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add chain ip netlab service-endpoints-check
add rule ip netlab service-endpoints-check ip daddr . meta l4proto . th dport @no-endpoint-services goto reject-chain
add rule ip netlab service-endpoints-check ip daddr . meta l4proto . th dport @no-local-endpoint-services drop
add chain ip netlab nodeport-endpoints-check
add rule ip netlab nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport @no-endpoint-nodeports goto reject-chain
add rule ip netlab nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport @no-local-endpoint-nodeports drop
add chain ip netlab cluster-ips-check
add rule ip netlab cluster-ips-check ip daddr @cluster-ips goto reject-chain comment "no such port on this cluster IP"
add rule ip netlab cluster-ips-check ip daddr 10.0.0.0/16 drop comment "unallocated cluster IP"
add chain ip netlab nat-prerouting { type nat hook prerouting priority -100 ; }
add rule ip netlab nat-prerouting jump services
add chain ip netlab nat-output { type nat hook output priority -100 ; }
add rule ip netlab nat-output jump services
add chain ip netlab nat-postrouting { type nat hook postrouting priority 100 ; }
add rule ip netlab nat-postrouting jump masquerading
add chain ip netlab filter-forward { type filter hook forward priority 0 ; }
add rule ip netlab filter-forward ct state new jump service-endpoints-check
add rule ip netlab filter-forward ct state new jump cluster-ips-check
add chain ip netlab filter-input { type filter hook input priority 0 ; }
add rule ip netlab filter-input ct state new jump nodeport-endpoints-check
add rule ip netlab filter-input ct state new jump service-endpoints-check
add chain ip netlab filter-output { type filter hook output priority 0 ; }
add rule ip netlab filter-output ct state new jump service-endpoints-check
add rule ip netlab filter-output ct state new jump cluster-ips-check
add chain ip netlab service-95253a1d-default/web/tcp/http
add rule ip netlab service-95253a1d-default/web/tcp/http ip daddr 10.0.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab service-95253a1d-default/web/tcp/http meta l4proto tcp dnat ip to numgen random mod 65536 map @service-endpoints-tcp-0
add element ip netlab nodeport-ips { 172.18.0.2 }
add element ip netlab cluster-ips { 10.0.0.10 }
add element ip netlab hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }
add element ip netlab hairpin-endpoints { 10.244.2.2 . 10.244.2.2 }
add element ip netlab service-endpoints-tcp-0 { 0-32767 : 10.244.1.2 . 8080 }
add element ip netlab service-endpoints-tcp-0 { 32768-65535 : 10.244.2.2 . 8080 }
add element ip netlab service-ips { 10.0.0.10 . tcp . 80 : goto service-95253a1d-default/web/tcp/http }
"#,
        );
    }

    #[test]
    fn service_without_endpoints_rejects() {
        let c = "service-e8168be5-default/empty/tcp/http";
        assert_table(
            &[svc("empty", "10.0.0.11", vec![])],
            &table(
                MAP_TCP_0,
                &format!(
                    "add chain ip netlab {c}
add rule ip netlab {c} ip daddr 10.0.0.11 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab {c} meta l4proto tcp dnat ip to numgen random mod 65536 map @service-endpoints-tcp-0
"
                ),
                &format!(
                    "add element ip netlab cluster-ips {{ 10.0.0.11 }}
add element ip netlab service-ips {{ 10.0.0.11 . tcp . 80 : goto {c} }}
add element ip netlab no-endpoint-services {{ 10.0.0.11 . tcp . 80 }}
"
                ),
            ),
        );
    }

    #[test]
    fn headless_service_has_no_rules() {
        let mut s = web();
        s.cluster_ip = None;
        assert_table(&[s], &table("", "", ""));
    }

    #[test]
    fn node_port_with_cluster_policy_masquerades() {
        let mut s = svc("np", "10.0.0.12", vec![ep("10.244.2.2", "node-2")]);
        s.ports[0].node_port = Some(30080);
        assert_table(
            &[s],
            &table(
                MAP_TCP_0,
                "add chain ip netlab service-049b5621-default/np/tcp/http
add rule ip netlab service-049b5621-default/np/tcp/http ip daddr 10.0.0.12 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab service-049b5621-default/np/tcp/http meta l4proto tcp dnat ip to numgen random mod 65536 map @service-endpoints-tcp-0
add chain ip netlab external-049b5621-default/np/tcp/http
add rule ip netlab external-049b5621-default/np/tcp/http jump mark-for-masquerade
add rule ip netlab external-049b5621-default/np/tcp/http goto service-049b5621-default/np/tcp/http
",
                "add element ip netlab cluster-ips { 10.0.0.12 }
add element ip netlab hairpin-endpoints { 10.244.2.2 . 10.244.2.2 }
add element ip netlab service-endpoints-tcp-0 { 0-65535 : 10.244.2.2 . 8080 }
add element ip netlab service-ips { 10.0.0.12 . tcp . 80 : goto service-049b5621-default/np/tcp/http }
add element ip netlab service-nodeports { tcp . 30080 : goto external-049b5621-default/np/tcp/http }
",
            ),
        );
    }

    #[test]
    fn node_port_without_endpoints_rejects() {
        let mut s = svc("np", "10.0.0.12", vec![]);
        s.ports[0].node_port = Some(30080);
        s.external_ips = vec!["203.0.113.7".parse().unwrap()];
        let (c, ext) = (
            "service-049b5621-default/np/tcp/http",
            "external-049b5621-default/np/tcp/http",
        );
        assert_table(
            &[s],
            &table(
                MAP_TCP_0,
                &format!(
                    "add chain ip netlab {c}
add rule ip netlab {c} ip daddr 10.0.0.12 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab {c} meta l4proto tcp dnat ip to numgen random mod 65536 map @service-endpoints-tcp-0
add chain ip netlab {ext}
add rule ip netlab {ext} jump mark-for-masquerade
add rule ip netlab {ext} goto {c}
"
                ),
                &format!(
                    "add element ip netlab cluster-ips {{ 10.0.0.12 }}
add element ip netlab service-ips {{ 10.0.0.12 . tcp . 80 : goto {c} }}
add element ip netlab no-endpoint-services {{ 10.0.0.12 . tcp . 80 }}
add element ip netlab service-ips {{ 203.0.113.7 . tcp . 80 : goto {ext} }}
add element ip netlab no-endpoint-services {{ 203.0.113.7 . tcp . 80 }}
add element ip netlab service-nodeports {{ tcp . 30080 : goto {ext} }}
add element ip netlab no-endpoint-nodeports {{ tcp . 30080 }}
"
                ),
            ),
        );
    }

    #[test]
    fn client_ip_affinity_uses_one_set_per_endpoint() {
        let mut s = web();
        s.affinity_timeout = Some(10800);
        let e1 = "endpoint-955667af-default/web/tcp/http__10.244.1.2/8080";
        let e2 = "endpoint-001d018c-default/web/tcp/http__10.244.2.2/8080";
        let a1 = "affinity-955667af-default/web/tcp/http__10.244.1.2/8080";
        let a2 = "affinity-001d018c-default/web/tcp/http__10.244.2.2/8080";
        let svc_chain = "service-95253a1d-default/web/tcp/http";
        assert_table(
            &[s],
            &table(
                &format!(
                    "add set ip netlab {a1} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}
add set ip netlab {a2} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}
"
                ),
                &format!(
                    "add chain ip netlab {e1}
add rule ip netlab {e1} update @{a1} {{ ip saddr }}
add rule ip netlab {e1} meta l4proto tcp dnat to 10.244.1.2:8080
add chain ip netlab {e2}
add rule ip netlab {e2} update @{a2} {{ ip saddr }}
add rule ip netlab {e2} meta l4proto tcp dnat to 10.244.2.2:8080
add chain ip netlab {svc_chain}
add rule ip netlab {svc_chain} ip daddr 10.0.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab {svc_chain} ip saddr @{a1} goto {e1}
add rule ip netlab {svc_chain} ip saddr @{a2} goto {e2}
add rule ip netlab {svc_chain} numgen random mod 2 == 0 goto {e1}
add rule ip netlab {svc_chain} goto {e2}
"
                ),
                &format!(
                    "add element ip netlab cluster-ips {{ 10.0.0.10 }}
add element ip netlab hairpin-endpoints {{ 10.244.1.2 . 10.244.1.2 }}
add element ip netlab hairpin-endpoints {{ 10.244.2.2 . 10.244.2.2 }}
add element ip netlab service-ips {{ 10.0.0.10 . tcp . 80 : goto {svc_chain} }}
"
                ),
            ),
        );
    }

    #[test]
    fn local_policy_keeps_the_client_address_and_only_local_endpoints() {
        let mut s = web();
        s.ports[0].node_port = Some(30080);
        s.external_ips = vec!["203.0.113.10".parse().unwrap()];
        s.external_traffic_local = true;
        let svc_chain = "service-95253a1d-default/web/tcp/http";
        let local = "local-95253a1d-default/web/tcp/http";
        let ext = "external-95253a1d-default/web/tcp/http";
        assert_table(
            &[s],
            &table(
                MAP_TCP_0,
                &format!(
                    "add chain ip netlab {svc_chain}
add rule ip netlab {svc_chain} ip daddr 10.0.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip netlab {svc_chain} meta l4proto tcp dnat ip to numgen random mod 65536 map @service-endpoints-tcp-0
add chain ip netlab {local}
add rule ip netlab {local} meta l4proto tcp dnat ip to numgen random mod 65536 offset 65536 map @service-endpoints-tcp-0
add chain ip netlab {ext}
add rule ip netlab {ext} ip saddr 10.244.0.0/16 goto {svc_chain} comment \"short-circuit pod traffic\"
add rule ip netlab {ext} fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"
add rule ip netlab {ext} fib saddr type local goto {svc_chain} comment \"short-circuit local traffic\"
add rule ip netlab {ext} goto {local}
"
                ),
                // Slot 0: both endpoints; slot 1: the one on this node.
                &format!(
                    "add element ip netlab cluster-ips {{ 10.0.0.10 }}
add element ip netlab hairpin-endpoints {{ 10.244.1.2 . 10.244.1.2 }}
add element ip netlab hairpin-endpoints {{ 10.244.2.2 . 10.244.2.2 }}
add element ip netlab service-endpoints-tcp-0 {{ 0-32767 : 10.244.1.2 . 8080 }}
add element ip netlab service-endpoints-tcp-0 {{ 32768-65535 : 10.244.2.2 . 8080 }}
add element ip netlab service-endpoints-tcp-0 {{ 65536-131071 : 10.244.1.2 . 8080 }}
add element ip netlab service-ips {{ 10.0.0.10 . tcp . 80 : goto {svc_chain} }}
add element ip netlab service-ips {{ 203.0.113.10 . tcp . 80 : goto {ext} }}
add element ip netlab service-nodeports {{ tcp . 30080 : goto {ext} }}
"
                ),
            ),
        );
    }

    #[test]
    fn local_policy_without_a_local_endpoint_drops_external_traffic() {
        let mut s = svc("far", "10.0.0.13", vec![ep("10.244.2.2", "node-2")]);
        s.ports[0].node_port = Some(30083);
        s.external_traffic_local = true;
        let svc_chain = "service-f5107cf6-default/far/tcp/http";
        let ext = "external-f5107cf6-default/far/tcp/http";
        let local = "local-f5107cf6-default/far/tcp/http";
        let r = ruleset(&node(), &[s]);
        let got = r.render();
        // Pods and the node itself still reach the remote endpoint...
        assert!(
            got.contains(&format!(
                "add rule ip netlab {ext} ip saddr 10.244.0.0/16 goto {svc_chain}"
            )),
            "{got}"
        );
        assert!(
            got.contains(
                "add element ip netlab service-endpoints-tcp-0 { 0-65535 : 10.244.2.2 . 8080 }\n"
            ),
            "{got}"
        );
        // ...but this node's slot holds nothing, and the filter drops what
        // falls through.
        assert!(
            got.contains(&format!(
                "add rule ip netlab {local} meta l4proto tcp dnat ip to numgen random mod 65536 offset 65536 map @service-endpoints-tcp-0\n"
            )),
            "{got}"
        );
        assert!(!got.contains("service-endpoints-tcp-0 { 65536-"), "{got}");
        assert!(
            got.ends_with(&format!(
                "add element ip netlab service-nodeports {{ tcp . 30083 : goto {ext} }}
add element ip netlab no-local-endpoint-nodeports {{ tcp . 30083 }}
"
            )),
            "{got}"
        );
    }

    #[test]
    fn udp_and_sctp_ports_get_their_protocol_everywhere() {
        let mut s = svc("dns", "10.0.0.53", vec![ep("10.244.1.2", "node-1")]);
        s.ports[0].protocol = Protocol::Udp;
        s.ports[0].name = String::new();
        s.ports[0].port = 53;
        let mut sctp = s.ports[0].clone();
        sctp.protocol = Protocol::Sctp;
        s.ports.push(sctp);
        let got = ruleset(&node(), &[s]).render();
        assert!(
            got.contains(
                "-default/dns/udp/53 meta l4proto udp dnat ip to numgen random mod 65536 map @service-endpoints-udp-0\n"
            ),
            "{got}"
        );
        assert!(
            got.contains(
                "-default/dns/sctp/53 meta l4proto sctp dnat ip to numgen random mod 65536 offset 65536 map @service-endpoints-sctp-0\n"
            ),
            "{got}"
        );
        assert!(
            got.contains("service-ips { 10.0.0.53 . udp . 53 : goto service-"),
            "{got}"
        );
        assert!(
            got.contains("service-ips { 10.0.0.53 . sctp . 53 : goto service-"),
            "{got}"
        );
        // One hairpin pair for the endpoint of both ports.
        assert_eq!(got.matches("hairpin-endpoints { 10.244.1.2").count(), 1);
    }

    #[test]
    fn endpoints_share_the_slot_evenly() {
        let eps = ["10.244.1.2", "10.244.1.3", "10.244.2.2"];
        let s = svc(
            "three",
            "10.0.0.14",
            eps.iter().map(|ip| ep(ip, "node-1")).collect(),
        );
        let got = ruleset(&node(), &[s]).render();
        assert!(
            got.contains(
                "add element ip netlab service-endpoints-tcp-0 { 0-21844 : 10.244.1.2 . 8080 }
add element ip netlab service-endpoints-tcp-0 { 21845-43689 : 10.244.1.3 . 8080 }
add element ip netlab service-endpoints-tcp-0 { 43690-65535 : 10.244.2.2 . 8080 }
"
            ),
            "{got}"
        );
    }

    #[test]
    fn slots_are_kept_freed_and_reused() {
        let mut slots = Slots::default();
        assert_eq!(slots.get("a"), Some(0));
        assert_eq!(slots.get("b"), Some(1));
        assert_eq!(slots.get("a"), Some(0));
        slots.release("a");
        assert_eq!(slots.get("c"), Some(0));
        assert_eq!(slots.get("d"), Some(2));
        assert!(!slots.assign("e", 1), "b has it");
        assert!(slots.assign("e", 7));
        assert!(slots.assign("e", 7));
        assert!(!slots.assign("e", 8));
        assert!(!slots.assign("f", SLOTS as u16), "out of range");
        assert_eq!(slots.get("g"), Some(3));
        // The last interval ends below u32::MAX.
        assert_eq!(
            SLOTS as u64 * u64::from(BUCKETS) - 1,
            u64::from(u32::MAX) - 65536
        );
    }

    #[test]
    fn without_a_free_slot_a_port_falls_back_to_endpoint_chains() {
        let mut slots = Slots::default();
        for i in 0..SLOTS {
            assert!(slots.assign(&format!("x{i}"), i as u16));
        }
        let p = service(&node(), &web(), &mut slots);
        assert!(p.slots.is_empty());
        let chains: Vec<&str> = p.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            chains,
            [
                "endpoint-955667af-default/web/tcp/http__10.244.1.2/8080",
                "endpoint-001d018c-default/web/tcp/http__10.244.2.2/8080",
                "service-95253a1d-default/web/tcp/http",
            ]
        );
        // A Local port that gets one slot of its two gives it back.
        slots.release("x5");
        let mut s = web();
        s.ports[0].node_port = Some(30080);
        s.external_traffic_local = true;
        let p = service(&node(), &s, &mut slots);
        assert!(p.slots.is_empty());
        assert!(!slots.has("default/web/tcp/http"));
        assert_eq!(slots.get("y"), Some(5));
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = web();
        let b = svc("empty", "10.0.0.11", vec![]);
        assert_eq!(
            ruleset(&node(), &[a.clone(), b.clone()]),
            ruleset(&node(), &[b, a])
        );
    }

    #[test]
    fn conflicting_claims_keep_the_first_and_warn() {
        let a = web();
        let mut b = svc("web2", "10.0.0.10", vec![ep("10.244.1.9", "node-1")]);
        b.ports[0].node_port = Some(30080);
        let mut c = svc("web3", "10.0.0.30", vec![ep("10.244.1.9", "node-1")]);
        c.ports[0].node_port = Some(30080);
        // Without endpoints, its claim would go to another map: still a conflict.
        let mut d = svc("web4", "10.0.0.10", vec![]);
        d.external_ips = vec!["10.0.0.30".parse().unwrap()];
        let r = ruleset(&node(), &[a, b, c, d]);
        assert_eq!(
            r.warnings,
            [
                "service port default/web2/tcp/http: 10.0.0.10:80 is already used by another service",
                "service port default/web3/tcp/http: node port tcp/30080 is already used by another service",
                "service port default/web4/tcp/http: 10.0.0.10:80 is already used by another service",
                "service port default/web4/tcp/http: external IP 10.0.0.30:80 is already used by another service",
            ]
        );
        let claims = r
            .elements
            .iter()
            .filter(|e| e.key == "10.0.0.10 . tcp . 80")
            .count();
        assert_eq!(claims, 1);
    }

    #[test]
    fn odd_names_are_sanitized_and_long_ones_cut() {
        assert_eq!(
            object_name("service", "ns/a b:c/tcp/x"),
            format!(
                "service-{}-ns/a_b_c/tcp/x",
                &hex::encode(Sha256::digest(b"ns/a b:c/tcp/x"))[..8]
            )
        );
        let long = object_name("endpoint", &"x".repeat(400));
        assert_eq!(long.len(), NAME_MAX);
        // An endpoint's affinity set, from its chain's name, long or not.
        for readable in ["default/sticky/tcp/80__10.244.1.3/80", &"y".repeat(400)] {
            assert_eq!(
                affinity_set_of(&object_name("endpoint", readable)),
                Some(object_name("affinity", readable))
            );
        }
        assert_eq!(affinity_set_of("service-x"), None);
    }

    /// 1000 services of 2 endpoints (the third octet counts services).
    fn many(n: u32) -> Vec<Service> {
        (0..n)
            .map(|i| {
                let (hi, lo) = (i / 250, i % 250 + 1);
                svc(
                    &format!("svc-{i}"),
                    &format!("10.0.{hi}.{lo}"),
                    vec![
                        ep(&format!("10.244.1.{}", i % 250 + 2), "node-1"),
                        ep(&format!("10.244.2.{}", i % 250 + 2), "node-2"),
                    ],
                )
            })
            .collect()
    }

    /// Tables of 1000 services before and after a change, numbered as a
    /// proxier numbers them: each port keeps its slot.
    fn before_after(change: impl FnOnce(&mut Vec<Service>)) -> (Ruleset, Ruleset, Slots) {
        let mut slots = Slots::default();
        let mut services = many(1000);
        let old = ruleset_with(&node(), &services, &mut slots);
        change(&mut services);
        let new = ruleset_with(&node(), &services, &mut slots);
        (old, new, slots)
    }

    /// `<map> { <interval>`: an interval of the slot of service `svc-<i>`.
    fn buckets(slots: &mut Slots, i: u32, first: u32, last: u32) -> String {
        let slot = slots.get(&format!("default/svc-{i}/tcp/http")).unwrap();
        let (map, offset) = endpoints_map(Protocol::Tcp, slot);
        format!("{} {{ {}-{}", map.name, offset + first, offset + last)
    }

    #[test]
    fn adding_one_endpoint_to_one_of_1000_services_changes_elements_only() {
        let (old, new, mut slots) =
            before_after(|s| s[500].ports[0].endpoints.push(ep("10.244.3.99", "node-2")));
        let t = diff(&old, &new);
        let mut b = |first, last| buckets(&mut slots, 500, first, last);
        assert_eq!(
            t.text(),
            format!(
                "delete element ip netlab {} }}
delete element ip netlab {} }}
add element ip netlab hairpin-endpoints {{ 10.244.3.99 . 10.244.3.99 }}
add element ip netlab {} : 10.244.1.2 . 8080 }}
add element ip netlab {} : 10.244.2.2 . 8080 }}
add element ip netlab {} : 10.244.3.99 . 8080 }}
",
                b(0, 32767),
                b(32768, 65535),
                b(0, 21844),
                b(21845, 43689),
                b(43690, 65535),
            )
        );
        assert_eq!(t.commands(), 6);
        assert_eq!(t.changes.chains_added + t.changes.chains_rewritten, 0);
    }

    #[test]
    fn losing_and_regaining_endpoints_changes_elements_only() {
        let (old, new, mut slots) = before_after(|s| s[7].ports[0].endpoints.clear());
        let t = diff(&old, &new);
        // The hairpin pairs stay: other services have the same endpoints.
        assert_eq!(
            t.text(),
            format!(
                "delete element ip netlab {} }}
delete element ip netlab {} }}
add element ip netlab no-endpoint-services {{ 10.0.0.8 . tcp . 80 }}
",
                buckets(&mut slots, 7, 0, 32767),
                buckets(&mut slots, 7, 32768, 65535),
            )
        );
        let t = diff(&new, &old);
        assert_eq!(
            t.text(),
            format!(
                "delete element ip netlab no-endpoint-services {{ 10.0.0.8 . tcp . 80 }}
add element ip netlab {} : 10.244.1.9 . 8080 }}
add element ip netlab {} : 10.244.2.9 . 8080 }}
",
                buckets(&mut slots, 7, 0, 32767),
                buckets(&mut slots, 7, 32768, 65535),
            )
        );
    }

    #[test]
    fn deleting_a_service_removes_exactly_its_objects() {
        let (old, new, mut slots) = before_after(|s| {
            s.remove(3);
        });
        let t = diff(&old, &new);
        let c = object_name("service", "default/svc-3/tcp/http");
        assert_eq!(
            t.text(),
            format!(
                "delete element ip netlab cluster-ips {{ 10.0.0.4 }}
delete element ip netlab {} }}
delete element ip netlab {} }}
delete element ip netlab service-ips {{ 10.0.0.4 . tcp . 80 }}
flush chain ip netlab {c}
delete chain ip netlab {c}
",
                buckets(&mut slots, 3, 0, 32767),
                buckets(&mut slots, 3, 32768, 65535),
            )
        );
    }

    #[test]
    fn a_fresh_ruleset_numbers_slots_in_order() {
        // Without kept slots, removing a service renumbers the ones after it.
        let mut services = many(3);
        let before = ruleset(&node(), &services);
        services.remove(0);
        let after = ruleset(&node(), &services);
        let t = diff(&before, &after).text();
        assert!(t.contains("flush chain ip netlab service-"), "{t}");
        assert!(t.contains(" offset 65536 map"), "{t}");
    }
}

#[cfg(test)]
mod host_port_tests {
    use super::*;

    fn hp(pod: &str, ip: &str, proto: Protocol, port: u16, host_ip: Option<&str>) -> HostPort {
        HostPort {
            protocol: proto,
            host_port: port,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            pod: pod.into(),
            pod_ip: ip.parse().unwrap(),
            container_port: 80,
        }
    }

    fn node(host_ports: Vec<HostPort>) -> Node {
        Node {
            name: "node-1".into(),
            node_ips: vec![
                "172.18.0.2".parse().unwrap(),
                "203.0.113.2".parse().unwrap(),
            ],
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            host_ports,
            partitioned: vec![],
        }
    }

    /// The lines of `r` that differ from the table without hostPorts.
    fn added(r: &Ruleset) -> String {
        let plain = base(&node(vec![])).render();
        let plain: HashSet<&str> = plain.lines().collect();
        let got = r.render();
        got.lines()
            .filter(|l| !plain.contains(l))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn a_partition_drops_both_ways_after_the_services_dnat() {
        let mut n = node(vec![]);
        n.partitioned = vec![
            "172.18.0.3/32".parse().unwrap(),
            "10.244.2.0/24".parse().unwrap(),
        ];
        let got = added(&base(&n));
        for want in [
            "add chain ip netlab partition-in { type filter hook prerouting priority 0 ; }",
            "add chain ip netlab partition-out { type filter hook output priority 0 ; }",
            "ip saddr 172.18.0.3 drop",
            "ip daddr 172.18.0.3 drop",
            "ip saddr 10.244.2.0/24 drop",
            "ip daddr 10.244.2.0/24 drop",
        ] {
            assert!(got.contains(want), "{want:?} in:\n{got}");
        }
        assert_eq!(got.matches(" drop").count(), 8, "{got}");
        assert!(added(&base(&node(vec![]))).is_empty());
    }

    #[test]
    fn host_ports_dnat_the_node_addresses_to_the_pod() {
        let r = base(&node(vec![
            hp(
                "default/dns",
                "10.244.1.3",
                Protocol::Udp,
                53,
                Some("203.0.113.2"),
            ),
            hp("default/web", "10.244.1.2", Protocol::Tcp, 8080, None),
        ]));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let golden = r#"add map ip netlab hostports { type ipv4_addr . inet_proto . inet_service : verdict ; comment "pods' hostPorts: node address . protocol . hostPort" ; }
add chain ip netlab hostports
add rule ip netlab hostports ip daddr . meta l4proto . th dport vmap @hostports
add chain ip netlab hostport-c4224c6e-default/web/tcp/8080
add rule ip netlab hostport-c4224c6e-default/web/tcp/8080 ip saddr 10.244.1.2 jump mark-for-masquerade
add rule ip netlab hostport-c4224c6e-default/web/tcp/8080 dnat to 10.244.1.2:80
add chain ip netlab hostport-7aaf7134-default/dns/udp/53
add rule ip netlab hostport-7aaf7134-default/dns/udp/53 ip saddr 10.244.1.3 jump mark-for-masquerade
add rule ip netlab hostport-7aaf7134-default/dns/udp/53 dnat to 10.244.1.3:80
add rule ip netlab nat-prerouting jump hostports
add rule ip netlab nat-output jump hostports
add element ip netlab hostports { 172.18.0.2 . tcp . 8080 : goto hostport-c4224c6e-default/web/tcp/8080 }
add element ip netlab hostports { 203.0.113.2 . tcp . 8080 : goto hostport-c4224c6e-default/web/tcp/8080 }
add element ip netlab hostports { 203.0.113.2 . udp . 53 : goto hostport-7aaf7134-default/dns/udp/53 }
"#;
        let got = added(&r);
        for (i, (g, e)) in got.lines().zip(golden.lines()).enumerate() {
            assert_eq!(g, e, "line {} differs; added lines:\n{got}", i + 1);
        }
        assert_eq!(got, golden);
        // Before the services, in both NAT base chains.
        for hook in ["nat-prerouting", "nat-output"] {
            let c = r.chains.iter().find(|c| c.name == hook).unwrap();
            let rules: Vec<String> = c.rules.iter().map(|r| r.to_string()).collect();
            assert_eq!(rules, ["jump hostports", "jump services"], "{hook}");
        }
    }

    #[test]
    fn a_taken_host_port_warns_and_a_foreign_host_ip_publishes_nothing() {
        let r = base(&node(vec![
            hp("default/a", "10.244.1.2", Protocol::Tcp, 8080, None),
            hp(
                "default/b",
                "10.244.1.3",
                Protocol::Tcp,
                8080,
                Some("203.0.113.2"),
            ),
            hp(
                "default/c",
                "10.244.1.4",
                Protocol::Tcp,
                9090,
                Some("192.0.2.9"),
            ),
        ]));
        assert_eq!(
            r.warnings,
            ["pod default/b: hostPort 203.0.113.2:8080/tcp is already used by another pod on node node-1"]
        );
        let got = added(&r);
        assert!(
            !got.contains("default/b") && !got.contains("default/c"),
            "{got}"
        );
        assert_eq!(
            got.matches("add element ip netlab hostports").count(),
            2,
            "{got}"
        );
        // No hostPorts: nothing of them in the table.
        assert!(!base(&node(vec![])).render().contains("hostport"));
    }
}

/// `netlab trace`'s chains: a base chain at prerouting and one at output
/// (filter, priority -500: before conntrack and NAT) that set `meta
/// nftrace` on the flow from `ip` and source port `sport` only. Added for
/// one probe and deleted after it.
pub fn trace_chains(ip: Ipv4Addr, sport: u16) -> Vec<Chain> {
    let rule = Rule::new(vec![
        Stmt::Ip {
            field: IpField::Saddr,
            neq: false,
            net: Ipv4Net::new(ip, 32).expect("a /32"),
        },
        Stmt::ThSport(sport),
        Stmt::NftraceOn,
    ]);
    [(HookPoint::Prerouting, "pre"), (HookPoint::Output, "out")]
        .into_iter()
        .map(|(hook, at)| Chain {
            name: format!("trace-{ip}-{sport}-{at}"),
            hook: Some(Hook {
                kind: ChainType::Filter,
                hook,
                priority: -500,
            }),
            rules: vec![rule.clone()],
        })
        .collect()
}
