//! `netlab node stop|start|restart NODE`: a drill's power switch, asked of
//! the lab's process through its API (`crate::controller::power`). What
//! Kubernetes makes of a silent node then follows on the lab's clock
//! (`spec.timing` of its Lab document).

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub action: NodeAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeAction {
    /// Cut a node's power: its containers are killed and its links go down;
    /// it turns NotReady after the node monitor grace period, its pods are
    /// evicted after their toleration.
    Stop { node: String },
    /// Bring a stopped node back: links up, Ready, its pods' containers restarted.
    Start { node: String },
    /// Stop, then start.
    Restart { node: String },
}

async fn switch(client: &super::client::Client, node: &str, action: &str) -> Result<()> {
    let path = format!("{}{node}/{action}", crate::controller::power::PATH_PREFIX);
    super::faults::ask(client, &path, None)
        .await
        .with_context(|| format!("node {node}: {action}"))
}

pub async fn run(args: NodeArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let client = super::client::Client::connect(&lab).await?;
    match args.action {
        NodeAction::Stop { node } => switch(&client, &node, "stop").await?,
        NodeAction::Start { node } => switch(&client, &node, "start").await?,
        NodeAction::Restart { node } => {
            switch(&client, &node, "stop").await?;
            switch(&client, &node, "start").await?;
        }
    }
    Ok(0)
}
