//! The service proxy: kube-proxy's nftables mode, one `ip netlab` table per
//! node, in the node's network namespace.
//!
//! * [`model`]: the input (services, endpoints, the node), pure data;
//! * [`rules`]: `ruleset(node, services)`, the desired table, pure;
//! * [`ruleset`]: the table as data, rendered whole or diffed into one
//!   atomic transaction of only what changed;
//! * [`rule`]: one rule as typed statements (printed as nft text);
//! * [`netlink`]: the only code that speaks nf_tables netlink;
//! * here: [`Proxier`], which remembers per node what was applied last (in
//!   memory and in a JSON state file, so that a later netlab process diffs
//!   instead of rewriting) and applies the difference. It also keeps what
//!   services share: each service port's slot in the endpoints maps
//!   ([`rules::Slots`], kept for the port's life so that its rules never
//!   change), and how many services hold each shared element or map
//!   ([`Piece::shared`], [`Piece::shared_sets`]), so that a change to one
//!   service still diffs that service alone.
//!
//! An endpoint change is a few set elements (see `rules.rs` for why), and
//! costs ~5 ms at 10 000 services: under 1 ms in the kernel, the rest is
//! comparing the 10 000 service models with what was applied.
//!
//! Outside the table, services need three things of the node namespace:
//! * `net.bridge.bridge-nf-call-iptables=1`, set here on every full sync
//!   (see [`Proxier::sync`]);
//! * hairpin mode on each pod's bridge port, for a pod reaching itself
//!   through a service (the network layer sets it);
//! * a route covering the service CIDR (a real node has a default route).
//!   Without one, the node's own connections to a cluster IP fail in
//!   routing (ENETUNREACH) before nat-output can DNAT them, and a pod's
//!   packet to a cluster IP without endpoints dies in routing (ICMP host
//!   unreachable) instead of reaching filter-forward's reject. Where it
//!   points does not matter much: every cluster IP is DNATed, rejected or
//!   dropped before it would leave.
//!
//! Established connections keep the endpoint conntrack chose for them when
//! rules change: removing an endpoint breaks no open TCP connection to the
//! others, but a UDP "connection" (same client address and port) keeps
//! going to the removed endpoint until its conntrack entry expires.
//! kube-proxy deletes those entries; netlab does not yet.

pub mod error;
pub mod model;
pub mod netlink;
pub mod policy;
pub mod rule;
pub mod rules;
pub mod ruleset;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::net::{sysctl, NetNs};

pub use error::ProxyError;
pub use model::{Endpoint, Node, Protocol, Service, ServicePort};
pub use rules::{ruleset, Piece};
pub use ruleset::{diff, Changes, Op, Ruleset, Transaction};

use rules::Slots;
use ruleset::{Element, FastMap, Key, Set};

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was (re)created, rather than diffed.
    pub full: bool,
    /// Commands sent to the kernel (0: nothing had changed).
    pub commands: usize,
    /// Services added, changed or removed since the last sync.
    pub services_changed: usize,
    pub changes: Changes,
    /// Generating the rules of the changed services (all on a full sync).
    pub generate_time: Duration,
    /// Computing the transaction.
    pub diff_time: Duration,
    /// Encoding it and the kernel applying it.
    pub apply_time: Duration,
    /// Writing the state file.
    pub persist_time: Duration,
}

/// A service's identity: (namespace, name).
pub type ServiceKey = (String, String);

/// One service as applied: its model and the objects generated from it.
///
/// Shared by the node proxiers of a process when equal: every node
/// generates the same piece for a service except for node-local parts
/// (NodePorts with `externalTrafficPolicy: Local`, hostPorts), and at
/// 10 000 services a node's own copy would cost about 30 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry(Arc<Generated>);

#[derive(Debug, PartialEq, Eq)]
struct Generated {
    service: Service,
    piece: Piece,
    /// [`state::hash_of`] the piece, recorded in the state file.
    hash: u64,
}

impl std::ops::Deref for Entry {
    type Target = Generated;
    fn deref(&self) -> &Generated {
        &self.0
    }
}

impl Entry {
    fn new(node: &Node, service: &Service, slots: &mut Slots) -> Entry {
        let piece = rules::service(node, service, slots);
        Entry(intern(Generated {
            hash: state::hash_of(&piece),
            service: service.clone(),
            piece,
        }))
    }

    fn saved<'a>(&'a self, k: &'a ServiceKey) -> state::SavedRef<'a> {
        (k, &self.service, self.hash, &self.piece.slots)
    }
}

/// The entry equal to `g` that a proxier of this process holds, or `g`.
fn intern(g: Generated) -> Arc<Generated> {
    struct Interned {
        by_hash: FastMap<u64, Weak<Generated>>,
        prune_at: usize,
    }
    static INTERNED: LazyLock<Mutex<Interned>> = LazyLock::new(|| {
        Mutex::new(Interned {
            by_hash: FastMap::default(),
            prune_at: 1024,
        })
    });
    let mut i = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(held) = i.by_hash.get(&g.hash).and_then(Weak::upgrade) {
        if *held == g {
            return held;
        }
    }
    let g = Arc::new(g);
    i.by_hash.insert(g.hash, Arc::downgrade(&g));
    if i.by_hash.len() >= i.prune_at {
        i.by_hash.retain(|_, w| w.strong_count() > 0);
        i.prune_at = (2 * i.by_hash.len()).max(1024);
    }
    g
}

/// Sum the counts of each object, in the order objects first appear;
/// leave out those whose counts cancel.
fn net_counts<T, K: std::hash::Hash + Eq>(
    counted: Vec<(&T, isize)>,
    key: impl Fn(&T) -> K,
) -> Vec<(isize, &T)> {
    let mut net: Vec<(isize, &T)> = Vec::new();
    let mut at: FastMap<K, usize> = FastMap::default();
    for (x, by) in counted {
        let i = *at.entry(key(x)).or_insert_with(|| {
            net.push((0, x));
            net.len() - 1
        });
        net[i].0 += by;
    }
    net.retain(|(d, _)| *d != 0);
    net
}

/// A shared element's identity: (set, key).
type SharedKey = (String, Key);

fn shared_key(e: &Element) -> SharedKey {
    (e.set.clone(), e.key.clone())
}

fn owner_hash(c: &rules::Claimed) -> u64 {
    state::hash_of(&c.owner_key())
}

/// What the table holds, per service.
#[derive(Debug, Clone)]
struct Applied {
    node: Node,
    base: Ruleset,
    services: BTreeMap<ServiceKey, Entry>,
    /// Which service has each element's owner key
    /// ([`rules::Claimed::owner_key`]), both as [`owner_hash`]es: 16 bytes
    /// an element instead of four strings. Two keys of one hash would only
    /// make [`Applied::fits`] say no, and the sync merge the whole table.
    owners: FastMap<u64, u64>,
    /// Of the last merge: 0 means every piece stands alone, and a change to
    /// a service is a change to its piece only.
    collisions: usize,
    warnings: Vec<String>,
    /// How many services hold each shared element ([`Piece::shared`]): it
    /// is in the table while that is above 0.
    shared: FastMap<SharedKey, usize>,
    /// The same for shared sets ([`Piece::shared_sets`]), by name.
    shared_sets: FastMap<String, usize>,
    /// The endpoints-map slots of the services' ports ([`Slots`]).
    slots: Slots,
}

impl Applied {
    fn new(
        node: Node,
        base: Ruleset,
        services: BTreeMap<ServiceKey, Entry>,
        slots: Slots,
    ) -> (Applied, Ruleset) {
        let assembly = rules::assemble_refs(&base, services.values().map(|e| &e.piece));
        let mut shared: FastMap<SharedKey, usize> = FastMap::default();
        for e in services.values().flat_map(|e| &e.piece.shared) {
            *shared.entry(shared_key(e)).or_default() += 1;
        }
        let mut shared_sets: FastMap<String, usize> = FastMap::default();
        for s in services.values().flat_map(|e| &e.piece.shared_sets) {
            *shared_sets.entry(s.name.clone()).or_default() += 1;
        }
        let mut a = Applied {
            node,
            base,
            services,
            owners: FastMap::default(),
            collisions: assembly.collisions,
            warnings: assembly.ruleset.warnings.clone(),
            shared,
            shared_sets,
            slots,
        };
        let keys: Vec<ServiceKey> = a.services.keys().cloned().collect();
        for k in keys {
            a.own(&k);
        }
        (a, assembly.ruleset)
    }

    fn own(&mut self, k: &ServiceKey) {
        if let Some(e) = self.services.get(k) {
            let owner = state::hash_of(k);
            for c in &e.piece.elements {
                self.owners.insert(owner_hash(c), owner);
            }
        }
    }

    fn disown(&mut self, k: &ServiceKey) {
        if let Some(e) = self.services.get(k) {
            let owner = state::hash_of(k);
            for c in &e.piece.elements {
                let ok = owner_hash(c);
                if self.owners.get(&ok) == Some(&owner) {
                    self.owners.remove(&ok);
                }
            }
        }
    }

    /// Count service `k`'s shared elements once more (`by` 1) or once less
    /// (-1), forgetting those no service holds any more.
    fn count_shared(&mut self, k: &ServiceKey, by: isize) {
        let Some(e) = self.services.get(k) else {
            return;
        };
        for el in &e.piece.shared {
            let key = shared_key(el);
            let n = self.shared.get(&key).copied().unwrap_or(0) as isize + by;
            if n > 0 {
                self.shared.insert(key, n as usize);
            } else {
                self.shared.remove(&key);
            }
        }
        for s in &e.piece.shared_sets {
            let n = self.shared_sets.get(&s.name).copied().unwrap_or(0) as isize + by;
            if n > 0 {
                self.shared_sets.insert(s.name.clone(), n as usize);
            } else {
                self.shared_sets.remove(&s.name);
            }
        }
    }

    /// Can `piece` replace service `k`'s piece by itself? Yes if nothing
    /// collided so far, the piece is clean, and its owner keys are free or
    /// already `k`'s.
    fn fits(&self, k: &ServiceKey, piece: &Piece) -> bool {
        let owner = state::hash_of(k);
        self.collisions == 0
            && piece.is_clean()
            && piece
                .elements
                .iter()
                .all(|c| self.owners.get(&owner_hash(c)).is_none_or(|o| *o == owner))
    }
}

/// The services a sync makes the table hold: all of them (in order, the
/// first of a name winning), or only those that may have changed.
enum Wanted<'a> {
    All(&'a BTreeMap<(&'a str, &'a str), &'a Service>),
    Only(Vec<&'a Service>),
}

/// One node's proxy: its namespace, its state file, and what was applied
/// there last (None: unknown, the next sync rewrites the whole table).
///
/// A sync compares each service with what was applied and regenerates and
/// diffs only the services that changed; the state file gets only their
/// records appended. So the cost of a sync follows the size of the change,
/// not the number of services.
#[derive(Debug)]
pub struct Proxier {
    netns: String,
    state_file: PathBuf,
    applied: Option<Applied>,
    /// The state file as this proxier last left it: if it looks different
    /// at the next sync, another process synced meanwhile, and we reload.
    stamp: Option<state::Stamp>,
    /// Records appended since the file was last written whole.
    appended: usize,
}

impl Proxier {
    /// A proxier for `node_netns` that remembers what it applied in
    /// `state_file`, starting from what an earlier process recorded there.
    /// A missing, unreadable or foreign file only means the next sync
    /// rewrites the whole table; other I/O errors are returned.
    pub fn load(node_netns: &str, state_file: &Path) -> Result<Proxier, ProxyError> {
        let mut p = Proxier {
            netns: node_netns.to_string(),
            state_file: state_file.to_path_buf(),
            applied: None,
            stamp: None,
            appended: 0,
        };
        p.reload()?;
        Ok(p)
    }

    fn reload(&mut self) -> Result<(), ProxyError> {
        let loaded = state::read(&self.netns, &self.state_file)?;
        self.stamp = state::Stamp::of(&self.state_file);
        self.appended = 0;
        self.applied = None;
        let Some(l) = loaded else {
            return Ok(());
        };
        // The rules the kernel holds are those of the recorded models, if
        // this netlab generates the same rules from them as the one that
        // applied them did.
        let base = rules::base(&l.node);
        let mut services = BTreeMap::new();
        let mut same = state::hash_of(&base) == l.base_hash;
        // Every recorded slot first, so that no service takes another's.
        let mut slots = Slots::default();
        for (name, slot) in l.services.iter().flat_map(|s| &s.slots) {
            same &= slots.assign(name, *slot);
        }
        for saved in l.services {
            let e = Entry::new(&l.node, &saved.service, &mut slots);
            same &= e.hash == saved.hash && e.piece.slots == saved.slots;
            services.insert(saved.key, e);
        }
        if same {
            self.applied = Some(Applied::new(l.node, base, services, slots).0);
        } else {
            tracing::warn!(file = %self.state_file.display(), netns = %self.netns,
                "the proxy state file's rules are not what this netlab generates; rewriting the table");
        }
        Ok(())
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The table as this proxier believes it is (None: unknown).
    pub fn applied(&self) -> Option<Ruleset> {
        let a = self.applied.as_ref()?;
        Some(rules::assemble_refs(&a.base, a.services.values().map(|e| &e.piece)).ruleset)
    }

    /// Make the node's table implement `services`: the whole table the
    /// first time, afterwards one transaction of only what changed (nothing
    /// at all if nothing did). If a diff is refused (the table was removed
    /// or changed behind our back, e.g. the namespace was re-created), the
    /// whole table is rewritten once. The state file is written after
    /// success.
    pub async fn sync(
        &mut self,
        node: &Node,
        services: &[Service],
    ) -> Result<SyncStats, ProxyError> {
        self.sync_only(node, services, None).await
    }

    /// [`Self::sync`], told that of `services` only those at the indices
    /// `changed` may differ from the last sync of this proxier (the others
    /// are as they were, and none was removed): they alone are compared,
    /// not every service (5 ms at 10 000 services). When the proxier does
    /// not know what it applied, it syncs everything.
    pub async fn sync_only(
        &mut self,
        node: &Node,
        services: &[Service],
        changed: Option<&[usize]>,
    ) -> Result<SyncStats, ProxyError> {
        let mut changed = changed;
        if self.stamp != state::Stamp::of(&self.state_file) {
            // Another process synced: what it applied is not what the
            // caller's hint is relative to.
            self.reload()?;
            changed = None;
        }
        let ns = self.open("opening")?;
        // The first of two services with the same name wins, as in [`ruleset`].
        let mut desired: BTreeMap<(&str, &str), &Service> = BTreeMap::new();
        let wanted = match changed {
            Some(only) => Wanted::Only(only.iter().filter_map(|i| services.get(*i)).collect()),
            None => {
                for s in services {
                    desired.entry((&s.namespace, &s.name)).or_insert(s);
                }
                Wanted::All(&desired)
            }
        };
        let start = Instant::now();
        let base = rules::base(node);
        let base_time = start.elapsed();
        if let Some(applied) = self.applied.take() {
            if applied.node == *node && applied.base == base {
                match self.sync_changes(&ns, applied, &wanted).await {
                    Ok(mut stats) => {
                        stats.generate_time += base_time;
                        return Ok(stats);
                    }
                    Err(e) => {
                        tracing::warn!(netns = %self.netns, error = %e,
                            "incremental proxy sync failed; rewriting the whole table");
                    }
                }
            }
        }
        if changed.is_some() {
            for s in services {
                desired.entry((&s.namespace, &s.name)).or_insert(s);
            }
        }
        self.sync_all(&ns, node, base, &desired).await
    }

    /// Apply the services that differ from `applied`.
    async fn sync_changes(
        &mut self,
        ns: &NetNs,
        mut applied: Applied,
        wanted: &Wanted<'_>,
    ) -> Result<SyncStats, ProxyError> {
        let mut stats = SyncStats::default();
        let start = Instant::now();
        // (key, new entry or None: deleted).
        let mut changed: Vec<(ServiceKey, Option<Entry>)> = Vec::new();
        match wanted {
            Wanted::Only(only) => {
                for svc in only {
                    let k = (svc.namespace.clone(), svc.name.clone());
                    let same = applied.services.get(&k).is_some_and(|e| e.service == **svc);
                    if !same && !changed.iter().any(|(c, _)| *c == k) {
                        let e = Entry::new(&applied.node, svc, &mut applied.slots);
                        changed.push((k, Some(e)));
                    }
                }
            }
            // Both sides are sorted by (namespace, name): walk them side by side.
            Wanted::All(desired) => {
                let mut old = applied.services.iter().peekable();
                let mut new = desired.iter().peekable();
                loop {
                    let order = match (old.peek(), new.peek()) {
                        (None, None) => break,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some((k, _)), Some((d, _))) => (k.0.as_str(), k.1.as_str()).cmp(d),
                    };
                    match order {
                        std::cmp::Ordering::Less => {
                            let (k, _) = old.next().expect("peeked");
                            changed.push((k.clone(), None));
                        }
                        std::cmp::Ordering::Greater => {
                            let (&(n, name), svc) = new.next().expect("peeked");
                            let k = (n.to_string(), name.to_string());
                            let e = Entry::new(&applied.node, svc, &mut applied.slots);
                            changed.push((k, Some(e)));
                        }
                        std::cmp::Ordering::Equal => {
                            let (k, e) = old.next().expect("peeked");
                            let (_, svc) = new.next().expect("peeked");
                            if e.service != **svc {
                                let e = Entry::new(&applied.node, svc, &mut applied.slots);
                                changed.push((k.clone(), Some(e)));
                            }
                        }
                    }
                }
            }
        }
        // Slots the changed services no longer use are free again, now that
        // every new one is taken (none is reused within this sync).
        for (k, new) in &changed {
            if let Some(old) = applied.services.get(k) {
                for (name, _) in &old.piece.slots {
                    let kept = new
                        .as_ref()
                        .is_some_and(|n| n.piece.slots.iter().any(|(o, _)| o == name));
                    if !kept {
                        applied.slots.release(name);
                    }
                }
            }
        }
        stats.generate_time = start.elapsed();
        stats.services_changed = changed.len();
        if changed.is_empty() {
            self.applied = Some(applied);
            return Ok(stats);
        }

        let start = Instant::now();
        let alone = changed.iter().all(|(k, new)| match new {
            Some(e) => applied.fits(k, &e.piece),
            None => applied.collisions == 0,
        });
        let (old_rs, new_rs, rewrite_state) = if alone {
            // Only the changed services' objects, old and new.
            let mut old = Ruleset::default();
            let mut new = Ruleset::default();
            // Shared elements: how many more or fewer services hold them
            // (in the order they appear, as the full table has them).
            let mut counted: Vec<(&Element, isize)> = Vec::new();
            let mut counted_sets: Vec<(&Set, isize)> = Vec::new();
            for (k, e) in &changed {
                if let Some(o) = applied.services.get(k) {
                    old.extend(&o.piece.to_ruleset());
                    counted.extend(o.piece.shared.iter().map(|el| (el, -1)));
                    counted_sets.extend(o.piece.shared_sets.iter().map(|s| (s, -1)));
                }
                if let Some(e) = e {
                    new.extend(&e.piece.to_ruleset());
                    counted.extend(e.piece.shared.iter().map(|el| (el, 1)));
                    counted_sets.extend(e.piece.shared_sets.iter().map(|s| (s, 1)));
                }
            }
            // A shared object goes into the old part if the table has it,
            // into the new part if it will: added, deleted, or left alone.
            for (d, el) in net_counts(counted, shared_key) {
                let before = applied.shared.get(&shared_key(el)).copied().unwrap_or(0);
                if before > 0 {
                    old.elements.push(el.clone());
                }
                if before as isize + d > 0 {
                    new.elements.push(el.clone());
                }
            }
            for (d, s) in net_counts(counted_sets, |s| s.name.clone()) {
                let before = applied.shared_sets.get(&s.name).copied().unwrap_or(0);
                if before > 0 {
                    old.sets.push(s.clone());
                }
                if before as isize + d > 0 {
                    new.sets.push(s.clone());
                }
            }
            (old, new, false)
        } else {
            // Services that collide: merge everything again.
            let old =
                rules::assemble_refs(&applied.base, applied.services.values().map(|e| &e.piece))
                    .ruleset;
            let mut services = applied.services.clone();
            for (k, e) in &changed {
                match e {
                    Some(e) => services.insert(k.clone(), e.clone()),
                    None => services.remove(k),
                };
            }
            let (next, new) = Applied::new(
                applied.node.clone(),
                applied.base.clone(),
                services,
                applied.slots.clone(),
            );
            if next.warnings != applied.warnings {
                for w in &next.warnings {
                    tracing::warn!(netns = %self.netns, "{w}");
                }
            }
            (old, new, true)
        };
        let tx = diff(&old_rs, &new_rs);
        stats.diff_time = start.elapsed();
        stats.commands = tx.commands();
        stats.changes = tx.changes;
        let start = Instant::now();
        netlink::apply_as(ns, "incremental sync", &tx).await?;
        stats.apply_time = start.elapsed();
        drop(tx);

        // The table now holds the new pieces.
        for (k, e) in &changed {
            applied.disown(k);
            applied.count_shared(k, -1);
            match e {
                Some(e) => {
                    applied.services.insert(k.clone(), e.clone());
                    applied.own(k);
                    applied.count_shared(k, 1);
                }
                None => {
                    applied.services.remove(k);
                }
            }
        }
        if rewrite_state {
            applied = Applied::new(applied.node, applied.base, applied.services, applied.slots).0;
        }
        let start = Instant::now();
        if rewrite_state || self.appended + changed.len() > applied.services.len().max(256) {
            self.applied = Some(applied);
            self.persist_all()?;
        } else {
            let records: Vec<(&ServiceKey, Option<state::SavedRef>)> = changed
                .iter()
                .map(|(k, e)| (k, e.as_ref().map(|e| e.saved(k))))
                .collect();
            let res = state::append(&self.state_file, &records);
            self.applied = Some(applied);
            res.map_err(|e| self.state_err("appending to", e))?;
            self.appended += changed.len();
            self.stamp = state::Stamp::of(&self.state_file);
        }
        stats.persist_time = start.elapsed();
        Ok(stats)
    }

    /// Replace the whole table.
    async fn sync_all(
        &mut self,
        ns: &NetNs,
        node: &Node,
        base: Ruleset,
        desired: &BTreeMap<(&str, &str), &Service>,
    ) -> Result<SyncStats, ProxyError> {
        let mut stats = SyncStats {
            full: true,
            services_changed: desired.len(),
            ..SyncStats::default()
        };
        // Pods of one node share the cni0 bridge. When a pod connects to a
        // service whose endpoint is another pod on the same bridge, the
        // endpoint's reply is *bridged* straight back to the client, never
        // reaching the node's IP layer, so conntrack never reverses the DNAT
        // and the client gets a reply from an address it did not talk to.
        // br_netfilter passes bridged IPv4 through the netfilter hooks,
        // where conntrack un-DNATs it.
        sysctl::set(ns, "net.bridge.bridge-nf-call-iptables", "1").map_err(|source| {
            ProxyError::Netns {
                op: "enabling br_netfilter (net.bridge.bridge-nf-call-iptables)",
                netns: self.netns.clone(),
                source,
            }
        })?;
        self.applied = None;
        let start = Instant::now();
        let mut slots = Slots::default();
        let services: BTreeMap<ServiceKey, Entry> = desired
            .iter()
            .map(|(&(n, name), s)| {
                let e = Entry::new(node, s, &mut slots);
                ((n.to_string(), name.to_string()), e)
            })
            .collect();
        let (applied, table) = Applied::new(node.clone(), base, services, slots);
        stats.generate_time = start.elapsed();
        for w in &table.warnings {
            tracing::warn!(netns = %self.netns, "{w}");
        }
        let start = Instant::now();
        let tx = table.create_transaction();
        stats.diff_time = start.elapsed();
        stats.commands = tx.commands();
        stats.changes = tx.changes;
        let start = Instant::now();
        netlink::apply_as(ns, "full sync", &tx).await?;
        stats.apply_time = start.elapsed();
        drop(tx);
        drop(table);
        self.applied = Some(applied);
        let start = Instant::now();
        self.persist_all()?;
        stats.persist_time = start.elapsed();
        Ok(stats)
    }

    /// Delete the node's table and forget the state (the file too).
    pub async fn remove(&mut self) -> Result<(), ProxyError> {
        remove(&self.netns).await?;
        self.applied = None;
        self.stamp = None;
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.state_err("removing", source)),
        }
    }

    fn open(&self, op: &'static str) -> Result<NetNs, ProxyError> {
        NetNs::open(&self.netns).map_err(|source| ProxyError::Netns {
            op,
            netns: self.netns.clone(),
            source,
        })
    }

    fn persist_all(&mut self) -> Result<(), ProxyError> {
        let Some(a) = &self.applied else {
            return Ok(());
        };
        let services: Vec<state::SavedRef> = a.services.iter().map(|(k, e)| e.saved(k)).collect();
        let base_hash = state::hash_of(&a.base);
        state::write(&self.state_file, &self.netns, &a.node, base_hash, &services)
            .map_err(|e| self.state_err("writing", e))?;
        self.appended = 0;
        self.stamp = state::Stamp::of(&self.state_file);
        Ok(())
    }

    fn state_err(&self, op: &'static str, source: std::io::Error) -> ProxyError {
        ProxyError::State {
            op,
            netns: self.netns.clone(),
            path: self.state_file.clone(),
            source,
        }
    }
}

/// Sync one node: load its state file, apply `services` (whole table the
/// first time, only the difference afterwards), update the state file.
pub async fn sync(
    node_netns: &str,
    state_file: &Path,
    node: &Node,
    services: &[Service],
) -> Result<SyncStats, ProxyError> {
    Proxier::load(node_netns, state_file)?
        .sync(node, services)
        .await
}

/// Delete the node's `ip netlab` table. Ok if it or the namespace is gone.
/// (Deleting the namespace removes the table too.)
pub async fn remove(node_netns: &str) -> Result<(), ProxyError> {
    let ns = match NetNs::open(node_netns) {
        Ok(ns) => ns,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(()),
        Err(source) => {
            return Err(ProxyError::Netns {
                op: "opening",
                netns: node_netns.to_string(),
                source,
            })
        }
    };
    let res = netlink::apply_as(&ns, "removing the table", &ruleset::delete_transaction()).await;
    netlink::forget(&ns);
    res
}
