//! `netlab describe svc|pod|deploy|secret|configmap|netpol NAME`: kubectl's
//! field layout.

use super::client::{self, Client};
use super::get::{external_ip, Kind};
use super::printer::{age, fields, map_lines};
use crate::cluster::replicasets;
use crate::cluster::services::{endpoints_summary, service_type};
use crate::cluster::state;
use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// What `describe` reads from the lab's API for one object, as kubectl
/// does: the object, its events (by `involvedObject`), and for a Service
/// its Endpoints.
pub struct Described {
    pub object: Value,
    pub events: Vec<Event>,
    pub endpoints: Option<Endpoints>,
    /// A Deployment's ReplicaSets, a ReplicaSet's pods (the namespace's;
    /// the owned ones are picked by ownerReference).
    pub owned: Vec<Value>,
}

/// Reads what describing `kind` `name` needs from the API.
pub async fn fetch(client: &Client, kind: Kind, name: &str, namespace: &str) -> Result<Described> {
    let object = client
        .get(
            &client::path(kind, Some(namespace), Some(name)),
            client::JSON,
        )
        .await?;
    let endpoints = match kind.plural {
        "services" => {
            let ep = crate::api::resources::find("", "v1", "endpoints").expect("served");
            match client
                .get_opt(&client::path(ep, Some(namespace), Some(name)))
                .await?
            {
                Some(v) => Some(serde_json::from_value(v)?),
                None => None,
            }
        }
        _ => None,
    };
    // kubectl shows no events for these.
    let events = if matches!(kind.plural, "secrets" | "networkpolicies") {
        Vec::new()
    } else {
        let ev = crate::api::resources::find("", "v1", "events").expect("served");
        let fields = format!(
            "involvedObject.name={name},involvedObject.namespace={namespace},involvedObject.kind={}",
            kind.kind
        );
        let path = format!(
            "{}{}",
            client::path(ev, Some(namespace), None),
            client::query(&[("fieldSelector", &fields)])
        );
        let list = client.get(&path, client::JSON).await?;
        serde_json::from_value(list["items"].clone()).unwrap_or_default()
    };
    let owned_kind = match kind.plural {
        "deployments" => Some(("apps", "replicasets")),
        "replicasets" => Some(("", "pods")),
        _ => None,
    };
    let owned = match owned_kind {
        Some((g, plural)) => {
            let r = crate::api::resources::find(g, "v1", plural).expect("served");
            let list = client
                .get(&client::path(r, Some(namespace), None), client::JSON)
                .await?;
            list["items"].as_array().cloned().unwrap_or_default()
        }
        None => Vec::new(),
    };
    Ok(Described {
        object,
        events,
        endpoints,
        owned,
    })
}

fn typed<T: serde::de::DeserializeOwned>(items: &[Value]) -> Vec<T> {
    items
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

pub fn render(kind: Kind, d: &Described) -> Result<String> {
    let now = chrono::Utc::now();
    let o = d.object.clone();
    let body = match kind.plural {
        "services" => service(&serde_json::from_value(o)?, d.endpoints.as_ref()),
        "pods" => pod(&serde_json::from_value(o)?),
        "deployments" => deployment(&serde_json::from_value(o)?, &typed(&d.owned)),
        "replicasets" => replica_set(&serde_json::from_value(o)?, &typed(&d.owned)),
        "secrets" => return Ok(secret(&serde_json::from_value(o)?)),
        "configmaps" => config_map(&serde_json::from_value(o)?),
        "networkpolicies" => return Ok(network_policy(&serde_json::from_value(o)?)),
        _ => bail!("netlab describe does not know {} yet", kind.qualified()),
    };
    let events: Vec<&Event> = d.events.iter().collect();
    Ok(format!("{body}{}", events_section(&events, now)))
}

/// The `Events:` block of describe, kubectl's layout.
pub fn events_section(events: &[&Event], now: chrono::DateTime<chrono::Utc>) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".into();
    }
    let mut t = super::printer::Printer::new(["Type", "Reason", "Age", "From", "Message"]);
    t.row(["----", "------", "----", "----", "-------"]);
    for e in events {
        let last = age(e.last_timestamp.as_ref(), now);
        let count = e.count.unwrap_or(1);
        let when = if count > 1 {
            format!(
                "{last} (x{count} over {})",
                age(e.first_timestamp.as_ref(), now)
            )
        } else {
            last
        };
        t.row([
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            when,
            e.source
                .as_ref()
                .and_then(|s| s.component.clone())
                .unwrap_or_default(),
            e.message.clone().unwrap_or_default(),
        ]);
    }
    let mut out = String::from("Events:\n");
    for l in t.render().lines() {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

/// `name (current/desired replicas created)`, comma-separated, or `<none>`.
fn replica_sets_line(sets: &[&ReplicaSet]) -> String {
    if sets.is_empty() {
        return "<none>".into();
    }
    sets.iter()
        .map(|r| {
            format!(
                "{} ({}/{} replicas created)",
                r.metadata.name.as_deref().unwrap_or_default(),
                r.status.as_ref().map_or(0, |s| s.replicas),
                r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Conditions, OldReplicaSets and NewReplicaSet of kubectl's
/// describe deployment (every old ReplicaSet, oldest first, as kubectl
/// 1.27–1.33 print them).
fn deployment_rollout(d: &Deployment, sets: &[ReplicaSet]) -> String {
    let mut out = String::new();
    let conds = d.status.iter().flat_map(|s| s.conditions.iter().flatten());
    let mut t = super::printer::Printer::new(["Type", "Status", "Reason"]);
    t.row(["----", "------", "------"]);
    let mut any = false;
    for c in conds {
        any = true;
        t.row([
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
        ]);
    }
    if any {
        out.push_str("Conditions:\n");
        for l in t.render().lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    let ns = state::namespace(&d.metadata);
    let owned: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|r| {
            state::namespace(&r.metadata) == ns && replicasets::controlled_by(&r.metadata, uid)
        })
        .collect();
    let template = d.spec.as_ref().map(|s| &s.template);
    let hash_free = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(replicasets::HASH_LABEL);
        }
        t
    };
    let is_new = |r: &ReplicaSet| {
        r.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(hash_free)
            .zip(template.map(hash_free))
            .is_some_and(|(a, b)| a == b)
    };
    let new: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|r| is_new(r))
        .take(1)
        .collect();
    let old: Vec<&ReplicaSet> = owned.iter().copied().filter(|r| !is_new(r)).collect();
    out.push_str(&fields(&[
        (s("OldReplicaSets"), replica_sets_line(&old)),
        (s("NewReplicaSet"), replica_sets_line(&new)),
    ]));
    out
}

/// kubectl's describe replicaset.
pub fn replica_set(r: &ReplicaSet, pods: &[Pod]) -> String {
    let spec = r.spec.clone().unwrap_or_default();
    let status = r.status.clone().unwrap_or_default();
    let uid = r.metadata.uid.as_deref().unwrap_or_default();
    let ns = state::namespace(&r.metadata);
    let phase = |want: &str| {
        pods.iter()
            .filter(|p| {
                state::namespace(&p.metadata) == ns && replicasets::controlled_by(&p.metadata, uid)
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .unwrap_or("Pending")
                    == want
            })
            .count()
    };
    let mut rows = vec![
        (s("Name"), r.metadata.name.clone().unwrap_or_default()),
        (s("Namespace"), ns.to_string()),
        (
            s("Selector"),
            map_lines(spec.selector.match_labels.as_ref(), ","),
        ),
        (s("Labels"), map_lines(r.metadata.labels.as_ref(), "\n")),
        (
            s("Annotations"),
            map_lines(r.metadata.annotations.as_ref(), "\n"),
        ),
    ];
    if let Some(o) = replicasets::controller_of(&r.metadata) {
        rows.push((s("Controlled By"), format!("{}/{}", o.kind, o.name)));
    }
    rows.push((
        s("Replicas"),
        format!(
            "{} current / {} desired",
            status.replicas,
            spec.replicas.unwrap_or(1)
        ),
    ));
    rows.push((
        s("Pods Status"),
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            phase("Running"),
            phase("Pending"),
            phase("Succeeded"),
            phase("Failed")
        ),
    ));
    let mut out = fields(&rows);
    out.push_str("Pod Template:\n");
    let template = spec.template.unwrap_or_default();
    out.push_str(&format!(
        "  Labels:  {}\n",
        map_lines(
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            ","
        )
    ));
    out.push_str("  Containers:\n");
    for c in template.spec.iter().flat_map(|p| p.containers.iter()) {
        out.push_str(&format!(
            "   {}:\n    Image:  {}\n",
            c.name,
            c.image.clone().unwrap_or_default()
        ));
    }
    out
}

pub fn deployment(d: &Deployment, sets: &[ReplicaSet]) -> String {
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let rows = vec![
        (s("Name"), d.metadata.name.clone().unwrap_or_default()),
        (s("Namespace"), state::namespace(&d.metadata).to_string()),
        (
            s("CreationTimestamp"),
            d.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_rfc2822())
                .unwrap_or_default(),
        ),
        (s("Labels"), map_lines(d.metadata.labels.as_ref(), "\n")),
        (
            s("Annotations"),
            map_lines(d.metadata.annotations.as_ref(), "\n"),
        ),
        (
            s("Selector"),
            map_lines(spec.selector.match_labels.as_ref(), ","),
        ),
        (
            s("Replicas"),
            format!(
                "{want} desired | {} updated | {} total | {} available | {} unavailable",
                st.updated_replicas.unwrap_or(0),
                st.replicas.unwrap_or(0),
                st.available_replicas.unwrap_or(0),
                (st.replicas.unwrap_or(0) - st.available_replicas.unwrap_or(0)).max(0)
            ),
        ),
        (
            s("StrategyType"),
            spec.strategy
                .as_ref()
                .and_then(|s| s.type_.clone())
                .unwrap_or_else(|| "RollingUpdate".into()),
        ),
    ];
    let mut out = fields(&rows);
    out.push_str("Pod Template:\n");
    out.push_str(&format!(
        "  Labels:  {}\n",
        map_lines(
            spec.template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref()),
            ","
        )
    ));
    out.push_str("  Containers:\n");
    for c in spec.template.spec.iter().flat_map(|p| p.containers.iter()) {
        out.push_str(&format!(
            "   {}:\n    Image:  {}\n",
            c.name,
            c.image.clone().unwrap_or_default()
        ));
        for p in c.ports.iter().flatten() {
            out.push_str(&format!(
                "    Port:   {}/{}\n",
                p.container_port,
                p.protocol.clone().unwrap_or_else(|| "TCP".into())
            ));
        }
    }
    out.push_str(&deployment_rollout(d, sets));
    out
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

pub fn service(svc: &Service, endpoints: Option<&Endpoints>) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let ns = state::namespace(&svc.metadata);
    let name = svc.metadata.name.clone().unwrap_or_default();
    let ip = spec.cluster_ip.clone().unwrap_or_else(|| "None".into());
    let mut rows = vec![
        (s("Name"), name.clone()),
        (s("Namespace"), ns.to_string()),
        (s("Labels"), map_lines(svc.metadata.labels.as_ref(), "\n")),
        (
            s("Annotations"),
            map_lines(svc.metadata.annotations.as_ref(), "\n"),
        ),
        (s("Selector"), map_lines(spec.selector.as_ref(), ",")),
        (s("Type"), service_type(svc).to_string()),
        (
            s("IP Family Policy"),
            spec.ip_family_policy
                .clone()
                .unwrap_or_else(|| "SingleStack".into()),
        ),
        (
            s("IP Families"),
            spec.ip_families.clone().unwrap_or_default().join(","),
        ),
        (s("IP"), ip.clone()),
        (
            s("IPs"),
            spec.cluster_ips
                .clone()
                .unwrap_or_else(|| vec![ip])
                .join(","),
        ),
    ];
    if service_type(svc) == "ExternalName" {
        rows.push((s("External Name"), external_ip(svc)));
    }
    if service_type(svc) == "LoadBalancer" {
        let ingress = external_ip(svc);
        if ingress != "<pending>" {
            rows.push((s("LoadBalancer Ingress"), ingress));
        }
    }
    for p in spec.ports.iter().flatten() {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let pname = p
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<unset>".into());
        rows.push((s("Port"), format!("{pname}  {}/{proto}", p.port)));
        let target = match &p.target_port {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(n)) => n.clone(),
            None => p.port.to_string(),
        };
        rows.push((s("TargetPort"), format!("{target}/{proto}")));
        if let Some(np) = p.node_port {
            rows.push((s("NodePort"), format!("{pname}  {np}/{proto}")));
        }
        // Endpoints of this port only (by name), as kubectl prints them.
        let per_port = endpoints.map(|e| {
            let mut e = e.clone();
            for subset in e.subsets.iter_mut().flatten() {
                subset.ports = subset.ports.take().map(|ports| {
                    ports
                        .into_iter()
                        .filter(|ep| {
                            ep.name.clone().unwrap_or_default()
                                == p.name.clone().unwrap_or_default()
                        })
                        .collect()
                });
            }
            e
        });
        rows.push((
            s("Endpoints"),
            endpoints_summary(per_port.as_ref(), 3).replace("<none>", ""),
        ));
    }
    let affinity = spec
        .session_affinity
        .clone()
        .unwrap_or_else(|| "None".into());
    rows.push((s("Session Affinity"), affinity.clone()));
    if affinity == "ClientIP" {
        let t = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800);
        rows.push((s("Session Affinity Timeout"), t.to_string()));
    }
    if let Some(p) = &spec.external_traffic_policy {
        rows.push((s("External Traffic Policy"), p.clone()));
    }
    rows.push((
        s("Internal Traffic Policy"),
        spec.internal_traffic_policy
            .clone()
            .unwrap_or_else(|| "Cluster".into()),
    ));
    fields(&rows)
}

fn meta_rows(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    fields(&[
        (s("Name"), meta.name.clone().unwrap_or_default()),
        (s("Namespace"), state::namespace(meta).to_string()),
        (s("Labels"), map_lines(meta.labels.as_ref(), "\n")),
        (s("Annotations"), map_lines(meta.annotations.as_ref(), "\n")),
    ])
}

/// kubectl shows a secret's keys and sizes, never its values.
pub fn secret(x: &Secret) -> String {
    let mut out = meta_rows(&x.metadata);
    out.push_str(&format!(
        "\nType:  {}\n\nData\n====\n",
        x.type_.as_deref().unwrap_or("Opaque")
    ));
    let data = x.data.clone().unwrap_or_default();
    let width = data.keys().map(|k| k.len() + 1).max().unwrap_or(0);
    for (k, v) in &data {
        out.push_str(&format!(
            "{:<width$}  {} bytes\n",
            format!("{k}:"),
            v.0.len()
        ));
    }
    out.push('\n');
    out
}

/// kubectl prints a configmap's values in full.
pub fn config_map(x: &ConfigMap) -> String {
    let mut out = meta_rows(&x.metadata);
    out.push_str("\nData\n====\n");
    for (k, v) in x.data.iter().flatten() {
        out.push_str(&format!("{k}:\n----\n{v}\n\n"));
    }
    out.push_str("\nBinaryData\n====\n");
    for (k, v) in x.binary_data.iter().flatten() {
        out.push_str(&format!("{k}: {} bytes\n", v.0.len()));
    }
    out.push('\n');
    out
}

/// kubectl's `describe networkpolicy` (`describeNetworkPolicy`): each rule's
/// ports and peers, rules separated by a `----------` line (rules are
/// OR-ed; the peers of one rule too, each under its own `From:`/`To:`).
pub fn network_policy(np: &NetworkPolicy) -> String {
    use crate::cluster::network_policies::{EGRESS, INGRESS};
    use crate::cluster::selector::format_label_selector as selector;
    let meta = &np.metadata;
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default();
    // As kubectl, without the copy `kubectl apply` keeps of what it applied.
    let mut annotations = meta.annotations.clone();
    if let Some(a) = annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let mut out = fields(&[
        (s("Name"), meta.name.clone().unwrap_or_default()),
        (s("Namespace"), state::namespace(meta).to_string()),
        (s("Created on"), created),
        (s("Labels"), map_lines(meta.labels.as_ref(), "\n")),
        (s("Annotations"), map_lines(annotations.as_ref(), "\n")),
    ]);
    let spec = np.spec.clone().unwrap_or_default();
    let pods = spec.pod_selector.clone().unwrap_or_default();
    out.push_str("Spec:\n  PodSelector:     ");
    if pods.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && pods.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        out.push_str("<none> (Allowing the specific traffic to all pods in this namespace)\n");
    } else {
        out.push_str(&format!("{}\n", selector(&pods)));
    }
    let types = spec.policy_types.clone().unwrap_or_default();
    let ingress: Vec<_> = spec
        .ingress
        .iter()
        .flatten()
        .map(|r| {
            (
                r.ports.as_deref().unwrap_or_default(),
                r.from.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let egress: Vec<_> = spec
        .egress
        .iter()
        .flatten()
        .map(|r| {
            (
                r.ports.as_deref().unwrap_or_default(),
                r.to.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    for (ty, rules, word, peer_word, any_peer) in [
        (
            INGRESS,
            ingress,
            "ingress",
            "From",
            "traffic not restricted by source",
        ),
        (
            EGRESS,
            egress,
            "egress",
            "To",
            "traffic not restricted by destination",
        ),
    ] {
        if !types.iter().any(|t| t == ty) {
            out.push_str(&format!("  Not affecting {word} traffic\n"));
            continue;
        }
        out.push_str(&format!("  Allowing {word} traffic:\n"));
        if rules.is_empty() {
            out.push_str(&format!(
                "    <none> (Selected pods are isolated for {word} connectivity)\n"
            ));
        }
        for (i, (ports, peers)) in rules.iter().enumerate() {
            if i > 0 {
                out.push_str("    ----------\n");
            }
            if ports.is_empty() {
                out.push_str("    To Port: <any> (traffic allowed to all ports)\n");
            }
            for p in *ports {
                out.push_str(&format!("    {}\n", port_line(p)));
            }
            if peers.is_empty() {
                out.push_str(&format!("    {peer_word}: <any> ({any_peer})\n"));
            }
            for p in *peers {
                out.push_str(&format!("    {peer_word}:\n{}", peer_lines(p, &selector)));
            }
        }
    }
    let types = match types.join(", ") {
        t if t.is_empty() => "<none>".to_string(),
        t => t,
    };
    out.push_str(&format!("  Policy Types: {types}\n"));
    out
}

/// `To Port: 80/TCP`, `To Port Range: 32000-32768/TCP`; a port with no
/// number or name is all ports of its protocol (Go prints it `<nil>`).
fn port_line(p: &NetworkPolicyPort) -> String {
    let proto = p.protocol.as_deref().unwrap_or("TCP");
    let port = match &p.port {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(n)) => n.clone(),
        None => "<nil>".into(),
    };
    match p.end_port {
        None => format!("To Port: {port}/{proto}"),
        Some(end) => format!("To Port Range: {port}-{end}/{proto}"),
    }
}

/// One peer under its `From:` or `To:` line.
fn peer_lines(
    p: &NetworkPolicyPeer,
    selector: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String,
) -> String {
    let mut out = String::new();
    if let Some(ns) = &p.namespace_selector {
        out.push_str(&format!("      NamespaceSelector: {}\n", selector(ns)));
    }
    if let Some(pods) = &p.pod_selector {
        out.push_str(&format!("      PodSelector: {}\n", selector(pods)));
    }
    if let (Some(b), true) = (&p.ip_block, out.is_empty()) {
        let except = b.except.clone().unwrap_or_default().join(", ");
        out.push_str(&format!(
            "      IPBlock:\n        CIDR: {}\n        Except: {except}\n",
            b.cidr
        ));
    }
    out
}

/// The `Volumes:` block of describe pod.
fn volumes_section(spec: &k8s_openapi::api::core::v1::PodSpec) -> String {
    let volumes = spec.volumes.clone().unwrap_or_default();
    if volumes.is_empty() {
        return "Volumes:                     <none>\n".into();
    }
    let mut out = String::from("Volumes:\n");
    for v in &volumes {
        out.push_str(&format!("  {}:\n", v.name));
        let rows: Vec<(String, String)> = if let Some(x) = &v.secret {
            vec![
                (s("Type"), s("Secret (a volume populated by a Secret)")),
                (s("SecretName"), x.secret_name.clone().unwrap_or_default()),
                (s("Optional"), x.optional.unwrap_or(false).to_string()),
            ]
        } else if let Some(x) = &v.config_map {
            vec![
                (
                    s("Type"),
                    s("ConfigMap (a volume populated by a ConfigMap)"),
                ),
                (s("Name"), x.name.clone()),
                (s("Optional"), x.optional.unwrap_or(false).to_string()),
            ]
        } else if let Some(x) = &v.projected {
            let sources = x.sources.clone().unwrap_or_default();
            let mut rows = vec![(
                s("Type"),
                s("Projected (a volume that contains injected data from multiple sources)"),
            )];
            for p in &sources {
                if let Some(t) = &p.service_account_token {
                    let seconds = t.expiration_seconds.unwrap_or(3600);
                    rows.push((s("TokenExpirationSeconds"), seconds.to_string()));
                }
                if let Some(c) = &p.config_map {
                    rows.push((s("ConfigMapName"), c.name.clone()));
                    let optional = c.optional.map_or("<nil>".into(), |o| o.to_string());
                    rows.push((s("ConfigMapOptional"), optional));
                }
                if let Some(x) = &p.secret {
                    rows.push((s("SecretName"), x.name.clone()));
                }
                if p.downward_api.is_some() {
                    rows.push((s("DownwardAPI"), s("true")));
                }
            }
            rows
        } else if let Some(x) = &v.empty_dir {
            vec![
                (
                    s("Type"),
                    s("EmptyDir (a temporary directory that shares a pod's lifetime)"),
                ),
                (s("Medium"), x.medium.clone().unwrap_or_default()),
                (
                    s("SizeLimit"),
                    x.size_limit
                        .as_ref()
                        .map(|q| q.0.clone())
                        .unwrap_or_else(|| "<unset>".into()),
                ),
            ]
        } else {
            Vec::new()
        };
        for l in fields(&rows).lines() {
            out.push_str(&format!("    {l}\n"));
        }
    }
    out
}

pub fn pod(p: &Pod) -> String {
    let spec = p.spec.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let (_, phase, _) = super::get::pod_summary(p);
    let mut rows = vec![
        (s("Name"), p.metadata.name.clone().unwrap_or_default()),
        (s("Namespace"), state::namespace(&p.metadata).to_string()),
        (
            s("Service Account"),
            spec.service_account_name.clone().unwrap_or_default(),
        ),
        (
            s("Node"),
            format!(
                "{}/{}",
                spec.node_name.clone().unwrap_or_default(),
                status.host_ip.clone().unwrap_or_default()
            ),
        ),
        (
            s("Start Time"),
            status
                .start_time
                .as_ref()
                .map(|t| t.0.to_rfc2822())
                .unwrap_or_else(|| "<unset>".into()),
        ),
        (s("Labels"), map_lines(p.metadata.labels.as_ref(), "\n")),
        (
            s("Annotations"),
            map_lines(p.metadata.annotations.as_ref(), "\n"),
        ),
        (s("Status"), phase),
        (s("IP"), status.pod_ip.clone().unwrap_or_default()),
    ];
    if let Some(owner) = p.metadata.owner_references.iter().flatten().next() {
        rows.push((s("Controlled By"), format!("{}/{}", owner.kind, owner.name)));
    }
    let mut containers = String::new();
    for c in &spec.containers {
        let cs = status
            .container_statuses
            .iter()
            .flatten()
            .find(|x| x.name == c.name);
        containers.push_str(&format!("{}:\n", c.name));
        containers.push_str(&format!(
            "  Image:          {}\n",
            c.image.clone().unwrap_or_default()
        ));
        let ports: Vec<String> = c
            .ports
            .iter()
            .flatten()
            .map(|cp| {
                format!(
                    "{}/{}",
                    cp.container_port,
                    cp.protocol.clone().unwrap_or_else(|| "TCP".into())
                )
            })
            .collect();
        containers.push_str(&format!(
            "  Port:           {}\n",
            if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(", ")
            }
        ));
        let st = cs.and_then(|c| c.state.clone()).unwrap_or_default();
        let state_text = if st.running.is_some() {
            "Running"
        } else if st.terminated.is_some() {
            "Terminated"
        } else {
            "Waiting"
        };
        containers.push_str(&format!("  State:          {state_text}\n"));
        if let Some(w) = &st.waiting {
            if let Some(r) = &w.reason {
                containers.push_str(&format!("    Reason:       {r}\n"));
            }
            if let Some(m) = &w.message {
                containers.push_str(&format!("    Message:      {m}\n"));
            }
        }
        containers.push_str(&format!(
            "  Ready:          {}\n",
            if cs.is_some_and(|c| c.ready) {
                "True"
            } else {
                "False"
            }
        ));
        containers.push_str(&format!(
            "  Restart Count:  {}\n",
            cs.map(|c| c.restart_count).unwrap_or(0)
        ));
        let mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                let projected = spec.volumes.iter().flatten().any(|v| {
                    v.name == m.name
                        && (v.secret.is_some() || v.config_map.is_some() || v.projected.is_some())
                });
                let ro = projected || m.read_only.unwrap_or(false);
                format!(
                    "    {} from {} ({})\n",
                    m.mount_path,
                    m.name,
                    if ro { "ro" } else { "rw" }
                )
            })
            .collect();
        if mounts.is_empty() {
            containers.push_str("  Mounts:         <none>\n");
        } else {
            containers.push_str("  Mounts:\n");
            for m in mounts {
                containers.push_str(&m);
            }
        }
    }
    rows.push((s("Containers"), String::new()));
    let mut out = fields(&rows);
    for l in containers.lines() {
        out.push_str(&format!("  {l}\n"));
    }
    let conds: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| format!("  {:<26}{}", c.type_, c.status))
        .collect();
    out.push_str("Conditions:\n  Type                      Status\n");
    for c in conds {
        out.push_str(&c);
        out.push('\n');
    }
    out.push_str(&volumes_section(&spec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_policy_reads_as_kubectl_describes_it() {
        let mut np: NetworkPolicy = serde_yaml_ng::from_str(
            "metadata: {name: web, namespace: shop, creationTimestamp: '2026-03-01T10:12:03Z', labels: {a: b}}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}, {port: 8000, endPort: 8080, protocol: UDP}]
    from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {role: client}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}
  - {}
  egress: []
  policyTypes: [Ingress, Egress]
",
        )
        .unwrap();
        crate::cluster::network_policies::defaults(&mut np);
        assert_eq!(
            network_policy(&np),
            "Name:         web
Namespace:    shop
Created on:   2026-03-01 10:12:03 +0000 UTC
Labels:       a=b
Annotations:  <none>
Spec:
  PodSelector:     app=web
  Allowing ingress traffic:
    To Port: http/TCP
    To Port Range: 8000-8080/UDP
    From:
      NamespaceSelector: team=a
      PodSelector: role=client
    From:
      IPBlock:
        CIDR: 10.0.0.0/8
        Except: 10.1.0.0/16, 10.2.0.0/16
    ----------
    To Port: <any> (traffic allowed to all ports)
    From: <any> (traffic not restricted by source)
  Allowing egress traffic:
    <none> (Selected pods are isolated for egress connectivity)
  Policy Types: Ingress, Egress
"
        );
        let all: NetworkPolicy = serde_yaml_ng::from_str(
            "metadata: {name: all}\nspec: {podSelector: {}, policyTypes: [Ingress]}",
        )
        .unwrap();
        let text = network_policy(&all);
        assert!(text.contains("  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)\n"), "{text}");
        assert!(
            text.ends_with("  Not affecting egress traffic\n  Policy Types: Ingress\n"),
            "{text}"
        );
    }

    #[test]
    fn an_admitted_pod_shows_its_account_and_credentials_as_kubectl_does() {
        let mut p: Pod = serde_yaml_ng::from_str(
            "metadata: {name: p, uid: u}\nspec:\n  containers: [{name: c, image: x}]\n",
        )
        .unwrap();
        crate::cluster::access::admit_pod(&mut p, &Default::default());
        let text = pod(&p);
        // A line with `key:` then (after kubectl's padding) `value`.
        let shows = |key: &str, value: &str| {
            text.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim() == value)
            })
        };
        assert!(shows("Service Account:", "default"), "{text}");
        assert!(
            shows(
                "Type:",
                "Projected (a volume that contains injected data from multiple sources)"
            ),
            "{text}"
        );
        assert!(shows("TokenExpirationSeconds:", "3607"), "{text}");
        assert!(shows("ConfigMapName:", "kube-root-ca.crt"), "{text}");
        assert!(shows("DownwardAPI:", "true"), "{text}");
        assert!(
            text.lines().any(|l| l
                .contains("/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-")
                && l.ends_with("(ro)")),
            "{text}"
        );
    }
}
