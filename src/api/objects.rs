//! Reads: the objects of one resource in the lab's store, filtered by
//! namespace, name, label and field selectors, as JSON or as the Table
//! kubectl prints. Pure: a store snapshot in, objects out.

use super::request::FieldSelector;
use super::resources::Resource;
use super::status::ApiError;
use crate::cluster::{state, tables, ClusterState, Selector};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

/// What a list or get selects.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub labels: Selector,
    pub fields: FieldSelector,
}

/// The field selectors kube-apiserver supports per resource (besides
/// `metadata.name` and `metadata.namespace`, which all take).
pub fn field_labels(r: &Resource) -> Vec<&'static str> {
    let mut out = vec!["metadata.name", "metadata.namespace"];
    out.extend(match r.plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ][..],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ][..],
        "secrets" => &["type"][..],
        "nodes" => &["spec.unschedulable"][..],
        "namespaces" => &["status.phase"][..],
        _ => &[][..],
    });
    out
}

/// The selected objects, as JSON, and their Table. With `as_json` false
/// (a Table is asked for), each object stands as a `null` in the first
/// list: making 1 000 pods into JSON trees took most of a Table LIST's
/// time, and only a field selector needs them.
pub fn select(
    st: &ClusterState,
    r: &Resource,
    f: &Filter<'_>,
    now: DateTime<Utc>,
    as_json: bool,
) -> (Vec<Value>, tables::Table) {
    fn pick<'s, T: Serialize>(
        items: impl IntoIterator<Item = &'s T>,
        meta: impl Fn(&T) -> &ObjectMeta,
        r: &Resource,
        f: &Filter<'_>,
        as_json: bool,
    ) -> (Vec<&'s T>, Vec<Value>) {
        let mut kept = Vec::new();
        let mut values = Vec::new();
        for i in items {
            let m = meta(i);
            if r.namespaced && f.namespace.is_some_and(|ns| state::namespace(m) != ns) {
                continue;
            }
            if f.name.is_some_and(|n| m.name.as_deref() != Some(n)) {
                continue;
            }
            if !f.labels.matches(m.labels.as_ref()) {
                continue;
            }
            if !as_json && f.fields.0.is_empty() {
                kept.push(i);
                values.push(Value::Null);
                continue;
            }
            let mut v = serde_json::to_value(i).expect("objects serialize");
            if r.namespaced && v["metadata"]["namespace"].is_null() {
                v["metadata"]["namespace"] = "default".into();
            }
            if !f.fields.matches(&v) {
                continue;
            }
            kept.push(i);
            values.push(if as_json { v } else { Value::Null });
        }
        (kept, values)
    }
    match r.plural {
        "pods" => {
            let (k, v) = pick(&st.pods, |o| &o.metadata, r, f, as_json);
            (v, tables::pods(&k, now))
        }
        "services" => {
            let (k, v) = pick(&st.services, |o| &o.metadata, r, f, as_json);
            (v, tables::services(&k, now))
        }
        "endpoints" => {
            let (k, v) = pick(&st.endpoints, |o| &o.metadata, r, f, as_json);
            (v, tables::endpoints(&k, now))
        }
        "endpointslices" => {
            let (k, v) = pick(&st.endpoint_slices, |o| &o.metadata, r, f, as_json);
            (v, tables::endpoint_slices(&k, now))
        }
        "nodes" => {
            let (k, v) = pick(&st.nodes, |o| &o.metadata, r, f, as_json);
            (v, tables::nodes(&k, now))
        }
        "events" => {
            let mut evs: Vec<_> = st.events.iter().collect();
            evs.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
            let evs: Vec<_> = evs.into_iter().cloned().collect();
            let (k, v) = pick(&evs, |o| &o.metadata, r, f, as_json);
            (v, tables::events(&k, now))
        }
        "secrets" => {
            let (k, v) = pick(&st.secrets, |o| &o.metadata, r, f, as_json);
            (v, tables::secrets(&k, now))
        }
        "configmaps" => {
            let (k, v) = pick(&st.config_maps, |o| &o.metadata, r, f, as_json);
            (v, tables::config_maps(&k, now))
        }
        "deployments" => {
            let (k, v) = pick(&st.deployments, |o| &o.metadata, r, f, as_json);
            (v, tables::deployments(&k, now))
        }
        "replicasets" => {
            let (k, v) = pick(&st.replica_sets, |o| &o.metadata, r, f, as_json);
            (v, tables::replica_sets(&k, now))
        }
        "serviceaccounts" => {
            let (k, v) = pick(&st.service_accounts, |o| &o.metadata, r, f, as_json);
            (v, tables::service_accounts(&k, now))
        }
        "roles" => {
            let (k, v) = pick(&st.roles, |o| &o.metadata, r, f, as_json);
            (v, tables::roles(&k, now))
        }
        "rolebindings" => {
            let (k, v) = pick(&st.role_bindings, |o| &o.metadata, r, f, as_json);
            (v, tables::role_bindings(&k, now))
        }
        "networkpolicies" => {
            let (k, v) = pick(&st.network_policies, |o| &o.metadata, r, f, as_json);
            (v, tables::network_policies(&k, now))
        }
        "clusterroles" => {
            let (k, v) = pick(&st.cluster_roles, |o| &o.metadata, r, f, as_json);
            (v, tables::cluster_roles(&k, now))
        }
        "clusterrolebindings" => {
            let (k, v) = pick(&st.cluster_role_bindings, |o| &o.metadata, r, f, as_json);
            (v, tables::cluster_role_bindings(&k, now))
        }
        // Answered, never stored: an empty list, as kube-apiserver has none.
        _ if r.answered() => (Vec::new(), tables::Table::default()),
        "namespaces" => {
            let nss = st.namespace_objects();
            let (k, v) = pick(&nss, |o| &o.metadata, r, f, as_json);
            (v, tables::namespaces(&k, now))
        }
        other => unreachable!("{other} is in RESOURCES but has no store"),
    }
}

/// Whether an object (as JSON, its namespace defaulted) is selected.
pub fn matches(r: &Resource, f: &Filter<'_>, v: &Value) -> bool {
    let meta = &v["metadata"];
    if r.namespaced
        && f.namespace
            .is_some_and(|ns| meta["namespace"].as_str().unwrap_or("default") != ns)
    {
        return false;
    }
    if f.name.is_some_and(|n| meta["name"].as_str() != Some(n)) {
        return false;
    }
    let labels: Option<std::collections::BTreeMap<String, String>> =
        serde_json::from_value(meta["labels"].clone()).ok();
    f.labels.matches(labels.as_ref()) && f.fields.matches(v)
}

/// The one-row Table of an object (what a watch of `kubectl get -w`
/// sends for it).
pub fn table_of(r: &Resource, v: &Value, now: DateTime<Utc>) -> Option<tables::Table> {
    fn one<T: serde::de::DeserializeOwned>(
        v: &Value,
        now: DateTime<Utc>,
        render: fn(&[&T], DateTime<Utc>) -> tables::Table,
    ) -> Option<tables::Table> {
        let o: T = serde_json::from_value(v.clone()).ok()?;
        Some(render(&[&o], now))
    }
    match r.plural {
        "pods" => one(v, now, tables::pods),
        "services" => one(v, now, tables::services),
        "endpoints" => one(v, now, tables::endpoints),
        "endpointslices" => one(v, now, tables::endpoint_slices),
        "nodes" => one(v, now, tables::nodes),
        "events" => one(v, now, tables::events),
        "secrets" => one(v, now, tables::secrets),
        "configmaps" => one(v, now, tables::config_maps),
        "deployments" => one(v, now, tables::deployments),
        "replicasets" => one(v, now, tables::replica_sets),
        "namespaces" => one(v, now, tables::namespaces),
        "serviceaccounts" => one(v, now, tables::service_accounts),
        "roles" => one(v, now, tables::roles),
        "rolebindings" => one(v, now, tables::role_bindings),
        "clusterroles" => one(v, now, tables::cluster_roles),
        "networkpolicies" => one(v, now, tables::network_policies),
        "clusterrolebindings" => one(v, now, tables::cluster_role_bindings),
        _ => None,
    }
}

/// The `limit` and `continue` of a list request. A continue token is
/// opaque to clients; netlab's holds the revision of the first page and
/// where the next one starts, and a next page is served from the state at
/// that revision while the store keeps it (else `410 Expired`, and
/// client-go and kube-rs pagers list again from the start).
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub limit: Option<usize>,
    pub continue_at: Option<(u64, usize)>,
}

/// What a paged list's metadata says about the rest.
pub struct Next {
    token: String,
    remaining: usize,
}

impl Next {
    pub fn annotate(&self, list: &mut Value) {
        list["metadata"]["continue"] = self.token.clone().into();
        list["metadata"]["remainingItemCount"] = self.remaining.into();
    }
}

impl Page {
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Result<Page, ApiError> {
        use base64::Engine;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let continue_at = match q.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => {
                let bad = || ApiError::bad_request(format!("continue key is not valid: {c}"));
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| bad())?;
                let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
                match (v["rv"].as_u64(), v["start"].as_u64()) {
                    (Some(rv), Some(start)) if v["v"] == "meta.k8s.io/v1" => {
                        Some((rv, start as usize))
                    }
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Page { limit, continue_at })
    }

    /// kube-apiserver's answer to a continue token whose revision is gone.
    pub fn expired() -> ApiError {
        ApiError::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        )
    }

    /// Keeps this page of the selected items (and of their Table rows, in
    /// the same order); what follows, if anything does.
    pub fn cut<R>(&self, items: &mut Vec<Value>, rows: &mut Vec<R>, revision: u64) -> Option<Next> {
        use base64::Engine;
        let start = self.continue_at.map_or(0, |c| c.1).min(items.len());
        items.drain(..start);
        rows.drain(..start.min(rows.len()));
        let limit = self.limit?;
        if items.len() <= limit {
            return None;
        }
        let remaining = items.len() - limit;
        items.truncate(limit);
        rows.truncate(limit);
        let token =
            serde_json::json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start + limit});
        Some(Next {
            token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string()),
            remaining,
        })
    }
}

/// A list object (`PodList`…) of the selected items.
pub fn list(r: &Resource, items: Vec<Value>, resource_version: &str) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut v| {
            // kube-apiserver's list items carry no apiVersion/kind.
            if let Some(o) = v.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
            v
        })
        .collect();
    serde_json::json!({
        "kind": format!("{}List", r.kind),
        "apiVersion": r.group_version(),
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    })
}

/// The one object a get names, or kube-apiserver's 404.
pub fn one(r: &Resource, mut items: Vec<Value>, name: &str) -> Result<Value, ApiError> {
    match items.pop() {
        Some(mut v) => {
            v["apiVersion"] = r.group_version().into();
            v["kind"] = r.kind.into();
            Ok(v)
        }
        None => Err(ApiError::not_found(&r.qualified(), name)),
    }
}

/// The tutorial's lab (two my-nginx pods and the cluster DNS), planned
/// without a host: a fixture for the tests of reads and tables.
#[cfg(test)]
pub fn tutorial_state() -> ClusterState {
    use crate::cluster::HostInfo;
    use rand::SeedableRng;
    let spec = crate::lab::load_str(
        std::path::Path::new("t.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n",
        &Default::default(),
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::find;

    #[test]
    fn pages_follow_each_other_from_one_revision() {
        let q = |l: &str, c: &str| -> std::collections::HashMap<String, String> {
            [
                ("limit".to_string(), l.to_string()),
                ("continue".to_string(), c.to_string()),
            ]
            .into()
        };
        let all: Vec<Value> = (0..5).map(|i| serde_json::json!(i)).collect();
        let mut items = all.clone();
        let mut rows: Vec<i32> = (0..5).collect();
        let page = Page::from_query(&q("2", "")).unwrap();
        let next = page.cut(&mut items, &mut rows, 9).unwrap();
        assert_eq!((items.len(), rows, next.remaining), (2, vec![0, 1], 3));
        let mut l = serde_json::json!({"metadata": {}});
        next.annotate(&mut l);
        let token = l["metadata"]["continue"].as_str().unwrap();
        let page = Page::from_query(&q("2", token)).unwrap();
        assert_eq!(page.continue_at, Some((9, 2)));
        let mut items = all.clone();
        let mut rows: Vec<i32> = (0..5).collect();
        assert!(page.cut(&mut items, &mut rows, 9).is_some());
        assert_eq!(items, [serde_json::json!(2), serde_json::json!(3)]);
        assert_eq!(Page::from_query(&q("2", "nope")).unwrap_err().code, 400);
        assert!(Page::from_query(&q("0", "")).unwrap().limit.is_none());
    }

    #[test]
    fn selectors_namespaces_and_names() {
        let st = tutorial_state();
        let pods = find("", "v1", "pods").unwrap();
        let f = Filter {
            namespace: Some("default"),
            labels: Selector::parse("run=my-nginx").unwrap(),
            ..Default::default()
        };
        let (items, table) = select(&st, pods, &f, Utc::now(), true);
        assert_eq!(items.len(), 2);
        assert_eq!(table.rows.len(), 2);
        let f = Filter {
            namespace: Some("kube-system"),
            ..Default::default()
        };
        // Only the cluster DNS runs there.
        assert_eq!(select(&st, pods, &f, Utc::now(), true).0.len(), 1);
        let f = Filter {
            namespace: Some("default"),
            fields: FieldSelector::parse("spec.nodeName=node-1", &field_labels(pods)).unwrap(),
            ..Default::default()
        };
        assert_eq!(select(&st, pods, &f, Utc::now(), true).0.len(), 1);
        // A Table alone: the same rows, no JSON made, field selector or not.
        let (only, t) = select(&st, pods, &f, Utc::now(), false);
        assert_eq!((only, t.rows.len()), (vec![Value::Null], 1));
        let (only, t) = select(&st, pods, &Filter::default(), Utc::now(), false);
        assert!(only.iter().all(Value::is_null) && only.len() == 3 && t.rows.len() == 3);
        let l = list(pods, items, "3");
        assert_eq!(l["kind"], "PodList");
        assert!(l["items"][0].get("kind").is_none());
        let deps = find("apps", "v1", "deployments").unwrap();
        let f = Filter {
            name: Some("nope"),
            ..Default::default()
        };
        let (items, _) = select(&st, deps, &f, Utc::now(), true);
        let e = one(deps, items, "nope").unwrap_err();
        assert_eq!(e.message, "deployments.apps \"nope\" not found");
        let nss = find("", "v1", "namespaces").unwrap();
        let (items, _) = select(&st, nss, &Filter::default(), Utc::now(), true);
        assert_eq!(items.len(), 4);
    }
}
