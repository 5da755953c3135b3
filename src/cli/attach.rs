//! `netlab attach POD [-c CONTAINER] [-i] [-t]`: kubectl attach's twin,
//! through the lab's API (`pods/attach`): this terminal joins the
//! container's own stdio, which a container started with `stdin` or
//! `tty` has (`netlab run -i`, `kubectl run -i --tty`).

use super::client::Client;
use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// POD or pod/POD.
    pub pod: String,
    /// Container name (default: the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub async fn run(args: AttachArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let name = args.pod.strip_prefix("pod/").unwrap_or(&args.pod);
    let client = Client::connect(&lab).await?;
    let pod = client.pod(&args.namespace, name).await?;
    let containers = &pod.spec.as_ref().expect("pods have specs").containers;
    let container = match &args.container {
        Some(c) => containers
            .iter()
            .find(|x| &x.name == c)
            .ok_or_else(|| anyhow!("container {c} is not valid for pod {name}"))?,
        None => &containers[0],
    };
    // As kubectl does: a terminal only where the container has one, and
    // always where it has (its output is one stream then).
    let mut tty = args.tty;
    if tty && container.tty != Some(true) {
        eprintln!(
            "error: Unable to use a TTY - container {} did not allocate one",
            container.name
        );
        tty = false;
    } else if !tty && container.tty == Some(true) {
        tty = true;
    }
    if tty && args.stdin && !std::io::stdin().is_terminal() {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let code = attach(
        &client,
        &args.namespace,
        name,
        Some(&container.name),
        args.stdin,
        tty,
    )
    .await?;
    if tty
        && args.stdin
        && pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Always")
    {
        println!(
            "Session ended, resume using 'netlab attach {name} -c {} -i -t' command when the pod is running",
            container.name
        );
    }
    Ok(code)
}

/// Where a pod is once it has been waited for.
pub enum Running {
    /// It runs and is ready: it can be attached to.
    Yes,
    /// It ended before that.
    Ended,
}

/// Waits (at most a minute, as kubectl's `--pod-running-timeout`) for a
/// pod to run and be ready, as `kubectl run -i` does before it attaches.
pub async fn when_running(client: &Client, namespace: &str, name: &str) -> Result<Running> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = false;
    loop {
        let pod = client.pod(namespace, name).await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        let ready = crate::cluster::state::pod_ready(&pod);
        match phase.as_str() {
            "Running" if ready => return Ok(Running::Yes),
            "Succeeded" | "Failed" => return Ok(Running::Ended),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for pod {namespace}/{name} to be running (status is {phase}): see `netlab describe pod {name}`");
        }
        if !said && phase != "Running" {
            eprintln!("Waiting for pod {namespace}/{name} to be running, status is {phase}, pod ready: {ready}");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Attaches this process's stdio to a container's (stdout always; stdin
/// with `stdin`; one terminal stream with `tty`, else stdout and stderr)
/// until its output ends.
pub async fn attach(
    client: &Client,
    namespace: &str,
    name: &str,
    container: Option<&str>,
    stdin: bool,
    tty: bool,
) -> Result<i32> {
    let mut params = AttachParams::default()
        .stdin(stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    if let Some(c) = container {
        params = params.container(c);
    }
    if stdin && tty {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    let api: Api<Pod> = Api::namespaced(client.kube(), namespace);
    let attached = api
        .attach(name, &params)
        .await
        .map_err(|e| anyhow!("attaching to pod {name}: {e}"))?;
    super::exec::stream(attached, tty).await
}

/// Prints a container's whole log (a pod that ended before it could be
/// attached to).
pub async fn print_log(client: &Client, namespace: &str, name: &str) -> Result<()> {
    use std::io::Write;
    let api: Api<Pod> = Api::namespaced(client.kube(), namespace);
    let text = api
        .logs(name, &LogParams::default())
        .await
        .map_err(|e| anyhow!("logs of pod {name}: {e}"))?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// Waits for a pod that is not restarted (`restartPolicy` Never or
/// OnFailure) to end, as kubectl run does, and gives its container's exit
/// code.
pub async fn exit_code(client: &Client, namespace: &str, name: &str, policy: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = client.pod(namespace, name).await?;
        let status = pod.status.unwrap_or_default();
        let terminated = status
            .container_statuses
            .iter()
            .flatten()
            .next()
            .and_then(|c| c.state.as_ref()?.terminated.clone());
        match status.phase.as_deref() {
            Some("Succeeded") => return Ok(0),
            Some("Failed") => match terminated {
                Some(t) if t.exit_code > 0 => return Ok(t.exit_code),
                _ => bail!("pod {namespace}/{name} failed with unknown exit code"),
            },
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for pod {namespace}/{name} (restartPolicy {policy}) to end");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
