//! `netlab get`: kubectl's columns for pods, nodes, deployments, services,
//! endpoints, events, secrets and configmaps.

use super::printer::{age, structured, Format, Printer};
use crate::cluster::services::{endpoints_summary, service_type};
use crate::cluster::{state, ClusterState, Selector};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Node, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
    Deployment,
    Service,
    Endpoints,
    Event,
    Secret,
    ConfigMap,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s.to_lowercase().as_str() {
            "po" | "pod" | "pods" => Kind::Pod,
            "no" | "node" | "nodes" => Kind::Node,
            "deploy" | "deployment" | "deployments" | "deployment.apps" | "deployments.apps" => {
                Kind::Deployment
            }
            "svc" | "service" | "services" => Kind::Service,
            "ep" | "endpoints" => Kind::Endpoints,
            "ev" | "event" | "events" => Kind::Event,
            "secret" | "secrets" => Kind::Secret,
            "cm" | "configmap" | "configmaps" => Kind::ConfigMap,
            other => bail!(
                "the server doesn't have a resource type {other:?} (netlab knows pods, nodes, deployments, services, endpoints, events, secrets, configmaps)"
            ),
        })
    }
    fn prefix(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Node => "node",
            Kind::Deployment => "deployment.apps",
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::Event => "event",
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
        }
    }
    /// The plural kubectl uses in "not found" messages.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Deployment => "deployments.apps",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::Event => "events",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
        }
    }
}

pub struct GetArgs<'a> {
    pub kinds: Vec<Kind>,
    pub names: Vec<String>,
    pub selector: Selector,
    pub format: Format,
    pub namespace: Option<&'a str>, // None: all namespaces
    pub no_headers: bool,
}

/// Splits `pods`, `po,deploy`, `pod/NAME` forms into kinds and names.
pub fn parse_targets(targets: &[String]) -> Result<(Vec<Kind>, Vec<String>)> {
    let Some(first) = targets.first() else {
        bail!("you must specify the type of resource to get, e.g. netlab get pods");
    };
    if first.contains('/') {
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        for t in targets {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"))?;
            let kind = Kind::parse(k)?;
            if !kinds.is_empty() && kinds[0] != kind {
                bail!("netlab get TYPE/NAME takes one type at a time");
            }
            kinds = vec![kind];
            names.push(n.to_string());
        }
        return Ok((kinds, names));
    }
    let kinds = first
        .split(',')
        .map(Kind::parse)
        .collect::<Result<Vec<_>>>()?;
    Ok((kinds, targets[1..].to_vec()))
}

pub fn render(state: &ClusterState, args: &GetArgs<'_>, now: DateTime<Utc>) -> Result<String> {
    let mut out = String::new();
    let multi = args.kinds.len() > 1;
    let mut found_any = false;
    let mut structured_items: Vec<serde_json::Value> = Vec::new();
    for kind in &args.kinds {
        let keep = |meta: &ObjectMeta, namespaced: bool| {
            let in_ns = !namespaced || args.namespace.is_none_or(|ns| state::namespace(meta) == ns);
            let named = args.names.is_empty()
                || args
                    .names
                    .iter()
                    .any(|n| meta.name.as_deref() == Some(n.as_str()));
            in_ns && named && args.selector.matches(meta.labels.as_ref())
        };
        let (table, items) = match kind {
            Kind::Pod => {
                let pods: Vec<&Pod> = state
                    .pods
                    .iter()
                    .filter(|p| keep(&p.metadata, true))
                    .collect();
                (pods_table(&pods, args, now, multi), to_values(&pods))
            }
            Kind::Node => {
                let nodes: Vec<&Node> = state
                    .nodes
                    .iter()
                    .filter(|n| keep(&n.metadata, false))
                    .collect();
                (
                    nodes_table(&nodes, args.format, now, multi),
                    to_values(&nodes),
                )
            }
            Kind::Deployment => {
                let deps: Vec<&Deployment> = state
                    .deployments
                    .iter()
                    .filter(|d| keep(&d.metadata, true))
                    .collect();
                (deployments_table(&deps, args, now, multi), to_values(&deps))
            }
            Kind::Service => {
                let svcs: Vec<&Service> = state
                    .services
                    .iter()
                    .filter(|s| keep(&s.metadata, true))
                    .collect();
                (services_table(&svcs, args, now, multi), to_values(&svcs))
            }
            Kind::Endpoints => {
                let eps: Vec<&Endpoints> = state
                    .endpoints
                    .iter()
                    .filter(|e| keep(&e.metadata, true))
                    .collect();
                (endpoints_table(&eps, args, now, multi), to_values(&eps))
            }
            Kind::Event => {
                let mut evs: Vec<&Event> = state
                    .events
                    .iter()
                    .filter(|e| keep(&e.metadata, true))
                    .collect();
                evs.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
                (events_table(&evs, args, now), to_values(&evs))
            }
            Kind::Secret => {
                let secrets: Vec<&Secret> = state
                    .secrets
                    .iter()
                    .filter(|s| keep(&s.metadata, true))
                    .collect();
                let mut t = Printer::new(with_namespace(args, vec!["NAME", "TYPE", "DATA", "AGE"]));
                for s in &secrets {
                    let mut row = namespace_cell(args, &s.metadata);
                    row.extend([
                        name_cell(*kind, s.metadata.name.as_deref().unwrap_or_default(), multi),
                        s.type_.clone().unwrap_or_else(|| "Opaque".into()),
                        crate::cluster::secrets::secret_data_count(s).to_string(),
                        age(s.metadata.creation_timestamp.as_ref(), now),
                    ]);
                    t.row(row);
                }
                (t, to_values(&secrets))
            }
            Kind::ConfigMap => {
                let cms: Vec<&ConfigMap> = state
                    .config_maps
                    .iter()
                    .filter(|c| keep(&c.metadata, true))
                    .collect();
                let mut t = Printer::new(with_namespace(args, vec!["NAME", "DATA", "AGE"]));
                for c in &cms {
                    let mut row = namespace_cell(args, &c.metadata);
                    row.extend([
                        name_cell(*kind, c.metadata.name.as_deref().unwrap_or_default(), multi),
                        crate::cluster::secrets::config_map_data_count(c).to_string(),
                        age(c.metadata.creation_timestamp.as_ref(), now),
                    ]);
                    t.row(row);
                }
                (t, to_values(&cms))
            }
        };
        // Named objects that do not exist are errors, as in kubectl.
        for n in &args.names {
            if !items
                .iter()
                .any(|v| v["metadata"]["name"].as_str() == Some(n.as_str()))
            {
                bail!("{} {n:?} not found", kind.plural());
            }
        }
        found_any |= !items.is_empty();
        match args.format {
            Format::Yaml | Format::Json => structured_items.extend(items),
            Format::Name => {
                for v in &items {
                    out.push_str(&format!(
                        "{}/{}\n",
                        kind.prefix(),
                        v["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
            Format::Table | Format::Wide => {
                if !table.is_empty() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let text = table.render();
                    match args.no_headers {
                        true => text
                            .lines()
                            .skip(1)
                            .for_each(|l| out.push_str(&format!("{l}\n"))),
                        false => out.push_str(&text),
                    }
                }
            }
        }
    }
    if matches!(args.format, Format::Yaml | Format::Json) {
        let single = !args.names.is_empty() && args.names.len() == 1 && !multi;
        return Ok(structured(&structured_items, single, args.format));
    }
    if !found_any {
        match args.namespace {
            Some(ns) if args.kinds.iter().any(|k| *k != Kind::Node) => {
                eprintln!("No resources found in {ns} namespace.")
            }
            _ => eprintln!("No resources found"),
        }
    }
    Ok(out)
}

fn to_values<T: serde::Serialize>(items: &[&T]) -> Vec<serde_json::Value> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).expect("objects serialize"))
        .collect()
}

fn name_cell(kind: Kind, name: &str, multi: bool) -> String {
    if multi {
        format!("{}/{name}", kind.prefix())
    } else {
        name.to_string()
    }
}

fn namespace_cell(args: &GetArgs<'_>, meta: &ObjectMeta) -> Vec<String> {
    match args.namespace {
        None => vec![state::namespace(meta).to_string()],
        Some(_) => Vec::new(),
    }
}

fn with_namespace(args: &GetArgs<'_>, mut headers: Vec<&'static str>) -> Vec<&'static str> {
    if args.namespace.is_none() {
        headers.insert(0, "NAMESPACE");
    }
    headers
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

fn pods_table(pods: &[&Pod], args: &GetArgs<'_>, now: DateTime<Utc>, multi: bool) -> Printer {
    let mut headers = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if args.format == Format::Wide {
        headers.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    let mut t = Printer::new(with_namespace(args, headers));
    for p in pods {
        let (ready, status, restarts) = pod_summary(p);
        let mut row = Vec::new();
        if args.namespace.is_none() {
            row.push(state::namespace(&p.metadata).to_string());
        }
        row.extend([
            name_cell(
                Kind::Pod,
                p.metadata.name.as_deref().unwrap_or_default(),
                multi,
            ),
            ready,
            status,
            restarts.to_string(),
            age(p.metadata.creation_timestamp.as_ref(), now),
        ]);
        if args.format == Format::Wide {
            let st = p.status.clone().unwrap_or_default();
            row.extend([
                st.pod_ip.unwrap_or_else(|| "<none>".into()),
                state::pod_node(p).unwrap_or("<none>").to_string(),
                "<none>".into(),
                "<none>".into(),
            ]);
        }
        t.row(row);
    }
    t
}

fn nodes_table(nodes: &[&Node], format: Format, now: DateTime<Utc>, multi: bool) -> Printer {
    let mut headers = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if format == Format::Wide {
        headers.extend([
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ]);
    }
    let mut t = Printer::new(headers);
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
        let mut row = vec![
            name_cell(
                Kind::Node,
                n.metadata.name.as_deref().unwrap_or_default(),
                multi,
            ),
            if ready { "Ready" } else { "NotReady" }.to_string(),
            if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            age(n.metadata.creation_timestamp.as_ref(), now),
            info.kubelet_version.clone(),
        ];
        if format == Format::Wide {
            let addr = |t: &str| {
                st.addresses
                    .iter()
                    .flatten()
                    .find(|a| a.type_ == t)
                    .map(|a| a.address.clone())
                    .unwrap_or_else(|| "<none>".into())
            };
            row.extend([
                addr("InternalIP"),
                addr("ExternalIP"),
                info.os_image,
                info.kernel_version,
                info.container_runtime_version,
            ]);
        }
        t.row(row);
    }
    t
}

fn deployments_table(
    deps: &[&Deployment],
    args: &GetArgs<'_>,
    now: DateTime<Utc>,
    multi: bool,
) -> Printer {
    let mut headers = vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"];
    if args.format == Format::Wide {
        headers.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
    }
    let mut t = Printer::new(with_namespace(args, headers));
    for d in deps {
        let spec = d.spec.clone().unwrap_or_default();
        let st = d.status.clone().unwrap_or_default();
        let mut row = Vec::new();
        if args.namespace.is_none() {
            row.push(state::namespace(&d.metadata).to_string());
        }
        row.extend([
            name_cell(
                Kind::Deployment,
                d.metadata.name.as_deref().unwrap_or_default(),
                multi,
            ),
            format!(
                "{}/{}",
                st.ready_replicas.unwrap_or(0),
                spec.replicas.unwrap_or(1)
            ),
            st.updated_replicas.unwrap_or(0).to_string(),
            st.available_replicas.unwrap_or(0).to_string(),
            age(d.metadata.creation_timestamp.as_ref(), now),
        ]);
        if args.format == Format::Wide {
            let containers = spec.template.spec.clone().unwrap_or_default().containers;
            row.extend([
                containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                containers
                    .iter()
                    .map(|c| c.image.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(","),
                spec.selector
                    .match_labels
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
        }
        t.row(row);
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

fn services_table(
    svcs: &[&Service],
    args: &GetArgs<'_>,
    now: DateTime<Utc>,
    multi: bool,
) -> Printer {
    let mut headers = vec![
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ];
    if args.format == Format::Wide {
        headers.push("SELECTOR");
    }
    let mut t = Printer::new(with_namespace(args, headers));
    for s in svcs {
        let mut row = Vec::new();
        if args.namespace.is_none() {
            row.push(state::namespace(&s.metadata).to_string());
        }
        row.extend([
            name_cell(
                Kind::Service,
                s.metadata.name.as_deref().unwrap_or_default(),
                multi,
            ),
            service_type(s).to_string(),
            s.spec
                .as_ref()
                .and_then(|sp| sp.cluster_ip.clone())
                .unwrap_or_else(|| "<none>".into()),
            external_ip(s),
            service_ports(s),
            age(s.metadata.creation_timestamp.as_ref(), now),
        ]);
        if args.format == Format::Wide {
            row.push(super::printer::map_lines(
                s.spec.as_ref().and_then(|sp| sp.selector.as_ref()),
                ",",
            ));
        }
        t.row(row);
    }
    t
}

fn endpoints_table(
    eps: &[&Endpoints],
    args: &GetArgs<'_>,
    now: DateTime<Utc>,
    multi: bool,
) -> Printer {
    let mut t = Printer::new(with_namespace(args, vec!["NAME", "ENDPOINTS", "AGE"]));
    for e in eps {
        let mut row = Vec::new();
        if args.namespace.is_none() {
            row.push(state::namespace(&e.metadata).to_string());
        }
        row.extend([
            name_cell(
                Kind::Endpoints,
                e.metadata.name.as_deref().unwrap_or_default(),
                multi,
            ),
            endpoints_summary(Some(e), 3),
            age(e.metadata.creation_timestamp.as_ref(), now),
        ]);
        t.row(row);
    }
    t
}

fn events_table(evs: &[&Event], args: &GetArgs<'_>, now: DateTime<Utc>) -> Printer {
    let mut t = Printer::new(with_namespace(
        args,
        vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
    ));
    for e in evs {
        let mut row = Vec::new();
        if args.namespace.is_none() {
            row.push(state::namespace(&e.metadata).to_string());
        }
        let o = &e.involved_object;
        row.extend([
            age(e.last_timestamp.as_ref(), now),
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            format!(
                "{}/{}",
                o.kind.clone().unwrap_or_default().to_lowercase(),
                o.name.clone().unwrap_or_default()
            ),
            e.message.clone().unwrap_or_default(),
        ]);
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use rand::SeedableRng;

    fn state() -> ClusterState {
        let spec = crate::lab::load_str(
            std::path::Path::new("t.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n",
            &Default::default(),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap()
    }

    #[test]
    fn pods_wide_has_kubectl_columns() {
        let s = state();
        let args = GetArgs {
            kinds: vec![Kind::Pod],
            names: vec![],
            selector: Selector::parse("run=my-nginx").unwrap(),
            format: Format::Wide,
            namespace: Some("default"),
            no_headers: false,
        };
        let out = render(&s, &args, Utc::now()).unwrap();
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(out.lines().count(), 3);
        assert!(out.contains("10.244.1.2"));
        assert!(out.contains("node-2"));
    }

    #[test]
    fn yaml_list_has_pod_ips() {
        let s = state();
        let args = GetArgs {
            kinds: vec![Kind::Pod],
            names: vec![],
            selector: Selector::default(),
            format: Format::Yaml,
            namespace: Some("default"),
            no_headers: false,
        };
        let out = render(&s, &args, Utc::now()).unwrap();
        assert!(out.contains("kind: List"));
        assert_eq!(out.matches("podIP: 10.244.").count(), 2, "{out}");
        assert!(out.contains("kind: Pod"));
    }

    #[test]
    fn targets() {
        let (k, n) = parse_targets(&["po,deploy".into()]).unwrap();
        assert_eq!(k, vec![Kind::Pod, Kind::Deployment]);
        assert!(n.is_empty());
        let (k, n) = parse_targets(&["pod/a".into(), "pod/b".into()]).unwrap();
        assert_eq!(
            (k, n),
            (vec![Kind::Pod], vec!["a".to_string(), "b".to_string()])
        );
        assert!(parse_targets(&["svcx".into()]).is_err());
    }
}
