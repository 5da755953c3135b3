//! Watches: a stream of `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
//! "object": …}` lines, as kube-apiserver sends them, for one resource
//! and filter, served from the store's log of changes (`crate::store`).
//!
//! - From `resourceVersion=0` or none: every selected object as ADDED,
//!   then the changes after the revision of that state.
//! - From a revision: the changes after it; if the log no longer reaches
//!   back that far, an ERROR event with kube-apiserver's `410 Expired`
//!   Status, and the end of the stream (clients list again).
//! - A filtered watch sees an object that starts matching as ADDED and one
//!   that stops matching as DELETED, as kube-apiserver's watch cache does.
//! - `allowWatchBookmarks=true`: a BOOKMARK with the current revision when
//!   nothing else was sent for a while; `sendInitialEvents=true`: one after
//!   the initial ADDED events, annotated `k8s.io/initial-events-end`.
//! - With a Table Accept each event's object is a one-row Table (what
//!   `kubectl get -w` prints).
//!
//! Namespaces are not stored (they are derived from the objects in them),
//! so a watch of namespaces compares the derived list at each commit.

use super::objects::{self, Filter};
use super::request::Target;
use crate::cluster::tables;
use crate::store::{Change, ObjectStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How long a watch with bookmarks stays silent before sending one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// The current state as ADDED events first.
    Now,
    /// The changes after this revision.
    After(u64),
}

/// What a watch request asked for, besides its target and filter.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub start: Start,
    pub table: bool,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: a bookmark marks the end of the ADDED events.
    pub initial_events_end: bool,
}

/// The start a request's `resourceVersion` names (kube-apiserver: "" and
/// "0" start with the current state; otherwise a revision).
pub fn start(resource_version: &str, send_initial_events: bool) -> Result<Start, String> {
    match resource_version {
        "" | "0" => Ok(Start::Now),
        _ if send_initial_events => Ok(Start::Now),
        rv => rv
            .parse()
            .map(Start::After)
            .map_err(|_| format!("invalid resource version: {rv}")),
    }
}

/// The diff of two selections, keyed by namespace/name: (type, key).
fn diff(
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

fn line(typ: &str, object: Value) -> Vec<u8> {
    let mut line =
        serde_json::to_vec(&json!({"type": typ, "object": object})).expect("JSON serializes");
    line.push(b'\n');
    line
}

/// The object a watch event carries: the object, or its one-row Table.
fn rendered(t: &Target, table: bool, typ: &str, mut v: Value, revision: u64) -> Value {
    let r = t.resource;
    v["apiVersion"] = r.group_version().into();
    v["kind"] = r.kind.into();
    if !table {
        return v;
    }
    let rv = revision.to_string();
    let now = chrono::Utc::now();
    match objects::table_of(r, &v, now) {
        Some(tbl) if typ != "DELETED" => tbl.to_json(true, &rv),
        other => {
            let columns = other.map(|t| t.columns).unwrap_or_default();
            let mut out = tables::Table {
                columns,
                rows: Vec::new(),
            }
            .to_json(true, &rv);
            out["rows"] = json!([{"cells": [], "object": {"kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1", "metadata": v["metadata"]}}]);
            out
        }
    }
}

fn bookmark(t: &Target, revision: u64, initial_end: bool) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": t.resource.kind, "apiVersion": t.resource.group_version(), "metadata": meta}),
    )
}

fn expired(revision: u64, oldest: u64) -> Vec<u8> {
    line(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("too old resource version: {revision} ({oldest})"),
               "reason": "Expired", "code": 410}),
    )
}

struct Watch {
    store: ObjectStore,
    changes: tokio::sync::watch::Receiver<std::sync::Arc<crate::store::Snapshot>>,
    t: Target,
    filter: OwnedFilter,
    opts: Options,
    /// The revision sent up to.
    at: u64,
    started: bool,
    done: bool,
    queue: VecDeque<Vec<u8>>,
    /// Namespaces only: the derived list last sent.
    namespaces: BTreeMap<String, Value>,
}

impl Watch {
    fn selected(&self, snap: &crate::store::Snapshot) -> BTreeMap<String, Value> {
        let (items, _) = objects::select(
            &snap.state,
            self.t.resource,
            &self.filter.borrow(),
            chrono::Utc::now(),
            true,
        );
        items.into_iter().map(|v| (key(&v), v)).collect()
    }

    fn begin(&mut self) {
        self.started = true;
        self.changes.borrow_and_update();
        match self.opts.start {
            Start::Now => {
                let snap = self.store.snapshot();
                let current = self.selected(&snap);
                for v in current.values() {
                    let obj = rendered(&self.t, self.opts.table, "ADDED", v.clone(), snap.revision);
                    self.queue.push_back(line("ADDED", obj));
                }
                self.at = snap.revision;
                self.namespaces = current;
                if self.opts.initial_events_end {
                    self.queue.push_back(bookmark(&self.t, self.at, true));
                }
            }
            Start::After(rv) => {
                self.at = rv;
                if self.t.resource.plural == "namespaces" {
                    self.namespaces = self.selected(&self.store.snapshot());
                }
            }
        }
    }

    /// Queues the events of the changes after `at`.
    fn catch_up(&mut self) {
        self.changes.borrow_and_update();
        if self.t.resource.plural == "namespaces" {
            let snap = self.store.snapshot();
            let current = self.selected(&snap);
            for (typ, k) in diff(&self.namespaces, &current) {
                let v = current.get(&k).or(self.namespaces.get(&k)).cloned();
                if let Some(v) = v {
                    let obj = rendered(&self.t, self.opts.table, typ, v, snap.revision);
                    self.queue.push_back(line(typ, obj));
                }
            }
            self.namespaces = current;
            self.at = snap.revision;
            return;
        }
        let events = match self.store.events_after(self.at) {
            Ok(e) => e,
            Err(e) => {
                self.queue.push_back(expired(self.at, e.oldest));
                self.done = true;
                return;
            }
        };
        let r = self.t.resource;
        let f = self.filter.borrow();
        let parse = |b: &[u8]| -> Option<Value> {
            let mut v: Value = serde_json::from_slice(b).ok()?;
            if r.namespaced && v["metadata"]["namespace"].is_null() {
                v["metadata"]["namespace"] = "default".into();
            }
            Some(v)
        };
        for ev in events {
            self.at = ev.revision;
            if ev.plural != r.plural {
                continue;
            }
            let Some(mut obj) = parse(&ev.object) else {
                continue;
            };
            let now = objects::matches(r, &f, &obj);
            let typ = match ev.change {
                Change::Added if now => "ADDED",
                Change::Deleted if now => {
                    obj["metadata"]["resourceVersion"] = ev.revision.to_string().into();
                    "DELETED"
                }
                Change::Modified => {
                    let was = ev
                        .before
                        .as_deref()
                        .and_then(parse)
                        .is_some_and(|b| objects::matches(r, &f, &b));
                    match (was, now) {
                        (true, true) => "MODIFIED",
                        (false, true) => "ADDED",
                        (true, false) => "DELETED",
                        (false, false) => continue,
                    }
                }
                _ => continue,
            };
            let obj = rendered(&self.t, self.opts.table, typ, obj, ev.revision);
            self.queue.push_back(line(typ, obj));
        }
    }
}

/// The event lines of a watch, as a stream of byte chunks.
pub fn stream(
    store: ObjectStore,
    t: Target,
    filter: OwnedFilter,
    opts: Options,
) -> impl futures::Stream<Item = Vec<u8>> + Send {
    let w = Watch {
        changes: store.subscribe(),
        store,
        t,
        filter,
        opts,
        at: 0,
        started: false,
        done: false,
        queue: VecDeque::new(),
        namespaces: BTreeMap::new(),
    };
    futures::stream::unfold(w, |mut w| async move {
        loop {
            if let Some(line) = w.queue.pop_front() {
                return Some((line, w));
            }
            if w.done {
                return None;
            }
            if !w.started {
                w.begin();
                w.catch_up();
                continue;
            }
            let bookmarks = w.opts.bookmarks;
            let quiet = async move {
                if bookmarks {
                    tokio::time::sleep(BOOKMARK_EVERY).await
                } else {
                    std::future::pending().await
                }
            };
            let changed = tokio::select! {
                changed = w.changes.changed() => Some(changed.is_ok()),
                _ = quiet => None,
            };
            match changed {
                Some(true) => w.catch_up(),
                Some(false) => return None,
                None => {
                    let b = bookmark(&w.t, w.at, false);
                    w.queue.push_back(b);
                }
            }
        }
    })
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

    #[test]
    fn resource_versions_name_where_a_watch_starts() {
        assert_eq!(start("", false), Ok(Start::Now));
        assert_eq!(start("0", false), Ok(Start::Now));
        assert_eq!(start("42", false), Ok(Start::After(42)));
        assert_eq!(start("42", true), Ok(Start::Now));
        assert!(start("x", false).is_err());
    }
}
