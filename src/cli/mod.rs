//! The `cli` layer: kubectl-shaped verbs over a lab. Argument parsing here,
//! output through `printer`, work through `controller`.

pub mod attach;
pub mod client;
pub mod create;
pub mod describe;
pub mod edit;
pub mod exec;
pub mod faults;
pub mod get;
pub mod graph;
pub mod images;
pub mod kubeconfig;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod printer;
pub mod run;
pub mod trace;
pub mod ui;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "netlab",
    version,
    about = "Kubernetes service networking, for real, on one Linux host",
    long_about = "netlab builds a real pod network (network namespaces, bridges, veths), runs real containers (runc) and answers kubectl-style verbs, from plain Kubernetes manifests."
)]
pub struct Cli {
    /// The lab to act on (optional when exactly one lab is up).
    #[arg(long, global = true, env = "NETLAB_LAB")]
    pub lab: Option<String>,
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring a lab up from Kubernetes manifests (and an optional kind: Lab document).
    Up(lifecycle::UpArgs),
    /// Remove a lab and everything it created.
    Down(lifecycle::DownArgs),
    /// List the labs that are up.
    Labs,
    /// Print a kubeconfig for the lab's Kubernetes API (for scripts and CI;
    /// `up` already merged a `netlab-<lab>` context into your kubeconfig).
    Kubeconfig,
    /// Display one or many resources (pods, nodes, deployments, services, endpoints).
    Get(GetCmd),
    /// Show details of a resource (svc, pod).
    Describe(DescribeCmd),
    /// Apply a configuration to a running lab by file name.
    Apply(edit::ApplyArgs),
    /// Create objects from a file (refuses existing ones), or a secret or configmap.
    Create(create::CreateArgs),
    /// Delete resources by type and name, or by file name.
    Delete(edit::DeleteArgs),
    /// Set a new size for a deployment.
    Scale(edit::ScaleArgs),
    /// Update fields of an object with a strategic merge, merge or JSON patch.
    Patch(edit::PatchArgs),
    /// Edit an object in $EDITOR; saved changes are applied.
    Edit(edit::EditArgs),
    /// Expose a deployment, pod or service as a new Service.
    Expose(edit::ExposeArgs),
    /// Execute a command in a container, or in a node's network namespace (node/NAME).
    Exec(exec::ExecArgs),
    /// Run a pod with one container (attached with -i, as kubectl run).
    Run(run::RunArgs),
    /// Attach to a running container's stdio (one started with stdin or a terminal).
    Attach(attach::AttachArgs),
    /// Print the logs of a container in a pod.
    Logs(logs::LogsArgs),
    /// Draw the lab: networks, nodes, pods, Services and their endpoints (svg, dot, mermaid, json).
    Graph(graph::GraphArgs),
    /// Send one real probe and explain its path: DNS, the node's rules, the Service, the endpoint chosen, the route.
    Trace(trace::TraceArgs),
    /// A link to the lab's live page (served by its process on the loopback): the picture, the pods, traces drawn over it.
    Ui(ui::UiArgs),
    /// Failure drills: stop, start or restart a node (a power cut, with Kubernetes' timing).
    Node(node::NodeArgs),
    /// Failure drills: delay, jitter, loss, rate or corruption on a node's, pod's or the external host's interface (netem).
    Netem(faults::NetemArgs),
    /// Failure drills: bring a node's links down or up (`link down node/NODE`).
    Link(faults::LinkArgs),
    /// Failure drills: cut two nodes off from each other (`--heal` mends it).
    Partition(faults::PartitionArgs),
    /// The local image store.
    Images(images::ImagesArgs),
    /// Pull an image from its registry (or a mirror) into the local store.
    Pull(images::PullArgs),
    /// Push an image of the local store to a registry.
    Push(images::PushArgs),
    /// Make a private key and a self-signed certificate (as `openssl req -x509`), optionally as a TLS secret.
    Cert(create::CertArgs),
    /// The lab's controller process (restarts containers, follows them in the Services).
    Controller(ControllerCmd),
}

#[derive(Debug, clap::Args)]
pub struct GetCmd {
    /// TYPE[,TYPE…] [NAME…] or TYPE/NAME…
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Selector (label query) to filter on, e.g. -l run=my-nginx.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format: wide, yaml, json, name.
    #[arg(short = 'o', long, default_value = "")]
    pub output: String,
    /// The namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Selector (field query) to filter on, e.g. --field-selector spec.nodeName=node-1.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Print tables without their header line.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, clap::Args)]
pub struct ControllerCmd {
    #[command(subcommand)]
    pub action: ControllerAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ControllerAction {
    /// Start it in the background (adopting the running pods) unless it runs.
    Start,
    /// Stop it; the pods keep running.
    Stop,
    /// Print its pid, or exit 1 when it does not run.
    Status,
    /// Run it in the foreground (what `start` runs).
    #[command(hide = true)]
    Run {
        /// Make the lab's store from the state on stdin (what `up` planned).
        #[arg(long)]
        initial_state_on_stdin: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct DescribeCmd {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub targets: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The API's refusals as kubectl prints them.
        Err(e) if e.downcast_ref::<client::ApiFailure>().is_some() => {
            eprintln!("{}", message(&e));
            1
        }
        Err(e) => {
            eprintln!("error: {}", message(&e));
            1
        }
    }
}

/// An error and its causes, each said once: many of our errors put their
/// cause in their own message (`creating netns X: File exists`) and name it
/// as their source too, so `{:#}` said it two or three times.
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cli: Cli) -> Result<i32> {
    let lab = cli.lab.clone();
    match cli.command {
        Command::Images(args) => images::run(args).await,
        Command::Pull(args) => {
            require_root()?;
            images::pull(args).await
        }
        Command::Push(args) => images::push(args).await,
        Command::Cert(args) => create::cert(args, lab).await,
        command => {
            require_root()?;
            match command {
                Command::Up(args) => lifecycle::up(args, lab).await,
                Command::Down(args) => lifecycle::down(args, lab).await,
                Command::Labs => lifecycle::labs().await,
                Command::Kubeconfig => lifecycle::print_kubeconfig(lab),
                Command::Get(args) if args.targets == ["netem"] => faults::list(lab).await,
                Command::Get(args) => get(args, lab).await,
                Command::Describe(args) => describe(args, lab).await,
                Command::Apply(args) => {
                    edit::apply(args, lab, crate::cluster::objects::Mode::Apply).await
                }
                Command::Create(args) => create::run(args, lab).await,
                Command::Delete(args) => edit::delete(args, lab).await,
                Command::Scale(args) => edit::scale(args, lab).await,
                Command::Expose(args) => edit::expose(args, lab).await,
                Command::Patch(args) => edit::patch(args, lab).await,
                Command::Edit(args) => edit::edit(args, lab).await,
                Command::Exec(args) => exec::run(args, lab).await,
                Command::Run(args) => run::run(args, lab).await,
                Command::Attach(args) => attach::run(args, lab).await,
                Command::Logs(args) => logs::run(args, lab).await,
                Command::Graph(args) => graph::run(args, lab).await,
                Command::Trace(args) => trace::run(args, lab).await,
                Command::Ui(args) => ui::run(args, lab).await,
                Command::Node(args) => node::run(args, lab).await,
                Command::Netem(args) => faults::netem(args, lab).await,
                Command::Link(args) => faults::link(args, lab).await,
                Command::Partition(args) => faults::partition(args, lab).await,
                Command::Controller(args) => controller(args, lab).await,
                Command::Images(_) | Command::Pull(_) | Command::Push(_) | Command::Cert(_) => {
                    unreachable!()
                }
            }
        }
    }
}

pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("netlab needs root: it creates network namespaces and runs containers. Run it with sudo.");
    }
    Ok(())
}

/// `--lab`, or the only lab that is up.
pub fn select_lab(lab: Option<String>) -> Result<String> {
    if let Some(lab) = lab {
        return Ok(lab);
    }
    let labs = crate::controller::labs();
    match labs.len() {
        0 => bail!("no lab is up: start one with `netlab up FILE`"),
        1 => Ok(labs[0].clone()),
        _ => bail!(
            "{} labs are up ({}): choose one with --lab NAME or NETLAB_LAB",
            labs.len(),
            labs.join(", ")
        ),
    }
}

async fn get(args: GetCmd, lab: Option<String>) -> Result<i32> {
    let lab = select_lab(lab)?;
    let format: printer::Format = args.output.parse().map_err(anyhow::Error::msg)?;
    let (kinds, names) = get::parse_targets(&args.targets)?;
    cluster_selector(args.selector.as_deref())?;
    let get_args = get::GetArgs {
        kinds,
        names,
        selector: args.selector,
        field_selector: args.field_selector,
        format,
        namespace: (!args.all_namespaces).then_some(args.namespace.as_str()),
        no_headers: args.no_headers,
    };
    let client = client::Client::connect(&lab).await?;
    let fetched = get::fetch(&client, &get_args).await?;
    print!("{}", get::render(&fetched, &get_args)?);
    Ok(0)
}

async fn controller(args: ControllerCmd, lab: Option<String>) -> Result<i32> {
    use crate::controller::daemon;
    let lab = select_lab(lab)?;
    match args.action {
        ControllerAction::Run {
            initial_state_on_stdin,
        } => {
            daemon::run(&lab, initial_state_on_stdin).await?;
            Ok(0)
        }
        ControllerAction::Start => {
            if !crate::store::exists(&lab) {
                return Err(crate::controller::missing(&lab).into());
            }
            let pid = daemon::spawn(&lab)?;
            println!("controller of lab {lab} runs (pid {pid})");
            Ok(0)
        }
        ControllerAction::Stop => {
            daemon::stop(&lab).await.map_err(anyhow::Error::msg)?;
            println!("controller of lab {lab} stopped");
            Ok(0)
        }
        ControllerAction::Status => match daemon::running(&lab) {
            Some(pid) => {
                println!("{pid}");
                Ok(0)
            }
            None => {
                eprintln!("the controller of lab {lab} does not run: start it with `netlab controller start`");
                Ok(1)
            }
        },
    }
}

async fn describe(args: DescribeCmd, lab: Option<String>) -> Result<i32> {
    let lab = select_lab(lab)?;
    let (kinds, names) = get::parse_targets(&args.targets)?;
    let client = client::Client::connect(&lab).await?;
    let mut out = Vec::new();
    for kind in kinds {
        for name in &names {
            let d = describe::fetch(&client, kind, name, &args.namespace).await?;
            out.push(describe::render(kind, &d)?);
        }
    }
    print!("{}", out.join("\n\n"));
    Ok(0)
}

fn cluster_selector(text: Option<&str>) -> Result<crate::cluster::Selector> {
    crate::cluster::Selector::parse(text.unwrap_or("")).map_err(anyhow::Error::msg)
}

/// Paths given on the command line, checked to exist before anything runs.
pub fn existing_files(files: &[PathBuf]) -> Result<()> {
    for f in files {
        if !f.exists() {
            bail!("the path {:?} does not exist", f.display().to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_says_each_cause_once() {
        let os = std::io::Error::from_raw_os_error(17);
        let net = crate::net::NetError::Os {
            op: "creating netns",
            object: "netlab-race.dc".into(),
            source: os,
        };
        let e = anyhow::Error::from(crate::controller::ControllerError::from(net));
        assert_eq!(
            super::message(&e),
            "network: creating netns netlab-race.dc: File exists (os error 17)"
        );
        // Causes that say something new are kept, in order.
        let e = anyhow::anyhow!("reading lab.yaml").context("bringing up lab x");
        assert_eq!(super::message(&e), "bringing up lab x: reading lab.yaml");
    }
}
