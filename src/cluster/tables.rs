//! Tables as the API server renders them for kubectl (`meta.k8s.io/v1`
//! Table: typed columns, priority 1 for the `-o wide` ones, one row per
//! object with its metadata), after kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`). The lab's API serves them
//! and `netlab get` prints them: one place decides what a column shows.
//!
//! Pure: objects and the time in, a table out.

use super::services::{endpoints_summary, service_type};
use super::state;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`.
    pub type_: &'static str,
    /// `name` for the Name column, `date` for ages, else empty.
    pub format: &'static str,
    /// 0: always shown; 1: with `-o wide` only.
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<Value>,
    /// The object's metadata (kubectl takes the namespace for `-A` and the
    /// labels for `--show-labels` from it).
    pub meta: ObjectMeta,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

const fn col(name: &'static str, priority: i32) -> Column {
    Column {
        name,
        type_: "string",
        format: "",
        priority,
    }
}

const fn int(name: &'static str, priority: i32) -> Column {
    Column {
        name,
        type_: "integer",
        format: "",
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
};
const AGE: Column = Column {
    name: "Age",
    type_: "string",
    format: "",
    priority: 0,
};

impl Table {
    fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, meta: &ObjectMeta, cells: Vec<Value>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(Row {
            cells,
            meta: meta.clone(),
        });
    }

    /// The `meta.k8s.io/v1` Table object. Each row carries the object's
    /// metadata as a PartialObjectMetadata (kube-apiserver's default,
    /// `includeObject=Metadata`) or, with `includeObject=None`, nothing.
    pub fn to_json(&self, include_metadata: bool, resource_version: &str) -> Value {
        let columns: Vec<Value> = self
            .columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": "", "priority": c.priority})
            })
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = json!({"cells": r.cells});
                if include_metadata {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": r.meta,
                    });
                }
                row
            })
            .collect();
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns,
            "rows": rows,
        })
    }
}

/// kubectl's `duration.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// AGE: the time since `created`, kubectl's way.
pub fn age(created: Option<&Time>, now: DateTime<Utc>) -> String {
    match created {
        Some(t) => human_duration((now - t.0).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// `k=v` joined by `sep` for Labels/Selector/Annotations, or `<none>`.
pub fn map_lines(map: Option<&BTreeMap<String, String>>, sep: &str) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(sep),
        _ => "<none>".into(),
    }
}

fn name(meta: &ObjectMeta) -> Value {
    meta.name.clone().unwrap_or_default().into()
}

/// READY, STATUS and RESTARTS as kubectl derives them from a pod's status.
pub fn pod_summary(p: &Pod) -> (String, String, i32) {
    let status = p.status.clone().unwrap_or_default();
    let containers = p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let cs = status.container_statuses.clone().unwrap_or_default();
    let ready = cs.iter().filter(|c| c.ready).count();
    let restarts = cs.iter().map(|c| c.restart_count).sum();
    let mut reason = status
        .reason
        .clone()
        .or(status.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    for c in cs.iter().rev() {
        if let Some(st) = &c.state {
            if let Some(w) = st.waiting.as_ref().and_then(|w| w.reason.clone()) {
                reason = w;
            } else if let Some(t) = &st.terminated {
                reason = t.reason.clone().unwrap_or_else(|| "Error".into());
            }
        }
    }
    if p.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    (format!("{ready}/{containers}"), reason, restarts)
}

pub fn pods(pods: &[&Pod], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        col("Ready", 0),
        col("Status", 0),
        col("Restarts", 0),
        AGE,
        col("IP", 1),
        col("Node", 1),
        col("Nominated Node", 1),
        col("Readiness Gates", 1),
    ]);
    for p in pods {
        let (ready, status, restarts) = pod_summary(p);
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        t.row(
            &p.metadata,
            vec![
                name(&p.metadata),
                ready.into(),
                status.into(),
                restarts.to_string().into(),
                age(p.metadata.creation_timestamp.as_ref(), now).into(),
                ip.unwrap_or_else(|| "<none>".into()).into(),
                state::pod_node(p).unwrap_or("<none>").into(),
                "<none>".into(),
                "<none>".into(),
            ],
        );
    }
    t
}

/// kubectl's STATUS of a node: its readiness, and `SchedulingDisabled`
/// when it is cordoned.
fn node_status(n: &Node, ready: bool) -> String {
    let mut s = if ready { "Ready" } else { "NotReady" }.to_string();
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

pub fn nodes(nodes: &[&Node], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        col("Status", 0),
        col("Roles", 0),
        AGE,
        col("Version", 0),
        col("Internal-IP", 1),
        col("External-IP", 1),
        col("OS-Image", 1),
        col("Kernel-Version", 1),
        col("Container-Runtime", 1),
    ]);
    for n in nodes {
        let st = n.status.clone().unwrap_or_default();
        let ready = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let roles: Vec<String> = n
            .metadata
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
            .collect();
        let info = st.node_info.clone().unwrap_or_default();
        let addr = |t: &str| {
            st.addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == t)
                .map(|a| a.address.clone())
                .unwrap_or_else(|| "<none>".into())
        };
        t.row(
            &n.metadata,
            vec![
                name(&n.metadata),
                node_status(n, ready).into(),
                if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",").into()
                },
                age(n.metadata.creation_timestamp.as_ref(), now).into(),
                info.kubelet_version.clone().into(),
                addr("InternalIP").into(),
                addr("ExternalIP").into(),
                info.os_image.into(),
                info.kernel_version.into(),
                info.container_runtime_version.into(),
            ],
        );
    }
    t
}

pub fn deployments(deps: &[&Deployment], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        col("Ready", 0),
        int("Up-to-date", 0),
        int("Available", 0),
        AGE,
        col("Containers", 1),
        col("Images", 1),
        col("Selector", 1),
    ]);
    for d in deps {
        let spec = d.spec.clone().unwrap_or_default();
        let st = d.status.clone().unwrap_or_default();
        let containers = spec.template.spec.clone().unwrap_or_default().containers;
        let join = |f: &dyn Fn(&k8s_openapi::api::core::v1::Container) -> String| {
            containers.iter().map(f).collect::<Vec<_>>().join(",")
        };
        t.row(
            &d.metadata,
            vec![
                name(&d.metadata),
                format!(
                    "{}/{}",
                    st.ready_replicas.unwrap_or(0),
                    spec.replicas.unwrap_or(1)
                )
                .into(),
                st.updated_replicas.unwrap_or(0).into(),
                st.available_replicas.unwrap_or(0).into(),
                age(d.metadata.creation_timestamp.as_ref(), now).into(),
                join(&|c| c.name.clone()).into(),
                join(&|c| c.image.clone().unwrap_or_default()).into(),
                map_lines(spec.selector.match_labels.as_ref(), ",").into(),
            ],
        );
    }
    t
}

/// kubectl's ReplicaSet columns: NAME DESIRED CURRENT READY AGE, and with
/// `-o wide` CONTAINERS IMAGES SELECTOR (`printReplicaSet`).
pub fn replica_sets(sets: &[&ReplicaSet], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        int("Desired", 0),
        int("Current", 0),
        int("Ready", 0),
        AGE,
        col("Containers", 1),
        col("Images", 1),
        col("Selector", 1),
    ]);
    for r in sets {
        let spec = r.spec.clone().unwrap_or_default();
        let st = r.status.clone().unwrap_or_default();
        let containers = spec
            .template
            .and_then(|t| t.spec)
            .map(|s| s.containers)
            .unwrap_or_default();
        let join = |f: &dyn Fn(&k8s_openapi::api::core::v1::Container) -> String| {
            containers.iter().map(f).collect::<Vec<_>>().join(",")
        };
        t.row(
            &r.metadata,
            vec![
                name(&r.metadata),
                spec.replicas.unwrap_or(1).into(),
                st.replicas.into(),
                st.ready_replicas.unwrap_or(0).into(),
                age(r.metadata.creation_timestamp.as_ref(), now).into(),
                join(&|c| c.name.clone()).into(),
                join(&|c| c.image.clone().unwrap_or_default()).into(),
                map_lines(spec.selector.match_labels.as_ref(), ",").into(),
            ],
        );
    }
    t
}

/// PORT(S): `80/TCP`, `80:31234/TCP`, comma-separated.
pub fn service_ports(s: &Service) -> String {
    let ports: Vec<String> = s
        .spec
        .iter()
        .flat_map(|sp| sp.ports.iter().flatten())
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(n) => format!("{}:{n}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// EXTERNAL-IP: `<none>`, `<pending>` for a LoadBalancer without ingress, or the addresses.
pub fn external_ip(s: &Service) -> String {
    if service_type(s) == "ExternalName" {
        return s
            .spec
            .as_ref()
            .and_then(|sp| sp.external_name.clone())
            .unwrap_or_else(|| "<none>".into());
    }
    let mut ips: Vec<String> = s
        .spec
        .iter()
        .flat_map(|sp| sp.external_ips.iter().flatten().cloned())
        .collect();
    let ingress: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    if service_type(s) == "LoadBalancer" {
        if ingress.is_empty() && ips.is_empty() {
            return "<pending>".into();
        }
        ips.extend(ingress);
    }
    if ips.is_empty() {
        "<none>".into()
    } else {
        ips.join(",")
    }
}

pub fn services(svcs: &[&Service], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        col("Type", 0),
        col("Cluster-IP", 0),
        col("External-IP", 0),
        col("Port(s)", 0),
        AGE,
        col("Selector", 1),
    ]);
    for s in svcs {
        t.row(
            &s.metadata,
            vec![
                name(&s.metadata),
                service_type(s).into(),
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.cluster_ip.clone())
                    .unwrap_or_else(|| "<none>".into())
                    .into(),
                external_ip(s).into(),
                service_ports(s).into(),
                age(s.metadata.creation_timestamp.as_ref(), now).into(),
                map_lines(s.spec.as_ref().and_then(|sp| sp.selector.as_ref()), ",").into(),
            ],
        );
    }
    t
}

pub fn endpoints(eps: &[&Endpoints], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Endpoints", 0), AGE]);
    for e in eps {
        t.row(
            &e.metadata,
            vec![
                name(&e.metadata),
                endpoints_summary(Some(e), 3).into(),
                age(e.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

/// kubectl's `get endpointslices`: every address (ready or not) and the
/// port numbers, three of each at most, `<unset>` for none.
pub fn endpoint_slices(slices: &[&EndpointSlice], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        NAME,
        col("AddressType", 0),
        col("Ports", 0),
        col("Endpoints", 0),
        AGE,
    ]);
    for s in slices {
        let ports = s.ports.iter().flatten().map(|p| match (p.port, &p.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".into(),
        });
        let addresses = s.endpoints.iter().flat_map(|e| e.addresses.iter().cloned());
        t.row(
            &s.metadata,
            vec![
                name(&s.metadata),
                s.address_type.clone().into(),
                three_or_more(ports).into(),
                three_or_more(addresses).into(),
                age(s.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

/// kubectl's `listWithMoreString`: `a,b,c + 2 more...`, `<unset>` when empty.
fn three_or_more(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        return "<unset>".into();
    }
    let shown = all[..all.len().min(3)].join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

pub fn events(evs: &[&Event], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![
        col("Last Seen", 0),
        col("Type", 0),
        col("Reason", 0),
        col("Object", 0),
        col("Message", 0),
    ]);
    for e in evs {
        let o = &e.involved_object;
        t.row(
            &e.metadata,
            vec![
                age(e.last_timestamp.as_ref(), now).into(),
                e.type_.clone().unwrap_or_default().into(),
                e.reason.clone().unwrap_or_default().into(),
                format!(
                    "{}/{}",
                    o.kind.clone().unwrap_or_default().to_lowercase(),
                    o.name.clone().unwrap_or_default()
                )
                .into(),
                e.message.clone().unwrap_or_default().into(),
            ],
        );
    }
    t
}

pub fn secrets(secrets: &[&Secret], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Type", 0), int("Data", 0), AGE]);
    for s in secrets {
        t.row(
            &s.metadata,
            vec![
                name(&s.metadata),
                s.type_.clone().unwrap_or_else(|| "Opaque".into()).into(),
                super::secrets::secret_data_count(s).into(),
                age(s.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

pub fn config_maps(cms: &[&ConfigMap], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, int("Data", 0), AGE]);
    for c in cms {
        t.row(
            &c.metadata,
            vec![
                name(&c.metadata),
                super::secrets::config_map_data_count(c).into(),
                age(c.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

pub fn service_accounts(sas: &[&ServiceAccount], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, int("Secrets", 0), AGE]);
    for s in sas {
        t.row(
            &s.metadata,
            vec![
                name(&s.metadata),
                s.secrets.as_ref().map_or(0, Vec::len).into(),
                age(s.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

/// kube-apiserver's Role and ClusterRole columns: a creation time, not an age.
fn created_at(meta: &ObjectMeta) -> Value {
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
        .into()
}

pub fn roles(roles: &[&Role], _now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Created At", 0)]);
    for r in roles {
        t.row(
            &r.metadata,
            vec![name(&r.metadata), created_at(&r.metadata)],
        );
    }
    t
}

pub fn cluster_roles(roles: &[&ClusterRole], _now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Created At", 0)]);
    for r in roles {
        t.row(
            &r.metadata,
            vec![name(&r.metadata), created_at(&r.metadata)],
        );
    }
    t
}

/// A binding's Role, Age, and with `-o wide` its Users, Groups and
/// ServiceAccounts.
fn binding_row(
    t: &mut Table,
    meta: &ObjectMeta,
    role: &RoleRef,
    subjects: Option<&Vec<Subject>>,
    now: DateTime<Utc>,
) {
    let of = |kind: &str| {
        subjects
            .into_iter()
            .flatten()
            .filter(|s| s.kind == kind)
            .map(|s| match (kind, s.namespace.as_deref()) {
                ("ServiceAccount", Some(ns)) => format!("{ns}/{}", s.name),
                _ => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    t.row(
        meta,
        vec![
            name(meta),
            format!("{}/{}", role.kind, role.name).into(),
            age(meta.creation_timestamp.as_ref(), now).into(),
            of("User").into(),
            of("Group").into(),
            of("ServiceAccount").into(),
        ],
    );
}

fn binding_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Role", 0),
        AGE,
        col("Users", 1),
        col("Groups", 1),
        col("ServiceAccounts", 1),
    ]
}

pub fn role_bindings(bs: &[&RoleBinding], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(binding_columns());
    for b in bs {
        binding_row(&mut t, &b.metadata, &b.role_ref, b.subjects.as_ref(), now);
    }
    t
}

pub fn cluster_role_bindings(bs: &[&ClusterRoleBinding], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(binding_columns());
    for b in bs {
        binding_row(&mut t, &b.metadata, &b.role_ref, b.subjects.as_ref(), now);
    }
    t
}

/// kubectl's NetworkPolicy columns: NAME POD-SELECTOR AGE, the same with
/// `-o wide` (`printNetworkPolicy`).
pub fn network_policies(nps: &[&NetworkPolicy], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Pod-Selector", 0), AGE]);
    for np in nps {
        let selector = np
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.clone())
            .unwrap_or_default();
        t.row(
            &np.metadata,
            vec![
                name(&np.metadata),
                super::selector::format_label_selector(&selector).into(),
                age(np.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

pub fn namespaces(nss: &[&Namespace], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(vec![NAME, col("Status", 0), AGE]);
    for n in nss {
        let phase = n.status.as_ref().and_then(|s| s.phase.clone());
        t.row(
            &n.metadata,
            vec![
                name(&n.metadata),
                phase.unwrap_or_else(|| "Active".into()).into(),
                age(n.metadata.creation_timestamp.as_ref(), now).into(),
            ],
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_kubectl_prints_them() {
        assert_eq!(human_duration(13), "13s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn network_policies_show_their_pod_selector() {
        let np = |sel: Value| -> NetworkPolicy {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default",
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"podSelector": sel}
            }))
            .unwrap()
        };
        let (all, some) = (np(json!({})), np(json!({"matchLabels": {"app": "web"}})));
        let now = "2026-01-01T00:02:05Z".parse().unwrap();
        let t = network_policies(&[&all, &some], now);
        let names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Pod-Selector", "Age"]);
        assert!(
            t.columns.iter().all(|c| c.priority == 0),
            "-o wide adds none"
        );
        assert_eq!(
            t.rows[0].cells,
            [json!("p"), json!("<none>"), json!("2m5s")]
        );
        assert_eq!(t.rows[1].cells[1], "app=web");
    }

    #[test]
    fn wide_columns_are_priority_one_and_rows_carry_metadata() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"run": "x"}},
            "spec": {"containers": [{"name": "c"}], "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.244.1.2"}
        }))
        .unwrap();
        let t = pods(&[&pod], Utc::now());
        let wide: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
        let v = t.to_json(true, "7");
        assert_eq!(v["kind"], "Table");
        assert_eq!(v["rows"][0]["cells"][2], "Running");
        assert_eq!(v["rows"][0]["cells"][5], "10.244.1.2");
        assert_eq!(v["rows"][0]["object"]["metadata"]["namespace"], "default");
        assert_eq!(v["columnDefinitions"][0]["format"], "name");
        assert!(t.to_json(false, "7")["rows"][0].get("object").is_none());
    }
}
