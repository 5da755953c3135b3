//! `netlab exec POD -- CMD` (in the container, through runc) and
//! `netlab exec node/NAME -- CMD` ("ssh to a node": the host's program in the
//! node's network namespace), and `netlab exec host/external -- CMD` (a
//! host outside the cluster, on the lab's public network).

use super::client::{self, Client};
use crate::cluster::state;
use crate::controller;
use crate::paths;
use crate::runtime::Runc;
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
            let nodes = super::get::kind("nodes")?;
            let list = client
                .get(&client::path(nodes, None, None), client::JSON)
                .await?;
            let names: Vec<&str> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["metadata"]["name"].as_str())
                .collect();
            if !names.contains(&node) {
                bail!(
                    "nodes {node:?} not found in lab {lab} (nodes: {})",
                    names.join(", ")
                );
            }
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
        Some(("pod" | "pods" | "po", pod)) => pod_exec(&lab, &client, pod, &args).await?,
        Some((kind, _)) => {
            bail!("netlab exec takes POD, pod/NAME, node/NAME or host/external, not {kind}")
        }
        None => pod_exec(&lab, &client, &args.target, &args).await?,
    };
    if !args.stdin {
        cmd.stdin(Stdio::null());
    }
    // runc's own complaint (a command that could not be started) comes on
    // its stderr: pass everything through and keep the last lines to read.
    cmd.stderr(Stdio::piped());
    let (status, tail) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        use std::io::{BufRead, Write};
        let mut child = cmd.spawn()?;
        let mut tail = Vec::new();
        if let Some(err) = child.stderr.take() {
            let mut out = std::io::stderr();
            for line in std::io::BufReader::new(err)
                .split(b'\n')
                .map_while(Result::ok)
            {
                let _ = out.write_all(&line);
                let _ = out.write_all(b"\n");
                tail.push(String::from_utf8_lossy(&line).into_owned());
                if tail.len() > 4 {
                    tail.remove(0);
                }
            }
        }
        Ok((child.wait()?, tail.join("\n")))
    })
    .await?
    .map_err(|e| anyhow!("running the command: {e}"))?;
    Ok(exit_code(status.code(), &tail))
}

/// The exit code a user expects, as a shell (and kubectl) gives it: runc
/// exits 255 when the command cannot be started at all, where a shell says
/// 127 (not found) or 126 (found, not executable).
fn exit_code(code: Option<i32>, stderr_tail: &str) -> i32 {
    match code {
        Some(255) if stderr_tail.contains("exec failed") || stderr_tail.contains("exec:") => {
            if stderr_tail.contains("permission denied") {
                126
            } else if stderr_tail.contains("not found") || stderr_tail.contains("no such file") {
                127
            } else {
                255
            }
        }
        Some(c) => c,
        None => 128 + 9,
    }
}

/// The pod's container, read from the API, run into by runc on this host
/// (the exec stream of the API comes with issue 17).
async fn pod_exec(
    lab: &str,
    client: &Client,
    pod: &str,
    args: &ExecArgs,
) -> Result<std::process::Command> {
    let p = client.pod(&args.namespace, pod).await?;
    let p = &p;
    if crate::cluster::dns::is_builtin(p) {
        bail!(
            "pod {pod} is netlab's built-in DNS server, run by the lab's controller in the pod's network namespace: it has no container to exec into (try `netlab exec node/NODE -- dig @{} …`)",
            state::pod_ip(p).map(|i| i.to_string()).unwrap_or_default()
        );
    }
    let containers = &p.spec.as_ref().expect("pods have specs").containers;
    let container = match &args.container {
        Some(c) => containers
            .iter()
            .find(|x| &x.name == c)
            .ok_or_else(|| anyhow!("container {c} is not valid for pod {pod}"))?,
        None => &containers[0],
    };
    let id = paths::container_id(state::namespace(&p.metadata), pod, &container.name);
    Ok(Runc::new(&paths::runc_root(lab)).exec_command(&id, &args.command, args.tty))
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn exit_codes_as_a_shell_gives_them() {
        let cases = [
            (Some(0), "", 0),
            (Some(3), "", 3),
            (Some(255), "", 255),
            (Some(255), "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH", 127),
            (Some(255), "exec failed: unable to start container process: exec: \"/x/y\": stat /x/y: no such file or directory", 127),
            (Some(255), "exec failed: unable to start container process: exec: \"/etc/hosts\": permission denied", 126),
            (None, "", 137),
        ];
        for (code, tail, want) in cases {
            assert_eq!(exit_code(code, tail), want, "{code:?} {tail}");
        }
    }
}
