//! Watches: a stream of `{"type": ADDED|MODIFIED|DELETED, "object": …}`
//! lines, as kube-apiserver sends them, for one resource and filter. A
//! watch from `resourceVersion=0` (or none) first sends every selected
//! object as ADDED; then, at each change of the store, the difference.
//! With a Table Accept each event's object is a one-row Table (what
//! `kubectl get -w` prints).
//!
//! The store is still the lab's state file: changes are learnt from the
//! kernel (inotify on the lab's directory: the file is replaced by rename
//! on every write), not by polling.

use super::objects::{self, Filter};
use super::request::Target;
use super::Store;
use crate::cluster::tables;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// The diff of two selections, keyed by namespace/name: (type, key).
pub fn diff(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push(("ADDED", k.clone())),
            Some(old) if old != v => out.push(("MODIFIED", k.clone())),
            _ => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            out.push(("DELETED", k.clone()));
        }
    }
    out
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

struct InotifyFd(nix::sys::inotify::Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A counter bumped each time the lab's state file is replaced.
pub fn changes(lab: &str) -> tokio::sync::watch::Receiver<u64> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let dir = crate::paths::lab_dir(lab);
    let setup = || -> nix::Result<InotifyFd> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        ino.add_watch(
            &dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        )?;
        Ok(InotifyFd(ino))
    };
    // SAFETY: the AsyncFd owns the inotify fd and nothing else closes it
    // while it is registered.
    let registered = setup().map_err(std::io::Error::from).and_then(|fd| {
        unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
    });
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "api: watching the lab's state for changes");
            return rx;
        }
    };
    tokio::spawn(async move {
        let state = std::ffi::OsStr::new(crate::cluster::state::STATE_FILE);
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return;
            };
            match guard.get_inner().0.read_events() {
                Ok(events) => {
                    if events.iter().any(|e| e.name.as_deref() == Some(state)) {
                        tx.send_modify(|n| *n += 1);
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(_) => return,
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// The event lines of a watch, as a stream of byte chunks.
pub fn stream(
    store: Store,
    t: Target,
    filter: OwnedFilter,
    table: bool,
    initial: bool,
) -> impl futures::Stream<Item = Vec<u8>> + Send {
    struct S {
        seen: Option<BTreeMap<String, Value>>,
        queue: Vec<Vec<u8>>,
        changes: tokio::sync::watch::Receiver<u64>,
    }
    let start = S {
        seen: None,
        queue: Vec::new(),
        changes: store.changes.clone(),
    };
    futures::stream::unfold(start, move |mut s| {
        let store = store.clone();
        let t = t.clone();
        let filter = filter.clone();
        async move {
            loop {
                if let Some(line) = s.queue.pop() {
                    return Some((line, s));
                }
                if s.seen.is_some() {
                    s.changes.changed().await.ok()?;
                }
                s.changes.borrow_and_update();
                let snap = store.snapshot().await.ok()?;
                let (lines, current) = events(&snap, &t, &filter, table, initial, s.seen.take());
                s.queue = lines;
                s.queue.reverse();
                s.seen = Some(current);
            }
        }
    })
}

/// The event lines from `before` (None: the watch's start) to a snapshot.
fn events(
    snap: &super::Snapshot,
    t: &Target,
    filter: &OwnedFilter,
    table: bool,
    initial: bool,
    before: Option<BTreeMap<String, Value>>,
) -> (Vec<Vec<u8>>, BTreeMap<String, Value>) {
    let f = filter.borrow();
    let (items, tbl) = objects::select(&snap.state, t.resource, &f, chrono::Utc::now());
    let rv = snap.resource_version.to_string();
    let mut current = BTreeMap::new();
    let mut rows = BTreeMap::new();
    // Compared without a resourceVersion (it is the store's, shared by
    // all objects for now), which each event then carries.
    for (i, mut v) in items.into_iter().enumerate() {
        v["apiVersion"] = t.resource.group_version().into();
        v["kind"] = t.resource.kind.into();
        let k = key(&v);
        let one = tables::Table {
            columns: tbl.columns.clone(),
            rows: vec![tbl.rows[i].clone()],
        };
        rows.insert(k.clone(), one.to_json(true, &rv));
        current.insert(k, v);
    }
    let before = match before {
        Some(b) => b,
        None if initial => BTreeMap::new(),
        None => current.clone(),
    };
    let mut lines = Vec::new();
    for (typ, k) in diff(&before, &current) {
        let obj = match (table, typ) {
            (true, "DELETED") => {
                let gone = tables::Table {
                    columns: tbl.columns.clone(),
                    rows: Vec::new(),
                };
                let mut v = gone.to_json(true, &rv);
                let meta = before[&k]["metadata"].clone();
                v["rows"] = json!([{"cells": [], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}}]);
                v
            }
            (true, _) => rows[&k].clone(),
            (false, "DELETED") => before[&k].clone(),
            (false, _) => current[&k].clone(),
        };
        let mut obj = obj;
        if !table {
            obj["metadata"]["resourceVersion"] = rv.clone().into();
        }
        let mut line =
            serde_json::to_vec(&json!({"type": typ, "object": obj})).expect("JSON serializes");
        line.push(b'\n');
        lines.push(line);
    }
    (lines, current)
}

/// A filter that owns its strings (a watch outlives its request).
#[derive(Clone, Default)]
pub struct OwnedFilter {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: crate::cluster::Selector,
    pub fields: super::request::FieldSelector,
}

impl OwnedFilter {
    pub fn borrow(&self) -> Filter<'_> {
        Filter {
            namespace: self.namespace.as_deref(),
            name: self.name.as_deref(),
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_name_each_change_once() {
        let a: BTreeMap<String, Value> =
            [("d/a".to_string(), json!(1)), ("d/b".to_string(), json!(2))].into();
        let b: BTreeMap<String, Value> =
            [("d/b".to_string(), json!(3)), ("d/c".to_string(), json!(4))].into();
        assert_eq!(
            diff(&a, &b),
            [
                ("MODIFIED", "d/b".to_string()),
                ("ADDED", "d/c".to_string()),
                ("DELETED", "d/a".to_string())
            ]
        );
        assert!(diff(&b, &b).is_empty());
    }
}
