//! The lab's object store: the one copy of its Kubernetes objects, kept
//! by the lab's process (its only writer) in memory and on disk.
//!
//! - On disk: a redb database (`/run/netlab/<lab>/store.redb`, 0600: it
//!   holds the Secrets), one row per object keyed `plural/namespace/name`,
//!   each with the revision that created it and the one that last changed
//!   it, plus the lab's config and the store's revision. A commit is one
//!   redb transaction, durable when it returns (an acknowledged write
//!   survives `kill -9` of the process), as etcd's is for kube-apiserver.
//! - A revision per change: every object a commit adds, changes or removes
//!   takes the next revision, which is its `metadata.resourceVersion`
//!   (as etcd's mod_revision is). A list's resourceVersion is the store's.
//! - In memory: the current state (an `Arc` readers share without a lock),
//!   the states a paged list handed out `continue` tokens for (pinned for
//!   a minute: holding every recent state kept old copies of everything
//!   the last commits changed, 60 MiB after the scale lab's `up`), and the
//!   log of recent changes that watches are served from; a watch from a
//!   revision older than the log gets `410 Gone`, as from kube-apiserver's
//!   watch cache.
//!
//! The controllers still edit a whole `ClusterState` and commit it. A
//! state's objects are shared between the states that hold them
//! ([`Collection`]): a copy is a pointer per object, and an edit copies
//! only the object it changes. So the store finds what changed by pointer
//! first (a collection or an object still shared with the last commit is
//! unchanged), then compares the others with the object they replace (as
//! typed values, else by the hash of their serialization), so that
//! unchanged objects keep their revision. A write costs what it changes,
//! not the size of the lab (at 1 000 pods and 10 000 Services a commit
//! took 300 ms and a copy 110 ms when the objects were copied; now 2 ms
//! and 0.2 ms).

use crate::cluster::{state, ClusterState, Collection};
use crate::lab::LabConfig;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The store's file in the lab's directory.
pub const FILE: &str = "store.redb";

/// `plural/namespace/name` → 16 bytes (create and mod revision, little
/// endian) then the object's JSON.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// `revision` → the store's revision; `lab` → the lab's config (JSON).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// How much of the change log is kept for watches (bytes of objects): a
/// few thousand changes, as kube-apiserver's watch cache keeps a bounded
/// window per resource. A watch from before it gets 410 Gone and lists
/// again, as clients do.
const LOG_BYTES: usize = 8 << 20;
/// How many past states are kept for paged lists, and how long.
const PAST_STATES: usize = 4;
const PAST_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops the pinned states older than [`PAST_FOR`] (oldest first).
fn expire(past: &mut VecDeque<(std::time::Instant, Arc<Snapshot>)>) {
    while past.front().is_some_and(|(at, _)| at.elapsed() > PAST_FOR) {
        past.pop_front();
    }
}

pub fn path(lab: &str) -> PathBuf {
    crate::paths::lab_dir(lab).join(FILE)
}

/// Whether the lab has a store (it is up, or half up).
pub fn exists(lab: &str) -> bool {
    path(lab).exists()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Db { path: String, message: String },
    #[error("{path}: object {key}: {source}")]
    Corrupt {
        path: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: no lab config in the store (a half-made lab: netlab down it)")]
    NoConfig { path: String },
}

/// What readers see: the state at a revision.
pub struct Snapshot {
    pub state: Arc<ClusterState>,
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch sends it: the object after (for a deletion: as
/// it last was), and before (for MODIFIED, so that a filtered watch can
/// tell an object that stopped matching).
pub struct Event {
    pub revision: u64,
    pub plural: &'static str,
    pub change: Change,
    pub object: Vec<u8>,
    pub before: Option<Vec<u8>>,
}

/// A watch asked for changes the log no longer holds.
#[derive(Debug)]
pub struct Expired {
    pub oldest: u64,
}

/// The revisions and content hash of one stored object.
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    created: u64,
    modified: u64,
}

struct Inner {
    db: Database,
    file: PathBuf,
    revision: u64,
    index: HashMap<String, Entry>,
    config_hash: u64,
    log: VecDeque<Arc<Event>>,
    log_bytes: usize,
    /// The highest revision no longer in the log: watches from before it
    /// are expired.
    compacted: u64,
    /// States pinned for paged lists ([`ObjectStore::pin`]), oldest first,
    /// with when.
    past: VecDeque<(std::time::Instant, Arc<Snapshot>)>,
}

/// The store of one lab (cheap to clone: a handle).
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Mutex<Inner>>,
    current: tokio::sync::watch::Sender<Arc<Snapshot>>,
}

#[derive(Serialize, Deserialize)]
struct LabRow {
    config: LabConfig,
    created: DateTime<Utc>,
}

/// Every collection of a `ClusterState`, by its resource's plural.
macro_rules! collections {
    ($m:ident, $st:expr $(, $arg:expr)*) => {{
        $m!($st, nodes, "nodes" $(, $arg)*);
        $m!($st, deployments, "deployments" $(, $arg)*);
        $m!($st, replica_sets, "replicasets" $(, $arg)*);
        $m!($st, pods, "pods" $(, $arg)*);
        $m!($st, services, "services" $(, $arg)*);
        $m!($st, endpoints, "endpoints" $(, $arg)*);
        $m!($st, endpoint_slices, "endpointslices" $(, $arg)*);
        $m!($st, events, "events" $(, $arg)*);
        $m!($st, secrets, "secrets" $(, $arg)*);
        $m!($st, config_maps, "configmaps" $(, $arg)*);
        $m!($st, service_accounts, "serviceaccounts" $(, $arg)*);
        $m!($st, roles, "roles" $(, $arg)*);
        $m!($st, role_bindings, "rolebindings" $(, $arg)*);
        $m!($st, cluster_roles, "clusterroles" $(, $arg)*);
        $m!($st, cluster_role_bindings, "clusterrolebindings" $(, $arg)*);
        $m!($st, network_policies, "networkpolicies" $(, $arg)*);
        $m!($st, namespaces, "namespaces" $(, $arg)*);
    }};
}

fn namespace_of<'a>(plural: &str, meta: &'a ObjectMeta) -> &'a str {
    if matches!(
        plural,
        "nodes" | "clusterroles" | "clusterrolebindings" | "namespaces"
    ) {
        ""
    } else {
        state::namespace(meta)
    }
}

/// The store's key of an object.
pub fn key(plural: &str, meta: &ObjectMeta) -> String {
    let ns = namespace_of(plural, meta);
    format!("{plural}/{ns}/{}", meta.name.as_deref().unwrap_or_default())
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn row(created: u64, modified: u64, object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + object.len());
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(object);
    out
}

fn unrow(bytes: &[u8]) -> Option<(u64, u64, &[u8])> {
    let created = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let modified = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((created, modified, &bytes[16..]))
}

/// An object's JSON without its resourceVersion (what a change is judged
/// by), and with it set to `rv`.
fn without_rv<T: Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>>(o: &mut T) -> Vec<u8> {
    let rv = o.metadata_mut().resource_version.take();
    let bytes = serde_json::to_vec(o).expect("objects serialize");
    o.metadata_mut().resource_version = rv;
    bytes
}

impl ObjectStore {
    /// A new store for a lab that is coming up, holding `st`.
    pub fn create(lab: &str, st: &mut ClusterState) -> Result<ObjectStore, StoreError> {
        ObjectStore::create_at(path(lab), st)
    }

    /// A new store in any file (benchmarks, tests).
    pub fn create_at(file: PathBuf, st: &mut ClusterState) -> Result<ObjectStore, StoreError> {
        let _ = std::fs::remove_file(&file);
        {
            // It holds the lab's Secrets: readable by root only.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| db_error(&file, e))?;
        }
        let db = open_db(&file)?;
        // Each object is stamped, serialized and written in turn, in one
        // transaction: a commit of the whole lab would hold every object's
        // JSON twice (to write, and as watch events no watch can ask for)
        // at once, and at 30 000 objects what it freed stayed scattered
        // in the heap among the objects it kept (90 MiB more resident).
        let err = |e: &dyn std::fmt::Display| db_error(&file, e);
        // Every object changes (its resourceVersion): a memo of the
        // endpoints refresh would keep a copy of each alive.
        st.endpoints_memo = Default::default();
        let mut index: HashMap<String, Entry> = HashMap::new();
        let mut revision = 0u64;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        {
            let mut objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
            macro_rules! put {
                ($st:expr, $field:ident, $plural:expr) => {
                    for i in 0..$st.$field.len() {
                        let k = key($plural, &$st.$field[i].metadata);
                        if index.contains_key(&k) {
                            tracing::warn!(key = %k, "store: two objects with one name; the second is not stored");
                            continue;
                        }
                        let o = &mut $st.$field[i];
                        let h = hash(&without_rv(o));
                        revision += 1;
                        o.metadata.resource_version = Some(revision.to_string());
                        let json = serde_json::to_vec(&*o).expect("objects serialize");
                        objects
                            .insert(k.as_str(), row(revision, revision, &json).as_slice())
                            .map_err(|e| err(&e))?;
                        let entry = Entry {
                            hash: h,
                            created: revision,
                            modified: revision,
                        };
                        index.insert(k, entry);
                    }
                };
            }
            collections!(put, st);
            let lab = serde_json::to_vec(&LabRow {
                config: st.config.clone(),
                created: st.created,
            })
            .expect("config serializes");
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            meta.insert("revision", revision.to_le_bytes().as_slice())
                .map_err(|e| err(&e))?;
            meta.insert("lab", lab.as_slice()).map_err(|e| err(&e))?;
            index.shrink_to_fit();
            let config_hash = hash(&lab);
            drop((objects, meta));
            txn.commit().map_err(|e| err(&e))?;
            // The lab's first state is where watches begin, as for a store
            // opened again: its creations are not history to replay.
            Ok(ObjectStore::begun(
                db,
                file,
                (st.clone(), revision, index, config_hash),
            ))
        }
    }

    /// The store of a lab that is up (the lab's process starting, or
    /// starting again after a crash).
    pub fn open(lab: &str) -> Result<ObjectStore, StoreError> {
        ObjectStore::open_at(path(lab))
    }

    /// The store in any file.
    pub fn open_at(file: PathBuf) -> Result<ObjectStore, StoreError> {
        let db = open_db(&file)?;
        let loaded = load(&db, &file)?;
        // A new process has no log: watches resume from now on.
        Ok(ObjectStore::begun(db, file, loaded))
    }

    /// A store holding `st` at `revision`, with no log before it.
    fn begun(db: Database, file: PathBuf, loaded: Loaded) -> ObjectStore {
        let (st, revision, index, config_hash) = loaded;
        let store = ObjectStore::from_parts(Inner {
            db,
            file,
            revision,
            index,
            config_hash,
            log: VecDeque::new(),
            log_bytes: 0,
            compacted: revision,
            past: VecDeque::new(),
        });
        store.publish(st, revision);
        store
    }

    fn from_parts(inner: Inner) -> ObjectStore {
        let empty = Arc::new(Snapshot {
            state: Arc::new(ClusterState::empty()),
            revision: 0,
        });
        ObjectStore {
            inner: Arc::new(Mutex::new(inner)),
            current: tokio::sync::watch::channel(empty).0,
        }
    }

    fn publish(&self, st: ClusterState, revision: u64) -> Arc<Snapshot> {
        let snap = Arc::new(Snapshot {
            state: Arc::new(st),
            revision,
        });
        self.current.send_replace(snap.clone());
        snap
    }

    /// The state now, with its revision.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// A copy of the state now, to edit and [`commit`](Self::commit).
    pub fn state(&self) -> ClusterState {
        (*self.snapshot().state).clone()
    }

    /// The state at a recent revision (for a paged list's next page).
    pub fn snapshot_at(&self, revision: u64) -> Option<Arc<Snapshot>> {
        let now = self.snapshot();
        if now.revision == revision {
            return Some(now);
        }
        let inner = self.inner.lock().expect("store lock");
        inner
            .past
            .iter()
            .find(|(_, s)| s.revision == revision)
            .map(|(_, s)| s.clone())
    }

    /// Keeps `snap` for a while: a paged list handed out a `continue`
    /// token for it, and its next page must come from the same state.
    pub fn pin(&self, snap: &Arc<Snapshot>) {
        let mut inner = self.inner.lock().expect("store lock");
        if inner.past.iter().any(|(_, s)| s.revision == snap.revision) {
            return;
        }
        inner
            .past
            .push_back((std::time::Instant::now(), snap.clone()));
        while inner.past.len() > PAST_STATES {
            inner.past.pop_front();
        }
        expire(&mut inner.past);
    }

    /// Lets go of the states pinned for paged lists longer than
    /// [`PAST_FOR`] ago. Commits do it too, but a quiet lab commits
    /// nothing: the lab's process calls this as it goes round. (A pinned
    /// state keeps every object that changed after it alive: the scale
    /// lab's process kept the pods, Endpoints and slices of its first
    /// moments, pinned by `netlab up`'s own lists, for good.)
    pub fn expire_pins(&self) {
        expire(&mut self.inner.lock().expect("store lock").past);
    }

    /// Wakes at each commit that changed something.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    /// The changes after `revision`, oldest first.
    pub fn events_after(&self, revision: u64) -> Result<Vec<Arc<Event>>, Expired> {
        let inner = self.inner.lock().expect("store lock");
        if revision < inner.compacted {
            return Err(Expired {
                oldest: inner.compacted,
            });
        }
        let from = inner.log.partition_point(|e| e.revision <= revision);
        Ok(inner.log.range(from..).cloned().collect())
    }

    /// Makes `st` the lab's state: every object that differs from the
    /// stored one gets the next revision (set in `st` too), and all of it
    /// is written in one durable transaction. Returns the store's revision.
    pub fn commit(&self, st: &mut ClusterState) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        self.commit_locked(&mut inner, st)
    }

    /// A change made on the latest state (read and committed under the
    /// store's lock, so no other commit comes between): what an API write
    /// is. `f`'s error leaves the store as it was.
    pub fn update<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut ClusterState) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut inner = self.inner.lock().expect("store lock");
        let mut st = (*self.snapshot().state).clone();
        let out = f(&mut st)?;
        self.commit_locked(&mut inner, &mut st)?;
        Ok(out)
    }

    /// A working copy of the state now, for a control loop (see [`Working`]).
    pub fn begin(&self) -> Working {
        let base = self.snapshot().state.clone();
        Working {
            st: (*base).clone(),
            base,
            others: false,
        }
    }

    /// Commits a working copy over what others committed since it began
    /// (or was last committed): see [`merge`]. Afterwards `w` holds the
    /// state as committed.
    pub fn commit_working(&self, w: &mut Working) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        let now = self.snapshot().state.clone();
        if !Arc::ptr_eq(&now, &w.base) {
            w.others = true;
            let ours = std::mem::replace(&mut w.st, ClusterState::empty());
            w.st = merge(&w.base, ours, &now);
        }
        let revision = self.commit_locked(&mut inner, &mut w.st)?;
        w.base = self.snapshot().state.clone();
        Ok(revision)
    }

    fn commit_locked(&self, inner: &mut Inner, st: &mut ClusterState) -> Result<u64, StoreError> {
        let mut revision = inner.revision;
        let mut writes: Vec<Write> = Vec::new();
        let mut gone: Vec<(String, &'static str)> = Vec::new();
        // The state last committed: a collection holding the very same
        // objects is unchanged, and so is each object it still shares.
        let prev = self.snapshot();
        macro_rules! diff {
            ($st:expr, $field:ident, $plural:expr) => {
                if !$st.$field.same(&prev.state.$field) {
                    diff_list(
                        $plural,
                        &prev.state.$field,
                        &mut $st.$field,
                        &inner.index,
                        &mut revision,
                        &mut writes,
                        &mut gone,
                    );
                }
            };
        }
        collections!(diff, st);
        let lab = serde_json::to_vec(&LabRow {
            config: st.config.clone(),
            created: st.created,
        })
        .expect("config serializes");
        let config_hash = hash(&lab);
        if writes.is_empty() && gone.is_empty() && config_hash == inner.config_hash {
            return Ok(inner.revision);
        }
        let file = inner.file.clone();
        let err = |e: &dyn std::fmt::Display| db_error(&file, e);
        // A batch bigger than the log (a lab's `up`: every object) keeps
        // only its tail there: the events before it, and the whole log
        // before them, would be dropped at once, so they are not made.
        let keep_from = {
            let (mut i, mut bytes) = (writes.len(), 0);
            while i > 0 && bytes + writes[i - 1].4.len() <= LOG_BYTES {
                bytes += writes[i - 1].4.len();
                i -= 1;
            }
            i
        };
        let txn = inner.db.begin_write().map_err(|e| err(&e))?;
        let mut events = Vec::with_capacity(writes.len() - keep_from + gone.len());
        {
            let mut objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
            for (n, (k, plural, change, entry, json)) in writes.iter().enumerate() {
                if n < keep_from {
                    objects
                        .insert(
                            k.as_str(),
                            row(entry.created, entry.modified, json).as_slice(),
                        )
                        .map_err(|e| err(&e))?;
                    continue;
                }
                let before = match change {
                    Change::Modified => objects
                        .get(k.as_str())
                        .map_err(|e| err(&e))?
                        .and_then(|v| unrow(v.value()).map(|(_, _, o)| o.to_vec())),
                    _ => None,
                };
                objects
                    .insert(
                        k.as_str(),
                        row(entry.created, entry.modified, json).as_slice(),
                    )
                    .map_err(|e| err(&e))?;
                events.push(Event {
                    revision: entry.modified,
                    plural,
                    change: *change,
                    object: json.clone(),
                    before,
                });
            }
            for (k, plural) in &gone {
                revision += 1;
                let last = objects
                    .remove(k.as_str())
                    .map_err(|e| err(&e))?
                    .and_then(|v| unrow(v.value()).map(|(_, _, o)| o.to_vec()));
                if let Some(last) = last {
                    let plural = *plural;
                    events.push(Event {
                        revision,
                        plural,
                        change: Change::Deleted,
                        object: last,
                        before: None,
                    });
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            meta.insert("revision", revision.to_le_bytes().as_slice())
                .map_err(|e| err(&e))?;
            if config_hash != inner.config_hash {
                meta.insert("lab", lab.as_slice()).map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))?;
        // Durable: now the memory follows.
        inner.revision = revision;
        inner.config_hash = config_hash;
        for (k, _) in &gone {
            inner.index.remove(k);
        }
        if keep_from > 0 {
            inner.log.clear();
            inner.log_bytes = 0;
            inner.compacted = writes[keep_from - 1].3.modified;
        }
        for (k, _, _, entry, _) in writes {
            inner.index.insert(k, entry);
        }
        for e in events {
            inner.log_bytes += e.object.len() + e.before.as_ref().map_or(0, Vec::len);
            inner.log.push_back(Arc::new(e));
        }
        while inner.log_bytes > LOG_BYTES {
            let Some(e) = inner.log.pop_front() else {
                break;
            };
            inner.log_bytes -= e.object.len() + e.before.as_ref().map_or(0, Vec::len);
            inner.compacted = e.revision;
        }
        expire(&mut inner.past);
        self.publish(st.clone(), revision);
        Ok(revision)
    }
}

/// One object to write: (key, plural, change, entry, JSON with its
/// resourceVersion).
type Write = (String, &'static str, Change, Entry, Vec<u8>);

/// What changed in one collection since the last commit (`before`): the
/// objects it no longer shares with `before` are compared (as typed values
/// with the object they replace, else by the hash of their JSON) and, where
/// changed, take the next revision (set in `now` too); the keys of
/// `before`'s objects that are gone are removals.
fn diff_list<T>(
    plural: &'static str,
    before: &Collection<T>,
    now: &mut Collection<T>,
    index: &HashMap<String, Entry>,
    revision: &mut u64,
    writes: &mut Vec<Write>,
    gone: &mut Vec<(String, &'static str)>,
) where
    T: Clone + PartialEq + Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let before_ptrs: HashSet<*const T> = before.shared().iter().map(Arc::as_ptr).collect();
    let now_ptrs: HashSet<*const T> = now.shared().iter().map(Arc::as_ptr).collect();
    // The objects of `before` that `now` does not hold as they were.
    let replaced: HashMap<String, &T> = before
        .shared()
        .iter()
        .filter(|o| !now_ptrs.contains(&Arc::as_ptr(o)))
        .map(|o| (key(plural, o.metadata()), &**o))
        .collect();
    let mut fresh_keys: HashSet<String> = HashSet::new();
    for i in 0..now.len() {
        if before_ptrs.contains(&Arc::as_ptr(&now.shared()[i])) {
            continue;
        }
        let k = key(plural, now[i].metadata());
        let entry = index.get(&k);
        // A key an unchanged object holds, or another new one took.
        if !fresh_keys.insert(k.clone()) || (entry.is_some() && !replaced.contains_key(&k)) {
            tracing::warn!(key = %k, "store: two objects with one name; the second is not stored");
            continue;
        }
        let o = &mut now[i];
        if let (Some(e), Some(old)) = (entry, replaced.get(&k)) {
            let mine = o
                .metadata_mut()
                .resource_version
                .replace(e.modified.to_string());
            if **old == *o {
                continue;
            }
            o.metadata_mut().resource_version = mine;
        }
        let bytes = without_rv(o);
        let h = hash(&bytes);
        match entry {
            Some(e) if e.hash == h => {
                o.metadata_mut().resource_version = Some(e.modified.to_string());
            }
            old => {
                *revision += 1;
                o.metadata_mut().resource_version = Some(revision.to_string());
                let entry = Entry {
                    hash: h,
                    created: old.map_or(*revision, |e| e.created),
                    modified: *revision,
                };
                let change = if old.is_some() {
                    Change::Modified
                } else {
                    Change::Added
                };
                let json = serde_json::to_vec(&*o).expect("objects serialize");
                writes.push((k, plural, change, entry, json));
            }
        }
    }
    for k in replaced.into_keys() {
        if !fresh_keys.contains(&k) && index.contains_key(&k) {
            gone.push((k, plural));
        }
    }
}

/// A control loop's copy of the state: begun from a snapshot, edited for
/// as long as the loop's work takes (starting containers, syncing rules)
/// while API writes go on committing, then committed over them with
/// [`ObjectStore::commit_working`].
pub struct Working {
    base: Arc<ClusterState>,
    st: ClusterState,
    others: bool,
}

impl Working {
    /// Whether others committed since this copy began (what they changed
    /// is in it now, but the loop's work did not see it).
    pub fn saw_others(&self) -> bool {
        self.others
    }

    /// The state this copy was begun from or last committed as.
    pub fn base(&self) -> &Arc<ClusterState> {
        &self.base
    }
}

impl std::ops::Deref for Working {
    type Target = ClusterState;
    fn deref(&self) -> &ClusterState {
        &self.st
    }
}

impl std::ops::DerefMut for Working {
    fn deref_mut(&mut self) -> &mut ClusterState {
        &mut self.st
    }
}

/// A three-way merge of a control loop's state (`ours`, begun from `base`)
/// with what was committed meanwhile (`theirs`), object by object:
/// - what only one side changed, added or removed, that side decides;
/// - a removal on either side wins over a change on the other (a pod the
///   kubelet removed after its deletion, a Service a client deleted);
/// - an object both changed is merged by its top-level fields (and the
///   fields of its metadata): where both changed one, the client's wins,
///   except `status`, which the control loops own (as the status
///   subresource divides them in Kubernetes).
///
/// Level-based loops look again at the result, so a change one side lost
/// is made again at their next step.
pub fn merge(base: &ClusterState, mut ours: ClusterState, theirs: &ClusterState) -> ClusterState {
    let mut out = theirs.clone();
    macro_rules! each {
        ($st:expr, $field:ident, $plural:expr) => {
            out.$field = merge_list(
                $plural,
                &base.$field,
                std::mem::take(&mut ours.$field),
                &theirs.$field,
            );
        };
    }
    collections!(each, ());
    out
}

fn merge_list<T>(
    plural: &str,
    base: &Collection<T>,
    ours: Collection<T>,
    theirs: &Collection<T>,
) -> Collection<T>
where
    T: Clone + PartialEq + Serialize + DeserializeOwned + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    // What one side left alone, the other decides: pointer comparisons.
    if ours.same(base) {
        return theirs.clone();
    }
    if theirs.same(base) {
        return ours;
    }
    let base: HashMap<String, &Arc<T>> = base
        .shared()
        .iter()
        .map(|o| (key(plural, o.metadata()), o))
        .collect();
    let mut order = Vec::with_capacity(ours.len());
    let mut ours: HashMap<String, Arc<T>> = ours
        .into_shared()
        .into_iter()
        .map(|o| {
            let k = key(plural, o.metadata());
            order.push(k.clone());
            (k, o)
        })
        .collect();
    let same = |a: &Arc<T>, b: &Arc<T>| Arc::ptr_eq(a, b) || **a == **b;
    let mut out = Vec::with_capacity(theirs.len() + 1);
    for t in theirs.shared() {
        let k = key(plural, t.metadata());
        match (base.get(&k), ours.remove(&k)) {
            // Theirs alone: added, or kept while ours left it alone.
            (None, None) => out.push(t.clone()),
            (Some(b), Some(o)) if same(&o, b) => out.push(t.clone()),
            (Some(b), Some(o)) if same(t, b) => out.push(o),
            (Some(b), Some(o)) => out.push(Arc::new(merge_object(&**b, (*o).clone(), &**t))),
            // Both added one name: theirs, with our status.
            (None, Some(o)) => out.push(Arc::new(merge_object(&**t, (*o).clone(), &**t))),
            // We removed it: gone, whatever they did.
            (Some(_), None) => {}
        }
    }
    // What we added; what we kept that they removed stays removed.
    for k in order {
        if let Some(o) = ours.remove(&k) {
            if !base.contains_key(&k) {
                out.push(o);
            }
        }
    }
    Collection::from_shared(out)
}

/// An object both sides changed: field by field (see [`merge`]).
fn merge_object<T: Serialize + DeserializeOwned + Clone>(base: &T, ours: T, theirs: &T) -> T {
    let json = |o: &T| serde_json::to_value(o).expect("objects serialize");
    let (b, o, mut t) = (json(base), json(&ours), json(theirs));
    fn fields(b: &serde_json::Value, o: &serde_json::Value, t: &mut serde_json::Value, top: bool) {
        let (Some(o), Some(t)) = (o.as_object(), t.as_object_mut()) else {
            return;
        };
        let null = serde_json::Value::Null;
        let mut keys: Vec<&String> = o.keys().collect();
        if let Some(b) = b.as_object() {
            keys.extend(b.keys().filter(|k| !o.contains_key(*k)));
        }
        for k in keys {
            if k == "resourceVersion" {
                continue;
            }
            let (bv, ov) = (b.get(k).unwrap_or(&null), o.get(k).unwrap_or(&null));
            if ov == bv {
                continue; // ours did not change it
            }
            let tv = t.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if top && k == "metadata" {
                let mut merged = tv;
                fields(bv, ov, &mut merged, false);
                t.insert(k.clone(), merged);
            } else if tv == *bv || (top && k == "status") {
                match ov {
                    serde_json::Value::Null => t.remove(k),
                    v => t.insert(k.clone(), v.clone()),
                };
            }
        }
    }
    fields(&b, &o, &mut t, true);
    serde_json::from_value(t).unwrap_or_else(|_| theirs.clone())
}

fn plural_of(key: &str) -> Option<&'static str> {
    let p = key.split('/').next()?;
    let mut found = None;
    macro_rules! find {
        ($st:expr, $field:ident, $plural:expr) => {
            if p == $plural {
                found = Some($plural);
            }
        };
    }
    collections!(find, ());
    found
}

fn db_error(file: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db {
        path: file.display().to_string(),
        message: e.to_string(),
    }
}

fn open_db(file: &Path) -> Result<Database, StoreError> {
    Database::builder()
        // The objects live in memory too: a small page cache will do.
        .set_cache_size(4 << 20)
        .create(file)
        .map_err(|e| db_error(file, e))
}

type Loaded = (ClusterState, u64, HashMap<String, Entry>, u64);
/// A row read back: (create revision, mod revision, key, object JSON).
type Row = (u64, u64, String, Vec<u8>);

/// Reads every row back: the collections in the order their objects were
/// created (as a `ClusterState` keeps them), and the index.
fn load(db: &Database, file: &Path) -> Result<Loaded, StoreError> {
    let err = |e: &dyn std::fmt::Display| db_error(file, e);
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let meta = txn.open_table(META).map_err(|e| err(&e))?;
    let revision = meta
        .get("revision")
        .map_err(|e| err(&e))?
        .and_then(|v| Some(u64::from_le_bytes(v.value().try_into().ok()?)))
        .unwrap_or(0);
    let lab_bytes = meta
        .get("lab")
        .map_err(|e| err(&e))?
        .map(|v| v.value().to_vec())
        .ok_or_else(|| StoreError::NoConfig {
            path: file.display().to_string(),
        })?;
    let lab: LabRow = serde_json::from_slice(&lab_bytes).map_err(|source| StoreError::Corrupt {
        path: file.display().to_string(),
        key: "lab".into(),
        source,
    })?;
    let mut st = ClusterState::empty();
    st.config = lab.config;
    st.created = lab.created;
    let objects = txn.open_table(OBJECTS).map_err(|e| err(&e))?;
    let mut rows: HashMap<&'static str, Vec<Row>> = HashMap::new();
    for r in objects.iter().map_err(|e| err(&e))? {
        let (k, v) = r.map_err(|e| err(&e))?;
        let k = k.value().to_string();
        let (Some(plural), Some((created, modified, json))) = (plural_of(&k), unrow(v.value()))
        else {
            continue;
        };
        rows.entry(plural)
            .or_default()
            .push((created, modified, k, json.to_vec()));
    }
    let mut index = HashMap::new();
    fn decode<T: DeserializeOwned + Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>>(
        file: &Path,
        mut rows: Vec<Row>,
        index: &mut HashMap<String, Entry>,
    ) -> Result<Vec<T>, StoreError> {
        rows.sort_by_key(|r| r.0);
        let mut out = Vec::with_capacity(rows.len());
        for (created, modified, k, json) in rows {
            let mut o: T = serde_json::from_slice(&json).map_err(|source| StoreError::Corrupt {
                path: file.display().to_string(),
                key: k.clone(),
                source,
            })?;
            let h = hash(&without_rv(&mut o));
            o.metadata_mut().resource_version = Some(modified.to_string());
            index.insert(
                k,
                Entry {
                    hash: h,
                    created,
                    modified,
                },
            );
            out.push(o);
        }
        Ok(out)
    }
    macro_rules! fill {
        ($st:expr, $field:ident, $plural:expr) => {
            $st.$field = decode(file, rows.remove($plural).unwrap_or_default(), &mut index)?.into();
        };
    }
    collections!(fill, st);
    Ok((st, revision, index, hash(&lab_bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_store(name: &str) -> (tempfile::TempDir, ObjectStore, ClusterState) {
        let dir = tempfile::tempdir().unwrap();
        let mut st = crate::api::objects::tutorial_state();
        st.config.name = name.into();
        let store = ObjectStore::create_at(dir.path().join(FILE), &mut st).unwrap();
        (dir, store, st)
    }

    fn reopen(dir: &Path) -> (ClusterState, u64) {
        let store = ObjectStore::open_at(dir.join(FILE)).unwrap();
        let snap = store.snapshot();
        ((*snap.state).clone(), snap.revision)
    }

    #[test]
    fn every_kind_of_object_round_trips_and_the_file_is_private() {
        use crate::cluster::HostInfo;
        use k8s_openapi::api::core::v1::Event;
        use rand::SeedableRng;
        // Every kind of object the state holds, so that a field that does
        // not survive the store (a missing serde attribute) fails here.
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {run: my-nginx}\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n";
        let spec = crate::lab::load_str(Path::new("t.yaml"), text, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut s = ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap();
        s.events.push(Event {
            metadata: ObjectMeta {
                name: Some("e".into()),
                ..Default::default()
            },
            reason: Some("Scheduled".into()),
            message: Some("assigned".into()),
            ..Default::default()
        });
        let kinds = [
            s.nodes.len(),
            s.deployments.len(),
            s.replica_sets.len(),
            s.pods.len(),
            s.services.len(),
            s.endpoints.len(),
            s.endpoint_slices.len(),
            s.events.len(),
            s.secrets.len(),
            s.config_maps.len(),
        ];
        assert!(kinds.iter().all(|n| *n > 0), "{kinds:?}");
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::create_at(dir.path().join(FILE), &mut s).unwrap();
        drop(store);
        let (back, _) = reopen(dir.path());
        assert_eq!(back, s);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_revision_per_changed_object_and_unchanged_ones_keep_theirs() {
        let (_dir, store, mut st) = lab_store("s");
        let r0 = store.snapshot().revision;
        let objects = st.pods.len() + st.services.len() + st.deployments.len() + st.nodes.len();
        assert!(r0 as usize >= objects, "{r0} < {objects}");
        // Nothing changed: no revision.
        assert_eq!(store.commit(&mut st).unwrap(), r0);
        let svc_rv = st.services[0].metadata.resource_version.clone();
        st.pods[0]
            .metadata
            .labels
            .get_or_insert_default()
            .insert("x".into(), "y".into());
        let r1 = store.commit(&mut st).unwrap();
        assert_eq!(r1, r0 + 1);
        assert_eq!(st.pods[0].metadata.resource_version, Some(r1.to_string()));
        assert_eq!(st.services[0].metadata.resource_version, svc_rv);
        let snap = store.snapshot();
        assert_eq!(snap.revision, r1);
        assert_eq!(
            snap.state.pods[0].metadata.resource_version,
            Some(r1.to_string())
        );
        // A stale resourceVersion in the caller's copy is not a change.
        st.pods[0].metadata.resource_version = Some("1".into());
        assert_eq!(store.commit(&mut st).unwrap(), r1);
        let ev = store.events_after(r0).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].plural, ev[0].change), ("pods", Change::Modified));
        assert!(ev[0].before.is_some());
    }

    #[test]
    fn deletions_are_events_with_the_last_object() {
        let (_dir, store, mut st) = lab_store("d");
        let r0 = store.snapshot().revision;
        let gone = st.pods.remove(0);
        let r1 = store.commit(&mut st).unwrap();
        assert_eq!(r1, r0 + 1);
        let ev = store.events_after(r0).unwrap();
        assert_eq!(ev[0].change, Change::Deleted);
        let obj: serde_json::Value = serde_json::from_slice(&ev[0].object).unwrap();
        assert_eq!(
            obj["metadata"]["name"].as_str(),
            gone.metadata.name.as_deref()
        );
        assert_eq!(obj["kind"], "Pod");
        assert!(store.events_after(r1).unwrap().is_empty());
    }

    #[test]
    fn what_was_committed_is_read_back_in_order_after_a_restart() {
        let (dir, store, mut st) = lab_store("r");
        st.pods[1].metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        let rev = store.commit(&mut st).unwrap();
        let want = store.snapshot().state.clone();
        drop(store);
        let (back, r) = reopen(dir.path());
        assert_eq!(r, rev);
        assert_eq!(back, *want);
    }

    #[test]
    fn watches_from_before_the_log_expire() {
        let (_dir, store, mut st) = lab_store("e");
        let r0 = store.snapshot().revision;
        store.inner.lock().unwrap().compacted = r0;
        assert!(store.events_after(r0 - 1).is_err());
        assert!(store.events_after(r0).is_ok());
        let s0 = store.snapshot();
        store.pin(&s0);
        st.pods.pop();
        store.commit(&mut st).unwrap();
        assert_eq!(store.events_after(r0).unwrap().len(), 1);
        assert!(
            store.snapshot_at(r0).is_some(),
            "a state a paged list is at is kept"
        );
        st.pods.pop();
        let r1 = store.snapshot().revision;
        store.commit(&mut st).unwrap();
        assert!(
            store.snapshot_at(r1).is_none(),
            "a state no list is at is not kept"
        );
    }

    #[test]
    fn pinned_states_expire_without_commits() {
        let (_dir, store, _st) = lab_store("p");
        let s0 = store.snapshot();
        store.pin(&s0);
        store.expire_pins();
        assert!(store.snapshot_at(s0.revision).is_some(), "kept for a while");
        // Pinned longer ago than PAST_FOR: let go, though nothing committed.
        let old = std::time::Instant::now() - PAST_FOR - std::time::Duration::from_secs(1);
        store.inner.lock().unwrap().past[0].0 = old;
        let weak = Arc::downgrade(&s0);
        drop(s0);
        store.expire_pins();
        assert!(store.inner.lock().unwrap().past.is_empty());
        assert!(
            weak.upgrade()
                .is_none_or(|s| Arc::ptr_eq(&s, &store.snapshot())),
            "nothing but the current state holds it"
        );
    }

    /// A commit bigger than the log (a lab's `up`) writes every object but
    /// keeps only the tail of its events: watches from before it expire.
    #[test]
    fn a_batch_bigger_than_the_log_keeps_its_tail() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (dir, store, mut st) = lab_store("b");
        st.pods.pop();
        let r1 = store.commit(&mut st).unwrap();
        assert_eq!(store.events_after(r1 - 1).unwrap().len(), 1);
        let mib = "x".repeat(1 << 20);
        for i in 0..12 {
            st.config_maps.push(ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("big-{i}")),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                data: Some([("k".to_string(), mib.clone())].into()),
                ..Default::default()
            });
        }
        let r2 = store.commit(&mut st).unwrap();
        assert!(
            store.events_after(r1).is_err(),
            "the log no longer reaches r1"
        );
        let kept = store.events_after(r2 - 7).unwrap();
        assert_eq!(kept.len(), 7, "the last 7 of 12 MiB fit in 8 MiB");
        assert!(store.events_after(r2 - 8).is_err());
        drop(store);
        let (back, _) = reopen(dir.path());
        assert_eq!(
            back.config_maps.len(),
            st.config_maps.len(),
            "all are stored"
        );
    }

    /// A control loop's long step and a client's write in between: both
    /// land, and the loop learns that others wrote.
    #[test]
    fn a_working_copy_commits_over_writes_made_meanwhile() {
        let (_dir, store, _) = lab_store("w");
        let mut w = store.begin();
        // The loop: a pod's status, a new pod, a removed pod.
        let (a, gone) = (
            w.pods[0].metadata.name.clone().unwrap(),
            w.pods[1].metadata.name.clone().unwrap(),
        );
        w.pods[0].status.get_or_insert_with(Default::default).phase = Some("Running".into());
        let mut new = w.pods[0].clone();
        new.metadata.name = Some("new".into());
        w.pods.push(new);
        w.pods
            .retain(|p| p.metadata.name.as_deref() != Some(gone.as_str()));
        // Meanwhile a client: labels on the same pod, a Secret, and the
        // removal of a Service.
        store
            .update(|st| {
                let p = &mut st.pods[0];
                p.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert("x".into(), "y".into());
                p.status.get_or_insert_with(Default::default).phase = Some("Pending".into());
                st.secrets.push(k8s_openapi::api::core::v1::Secret {
                    metadata: ObjectMeta {
                        name: Some("s".into()),
                        namespace: Some("default".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                });
                st.services.clear();
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert!(!w.saw_others());
        store.commit_working(&mut w).unwrap();
        assert!(w.saw_others());
        let now = store.snapshot();
        let pod = |n: &str| {
            now.state
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
        };
        let a = pod(&a).unwrap();
        assert_eq!(
            a.metadata.labels.as_ref().unwrap()["x"],
            "y",
            "the client's labels"
        );
        assert_eq!(
            a.status.as_ref().unwrap().phase.as_deref(),
            Some("Running"),
            "the loop's status"
        );
        assert!(pod("new").is_some() && pod(&gone).is_none());
        assert_eq!(now.state.secrets.len(), 1);
        assert!(now.state.services.is_empty(), "a removal wins");
        assert_eq!(*w.base(), now.state);
        assert_eq!(**w.base(), *w);
    }

    #[test]
    fn a_working_copy_without_writes_in_between_commits_as_it_is() {
        let (_dir, store, _) = lab_store("v");
        let mut w = store.begin();
        w.pods.pop();
        let want = (*w).clone();
        store.commit_working(&mut w).unwrap();
        assert!(!w.saw_others());
        let mut got = (*store.snapshot().state).clone();
        for mut p in got.pods.iter_mut() {
            p.metadata.resource_version = None;
        }
        let mut want = want;
        for mut p in want.pods.iter_mut() {
            p.metadata.resource_version = None;
        }
        assert_eq!(got.pods, want.pods);
    }
}
