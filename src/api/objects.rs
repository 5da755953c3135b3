//! Reads: the objects of one resource in the lab's store, filtered by
//! namespace, name, label and field selectors, as JSON or as the Table
//! kubectl prints. Pure: a store snapshot in, objects out.

use super::request::FieldSelector;
use super::resources::Resource;
use super::status::ApiError;
use crate::cluster::{state, tables, ClusterState, Selector};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
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

/// The namespaces of a lab: Kubernetes' four, and any an object is in.
fn namespaces(st: &ClusterState) -> Vec<Namespace> {
    let mut names: Vec<String> = ["default", "kube-node-lease", "kube-public", "kube-system"]
        .map(String::from)
        .to_vec();
    let metas = st
        .pods
        .iter()
        .map(|o| &o.metadata)
        .chain(st.services.iter().map(|o| &o.metadata))
        .chain(st.deployments.iter().map(|o| &o.metadata))
        .chain(st.replica_sets.iter().map(|o| &o.metadata))
        .chain(st.secrets.iter().map(|o| &o.metadata))
        .chain(st.config_maps.iter().map(|o| &o.metadata));
    for m in metas {
        let ns = state::namespace(m).to_string();
        if !names.contains(&ns) {
            names.push(ns);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|n| Namespace {
            metadata: ObjectMeta {
                labels: Some([("kubernetes.io/metadata.name".to_string(), n.clone())].into()),
                name: Some(n),
                creation_timestamp: Some(state::time(st.created)),
                ..Default::default()
            },
            spec: None,
            status: Some(NamespaceStatus {
                phase: Some("Active".into()),
                ..Default::default()
            }),
        })
        .collect()
}

/// The selected objects, as JSON, and their Table.
pub fn select(
    st: &ClusterState,
    r: &Resource,
    f: &Filter<'_>,
    now: DateTime<Utc>,
) -> (Vec<Value>, tables::Table) {
    fn pick<'s, T: Serialize>(
        items: &'s [T],
        meta: impl Fn(&T) -> &ObjectMeta,
        r: &Resource,
        f: &Filter<'_>,
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
            let mut v = serde_json::to_value(i).expect("objects serialize");
            if r.namespaced && v["metadata"]["namespace"].is_null() {
                v["metadata"]["namespace"] = "default".into();
            }
            if !f.fields.matches(&v) {
                continue;
            }
            kept.push(i);
            values.push(v);
        }
        (kept, values)
    }
    match r.plural {
        "pods" => {
            let (k, v) = pick(&st.pods, |o| &o.metadata, r, f);
            (v, tables::pods(&k, now))
        }
        "services" => {
            let (k, v) = pick(&st.services, |o| &o.metadata, r, f);
            (v, tables::services(&k, now))
        }
        "endpoints" => {
            let (k, v) = pick(&st.endpoints, |o| &o.metadata, r, f);
            (v, tables::endpoints(&k, now))
        }
        "endpointslices" => {
            let (k, v) = pick(&st.endpoint_slices, |o| &o.metadata, r, f);
            (v, tables::endpoint_slices(&k, now))
        }
        "nodes" => {
            let (k, v) = pick(&st.nodes, |o| &o.metadata, r, f);
            (v, tables::nodes(&k, now))
        }
        "events" => {
            let mut evs: Vec<_> = st.events.iter().collect();
            evs.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
            let evs: Vec<_> = evs.into_iter().cloned().collect();
            let (k, v) = pick(&evs, |o| &o.metadata, r, f);
            (v, tables::events(&k, now))
        }
        "secrets" => {
            let (k, v) = pick(&st.secrets, |o| &o.metadata, r, f);
            (v, tables::secrets(&k, now))
        }
        "configmaps" => {
            let (k, v) = pick(&st.config_maps, |o| &o.metadata, r, f);
            (v, tables::config_maps(&k, now))
        }
        "deployments" => {
            let (k, v) = pick(&st.deployments, |o| &o.metadata, r, f);
            (v, tables::deployments(&k, now))
        }
        "replicasets" => {
            let (k, v) = pick(&st.replica_sets, |o| &o.metadata, r, f);
            (v, tables::replica_sets(&k, now))
        }
        "namespaces" => {
            let nss = namespaces(st);
            let (k, v) = pick(&nss, |o| &o.metadata, r, f);
            (v, tables::namespaces(&k, now))
        }
        other => unreachable!("{other} is in RESOURCES but has no store"),
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
    fn selectors_namespaces_and_names() {
        let st = tutorial_state();
        let pods = find("", "v1", "pods").unwrap();
        let f = Filter {
            namespace: Some("default"),
            labels: Selector::parse("run=my-nginx").unwrap(),
            ..Default::default()
        };
        let (items, table) = select(&st, pods, &f, Utc::now());
        assert_eq!(items.len(), 2);
        assert_eq!(table.rows.len(), 2);
        let f = Filter {
            namespace: Some("kube-system"),
            ..Default::default()
        };
        // Only the cluster DNS runs there.
        assert_eq!(select(&st, pods, &f, Utc::now()).0.len(), 1);
        let f = Filter {
            namespace: Some("default"),
            fields: FieldSelector::parse("spec.nodeName=node-1", &field_labels(pods)).unwrap(),
            ..Default::default()
        };
        assert_eq!(select(&st, pods, &f, Utc::now()).0.len(), 1);
        let l = list(pods, items, "3");
        assert_eq!(l["kind"], "PodList");
        assert!(l["items"][0].get("kind").is_none());
        let deps = find("apps", "v1", "deployments").unwrap();
        let f = Filter {
            name: Some("nope"),
            ..Default::default()
        };
        let (items, _) = select(&st, deps, &f, Utc::now());
        let e = one(deps, items, "nope").unwrap_err();
        assert_eq!(e.message, "deployments.apps \"nope\" not found");
        let nss = find("", "v1", "namespaces").unwrap();
        let (items, _) = select(&st, nss, &Filter::default(), Utc::now());
        assert_eq!(items.len(), 4);
    }
}
