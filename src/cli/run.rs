//! `netlab run NAME --image=IMAGE [-i] [-t] [--rm] [-- ARGS…]`: kubectl
//! run's twin. Without `-i` the pod starts like any other (detached, kept
//! running by the controller). With `-i` this command *is* the attached
//! session: the pod's container is prepared as usual but its runtime runs
//! in the foreground here, its stdin/stdout/stderr (and terminal, with
//! `-t`) being ours, as `kubectl run -i --tty` attaches to the container's
//! main process. When the session ends, `--rm` deletes the pod; otherwise
//! the pod stays, terminated (netlab has no `attach` to resume it, so
//! attached pods are not restarted).

use super::client::{self, Client};
use crate::controller::pods;
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
    let mut annotations = BTreeMap::new();
    if attached {
        annotations.insert(
            pods::ATTACH_ANNOTATION.to_string(),
            format!(
                "{}:{}",
                std::process::id(),
                if tty { "tty" } else { "stdin" }
            ),
        );
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(args.name.clone()),
            namespace: Some(args.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
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
            // An attached session is not resumed: see the module doc.
            restart_policy: Some(if attached {
                "Never".into()
            } else {
                args.restart.clone()
            }),
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
    if tty {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    let path = client::path(pods_r, Some(&args.namespace), Some(&args.name));
    let started: Pod = serde_json::from_value(client.get(&path, client::JSON).await?)?;
    let code = pods::run_attached(&lab, &started).await?;
    if args.rm {
        client
            .send(
                http::Method::DELETE,
                &path,
                client::JSON,
                &serde_json::json!({}),
            )
            .await?;
        println!("pod \"{}\" deleted", args.name);
    } else {
        // This process ran the container: it reports how it ended, as the
        // kubelet reports a pod's status (the pods/status subresource).
        let mut p: Pod = serde_json::from_value(client.get(&path, client::JSON).await?)?;
        pods::set_terminated(&mut p, code);
        client
            .send(
                http::Method::PATCH,
                &format!("{path}/status"),
                "application/merge-patch+json",
                &serde_json::json!({"status": p.status}),
            )
            .await?;
        eprintln!(
            "Session ended; pod/{} stays {} (netlab cannot re-attach: delete it with `netlab delete pod {}`, or use --rm)",
            args.name,
            if code == 0 { "Completed" } else { "in Error" },
            args.name
        );
    }
    Ok(code)
}
