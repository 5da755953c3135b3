//! `netlab graph [-o svg|dot|mermaid|json]`: the lab as a picture
//! ([`crate::graph`]), drawn from what its API serves now (as kubectl
//! would list it) and the external host's address, read from its
//! namespace.

use crate::graph::Graph;
use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// Output format: svg (a picture), dot (Graphviz), mermaid, json.
    #[arg(short = 'o', long, default_value = "svg")]
    pub output: String,
}

pub async fn run(args: GraphArgs, lab: Option<String>) -> Result<i32> {
    let render: fn(&Graph) -> String = match args.output.as_str() {
        "svg" => Graph::svg,
        "dot" => Graph::dot,
        "mermaid" => Graph::mermaid,
        "json" => |g| serde_json::to_string_pretty(g).expect("a graph is JSON") + "\n",
        other => bail!("unknown output format {other:?}: use svg, dot, mermaid or json"),
    };
    let lab = super::select_lab(lab)?;
    let client = super::client::Client::connect(&lab).await?;
    let [nodes, pods, services] = client.nodes_pods_services().await?;
    let slices = client
        .get(
            "/apis/discovery.k8s.io/v1/endpointslices",
            super::client::JSON,
        )
        .await?;
    let host = crate::paths::host_netns(&lab, crate::lab::config::EXTERNAL_HOST);
    // A lab from before public networks has no external host: drawn without.
    let external = crate::net::public::addresses(&host, "eth0")
        .await
        .ok()
        .and_then(|a| a.first().map(ToString::to_string));
    let g = Graph::from_objects(&lab, external, &nodes, &pods, &services, &slices);
    print!("{}", render(&g));
    Ok(0)
}
