//! `netlab trace FROM TO`: one real probe, explained hop by hop
//! ([`crate::trace`]). FROM is `pod/NAME` or `node/NAME`; TO is a Service
//! name (resolved by the cluster DNS as the pod would), a clusterIP, a pod
//! IP or any address, with `:PORT` or `--port`.

use crate::proxy::model::Protocol;
use crate::trace::{LabView, PodView, ServiceView, Source, Step, Trace};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Where the probe starts: pod/NAME, node/NAME or host/external.
    pub from: String,
    /// Where it goes: a Service name, a clusterIP, a pod IP (HOST[:PORT]).
    pub to: String,
    /// The port (default: the Service's first port, else 80).
    #[arg(long)]
    pub port: Option<u16>,
    /// Send UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// The namespace of the pod and of Service names.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Output format: text or json.
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn view(nodes: &Value, pods: &Value, services: &Value) -> LabView {
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    LabView {
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

pub async fn run(args: TraceArgs, lab: Option<String>) -> Result<i32> {
    if !matches!(args.output.as_str(), "text" | "json") {
        bail!("unknown output format {:?}: use text or json", args.output);
    }
    let lab = super::select_lab(lab)?;
    let client = super::client::Client::connect(&lab).await?;
    let [nodes, pods, services] = client.nodes_pods_services().await?;
    let view = view(&nodes, &pods, &services);
    let src = source(&lab, &args, &view).await?;
    let mut t = Trace {
        from: args.from.clone(),
        to: args.to.clone(),
        ..Trace::default()
    };
    let started = std::time::Instant::now();
    let (host, port) = match args.to.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("{:?}: not a port", p))?,
            ),
        ),
        None => (args.to.clone(), None),
    };
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) => {
            let dns = view
                .services
                .iter()
                .find(|x| x.namespace == "kube-system" && x.name == "kube-dns")
                .and_then(|x| x.cluster_ip)
                .context("the lab has no kube-system/kube-dns Service to resolve names with")?;
            let ns = &args.namespace;
            let search = [
                format!("{ns}.svc.cluster.local"),
                "svc.cluster.local".to_string(),
                "cluster.local".to_string(),
            ];
            let (netns, host2) = (src.netns.clone(), host.clone());
            let answer = tokio::task::spawn_blocking(move || {
                crate::trace::resolve(&netns, dns, &host2, &search)
            })
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
                    print(&t, &args.output);
                    return Ok(1);
                }
            }
        }
    };
    let port = port.or(args.port).unwrap_or_else(|| {
        view.services
            .iter()
            .find(|x| x.cluster_ip == Some(ip))
            .and_then(|x| x.ports.first().map(|p| p.1))
            .unwrap_or(80)
    });
    let proto = if args.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let seen = crate::trace::probe(&src, SocketAddrV4::new(ip, port), proto).await?;
    let mut t = crate::trace::explain(&src, &seen, &view, t);
    t.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    print(&t, &args.output);
    Ok(if matches!(t.result.as_str(), "connected" | "sent") {
        0
    } else {
        1
    })
}

async fn source(lab: &str, args: &TraceArgs, view: &LabView) -> Result<Source> {
    let nodes: Vec<(String, String)> = view
        .nodes
        .iter()
        .map(|(n, _, _)| (n.clone(), crate::paths::node_netns(lab, n)))
        .collect();
    if let Some(name) = args.from.strip_prefix("pod/") {
        let ns = &args.namespace;
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
    if let Some(name) = args.from.strip_prefix("node/") {
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
    if let Some(name) = args.from.strip_prefix("host/") {
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
    bail!("{:?}: a trace starts at pod/NAME or node/NAME", args.from)
}

fn print(t: &Trace, output: &str) {
    if output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(t).expect("a trace is JSON")
        );
        return;
    }
    for (i, step) in t.steps.iter().enumerate() {
        if step.kind == "result" {
            println!("result: {}", step.text);
        } else {
            println!("{}  {}", i + 1, step.text);
        }
    }
}
