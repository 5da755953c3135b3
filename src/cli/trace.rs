//! `netlab trace FROM TO`: one real probe, explained hop by hop
//! ([`crate::trace`], run by [`crate::trace::run`] as the lab's page runs
//! it too). FROM is `pod/NAME`, `node/NAME` or `host/external`; TO is a
//! Service name (resolved by the cluster DNS as the pod would), a
//! clusterIP, a pod IP or any address, with `:PORT` or `--port`.

use crate::trace::run::{self, Request};
use crate::trace::Trace;
use anyhow::{bail, Result};

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

pub async fn run(args: TraceArgs, lab: Option<String>) -> Result<i32> {
    if !matches!(args.output.as_str(), "text" | "json") {
        bail!("unknown output format {:?}: use text or json", args.output);
    }
    let lab = super::select_lab(lab)?;
    let client = super::client::Client::connect(&lab).await?;
    let [nodes, pods, services] = client.nodes_pods_services().await?;
    let [policies, namespaces] = client.policies_namespaces().await?;
    let view = run::view(&nodes, &pods, &services, &policies, &namespaces);
    let asked = Request {
        from: args.from,
        to: args.to,
        port: args.port,
        udp: args.udp,
        namespace: args.namespace,
    };
    let t = run::run(&lab, &asked, &view).await?;
    print(&t, &args.output);
    Ok(if run::succeeded(&t) { 0 } else { 1 })
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
