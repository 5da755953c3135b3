//! `netlab run NAME --image=IMAGE [-i] [-t] [--rm] [-- ARGS…]`: kubectl
//! run's twin, and a client of the lab's API as kubectl is. Without `-i`
//! the pod is created and left to run. With `-i` the container gets stdin
//! (and a terminal, with `-t`), and once the pod runs this command attaches
//! to it (`pods/attach`, as `netlab attach` does). When the session ends,
//! `--rm` deletes the pod; otherwise it goes on as its restartPolicy says,
//! and `netlab attach` resumes the session.

use super::attach;
use super::client::{self, Client};
use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::io::IsTerminal;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pod's name.
    pub name: String,
    /// The container image.
    #[arg(long)]
    pub image: String,
    /// Keep stdin open and attach to the container (this command ends with it).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal for the container.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Delete the pod when the attached session ends (needs -i).
    #[arg(long)]
    pub rm: bool,
    /// The pod's restartPolicy: Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// Environment variables, NAME=VALUE (repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// Labels, k=v,k2=v2 (default: run=NAME).
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// The port the container exposes.
    #[arg(long)]
    pub port: Option<i32>,
    /// The arguments after `--` are the command, not arguments to the image's entrypoint.
    #[arg(long)]
    pub command: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Arguments (or, with --command, the command) after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

fn pod(args: &RunArgs, attached: bool, tty: bool) -> Result<Pod> {
    let labels: BTreeMap<String, String> = match &args.labels {
        Some(l) => l
            .split(',')
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow!("--labels {l:?}: write them as key=value,key2=value2"))
            })
            .collect::<Result<_>>()?,
        None => [("run".to_string(), args.name.clone())].into(),
    };
    let env = args
        .env
        .iter()
        .map(|e| {
            let (n, v) = e
                .split_once('=')
                .ok_or_else(|| anyhow!("--env {e:?}: write it as NAME=VALUE"))?;
            Ok(EnvVar {
                name: n.into(),
                value: Some(v.into()),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if !["Always", "OnFailure", "Never"].contains(&args.restart.as_str()) {
        bail!(
            "--restart {:?}: use Always, OnFailure or Never",
            args.restart
        );
    }
    let (command, cargs) = match (args.command, args.args.is_empty()) {
        (_, true) => (None, None),
        (true, false) => (Some(args.args.clone()), None),
        (false, false) => (None, Some(args.args.clone())),
    };
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(args.name.clone()),
            namespace: Some(args.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: args.name.clone(),
                image: Some(args.image.clone()),
                command,
                args: cargs,
                env: (!env.is_empty()).then_some(env),
                ports: args.port.map(|p| {
                    vec![ContainerPort {
                        container_port: p,
                        ..Default::default()
                    }]
                }),
                stdin: args.stdin.then_some(true),
                stdin_once: attached.then_some(true),
                tty: tty.then_some(true),
                ..Default::default()
            }],
            restart_policy: Some(args.restart.clone()),
            ..Default::default()
        }),
        status: None,
    })
}

pub async fn run(args: RunArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    crate::lab::validate::dns_label(&args.name)
        .map_err(|m| anyhow!("pod name {:?} {m}", args.name))?;
    if args.rm && !args.stdin {
        bail!("--rm should only be used for attached containers: add -i");
    }
    let attached = args.stdin;
    let mut tty = args.tty;
    if tty && !std::io::stdin().is_terminal() {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        tty = false;
    }
    let pod = pod(&args, attached, tty)?;
    let client = Client::connect(&lab).await?;
    let pods_r = super::get::kind("pods")?;
    let mut body = serde_json::to_value(&pod)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Pod".into();
    let q = client::query(&[("fieldManager", "kubectl-run")]);
    let collection = client::path(pods_r, Some(&args.namespace), None);
    client
        .send(
            http::Method::POST,
            &format!("{collection}{q}"),
            client::JSON,
            &body,
        )
        .await?;
    let line = format!("pod/{} created", args.name);
    if !attached {
        println!("{line}");
        return Ok(0);
    }
    let path = client::path(pods_r, Some(&args.namespace), Some(&args.name));
    let (ns, name) = (args.namespace.as_str(), args.name.as_str());
    let code = match attach::when_running(&client, ns, name).await? {
        attach::Running::Yes => attach::attach(&client, ns, name, None, true, tty).await?,
        // Done before anyone could attach: what it said, as kubectl shows it.
        attach::Running::Ended => {
            attach::print_log(&client, ns, name).await?;
            0
        }
    };
    // As kubectl: a pod that is not restarted ends with its container's
    // exit code, which is this command's.
    let code = if args.restart == "Always" {
        if tty {
            println!(
                "Session ended, resume using 'netlab attach {name} -c {name} -i -t' command when the pod is running"
            );
        }
        code
    } else {
        attach::exit_code(&client, ns, name, &args.restart).await?
    };
    if args.rm {
        client
            .send(
                http::Method::DELETE,
                &path,
                client::JSON,
                &serde_json::json!({}),
            )
            .await?;
        println!("pod \"{name}\" deleted");
    }
    Ok(code)
}
