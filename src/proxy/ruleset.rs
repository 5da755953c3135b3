//! The contents of one node's `ip netlab` table as data, and the two ways
//! of turning it into one atomic transaction: the whole table (first
//! sync), or only the difference to what was applied before (every later
//! sync).
//!
//! A transaction is a list of [`Op`]s. The kernel receives it as one
//! nf_tables netlink batch (`netlink/`); its [`Transaction::text`] is the
//! same transaction in nft's syntax, which is what `nft -f` would take,
//! what a person reads, and what the golden tests compare (kube-proxy's
//! nftables tests do the same).
//!
//! This file knows which objects exist, what references what, and in
//! which order the kernel accepts changes; what a rule says is `rule.rs`'s
//! business, and which rules a service needs is `rules.rs`'s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::model::Protocol;
use super::rule::{Rule, Verdict};

/// The table every node gets, in its own network namespace.
pub const TABLE: &str = "netlab";
/// Its family: IPv4 only, like the lab.
pub const FAMILY: &str = "ip";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    Set,
    /// A verdict map.
    Map,
    /// An interval map from a `numgen random mod <modulus> offset <o>`
    /// result to an endpoint address and port of protocol `proto`
    /// (`service-endpoints-tcp`): `typeof numgen random mod <modulus> : ip
    /// daddr . tcp dport ; flags interval`. Its key is given by the typeof,
    /// not by [`Set::key`]. (One per protocol: nft 1.0.6 refuses a rule
    /// `meta l4proto udp dnat ... map @m` whose map it read from the kernel
    /// when the map's typeof says `tcp dport`, or `th dport`.)
    Buckets {
        modulus: u32,
        proto: Protocol,
    },
    /// A set of address ranges (`type ipv4_addr ; flags interval`), its
    /// elements [`KeyPart::IpRange`]s that neither overlap nor touch.
    Ranges,
}

impl SetKind {
    pub fn keyword(self) -> &'static str {
        match self {
            SetKind::Set | SetKind::Ranges => "set",
            SetKind::Map | SetKind::Buckets { .. } => "map",
        }
    }
}

/// The nft data types netlab's set keys are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    Ipv4Addr,
    InetProto,
    InetService,
}

impl KeyType {
    pub fn nft(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::InetProto => "inet_proto",
            KeyType::InetService => "inet_service",
        }
    }
}

/// A named set or verdict map, e.g. `service-ips`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Set {
    pub kind: SetKind,
    pub name: String,
    /// One type, or several for a concatenation (`ipv4_addr . inet_proto`).
    pub key: Vec<KeyType>,
    /// `flags dynamic,timeout ; timeout <n>s`: rules add elements, which
    /// expire after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Set {
    /// What goes between the braces of `add map ... { }`, e.g.
    /// `type ipv4_addr . inet_proto . inet_service : verdict ;`.
    pub fn spec(&self) -> String {
        let mut s = String::new();
        if let SetKind::Buckets { modulus, proto } = self.kind {
            // nft has no type name for numgen's plain integer: typeof.
            s.push_str(&format!(
                "typeof numgen random mod {modulus} : ip daddr . {proto} dport ; flags interval ;"
            ));
        } else {
            s.push_str("type ");
            for (i, k) in self.key.iter().enumerate() {
                if i > 0 {
                    s.push_str(" . ");
                }
                s.push_str(k.nft());
            }
            if self.kind == SetKind::Map {
                s.push_str(" : verdict");
            }
            s.push_str(" ;");
            if self.kind == SetKind::Ranges {
                s.push_str(" flags interval ;");
            }
        }
        if let Some(t) = self.timeout {
            s.push_str(&format!(" flags dynamic,timeout ; timeout {t}s ;"));
        }
        if let Some(c) = &self.comment {
            s.push_str(&format!(" comment \"{c}\" ;"));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    Nat,
    Filter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPoint {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// What makes a chain a base chain: `type nat hook prerouting priority -100 ;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hook {
    #[serde(rename = "type")]
    pub kind: ChainType,
    pub hook: HookPoint,
    pub priority: i32,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ChainType::Nat => "nat",
            ChainType::Filter => "filter",
        };
        let hook = match self.hook {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        };
        write!(f, "type {kind} hook {hook} priority {} ;", self.priority)
    }
}

/// A chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    /// Base chains only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

/// One part of an element's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyPart {
    Ip(Ipv4Addr),
    Proto(Protocol),
    Port(u16),
    /// An interval of a [`SetKind::Buckets`] map, both ends included
    /// (`131072-163839`). The end must be below `u32::MAX`: the kernel
    /// marks the end of an interval with an element at `end + 1`.
    Range(u32, u32),
    /// An element of a [`SetKind::Ranges`] set: the first and the last
    /// address, both included (one address is a range of one).
    IpRange(Ipv4Addr, Ipv4Addr),
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // As nft lists them: an address, a prefix, or `first-last`.
            KeyPart::IpRange(a, b) if a == b => write!(f, "{a}"),
            KeyPart::IpRange(a, b) => {
                let (a32, b32) = (u32::from(*a), u32::from(*b));
                let size = u64::from(b32 - a32) + 1;
                if size.is_power_of_two() && u64::from(a32) % size == 0 {
                    write!(f, "{a}/{}", 32 - size.trailing_zeros())
                } else {
                    write!(f, "{a}-{b}")
                }
            }
            KeyPart::Ip(ip) => write!(f, "{ip}"),
            KeyPart::Proto(p) => write!(f, "{p}"),
            KeyPart::Port(p) => write!(f, "{p}"),
            KeyPart::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// An element's key, e.g. `10.0.0.10 . tcp . 80`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(pub Vec<KeyPart>);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Compare with nft's spelling, as tests like to.
impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        *other == self.to_string().as_str()
    }
}

/// What a map element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Verdict maps: `goto service-...`.
    Verdict(Verdict),
    /// [`SetKind::Buckets`] maps: the endpoint, `10.244.1.2 . 8080`.
    Endpoint(Ipv4Addr, u16),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Verdict(v) => write!(f, "{v}"),
            Value::Endpoint(ip, port) => write!(f, "{ip} . {port}"),
        }
    }
}

/// One element of a named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Element {
    pub set: String,
    pub key: Key,
    /// For maps; None for plain sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Everything in the table.
///
/// Order matters for [`Ruleset::render`]: a chain comes after every chain
/// its rules jump to, so the rendered text is valid top to bottom. [`diff`]
/// only relies on names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ruleset {
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
    pub elements: Vec<Element>,
    /// Conflicts found while generating (two services claiming the same
    /// address and port, ...): the first claim won, the others were left
    /// out. Not part of the table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a transaction changes, by kind of object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub chains_added: usize,
    /// Flushed and refilled (rules changed, or a set they use was replaced).
    pub chains_rewritten: usize,
    pub chains_deleted: usize,
    pub sets_added: usize,
    pub sets_deleted: usize,
    pub elements_added: usize,
    pub elements_deleted: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// One command of a transaction, borrowing the objects it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    AddTable,
    DeleteTable,
    AddSet(&'a Set),
    DeleteSet(&'a Set),
    /// Add the chain (not its rules) unless it exists.
    AddChain(&'a Chain),
    /// Add the chain (not its rules); fail if it exists.
    CreateChain(&'a Chain),
    FlushChain(&'a str),
    DeleteChain(&'a str),
    /// Append a rule to a chain.
    AddRule(&'a str, &'a Rule),
    AddElement(&'a Element),
    /// Delete by key (the value is ignored).
    DeleteElement(&'a Element),
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_in(f, TABLE)
    }
}

impl Op<'_> {
    /// The command in nft's syntax, on table `table` (of [`FAMILY`]).
    fn write_in(&self, f: &mut fmt::Formatter<'_>, table: &str) -> fmt::Result {
        let t = format_args!("{FAMILY} {table}");
        match self {
            Op::AddTable => write!(f, "add table {t}"),
            Op::DeleteTable => write!(f, "delete table {t}"),
            Op::AddSet(s) => write!(
                f,
                "add {} {t} {} {{ {} }}",
                s.kind.keyword(),
                s.name,
                s.spec()
            ),
            Op::DeleteSet(s) => write!(f, "delete {} {t} {}", s.kind.keyword(), s.name),
            Op::AddChain(c) | Op::CreateChain(c) => {
                let verb = if matches!(self, Op::AddChain(_)) {
                    "add"
                } else {
                    "create"
                };
                match &c.hook {
                    Some(h) => write!(f, "{verb} chain {t} {} {{ {h} }}", c.name),
                    None => write!(f, "{verb} chain {t} {}", c.name),
                }
            }
            Op::FlushChain(c) => write!(f, "flush chain {t} {c}"),
            Op::DeleteChain(c) => write!(f, "delete chain {t} {c}"),
            Op::AddRule(c, r) => write!(f, "add rule {t} {c} {r}"),
            Op::AddElement(e) => match &e.value {
                Some(v) => write!(f, "add element {t} {} {{ {} : {v} }}", e.set, e.key),
                None => write!(f, "add element {t} {} {{ {} }}", e.set, e.key),
            },
            Op::DeleteElement(e) => write!(f, "delete element {t} {} {{ {} }}", e.set, e.key),
        }
    }
}

/// One atomic transaction, on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction<'a> {
    pub ops: Vec<Op<'a>>,
    pub changes: Changes,
    /// The table's name ([`TABLE`] unless [`Transaction::in_table`] said
    /// otherwise: the network policies have a table of their own).
    pub table: &'static str,
}

impl Default for Transaction<'_> {
    fn default() -> Self {
        Transaction::from_ops(Vec::new())
    }
}

impl<'a> Transaction<'a> {
    pub fn from_ops(ops: Vec<Op<'a>>) -> Transaction<'a> {
        Transaction {
            ops,
            changes: Changes::default(),
            table: TABLE,
        }
    }

    /// The same commands, on table `table` of the same family.
    pub fn in_table(mut self, table: &'static str) -> Transaction<'a> {
        self.table = table;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of commands.
    pub fn commands(&self) -> usize {
        self.ops.len()
    }

    /// Command `i` in nft's syntax, on the transaction's table.
    pub fn command(&self, i: usize) -> impl fmt::Display + '_ {
        struct In<'x>(&'x Op<'x>, &'x str);
        impl fmt::Display for In<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_in(f, self.1)
            }
        }
        In(&self.ops[i], self.table)
    }

    /// The transaction as `nft -f` input, one command per line.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for i in 0..self.ops.len() {
            let _ = writeln!(s, "{}", self.command(i));
        }
        s
    }
}

impl Ruleset {
    /// The whole table as `add` commands: what `nft -f` needs to create it
    /// from nothing. The golden tests compare this text.
    pub fn render(&self) -> String {
        self.render_in(TABLE)
    }

    /// [`Self::render`] for a table named `table`.
    pub fn render_in(&self, table: &'static str) -> String {
        let mut t = Transaction::from_ops(vec![Op::AddTable]).in_table(table);
        self.add_all(&mut t);
        t.text()
    }

    fn add_all<'a>(&'a self, t: &mut Transaction<'a>) {
        t.ops.extend(self.sets.iter().map(Op::AddSet));
        for c in &self.chains {
            t.ops.push(Op::AddChain(c));
            t.ops
                .extend(c.rules.iter().map(|r| Op::AddRule(&c.name, r)));
        }
        t.ops.extend(self.elements.iter().map(Op::AddElement));
    }

    /// The first sync: replace whatever table is there (left over from an
    /// earlier run whose state was lost, or none at all) with this one, in
    /// one atomic step. `add` before `delete` makes the delete succeed
    /// whether or not the table existed.
    pub fn create_transaction(&self) -> Transaction<'_> {
        let mut t = Transaction::from_ops(vec![Op::AddTable, Op::DeleteTable, Op::AddTable]);
        self.add_all(&mut t);
        t.changes = Changes {
            chains_added: self.chains.len(),
            sets_added: self.sets.len(),
            elements_added: self.elements.len(),
            ..Changes::default()
        };
        t
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// Append `other`'s objects (a service's) to this ruleset's.
    pub fn extend(&mut self, other: &Ruleset) {
        self.sets.extend(other.sets.iter().cloned());
        self.chains.extend(other.chains.iter().cloned());
        self.elements.extend(other.elements.iter().cloned());
        self.warnings.extend(other.warnings.iter().cloned());
    }
}

/// The transaction removing the table (and everything in it).
pub fn delete_transaction() -> Transaction<'static> {
    Transaction::from_ops(vec![Op::AddTable, Op::DeleteTable])
}

/// The one transaction that turns the applied table `old` into `new`,
/// touching only what differs. Empty if nothing does.
///
/// The order of the commands is what the kernel needs inside one batch:
/// nothing may be deleted while something still refers to it, and nothing
/// may be referred to before it is added. A chain's use count drops as soon
/// as the rule or map element pointing at it is deleted earlier in the same
/// batch (kernels ≥ 6.2; before that, kube-proxy has to delete stale chains
/// in a later sync):
///
/// 1. delete elements that went away or changed (they may point at chains
///    about to be deleted);
/// 2. create new chains; flush chains whose rules changed, chains about to be
///    deleted, and chains using a set about to be deleted or replaced;
/// 3. delete, then add, sets (a set whose spec changed, e.g. an affinity
///    timeout, cannot be altered in place);
/// 4. add the rules of every new or flushed chain;
/// 5. delete chains that went away;
/// 6. add new and changed elements (they may point at chains from step 2).
///
/// `old` and `new` may also be parts of tables (the objects of a few
/// services), as long as nothing outside them changes.
pub fn diff<'a>(old: &'a Ruleset, new: &'a Ruleset) -> Transaction<'a> {
    let mut ops: Vec<Op<'a>> = Vec::new();
    let mut changes = Changes::default();

    let old_sets: FastMap<&str, &Set> = index(&old.sets, |s| s.name.as_str());
    let new_sets: FastMap<&str, &Set> = index(&new.sets, |s| s.name.as_str());
    // Sets that must go: gone from `new`, or changed (deleted and re-added).
    let doomed_sets: FastSet<&str> = old
        .sets
        .iter()
        .filter(|s| new_sets.get(s.name.as_str()) != Some(s))
        .map(|s| s.name.as_str())
        .collect();

    let old_chains: FastMap<&str, &Chain> = index(&old.chains, |c| c.name.as_str());
    let new_chains: FastMap<&str, &Chain> = index(&new.chains, |c| c.name.as_str());

    let old_elems: FastMap<(&str, &Key), &Element> = index(&old.elements, elem_key);
    let new_elems: FastMap<(&str, &Key), &Element> = index(&new.elements, elem_key);

    // 1. Elements that go away or change value. Elements of doomed sets go
    //    with their set.
    for e in &old.elements {
        if doomed_sets.contains(e.set.as_str()) {
            continue;
        }
        if new_elems.get(&elem_key(e)).map(|n| &n.value) != Some(&e.value) {
            ops.push(Op::DeleteElement(e));
            changes.elements_deleted += 1;
        }
    }

    // 2. New chains, and chains to flush.
    let uses_doomed_set = |c: &Chain| {
        !doomed_sets.is_empty()
            && c.rules
                .iter()
                .any(|r| r.sets().any(|s| doomed_sets.contains(s)))
    };
    // Chains whose declaration itself changed (a base chain's hook or
    // priority): deleted and added again.
    let mut redeclared: FastSet<&str> = FastSet::default();
    // Chains (present in `new`) that get their rules (re)written.
    let mut refill: FastSet<&str> = FastSet::default();
    for c in &new.chains {
        match old_chains.get(c.name.as_str()) {
            None => {
                ops.push(Op::CreateChain(c));
                refill.insert(&c.name);
                changes.chains_added += 1;
            }
            Some(o) => {
                if o.hook != c.hook {
                    redeclared.insert(&c.name);
                }
                if o.hook != c.hook || o.rules != c.rules || uses_doomed_set(o) {
                    ops.push(Op::FlushChain(&c.name));
                    refill.insert(&c.name);
                    changes.chains_rewritten += 1;
                }
            }
        }
    }
    let gone: Vec<&Chain> = old
        .chains
        .iter()
        .filter(|c| !new_chains.contains_key(c.name.as_str()))
        .collect();
    for c in &gone {
        if !c.rules.is_empty() {
            ops.push(Op::FlushChain(&c.name));
        }
    }
    for c in new
        .chains
        .iter()
        .filter(|c| redeclared.contains(c.name.as_str()))
    {
        ops.push(Op::DeleteChain(&c.name));
        ops.push(Op::CreateChain(c));
    }

    // 3. Sets.
    for s in &old.sets {
        if doomed_sets.contains(s.name.as_str()) {
            ops.push(Op::DeleteSet(s));
            changes.sets_deleted += 1;
        }
    }
    for s in &new.sets {
        if old_sets.get(s.name.as_str()) != Some(&s) {
            ops.push(Op::AddSet(s));
            changes.sets_added += 1;
        }
    }

    // 4. Rules.
    for c in &new.chains {
        if refill.contains(c.name.as_str()) {
            ops.extend(c.rules.iter().map(|r| Op::AddRule(&c.name, r)));
        }
    }

    // 5. Chains that went away.
    for c in &gone {
        ops.push(Op::DeleteChain(&c.name));
        changes.chains_deleted += 1;
    }

    // 6. New and changed elements, and all elements of re-created sets.
    //    (A set neither side declares is one outside the compared parts:
    //    it stays.)
    for e in &new.elements {
        let recreated = doomed_sets.contains(e.set.as_str())
            || (!old_sets.contains_key(e.set.as_str()) && new_sets.contains_key(e.set.as_str()));
        if recreated || old_elems.get(&elem_key(e)).map(|o| &o.value) != Some(&e.value) {
            ops.push(Op::AddElement(e));
            changes.elements_added += 1;
        }
    }

    Transaction {
        ops,
        changes,
        table: TABLE,
    }
}

fn elem_key(e: &Element) -> (&str, &Key) {
    (e.set.as_str(), &e.key)
}

/// HashMap with rustc's Fx hash: the keys are our own object names (no
/// hostile input to defend against with SipHash), and hashing 100 000 of
/// them is most of a diff's cost at 10 000 services.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

fn index<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> FastMap<K, &'a T> {
    let mut map = FastMap::with_capacity_and_hasher(items.len(), Default::default());
    for item in items {
        map.insert(key(item), item);
    }
    map
}

#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }

    fn write_u8(&mut self, b: u8) {
        self.add(b as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::rule::{then, IpField, Stmt};

    fn goto(c: &str) -> Rule {
        Rule::new(vec![Stmt::Verdict(Verdict::Goto(c.into()))])
    }

    fn chain(name: &str, rules: Vec<Rule>) -> Chain {
        Chain {
            name: name.into(),
            hook: None,
            rules,
        }
    }

    fn elem(set: &str, ip: &str, value: Option<Verdict>) -> Element {
        Element {
            set: set.into(),
            key: Key(vec![KeyPart::Ip(ip.parse().unwrap())]),
            value: value.map(Value::Verdict),
        }
    }

    fn map(name: &str) -> Set {
        Set {
            kind: SetKind::Map,
            name: name.into(),
            key: vec![KeyType::Ipv4Addr],
            timeout: None,
            comment: None,
        }
    }

    fn affinity(name: &str, timeout: u32) -> Set {
        Set {
            kind: SetKind::Set,
            name: name.into(),
            key: vec![KeyType::Ipv4Addr],
            timeout: Some(timeout),
            comment: None,
        }
    }

    fn base() -> Ruleset {
        Ruleset {
            sets: vec![map("m"), affinity("aff-a", 10)],
            chains: vec![
                chain(
                    "ep-a",
                    vec![
                        Rule::new(vec![Stmt::UpdateSaddr("aff-a".into())]),
                        Rule::new(vec![Stmt::Dnat {
                            ip: "1.1.1.1".parse().unwrap(),
                            port: None,
                        }]),
                    ],
                ),
                chain(
                    "svc",
                    vec![
                        then(
                            vec![Stmt::IpInSet {
                                field: IpField::Saddr,
                                set: "aff-a".into(),
                            }],
                            Verdict::Goto("ep-a".into()),
                        ),
                        goto("ep-a"),
                    ],
                ),
            ],
            elements: vec![elem("m", "9.9.9.9", Some(Verdict::Goto("svc".into())))],
            warnings: vec![],
        }
    }

    #[test]
    fn identical_rulesets_diff_to_nothing() {
        let (a, b) = (base(), base());
        let t = diff(&a, &b);
        assert!(t.is_empty(), "{}", t.text());
        assert!(t.changes.is_empty());
    }

    #[test]
    fn render_puts_everything_in_dependency_order() {
        assert_eq!(
            base().render(),
            "add table ip netlab
add map ip netlab m { type ipv4_addr : verdict ; }
add set ip netlab aff-a { type ipv4_addr ; flags dynamic,timeout ; timeout 10s ; }
add chain ip netlab ep-a
add rule ip netlab ep-a update @aff-a { ip saddr }
add rule ip netlab ep-a dnat to 1.1.1.1
add chain ip netlab svc
add rule ip netlab svc ip saddr @aff-a goto ep-a
add rule ip netlab svc goto ep-a
add element ip netlab m { 9.9.9.9 : goto svc }
"
        );
    }

    #[test]
    fn removing_everything_deletes_references_before_targets() {
        let old = base();
        let new = Ruleset {
            sets: vec![map("m")],
            ..Ruleset::default()
        };
        assert_eq!(
            diff(&old, &new).text(),
            "delete element ip netlab m { 9.9.9.9 }
flush chain ip netlab ep-a
flush chain ip netlab svc
delete set ip netlab aff-a
delete chain ip netlab ep-a
delete chain ip netlab svc
"
        );
    }

    #[test]
    fn a_changed_set_is_recreated_and_its_users_rewritten() {
        let old = base();
        let mut new = base();
        new.sets[1] = affinity("aff-a", 20);
        let t = diff(&old, &new);
        assert_eq!(
            t.text(),
            "flush chain ip netlab ep-a
flush chain ip netlab svc
delete set ip netlab aff-a
add set ip netlab aff-a { type ipv4_addr ; flags dynamic,timeout ; timeout 20s ; }
add rule ip netlab ep-a update @aff-a { ip saddr }
add rule ip netlab ep-a dnat to 1.1.1.1
add rule ip netlab svc ip saddr @aff-a goto ep-a
add rule ip netlab svc goto ep-a
"
        );
        assert_eq!(t.changes.chains_rewritten, 2);
        assert_eq!(t.changes.sets_deleted, 1);
        assert_eq!(t.changes.sets_added, 1);
    }

    #[test]
    fn a_changed_element_value_is_deleted_then_added() {
        let old = base();
        let mut new = base();
        new.chains.push(chain("ext", vec![goto("svc")]));
        new.elements[0].value = Some(Value::Verdict(Verdict::Goto("ext".into())));
        assert_eq!(
            diff(&old, &new).text(),
            "delete element ip netlab m { 9.9.9.9 }
create chain ip netlab ext
add rule ip netlab ext goto svc
add element ip netlab m { 9.9.9.9 : goto ext }
"
        );
    }

    #[test]
    fn a_changed_hook_redeclares_the_base_chain() {
        let mut old = base();
        old.chains.push(Chain {
            name: "nat-output".into(),
            hook: Some(Hook {
                kind: ChainType::Nat,
                hook: HookPoint::Output,
                priority: -100,
            }),
            rules: vec![Rule::new(vec![Stmt::Verdict(Verdict::Jump("svc".into()))])],
        });
        let mut new = old.clone();
        new.chains[2].hook.as_mut().unwrap().priority = -90;
        assert_eq!(
            diff(&old, &new).text(),
            "flush chain ip netlab nat-output
delete chain ip netlab nat-output
create chain ip netlab nat-output { type nat hook output priority -90 ; }
add rule ip netlab nat-output jump svc
"
        );
    }

    #[test]
    fn create_transaction_replaces_any_old_table() {
        let r = base();
        let t = r.create_transaction();
        assert!(t
            .text()
            .starts_with("add table ip netlab\ndelete table ip netlab\nadd table ip netlab\n"));
        assert_eq!(t.changes.chains_added, 2);
        assert_eq!(t.commands(), 12);
    }

    #[test]
    fn state_round_trips_through_json() {
        let r = base();
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Ruleset>(&s).unwrap(), r);
    }
}
