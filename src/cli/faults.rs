//! Link faults (issue 19's drills): `netlab netem TARGET …` puts a netem
//! qdisc on the target's interface (`crate::net::tc`), `netlab get netem`
//! lists what is in force, `netlab link down|up node/NODE` cuts a node's
//! ports on the lab's bridges. Everything lives in the lab's own
//! namespaces, so `down` takes it away with them.

use anyhow::{anyhow, bail, Result};

use super::client::{self, Client};
use crate::net::tc::Netem;
use crate::paths;

#[derive(Debug, clap::Args)]
pub struct NetemArgs {
    /// node/NODE, pod/POD or host/external: netem on its eth0 (packets it sends).
    pub target: String,
    /// Added delay (a Go duration: 50ms, 1s).
    #[arg(long)]
    pub delay: Option<String>,
    /// ± this much of the delay, uniformly (a Go duration).
    #[arg(long)]
    pub jitter: Option<String>,
    /// Packets dropped (5%).
    #[arg(long)]
    pub loss: Option<String>,
    /// The rate the interface sends at (10mbit, 512kbit, 1gbit).
    #[arg(long)]
    pub rate: Option<String>,
    /// Packets with a flipped bit (1%).
    #[arg(long)]
    pub corrupt: Option<String>,
    /// Remove the target's netem.
    #[arg(long)]
    pub clear: bool,
    /// The namespace of a pod.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    /// node/A
    pub a: String,
    /// node/B
    pub b: String,
    /// Heal the partition.
    #[arg(long)]
    pub heal: bool,
}

#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// down or up.
    pub state: String,
    /// node/NODE.
    pub target: String,
}

/// Where a target's interface is: (network namespace, interface).
async fn interface(
    client: &Client,
    lab: &str,
    target: &str,
    namespace: &str,
) -> Result<(String, String)> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow!("{target:?}: write node/NODE, pod/POD or host/external"))?;
    match kind {
        "node" | "nodes" | "no" => {
            client.require_node(lab, name).await?;
            Ok((paths::node_netns(lab, name), "eth0".into()))
        }
        "pod" | "pods" | "po" => {
            let pod = client.pod(namespace, name).await?;
            if crate::cluster::host_network::is_host_network(&pod) {
                bail!("pod {namespace}/{name} is on its node's network (hostNetwork): put netem on node/{} instead", crate::cluster::state::pod_node(&pod).unwrap_or("NODE"));
            }
            Ok((paths::pod_netns(lab, namespace, name), "eth0".into()))
        }
        "host" | "hosts" if name == crate::lab::config::EXTERNAL_HOST => {
            Ok((paths::host_netns(lab, name), "eth0".into()))
        }
        _ => bail!("{target:?}: write node/NODE, pod/POD or host/external"),
    }
}

fn microseconds(flag: &str, text: &Option<String>) -> Result<u64> {
    match text {
        None => Ok(0),
        Some(t) => crate::lab::config::go_duration(t)
            .map(|d| d.as_micros() as u64)
            .map_err(|e| anyhow!("--{flag}: {e}")),
    }
}

fn percent(flag: &str, text: &Option<String>) -> Result<f64> {
    match text {
        None => Ok(0.0),
        Some(t) => crate::net::tc::parse_percent(t).map_err(|e| anyhow!("--{flag}: {e}")),
    }
}

/// The netem the flags ask for.
fn wanted(args: &NetemArgs) -> Result<Netem> {
    let n = Netem {
        delay_us: microseconds("delay", &args.delay)?,
        jitter_us: microseconds("jitter", &args.jitter)?,
        loss_pct: percent("loss", &args.loss)?,
        rate_bps: match &args.rate {
            None => 0,
            Some(r) => crate::net::tc::parse_rate(r).map_err(|e| anyhow!("--rate: {e}"))?,
        },
        corrupt_pct: percent("corrupt", &args.corrupt)?,
    };
    if n.jitter_us > 0 && n.delay_us == 0 {
        bail!("--jitter varies a delay: give --delay too");
    }
    if n == Netem::default() {
        bail!("say what to do: --delay, --jitter, --loss, --rate, --corrupt, or --clear");
    }
    Ok(n)
}

pub async fn netem(args: NetemArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    // The flags first: a mistake changes nothing.
    let want = if args.clear {
        None
    } else {
        Some(wanted(&args)?)
    };
    let client = Client::connect(&lab).await?;
    let (netns, ifname) = interface(&client, &lab, &args.target, &args.namespace).await?;
    crate::net::set_netem(&netns, &ifname, want.as_ref()).await?;
    match want {
        Some(n) => println!("{}: netem {}", args.target, n.describe()),
        None => println!("{}: netem cleared", args.target),
    }
    Ok(0)
}

/// `netlab get netem`: what is in force on the lab's nodes, pods and
/// external host, read from the kernel.
pub async fn list(lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let client = Client::connect(&lab).await?;
    let mut targets: Vec<(String, String)> = Vec::new();
    let nodes = client
        .get(
            &client::path(super::get::kind("nodes")?, None, None),
            client::JSON,
        )
        .await?;
    for n in nodes["items"].as_array().into_iter().flatten() {
        let name = n["metadata"]["name"].as_str().unwrap_or_default();
        targets.push((format!("node/{name}"), paths::node_netns(&lab, name)));
    }
    let pods = client
        .get(
            &client::path(super::get::kind("pods")?, None, None),
            client::JSON,
        )
        .await?;
    for p in pods["items"].as_array().into_iter().flatten() {
        let (ns, name) = (
            p["metadata"]["namespace"].as_str().unwrap_or("default"),
            p["metadata"]["name"].as_str().unwrap_or_default(),
        );
        if p["spec"]["hostNetwork"].as_bool() != Some(true) {
            targets.push((format!("pod/{ns}/{name}"), paths::pod_netns(&lab, ns, name)));
        }
    }
    let external = crate::lab::config::EXTERNAL_HOST;
    targets.push((
        format!("host/{external}"),
        paths::host_netns(&lab, external),
    ));
    let mut rows = Vec::new();
    for (target, netns) in targets {
        // A pod starting or going has no namespace for a moment.
        if let Ok(Some(n)) = crate::net::get_netem(&netns, "eth0").await {
            rows.push((target, n.describe()));
        }
    }
    if rows.is_empty() {
        eprintln!("No netem in force in lab {lab}.");
        return Ok(0);
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    println!("{:width$}   INTERFACE   NETEM", "TARGET");
    for (t, d) in rows {
        println!("{t:width$}   eth0        {d}");
    }
    Ok(0)
}

pub async fn link(args: LinkArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let up = match args.state.as_str() {
        "up" => true,
        "down" => false,
        s => bail!("{s:?}: netlab link down|up node/NODE"),
    };
    let Some(node) = args.target.strip_prefix("node/") else {
        bail!("{:?}: netlab link down|up node/NODE", args.target);
    };
    let client = Client::connect(&lab).await?;
    client.require_node(&lab, node).await?;
    crate::net::set_links(
        &paths::dc_netns(&lab),
        &crate::controller::power::ports(node),
        up,
    )
    .await?;
    println!("node/{node}: links {}", args.state);
    Ok(0)
}

/// `netlab partition node/A node/B [--heal]`: asked of the lab's process,
/// which keeps it in the store; every node's rules drop what goes between
/// the two (`proxy::rules`).
pub async fn partition(args: PartitionArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let node = |t: &str| -> Result<String> {
        t.strip_prefix("node/")
            .map(String::from)
            .ok_or_else(|| anyhow!("{t:?}: netlab partition node/A node/B [--heal]"))
    };
    let (a, b) = (node(&args.a)?, node(&args.b)?);
    let client = Client::connect(&lab).await?;
    let path = format!(
        "{}?a={a}&b={b}&heal={}",
        crate::controller::power::PARTITION_PATH,
        args.heal
    );
    let answer = client
        .request(http::Method::POST, &path, None, client::JSON, Vec::new())
        .await?;
    println!("{}", answer["message"].as_str().unwrap_or_default());
    Ok(0)
}
