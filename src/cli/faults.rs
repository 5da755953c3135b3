//! Link faults (issue 19's drills): `netlab netem TARGET …` puts a netem
//! qdisc on the target's interface, `netlab get netem` lists what is in
//! force, `netlab link down|up node/NODE` cuts a node's ports on the lab's
//! bridges, `netlab partition` cuts two nodes apart. Each is an API call
//! to the lab's process (`api::drills`), which makes it
//! (`controller::faults`, `controller::power`).

use anyhow::{anyhow, bail, Result};

use super::client::{self, Client};
use crate::api::drills::NETEM_PATH;
use crate::net::tc::Netem;

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

/// Asks the lab's process for a drill (`api::drills`) and prints what it did.
pub async fn ask(client: &Client, path: &str, body: Option<Vec<u8>>) -> Result<()> {
    let content_type = body.as_ref().map(|_| client::JSON);
    let answer = client
        .request(
            http::Method::POST,
            path,
            content_type,
            client::JSON,
            body.unwrap_or_default(),
        )
        .await?;
    println!("{}", answer["message"].as_str().unwrap_or_default());
    Ok(())
}

/// `netlab netem TARGET …`: asked of the lab's process (`api::drills`).
pub async fn netem(args: NetemArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    // The flags first: a mistake changes nothing.
    let want = if args.clear {
        None
    } else {
        Some(wanted(&args)?)
    };
    let client = Client::connect(&lab).await?;
    let mut path = format!(
        "{NETEM_PATH}?target={}&namespace={}",
        args.target, args.namespace
    );
    if want.is_none() {
        path.push_str("&clear=true");
    }
    let body = serde_json::to_vec(&want).expect("JSON serializes");
    ask(&client, &path, Some(body)).await?;
    Ok(0)
}

/// `netlab get netem`: what is in force on the lab's nodes, pods and
/// external host (the lab's process reads it from the kernel).
pub async fn list(lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let client = Client::connect(&lab).await?;
    let answer = client.get(NETEM_PATH, client::JSON).await?;
    let rows: Vec<(&str, &str)> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["target"].as_str().unwrap_or_default(),
                i["netem"].as_str().unwrap_or_default(),
            )
        })
        .collect();
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

/// `netlab link down|up node/NODE`: asked of the lab's process.
pub async fn link(args: LinkArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    if !matches!(args.state.as_str(), "up" | "down") {
        bail!("{:?}: netlab link down|up node/NODE", args.state);
    }
    let Some(node) = args.target.strip_prefix("node/") else {
        bail!("{:?}: netlab link down|up node/NODE", args.target);
    };
    let client = Client::connect(&lab).await?;
    let path = format!(
        "{}{node}/links/{}",
        crate::controller::power::PATH_PREFIX,
        args.state
    );
    ask(&client, &path, None).await?;
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
    ask(&client, &path, None).await?;
    Ok(0)
}
