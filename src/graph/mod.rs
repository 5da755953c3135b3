//! `netlab graph`: the lab as a picture, from its API objects (pure).
//!
//! [`Graph::from_objects`] reads Nodes, Pods, Services and EndpointSlices
//! as the API serves them (JSON) and keeps what the picture shows: the
//! public network with the external host, the dc LAN, each node (its
//! addresses, pod bridge and pod CIDR) with its pods, and each Service
//! (type, clusterIP, ports, NodePorts, LoadBalancer IPs) with edges to the
//! pods that are its endpoints. The renderers ([`Graph::dot`],
//! [`Graph::mermaid`], [`Graph::svg`], and the [`Graph`] itself as JSON)
//! list everything sorted by name, so the text forms are stable and CI
//! can diff them.
//!
//! Large labs stay legible: a node shows at most [`POD_ROWS`] pods and
//! says how many more it has; edges go to the pods shown, and a Service
//! says how many endpoints it has in all.

mod svg;

use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;

/// Pods drawn per node; the rest are counted.
pub const POD_ROWS: usize = 24;

/// The pod bridge of every node (see `controller::up::POD_BRIDGE`).
const POD_BRIDGE: &str = "cni0";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub lab: String,
    /// The external host's address on the public network, with its prefix.
    pub external_host: Option<String>,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    /// On the dc LAN.
    pub internal_ip: String,
    /// On the public network.
    pub external_ip: String,
    pub pod_cidr: String,
    pub bridge: String,
    pub pods: Vec<Pod>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub ip: String,
    pub ready: bool,
    /// On the node's own network (`hostNetwork: true`).
    pub host_network: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub cluster_ip: String,
    /// `80/TCP`, `443:30443/TCP` (with its NodePort), as kubectl prints them.
    pub ports: Vec<String>,
    pub load_balancer_ips: Vec<String>,
    pub external_ips: Vec<String>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub ip: String,
    /// `namespace/name` of the pod behind it, if it is one.
    pub pod: Option<String>,
    pub ready: bool,
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or_default().to_string()
}

fn items(list: &Value) -> &[Value] {
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn address(node: &Value, kind: &str) -> String {
    node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .map(|a| s(a, &["address"]))
        .unwrap_or_default()
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

impl Graph {
    /// The graph of lab `lab` from the API's lists (`{"items": […]}`) of
    /// nodes, pods, services and endpointslices.
    pub fn from_objects(
        lab: &str,
        external_host: Option<String>,
        nodes: &Value,
        pods: &Value,
        services: &Value,
        slices: &Value,
    ) -> Graph {
        let mut g = Graph {
            lab: lab.to_string(),
            external_host,
            ..Graph::default()
        };
        for n in items(nodes) {
            g.nodes.push(Node {
                name: s(n, &["metadata", "name"]),
                internal_ip: address(n, "InternalIP"),
                external_ip: address(n, "ExternalIP"),
                pod_cidr: s(n, &["spec", "podCIDR"]),
                bridge: POD_BRIDGE.to_string(),
                pods: Vec::new(),
            });
        }
        g.nodes.sort_by_cached_key(|n| natural(&n.name));
        for p in items(pods) {
            let node = s(p, &["spec", "nodeName"]);
            let Some(n) = g.nodes.iter_mut().find(|n| n.name == node) else {
                continue; // not scheduled yet
            };
            n.pods.push(Pod {
                namespace: s(p, &["metadata", "namespace"]),
                name: s(p, &["metadata", "name"]),
                ip: s(p, &["status", "podIP"]),
                ready: pod_ready(p),
                host_network: p["spec"]["hostNetwork"] == true,
            });
        }
        for n in &mut g.nodes {
            n.pods
                .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        for v in items(services) {
            let namespace = s(v, &["metadata", "namespace"]);
            let name = s(v, &["metadata", "name"]);
            let strings = |x: &Value| -> Vec<String> {
                x.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect()
            };
            let ports = v["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_u64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let load_balancer_ips = v["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect();
            let mut endpoints: Vec<Endpoint> = items(slices)
                .iter()
                .filter(|sl| {
                    s(sl, &["metadata", "namespace"]) == namespace
                        && s(sl, &["metadata", "labels", "kubernetes.io/service-name"]) == name
                })
                .flat_map(|sl| sl["endpoints"].as_array().into_iter().flatten())
                .flat_map(|e| {
                    let pod = (e["targetRef"]["kind"] == "Pod").then(|| {
                        format!(
                            "{}/{}",
                            s(e, &["targetRef", "namespace"]),
                            s(e, &["targetRef", "name"])
                        )
                    });
                    let ready = e["conditions"]["ready"] != false;
                    strings(&e["addresses"])
                        .into_iter()
                        .map(move |ip| Endpoint {
                            ip,
                            pod: pod.clone(),
                            ready,
                        })
                })
                .collect();
            endpoints.sort_by(|a, b| (&a.pod, &a.ip).cmp(&(&b.pod, &b.ip)));
            endpoints.dedup();
            g.services.push(Service {
                type_: v["spec"]["type"]
                    .as_str()
                    .unwrap_or("ClusterIP")
                    .to_string(),
                cluster_ip: s(v, &["spec", "clusterIP"]),
                ports,
                load_balancer_ips,
                external_ips: strings(&v["spec"]["externalIPs"]),
                endpoints,
                namespace,
                name,
            });
        }
        g.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        g
    }

    /// The pods each node shows (at most [`POD_ROWS`]), and how many it
    /// leaves out.
    fn shown(n: &Node) -> (&[Pod], usize) {
        let k = n.pods.len().min(POD_ROWS);
        (&n.pods[..k], n.pods.len() - k)
    }

    /// The pods drawn, as `namespace/name` (what endpoints name): edges go
    /// to these only. One set a picture, not a scan of every node per edge.
    fn drawn(&self) -> std::collections::HashSet<String> {
        self.nodes
            .iter()
            .flat_map(|n| Graph::shown(n).0)
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect()
    }

    /// Graphviz: `netlab graph -o dot | dot -Tpng > lab.png`.
    pub fn dot(&self) -> String {
        let mut o = String::new();
        let drawn = self.drawn();
        let q = |t: &str| {
            let t = t.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{}\"", t.replace('\n', "\\n"))
        };
        let _ = writeln!(o, "digraph {} {{", q(&format!("lab {}", self.lab)));
        o.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\", fontsize=10];\n");
        o.push_str("  subgraph cluster_public {\n    label=\"public network\";\n");
        if let Some(h) = &self.external_host {
            let _ = writeln!(
                o,
                "    {} [label={}, shape=box3d];",
                q("host/external"),
                q(&format!("external host\n{h}"))
            );
        }
        o.push_str("  }\n");
        for n in &self.nodes {
            let _ = writeln!(
                o,
                "  subgraph {} {{",
                q(&format!("cluster_node_{}", n.name))
            );
            let _ = writeln!(
                o,
                "    label={};",
                q(&format!(
                    "node {}\nLAN {} · ExternalIP {}\npods {} on {}",
                    n.name, n.internal_ip, n.external_ip, n.pod_cidr, n.bridge
                ))
            );
            let (shown, more) = Graph::shown(n);
            for p in shown {
                let _ = writeln!(
                    o,
                    "    {} [label={}{}];",
                    q(&format!("pod/{}/{}", p.namespace, p.name)),
                    q(&format!(
                        "{}\n{}{}",
                        p.name,
                        p.ip,
                        if p.ready { "" } else { " (not ready)" }
                    )),
                    if p.ready { "" } else { ", style=dashed" }
                );
            }
            if more > 0 {
                let _ = writeln!(
                    o,
                    "    {} [label={}, shape=plaintext];",
                    q(&format!("more/{}", n.name)),
                    q(&format!("… {more} more pods"))
                );
            }
            o.push_str("  }\n");
        }
        for v in &self.services {
            let id = q(&format!("svc/{}/{}", v.namespace, v.name));
            let _ = writeln!(
                o,
                "  {id} [label={}, shape=ellipse];",
                q(&service_label(v).join("\n"))
            );
            for e in &v.endpoints {
                match &e.pod {
                    Some(p) if drawn.contains(p) => {
                        let _ = writeln!(
                            o,
                            "  {id} -> {}{};",
                            q(&format!("pod/{p}")),
                            if e.ready { "" } else { " [style=dashed]" }
                        );
                    }
                    _ => {}
                }
            }
        }
        o.push_str("}\n");
        o
    }

    /// Mermaid (a `flowchart`), for Markdown that renders it.
    pub fn mermaid(&self) -> String {
        let mut o = String::from("flowchart LR\n");
        let drawn = self.drawn();
        // Mermaid ids: letters, digits, `_`; labels in quotes, `#quot;` for ".
        let id = |t: &str| -> String {
            t.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        let label = |t: &str| format!("\"{}\"", t.replace('"', "#quot;"));
        o.push_str("  subgraph public[\"public network\"]\n");
        if let Some(h) = &self.external_host {
            let _ = writeln!(
                o,
                "    host_external[{}]",
                label(&format!("external host<br/>{h}"))
            );
        }
        o.push_str("  end\n");
        for n in &self.nodes {
            let _ = writeln!(
                o,
                "  subgraph {}[{}]",
                id(&format!("node_{}", n.name)),
                label(&format!(
                    "node {} · LAN {} · ExternalIP {} · pods {} on {}",
                    n.name, n.internal_ip, n.external_ip, n.pod_cidr, n.bridge
                ))
            );
            let (shown, more) = Graph::shown(n);
            for p in shown {
                let _ = writeln!(
                    o,
                    "    {}[{}]",
                    id(&format!("pod_{}_{}", p.namespace, p.name)),
                    label(&format!(
                        "{}<br/>{}{}",
                        p.name,
                        p.ip,
                        if p.ready { "" } else { " (not ready)" }
                    ))
                );
            }
            if more > 0 {
                let _ = writeln!(
                    o,
                    "    {}[{}]",
                    id(&format!("more_{}", n.name)),
                    label(&format!("… {more} more pods"))
                );
            }
            o.push_str("  end\n");
        }
        for v in &self.services {
            let sid = id(&format!("svc_{}_{}", v.namespace, v.name));
            let _ = writeln!(o, "  {sid}([{}])", label(&service_label(v).join("<br/>")));
            for e in &v.endpoints {
                if let Some(p) = e.pod.as_deref().filter(|p| drawn.contains(*p)) {
                    let arrow = if e.ready { "-->" } else { "-.->" };
                    let _ = writeln!(
                        o,
                        "  {sid} {arrow} {}",
                        id(&format!("pod_{}", p.replacen('/', "_", 1)))
                    );
                }
            }
        }
        o
    }

    /// A standalone SVG picture.
    pub fn svg(&self) -> String {
        svg::render(self)
    }
}

/// A name as runs of text and numbers, so that node-2 sorts before
/// node-10 (as a person counts them, and as kubectl does not).
fn natural(name: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut n = c.to_digit(10).unwrap_or(0) as u64;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as u64);
                chars.next();
            }
            parts.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
        }
    }
    parts.push((text, 0));
    parts
}

/// A Service's lines: name, type and clusterIP, ports, outside addresses,
/// how many endpoints are ready.
fn service_label(v: &Service) -> Vec<String> {
    let mut l = vec![
        format!("svc {}/{}", v.namespace, v.name),
        format!("{} {}", v.type_, v.cluster_ip),
    ];
    if !v.ports.is_empty() {
        l.push(v.ports.join(", "));
    }
    if !v.load_balancer_ips.is_empty() {
        l.push(format!("LB IP {}", v.load_balancer_ips.join(", ")));
    }
    if !v.external_ips.is_empty() {
        l.push(format!("externalIPs {}", v.external_ips.join(", ")));
    }
    let ready = v.endpoints.iter().filter(|e| e.ready).count();
    l.push(match (ready, v.endpoints.len()) {
        (0, 0) => "no endpoints".to_string(),
        (1, 1) => "1 endpoint".to_string(),
        (r, n) if r == n => format!("{n} endpoints"),
        (r, n) => format!("{r} of {n} endpoints ready"),
    });
    l
}

#[cfg(test)]
mod tests;
