//! `netlab exec POD -- CMD` (in the container, through runc) and
//! `netlab exec node/NAME -- CMD` ("ssh to a node": the host's program in the
//! node's network namespace), and `netlab exec host/external -- CMD` (a
//! host outside the cluster, on the lab's public network). A pod's
//! container is reached through the lab's API (`pods/exec`), as kubectl
//! reaches it.

use super::client::Client;
use crate::cluster::state;
use crate::controller;
use crate::paths;
use anyhow::{anyhow, bail, Result};
use std::process::Stdio;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Container name (default: the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// POD, pod/POD, node/NODE or host/external.
    pub target: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(args: ExecArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let client = Client::connect(&lab).await?;
    let mut cmd = match args.target.split_once('/') {
        Some(("node" | "nodes" | "no", node)) => {
            client.require_node(&lab, node).await?;
            let ns = controller::up::node_netns(&lab, node)?;
            let mut cmd = ns.command(&args.command[0]);
            cmd.args(&args.command[1..]);
            cmd
        }
        Some(("host" | "hosts", host)) => {
            let external = crate::lab::config::EXTERNAL_HOST;
            if host != external {
                bail!("hosts {host:?} not found in lab {lab}: the host outside the cluster is host/{external}");
            }
            let ns = crate::net::NetNs::open(&paths::host_netns(&lab, host))
                .map_err(|e| anyhow!("{e} (a lab made before netlab had public networks has no external host: bring it up again)"))?;
            let mut cmd = ns.command(&args.command[0]);
            cmd.args(&args.command[1..]);
            cmd
        }
        Some(("pod" | "pods" | "po", pod)) => return pod_exec(&client, pod, &args).await,
        Some((kind, _)) => {
            bail!("netlab exec takes POD, pod/NAME, node/NAME or host/external, not {kind}")
        }
        None => return pod_exec(&client, &args.target, &args).await,
    };
    if !args.stdin {
        cmd.stdin(Stdio::null());
    }
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await?
        .map_err(|e| anyhow!("running the command: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|n| 128 + n))
        .unwrap_or(1))
}

/// The pod's container, through the lab's API (`pods/exec`, the stream
/// kubectl uses): stdin, stdout, stderr, or a terminal in raw mode that
/// follows this one's size. Returns the command's exit code.
async fn pod_exec(client: &Client, pod: &str, args: &ExecArgs) -> Result<i32> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use std::io::IsTerminal;
    let p = client.pod(&args.namespace, pod).await?;
    if crate::cluster::dns::is_builtin(&p) {
        bail!(
            "pod {pod} is netlab's built-in DNS server, run by the lab's controller in the pod's network namespace: it has no container to exec into (try `netlab exec node/NODE -- dig @{} …`)",
            state::pod_ip(&p).map(|i| i.to_string()).unwrap_or_default()
        );
    }
    let containers = &p.spec.as_ref().expect("pods have specs").containers;
    let container = match &args.container {
        Some(c) if containers.iter().any(|x| &x.name == c) => c.clone(),
        Some(c) => bail!("container {c} is not valid for pod {pod}"),
        None => containers[0].name.clone(),
    };
    let tty = args.tty && std::io::stdin().is_terminal();
    let params = AttachParams::default()
        .container(container)
        .stdin(args.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let api: Api<Pod> = Api::namespaced(client.kube(), &args.namespace);
    let attached = api
        .exec(pod, args.command.clone(), &params)
        .await
        .map_err(|e| anyhow!("exec in pod {pod}: {e}"))?;
    stream(attached, tty).await
}

/// Connects this process's stdio to an exec or attach session: stdin (and
/// the terminal's size, in raw mode, with `tty`) in, stdout and stderr
/// out. Returns the exit code the session's status carries (0 for an
/// attach).
pub async fn stream(mut attached: kube::api::AttachedProcess, tty: bool) -> Result<i32> {
    use kube::api::TerminalSize;
    let _raw = tty.then(RawTerminal::enter).transpose()?;
    if let Some(mut sizes) = attached.terminal_size() {
        tokio::spawn(async move {
            use futures::SinkExt;
            let mut changed =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
            loop {
                if let Some((width, height)) = terminal_size() {
                    if sizes.send(TerminalSize { width, height }).await.is_err() {
                        return;
                    }
                }
                match &mut changed {
                    Some(c) => {
                        if c.recv().await.is_none() {
                            return;
                        }
                    }
                    None => return,
                }
            }
        });
    }
    if let Some(mut to) = attached.stdin() {
        // A thread of its own reads stdin: a read that never returns (a
        // terminal nobody types in) must not keep the process from ending,
        // as one of the runtime's blocking threads would.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 16 * 1024];
            let mut stdin = std::io::stdin();
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = rx.recv().await {
                if to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Dropping the writer closes the container's stdin.
        });
    }
    let out = attached.stdout().map(|mut from| {
        tokio::spawn(async move { tokio::io::copy(&mut from, &mut tokio::io::stdout()).await })
    });
    let err = attached.stderr().map(|mut from| {
        tokio::spawn(async move { tokio::io::copy(&mut from, &mut tokio::io::stderr()).await })
    });
    let status = match attached.take_status() {
        Some(s) => s.await,
        None => None,
    };
    for copy in [out, err].into_iter().flatten() {
        let _ = copy.await;
    }
    drop(_raw);
    let Some(status) = status else {
        return Ok(0);
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter().flatten())
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse::<i32>().ok());
    match code {
        Some(code) => Ok(code),
        None => bail!("{}", status.message.unwrap_or_default()),
    }
}

/// This terminal's size (columns, rows), if stdout or stdin is one.
fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
    let ok = [1, 0]
        .into_iter()
        .any(|fd| unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0);
    (ok && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
}

/// stdin in raw mode while a remote terminal is attached, as kubectl
/// does; the old mode is back when this is dropped.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let old = termios::tcgetattr(&stdin)?;
        let mut raw = old.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw)?;
        Ok(RawTerminal(old))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}
