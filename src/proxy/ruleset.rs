//! The contents of one node's `ip netlab` table as data, and the two ways
//! of turning it into an nft transaction: the whole table (first sync), or
//! only the difference to what was applied before (every later sync).
//!
//! Transactions are nft's text syntax, fed to `nft -f -`, rather than its
//! JSON (`nft -j`): the kernel receives the same netlink batch either way,
//! but the text is what `nft list table ip netlab` prints and what a person
//! pastes into `nft -f`, so the golden tests read like the ruleset they pin
//! down (kube-proxy's nftables tests do the same), it is a third of the
//! size, and it needs no extra crate.
//!
//! Rules are kept as opaque strings: the generator (`rules.rs`) is the only
//! place that knows nft's rule grammar; this file only knows which objects
//! exist, what references what, and in which order the kernel accepts
//! changes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// The table every node gets, in its own network namespace.
pub const TABLE: &str = "netlab";
/// Its family: IPv4 only, like the lab.
pub const FAMILY: &str = "ip";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    Set,
    Map,
}

impl SetKind {
    fn keyword(self) -> &'static str {
        match self {
            SetKind::Set => "set",
            SetKind::Map => "map",
        }
    }
}

/// A named set or map, e.g. `service-ips`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Set {
    pub kind: SetKind,
    pub name: String,
    /// What goes between the braces of `add map ... { }`, e.g.
    /// `type ipv4_addr . inet_proto . inet_service : verdict ;`.
    pub spec: String,
}

/// A chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    /// For base chains: what goes between the braces of `add chain ... { }`,
    /// e.g. `type nat hook prerouting priority -100 ;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

/// One element of a named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Element {
    pub set: String,
    /// e.g. `10.0.0.10 . tcp . 80`
    pub key: String,
    /// For maps, e.g. `goto service-...`; None for plain sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Everything in the table.
///
/// Order matters for [`Ruleset::render`]: a chain comes after every chain
/// its rules jump to, so the rendered text is valid top to bottom. [`diff`]
/// only relies on names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// One atomic nft transaction (`nft -f` input, one command per line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub text: String,
    pub changes: Changes,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Number of nft commands.
    pub fn commands(&self) -> usize {
        self.text.lines().filter(|l| !l.trim().is_empty()).count()
    }
}

impl Ruleset {
    /// The whole table as `add` commands: what `nft -f` needs to create it
    /// from nothing. The golden tests compare this text.
    pub fn render(&self) -> String {
        let mut w = Writer::default();
        w.line(format_args!("add table {FAMILY} {TABLE}"));
        for s in &self.sets {
            w.add_set(s);
        }
        for c in &self.chains {
            w.add_chain(c);
            w.add_rules(c);
        }
        for e in &self.elements {
            w.add_element(e);
        }
        w.0
    }

    /// The first sync: replace whatever table is there (left over from an
    /// earlier run whose state was lost, or none at all) with this one, in
    /// one atomic step. `add` before `delete` makes the delete succeed
    /// whether or not the table existed.
    pub fn create_transaction(&self) -> Transaction {
        let mut text = format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n");
        text.push_str(&self.render());
        Transaction {
            text,
            changes: Changes {
                chains_added: self.chains.len(),
                sets_added: self.sets.len(),
                elements_added: self.elements.len(),
                ..Changes::default()
            },
        }
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// The transaction removing the table (and everything in it).
pub fn delete_transaction() -> Transaction {
    Transaction {
        text: format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"),
        changes: Changes::default(),
    }
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
pub fn diff(old: &Ruleset, new: &Ruleset) -> Transaction {
    let mut w = Writer::default();
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

    let old_elems: FastMap<(&str, &str), &Element> = index(&old.elements, elem_key);
    let new_elems: FastMap<(&str, &str), &Element> = index(&new.elements, elem_key);

    // 1. Elements that go away or change value. Elements of doomed sets go
    //    with their set.
    for e in &old.elements {
        if doomed_sets.contains(e.set.as_str()) {
            continue;
        }
        if new_elems.get(&elem_key(e)).map(|n| &n.value) != Some(&e.value) {
            w.line(format_args!(
                "delete element {FAMILY} {TABLE} {} {{ {} }}",
                e.set, e.key
            ));
            changes.elements_deleted += 1;
        }
    }

    // 2. New chains, and chains to flush.
    let uses_doomed_set = |c: &Chain| {
        !doomed_sets.is_empty()
            && c.rules.iter().any(|r| {
                r.split_whitespace()
                    .any(|t| t.strip_prefix('@').is_some_and(|s| doomed_sets.contains(s)))
            })
    };
    // Chains whose declaration itself changed (a base chain's hook or
    // priority): deleted and added again.
    let mut redeclared: FastSet<&str> = FastSet::default();
    // Chains (present in `new`) that get their rules (re)written.
    let mut refill: FastSet<&str> = FastSet::default();
    for c in &new.chains {
        match old_chains.get(c.name.as_str()) {
            None => {
                w.create_chain(c);
                refill.insert(&c.name);
                changes.chains_added += 1;
            }
            Some(o) => {
                if o.hook != c.hook {
                    redeclared.insert(&c.name);
                }
                if o.hook != c.hook || o.rules != c.rules || uses_doomed_set(o) {
                    w.line(format_args!("flush chain {FAMILY} {TABLE} {}", c.name));
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
            w.line(format_args!("flush chain {FAMILY} {TABLE} {}", c.name));
        }
    }
    for c in new
        .chains
        .iter()
        .filter(|c| redeclared.contains(c.name.as_str()))
    {
        w.line(format_args!("delete chain {FAMILY} {TABLE} {}", c.name));
        w.create_chain(c);
    }

    // 3. Sets.
    for s in &old.sets {
        if doomed_sets.contains(s.name.as_str()) {
            w.line(format_args!(
                "delete {} {FAMILY} {TABLE} {}",
                s.kind.keyword(),
                s.name
            ));
            changes.sets_deleted += 1;
        }
    }
    for s in &new.sets {
        if old_sets.get(s.name.as_str()) != Some(&s) {
            w.add_set(s);
            changes.sets_added += 1;
        }
    }

    // 4. Rules.
    for c in &new.chains {
        if refill.contains(c.name.as_str()) {
            w.add_rules(c);
        }
    }

    // 5. Chains that went away.
    for c in &gone {
        w.line(format_args!("delete chain {FAMILY} {TABLE} {}", c.name));
        changes.chains_deleted += 1;
    }

    // 6. New and changed elements, and all elements of re-created sets.
    for e in &new.elements {
        let recreated =
            doomed_sets.contains(e.set.as_str()) || !old_sets.contains_key(e.set.as_str());
        if recreated || old_elems.get(&elem_key(e)).map(|o| &o.value) != Some(&e.value) {
            w.add_element(e);
            changes.elements_added += 1;
        }
    }

    Transaction { text: w.0, changes }
}

fn elem_key(e: &Element) -> (&str, &str) {
    (e.set.as_str(), e.key.as_str())
}

/// HashMap with rustc's Fx hash: the keys are our own object names (no
/// hostile input to defend against with SipHash), and hashing 100 000 of
/// them is most of a diff's cost at 10 000 services.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

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
struct FxHasher(u64);

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

/// Appends nft commands, one per line.
#[derive(Default)]
struct Writer(String);

impl Writer {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }

    fn add_set(&mut self, s: &Set) {
        self.line(format_args!(
            "add {} {FAMILY} {TABLE} {} {{ {} }}",
            s.kind.keyword(),
            s.name,
            s.spec
        ));
    }

    fn add_chain(&mut self, c: &Chain) {
        match &c.hook {
            Some(h) => self.line(format_args!(
                "add chain {FAMILY} {TABLE} {} {{ {h} }}",
                c.name
            )),
            None => self.line(format_args!("add chain {FAMILY} {TABLE} {}", c.name)),
        }
    }

    /// `create` fails if the chain exists. In a diff that means the table
    /// holds a chain the applied state does not know of (the state is
    /// stale): failing, so that the caller rewrites the table, beats
    /// appending rules to whatever that chain holds.
    fn create_chain(&mut self, c: &Chain) {
        match &c.hook {
            Some(h) => self.line(format_args!(
                "create chain {FAMILY} {TABLE} {} {{ {h} }}",
                c.name
            )),
            None => self.line(format_args!("create chain {FAMILY} {TABLE} {}", c.name)),
        }
    }

    fn add_rules(&mut self, c: &Chain) {
        for r in &c.rules {
            self.line(format_args!("add rule {FAMILY} {TABLE} {} {r}", c.name));
        }
    }

    fn add_element(&mut self, e: &Element) {
        match &e.value {
            Some(v) => self.line(format_args!(
                "add element {FAMILY} {TABLE} {} {{ {} : {v} }}",
                e.set, e.key
            )),
            None => self.line(format_args!(
                "add element {FAMILY} {TABLE} {} {{ {} }}",
                e.set, e.key
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str, rules: &[&str]) -> Chain {
        Chain {
            name: name.into(),
            hook: None,
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn elem(set: &str, key: &str, value: Option<&str>) -> Element {
        Element {
            set: set.into(),
            key: key.into(),
            value: value.map(String::from),
        }
    }

    fn map(name: &str) -> Set {
        Set {
            kind: SetKind::Map,
            name: name.into(),
            spec: "type ipv4_addr : verdict ;".into(),
        }
    }

    fn affinity(name: &str, timeout: u32) -> Set {
        Set {
            kind: SetKind::Set,
            name: name.into(),
            spec: format!("type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;"),
        }
    }

    fn base() -> Ruleset {
        Ruleset {
            sets: vec![map("m"), affinity("aff-a", 10)],
            chains: vec![
                chain("ep-a", &["update @aff-a { ip saddr }", "dnat to 1.1.1.1"]),
                chain("svc", &["ip saddr @aff-a goto ep-a", "goto ep-a"]),
            ],
            elements: vec![elem("m", "9.9.9.9", Some("goto svc"))],
            warnings: vec![],
        }
    }

    #[test]
    fn identical_rulesets_diff_to_nothing() {
        let t = diff(&base(), &base());
        assert!(t.is_empty(), "{}", t.text);
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
            diff(&old, &new).text,
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
            t.text,
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
        new.chains.push(chain("ext", &["goto svc"]));
        new.elements[0].value = Some("goto ext".into());
        assert_eq!(
            diff(&old, &new).text,
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
            hook: Some("type nat hook output priority -100 ;".into()),
            rules: vec!["jump svc".into()],
        });
        let mut new = old.clone();
        new.chains[2].hook = Some("type nat hook output priority -90 ;".into());
        assert_eq!(
            diff(&old, &new).text,
            "flush chain ip netlab nat-output
delete chain ip netlab nat-output
create chain ip netlab nat-output { type nat hook output priority -90 ; }
add rule ip netlab nat-output jump svc
"
        );
    }

    #[test]
    fn create_transaction_replaces_any_old_table() {
        let t = base().create_transaction();
        assert!(t
            .text
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
