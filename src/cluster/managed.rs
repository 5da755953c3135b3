//! Field ownership (`metadata.managedFields`), as kube-apiserver keeps it
//! for server-side apply: every write records which manager set which
//! fields (`fieldsV1`); an apply that would change a field another manager
//! owns is refused with a conflict unless forced, and forcing (or a plain
//! update) takes the field over. Pure: objects as JSON in, entries out.
//!
//! Fields are paths of `f:<name>` segments; items of the lists Kubernetes
//! merges by key (containers and volumes by name, ports by port and
//! protocol, env by name, volumeMounts by mountPath) are `k:{...}`
//! segments; other lists are owned whole, as atomic lists are.
//! Not done: removing the fields an applier stopped applying (kube-apiserver
//! deletes them when no one else owns them).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A field path: `["f:spec", "f:template", "k:{\"name\":\"web\"}", "f:image"]`.
pub type Path = Vec<String>;
pub type Fields = BTreeSet<Path>;

/// One conflict: who owns the field, at which apiVersion, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

/// The key of a list item, for the lists merged by key.
fn item_key(list: &str, item: &Value) -> Option<Value> {
    let o = item.as_object()?;
    let pick = |fields: &[(&str, Option<&str>)]| -> Option<Value> {
        let mut k = Map::new();
        for (f, default) in fields {
            match (o.get(*f), default) {
                (Some(v), _) => {
                    k.insert((*f).into(), v.clone());
                }
                (None, Some(d)) => {
                    k.insert((*f).into(), (*d).into());
                }
                (None, None) => return None,
            }
        }
        Some(Value::Object(k))
    };
    match list {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => pick(&[("name", None)]),
        "volumeMounts" => pick(&[("mountPath", None)]),
        "ports" if o.contains_key("containerPort") => {
            pick(&[("containerPort", None), ("protocol", Some("TCP"))])
        }
        "ports" if o.contains_key("port") => pick(&[("port", None), ("protocol", Some("TCP"))]),
        _ => None,
    }
}

/// Metadata fields that are the server's, never a manager's.
const SERVER_METADATA: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// The fields an object (or an applied configuration) sets.
pub fn fields_of(v: &Value) -> Fields {
    let mut out = Fields::new();
    let Some(o) = v.as_object() else {
        return out;
    };
    for (k, child) in o {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => continue,
            "metadata" => {
                let Some(m) = child.as_object() else { continue };
                for (mk, mv) in m {
                    if SERVER_METADATA.contains(&mk.as_str()) || mv.is_null() {
                        continue;
                    }
                    walk(
                        mv,
                        mk,
                        vec!["f:metadata".into(), format!("f:{mk}")],
                        &mut out,
                    );
                }
            }
            _ if child.is_null() => {}
            _ => walk(child, k, vec![format!("f:{k}")], &mut out),
        }
    }
    out
}

fn walk(v: &Value, name: &str, at: Path, out: &mut Fields) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, child) in o {
                if child.is_null() {
                    continue;
                }
                let mut p = at.clone();
                p.push(format!("f:{k}"));
                walk(child, k, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let keys: Option<Vec<Value>> = items.iter().map(|i| item_key(name, i)).collect();
            match keys {
                Some(keys) => {
                    for (item, key) in items.iter().zip(keys) {
                        let mut p = at.clone();
                        p.push(format!("k:{key}"));
                        let mut me = p.clone();
                        me.push(".".into());
                        out.insert(me);
                        walk(item, "", p, out);
                    }
                }
                None => {
                    out.insert(at);
                }
            }
        }
        _ => {
            out.insert(at);
        }
    }
}

/// The value at a path (`.` is the item itself).
pub fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        if seg == "." {
            continue;
        }
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).ok()?;
            let key = key.as_object()?;
            cur = cur.as_array()?.iter().find(|item| {
                key.iter().all(|(kf, kv)| {
                    item.get(kf) == Some(kv)
                        || (kf == "protocol" && kv == "TCP" && item.get(kf).is_none())
                })
            })?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// kube-apiserver's way of printing a path: `.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    s
}

/// The `fieldsV1` tree of a set of paths.
pub fn to_fields_v1(fields: &Fields) -> Value {
    let mut root = Map::new();
    for p in fields {
        let mut cur = &mut root;
        for seg in p {
            cur = cur
                .entry(seg.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("objects all the way");
        }
    }
    Value::Object(root)
}

/// The paths of a `fieldsV1` tree (its leaves).
pub fn from_fields_v1(v: &Value) -> Fields {
    fn go(v: &Value, at: &mut Path, out: &mut Fields) {
        match v.as_object() {
            Some(o) if !o.is_empty() => {
                for (k, child) in o {
                    at.push(k.clone());
                    go(child, at, out);
                    at.pop();
                }
            }
            _ => {
                if !at.is_empty() {
                    out.insert(at.clone());
                }
            }
        }
    }
    let mut out = Fields::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

fn entry_fields(e: &ManagedFieldsEntry) -> Fields {
    e.fields_v1
        .as_ref()
        .map(|f| from_fields_v1(&f.0))
        .unwrap_or_default()
}

fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    fields: &Fields,
    now: DateTime<Utc>,
) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some(operation.into()),
        api_version: Some(api_version.into()),
        time: Some(crate::cluster::state::time(now)),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(to_fields_v1(fields))),
        subresource: subresource.map(String::from),
    }
}

/// Whether `a` is `b` or inside it, or `b` inside `a` (owning a field
/// owns what is under it).
fn overlaps(a: &[String], b: &[String]) -> bool {
    let strip = |p: &[String]| -> Vec<String> { p.iter().filter(|s| *s != ".").cloned().collect() };
    let (a, b) = (strip(a), strip(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// What `manager` owns after applying `config` to the object `live` (None:
/// a new object): the entries to store, or the conflicts with other
/// managers whose fields the configuration would change (`force` takes
/// them over instead). As in kube-apiserver, a manager is its name and
/// operation: `kubectl scale`'s Update as "kubectl" is another manager
/// than `kubectl apply --server-side`'s Apply as "kubectl".
pub fn apply(
    entries: &[ManagedFieldsEntry],
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Vec<ManagedFieldsEntry>, Vec<Conflict>> {
    let applied = fields_of(config);
    let mut conflicts = Vec::new();
    let mut out = Vec::new();
    for e in entries {
        let who = e.manager.as_deref().unwrap_or_default();
        if who == manager && e.operation.as_deref() == Some("Apply") {
            continue; // replaced below
        }
        let mut owned = entry_fields(e);
        let taken: Vec<Path> = owned
            .iter()
            .filter(|p| applied.iter().any(|a| overlaps(a, p)))
            .cloned()
            .collect();
        for p in &taken {
            let theirs = live.and_then(|l| value_at(l, p));
            let mine = value_at(config, p);
            let differs = match (theirs, mine) {
                (Some(t), Some(m)) => t != m,
                _ => false,
            };
            if differs && !force {
                conflicts.push(Conflict {
                    manager: who.into(),
                    api_version: e.api_version.clone().unwrap_or_default(),
                    path: p.clone(),
                });
            }
        }
        // Forced, the applier takes the fields; applying the same value
        // makes a field shared, not taken.
        if force {
            for p in &taken {
                owned.remove(p);
            }
        }
        if !owned.is_empty() {
            let mut e = e.clone();
            e.fields_v1 = Some(FieldsV1(to_fields_v1(&owned)));
            out.push(e);
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    out.push(entry(manager, "Apply", api_version, None, &applied, now));
    Ok(out)
}

/// What the managers own after `manager` changed `before` into `after`
/// with a create, update or patch (`before` None: created): it owns what
/// it changed (or, creating, what it set), and the others lose it.
pub fn update(
    entries: &[ManagedFieldsEntry],
    before: Option<&Value>,
    after: &Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<ManagedFieldsEntry> {
    let now_fields = fields_of(after);
    let changed: Fields = match before {
        None => now_fields.clone(),
        Some(b) => {
            let was = fields_of(b);
            now_fields
                .union(&was)
                .filter(|p| value_at(b, p) != value_at(after, p))
                .cloned()
                .collect()
        }
    };
    let mut out = Vec::new();
    let mut mine: Fields = Fields::new();
    for e in entries {
        let who = e.manager.as_deref().unwrap_or_default();
        let mut owned = entry_fields(e);
        if who == manager
            && e.operation.as_deref() == Some("Update")
            && e.subresource.as_deref() == subresource
        {
            mine = owned;
            continue;
        }
        owned.retain(|p| !changed.contains(p));
        if !owned.is_empty() {
            let mut e = e.clone();
            e.fields_v1 = Some(FieldsV1(to_fields_v1(&owned)));
            out.push(e);
        }
    }
    mine.extend(changed.into_iter().filter(|p| now_fields.contains(p)));
    mine.retain(|p| value_at(after, p).is_some());
    if !mine.is_empty() {
        out.push(entry(
            manager,
            "Update",
            api_version,
            subresource,
            &mine,
            now,
        ));
    }
    out
}

/// kube-apiserver's message for apply conflicts (as kubectl prints it).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in conflicts {
        by.entry((c.manager.clone(), c.api_version.clone()))
            .or_default()
            .push(display(&c.path));
    }
    let parts: Vec<String> = by
        .into_iter()
        .map(|((m, v), paths)| {
            if paths.len() == 1 {
                format!("conflict with {m:?} using {v}: {}", paths[0])
            } else {
                format!(
                    "conflicts with {m:?} using {v}:\n{}",
                    paths
                        .iter()
                        .map(|p| format!("- {p}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            }
        })
        .collect();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": replicas,
                        "template": {"spec": {"containers": [
                            {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn fields_follow_kubernetes_merge_keys() {
        let f = fields_of(&dep(2, "nginx"));
        let shown: BTreeSet<String> = f.iter().map(|p| display(p)).collect();
        assert!(shown.contains(".spec.replicas"), "{shown:?}");
        assert!(shown.contains(".metadata.labels.app"), "{shown:?}");
        assert!(shown.contains(".spec.template.spec.containers[name=\"web\"].image"));
        assert!(shown.contains(
            ".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"].containerPort"
        ));
        assert!(!shown.iter().any(|s| s.starts_with(".metadata.name")));
        assert_eq!(from_fields_v1(&to_fields_v1(&f)), f);
        let p = f.iter().find(|p| display(p).ends_with("].image")).unwrap();
        assert_eq!(value_at(&dep(2, "nginx"), p), Some(&json!("nginx")));
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let now = Utc::now();
        let live = dep(2, "nginx");
        let mine = apply(&[], None, &live, "kubectl", "apps/v1", false, now).unwrap();
        // Someone scales it: they own .spec.replicas now.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let after = update(
            &mine,
            Some(&live),
            &scaled,
            "kubectl-scale",
            "apps/v1",
            None,
            now,
        );
        assert_eq!(after.len(), 2);
        // Applying replicas 2 again conflicts; the same replicas does not.
        let conflicts = apply(
            &after,
            Some(&scaled),
            &dep(2, "nginx"),
            "kubectl",
            "apps/v1",
            false,
            now,
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        assert!(apply(
            &after,
            Some(&scaled),
            &dep(5, "nginx"),
            "kubectl",
            "apps/v1",
            false,
            now
        )
        .is_ok());
        // `kubectl scale` is "kubectl" too, but an Update: another manager.
        let same_name = update(
            &mine,
            Some(&live),
            &scaled,
            "kubectl",
            "apps/v1",
            Some("scale"),
            now,
        );
        assert!(apply(
            &same_name,
            Some(&scaled),
            &dep(2, "nginx"),
            "kubectl",
            "apps/v1",
            false,
            now
        )
        .is_err());
        // Forced, the applier takes it over.
        let forced = apply(
            &after,
            Some(&scaled),
            &dep(2, "nginx"),
            "kubectl",
            "apps/v1",
            true,
            now,
        )
        .unwrap();
        assert!(forced
            .iter()
            .all(|e| e.manager.as_deref() == Some("kubectl")));
        // A changed image by the same manager is no conflict.
        assert!(apply(
            &forced,
            Some(&dep(2, "nginx")),
            &dep(2, "nginx:2"),
            "kubectl",
            "apps/v1",
            false,
            now
        )
        .is_ok());
    }
}
