//! One trace from start to end, as `netlab trace` (src/cli/trace.rs) and
//! the lab's page (src/ui) ask for it: the lab's objects as the API lists
//! them, the source, the destination resolved as the source would resolve
//! it (the cluster DNS, with a pod's search path), the probe, and the
//! explanation.

use super::{LabView, PodView, ServiceView, Source, Step, Trace};
use crate::proxy::model::Protocol;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddrV4};

/// What a trace is asked: from where, to where.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    /// `pod/NAME`, `node/NAME` or `host/external`.
    pub from: String,
    /// A Service name, a clusterIP, a pod IP or any address (`HOST[:PORT]`).
    pub to: String,
    /// The port when `to` has none (default: the Service's first, else 80).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub udp: bool,
    /// The namespace of the pod and of Service names.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".into()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The lab as a trace names it, from the API's lists (`{"items": […]}`)
/// of nodes, pods, services, NetworkPolicies and namespaces.
pub fn view(
    nodes: &Value,
    pods: &Value,
    services: &Value,
    policies: &Value,
    namespaces: &Value,
) -> LabView {
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    fn typed<T: serde::de::DeserializeOwned>(items: Vec<Value>) -> Vec<T> {
        items
            .into_iter()
            .filter_map(|x| serde_json::from_value(x).ok())
            .collect()
    }
    let policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy> = typed(items(policies));
    let isolated = if policies.is_empty() {
        None
    } else {
        let pods: Vec<k8s_openapi::api::core::v1::Pod> = typed(items(pods));
        let namespaces: Vec<k8s_openapi::api::core::v1::Namespace> = typed(items(namespaces));
        let by_node = crate::cluster::reachability::isolated(
            &policies.iter().collect::<Vec<_>>(),
            &pods.iter().collect::<Vec<_>>(),
            &namespaces.iter().collect::<Vec<_>>(),
        );
        let names =
            |d: &Option<crate::proxy::policy::Direction>| d.as_ref().map(|d| d.policies.clone());
        Some(
            by_node
                .into_values()
                .flatten()
                .map(|p| (p.ip, (names(&p.ingress), names(&p.egress))))
                .collect(),
        )
    };
    LabView {
        isolated,
        services: items(services)
            .iter()
            .map(|x| ServiceView {
                namespace: s(&x["metadata"]["namespace"]),
                name: s(&x["metadata"]["name"]),
                cluster_ip: x["spec"]["clusterIP"].as_str().and_then(|i| i.parse().ok()),
                ports: x["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let port = p["port"].as_u64().unwrap_or(0) as u16;
                        let name = p["name"].as_str().map(str::to_string);
                        (
                            name.unwrap_or_else(|| port.to_string()),
                            port,
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                        )
                    })
                    .collect(),
                local: x["spec"]["externalTrafficPolicy"] == "Local",
                affinity_timeout: (x["spec"]["sessionAffinity"] == "ClientIP").then(|| {
                    x["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
                        .as_u64()
                        .unwrap_or(10800) as u32
                }),
            })
            .collect(),
        pods: items(pods)
            .iter()
            .filter_map(|x| {
                Some(PodView {
                    namespace: s(&x["metadata"]["namespace"]),
                    name: s(&x["metadata"]["name"]),
                    ip: x["status"]["podIP"].as_str()?.parse().ok()?,
                    node: s(&x["spec"]["nodeName"]),
                })
            })
            .collect(),
        nodes: items(nodes)
            .iter()
            .map(|x| {
                let addr = x["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == "InternalIP")
                    .map(|a| s(&a["address"]))
                    .unwrap_or_default();
                (s(&x["metadata"]["name"]), s(&x["spec"]["podCIDR"]), addr)
            })
            .collect(),
    }
}

/// Runs the trace `req` asks for in lab `lab`, whose objects `view` has.
/// An error: the trace cannot start (no such source, a bad port, no DNS);
/// a trace that starts has its outcome in `Trace::result`.
pub async fn run(lab: &str, req: &Request, view: &LabView) -> Result<Trace> {
    let src = source(lab, req, view).await?;
    let mut t = Trace {
        from: req.from.clone(),
        to: req.to.clone(),
        ..Trace::default()
    };
    let started = std::time::Instant::now();
    let (host, port) = match req.to.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("{:?}: not a port", p))?,
            ),
        ),
        None => (req.to.clone(), None),
    };
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) if src.node.is_empty() => bail!(
            "{host:?}: {} is outside the cluster and cannot ask the cluster DNS (a clusterIP); \
             trace to an address it reaches: a node's ExternalIP with a NodePort, a LoadBalancer IP or an externalIP",
            src.what
        ),
        Err(_) => {
            let dns = view
                .services
                .iter()
                .find(|x| x.namespace == "kube-system" && x.name == "kube-dns")
                .and_then(|x| x.cluster_ip)
                .context("the lab has no kube-system/kube-dns Service to resolve names with")?;
            let ns = &req.namespace;
            let search = [
                format!("{ns}.svc.cluster.local"),
                "svc.cluster.local".to_string(),
                "cluster.local".to_string(),
            ];
            let (netns, name) = (src.netns.clone(), host.clone());
            let answer =
                tokio::task::spawn_blocking(move || super::resolve(&netns, dns, &name, &search))
                    .await??;
            match answer {
                Ok((ip, fqdn)) => {
                    t.steps.push(Step {
                        kind: "dns",
                        text: format!(
                            "{} resolves {host} → {ip} (kube-dns {dns}, A {fqdn})",
                            src.what
                        ),
                    });
                    ip
                }
                Err(tried) => {
                    t.result = "nxdomain".into();
                    t.reason = Some(format!(
                        "the DNS name {host} does not exist (NXDOMAIN; tried {})",
                        tried.join(", ")
                    ));
                    t.steps.push(Step {
                        kind: "result",
                        text: format!("nxdomain: {}", t.reason.clone().unwrap_or_default()),
                    });
                    t.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    return Ok(t);
                }
            }
        }
    };
    let port = port.or(req.port).unwrap_or_else(|| {
        view.services
            .iter()
            .find(|x| x.cluster_ip == Some(ip))
            .and_then(|x| x.ports.first().map(|p| p.1))
            .unwrap_or(80)
    });
    let proto = if req.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let seen = super::probe(&src, SocketAddrV4::new(ip, port), proto).await?;
    let mut t = super::explain(&src, &seen, view, t);
    t.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(t)
}

/// Whether the trace got through (a connection, or a datagram sent).
pub fn succeeded(t: &Trace) -> bool {
    matches!(t.result.as_str(), "connected" | "sent")
}

async fn source(lab: &str, req: &Request, view: &LabView) -> Result<Source> {
    let nodes: Vec<(String, String)> = view
        .nodes
        .iter()
        .map(|(n, _, _)| (n.clone(), crate::paths::node_netns(lab, n)))
        .collect();
    if let Some(name) = req.from.strip_prefix("pod/") {
        let ns = &req.namespace;
        let pod = view
            .pods
            .iter()
            .find(|p| p.name == name && &p.namespace == ns)
            .with_context(|| {
                format!("pod {ns}/{name} not found, or it has no IP yet (netlab get pods -n {ns})")
            })?;
        return Ok(Source {
            what: format!("pod {ns}/{name}"),
            ip: pod.ip,
            netns: crate::paths::pod_netns(lab, ns, name),
            node: pod.node.clone(),
            nodes,
            from_node: false,
        });
    }
    if let Some(name) = req.from.strip_prefix("node/") {
        let (_, _, addr) = view
            .nodes
            .iter()
            .find(|(n, _, _)| n == name)
            .with_context(|| format!("node {name} not found (netlab get nodes)"))?;
        let netns = crate::paths::node_netns(lab, name);
        return Ok(Source {
            what: format!("node {name}"),
            ip: addr
                .parse()
                .with_context(|| format!("node {name} has no InternalIP"))?,
            netns,
            node: name.to_string(),
            nodes,
            from_node: true,
        });
    }
    if let Some(name) = req.from.strip_prefix("host/") {
        let netns = crate::paths::host_netns(lab, name);
        let ip = crate::net::public::addresses(&netns, "eth0")
            .await
            .ok()
            .and_then(|a| a.first().map(|n| n.addr()))
            .with_context(|| {
                format!("host {name} not found in lab {lab} (the lab's host is host/external)")
            })?;
        return Ok(Source {
            what: format!("host {name}"),
            ip,
            netns,
            node: String::new(),
            nodes,
            from_node: false,
        });
    }
    bail!(
        "{:?}: a trace starts at pod/NAME, node/NAME or host/external",
        req.from
    )
}
