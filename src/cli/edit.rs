//! Verbs that change a running lab: `apply -f`, `create -f`, `delete`,
//! `scale`, `expose`, `patch`, `edit`. Each is a pure edit of the object store (`cluster::objects`)
//! followed by one convergence step of the controller.

use crate::cluster::objects::{self, ExposeRequest, Mode};
use crate::controller::{converge, ControllerError};
use crate::lab;
use anyhow::{bail, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Files with the objects (Deployment, Pod, Service, Secret, ConfigMap).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// TYPE[,TYPE…] NAME… or TYPE/NAME…
    pub targets: Vec<String>,
    /// Delete the objects named in these files.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// deployment NAME, or deployment/NAME.
    #[arg(required = true)]
    pub targets: Vec<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: i32,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct ExposeArgs {
    /// deployment NAME, deployment/NAME, pod/NAME or service/NAME.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// The port the service serves on (default: the object's container ports).
    #[arg(long)]
    pub port: Option<i32>,
    /// Name or number of the port on the pods (default: the same as --port).
    #[arg(long)]
    pub target_port: Option<String>,
    /// Name of the new service (default: the object's name).
    #[arg(long)]
    pub name: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// TCP, UDP or SCTP.
    #[arg(long)]
    pub protocol: Option<String>,
    /// A label selector for the service (default: the object's).
    #[arg(long)]
    pub selector: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME (svc, deployment, pod, secret, configmap).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// The patch, JSON (or YAML), e.g. '{"spec":{"type":"LoadBalancer"}}'.
    #[arg(short = 'p', long)]
    pub patch: String,
    /// strategic (kubectl's default), merge (RFC 7386) or json (RFC 6902).
    #[arg(long = "type", default_value = "strategic")]
    pub type_: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME (svc, deployment, pod, secret, configmap).
    #[arg(required = true)]
    pub targets: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

/// `deployment NAME…`, `deployments,svc NAME…` or `deployment/NAME…` → (kind, name) pairs.
fn kinds_and_names(targets: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if targets.first().is_some_and(|t| t.contains('/')) {
        for t in targets {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("{t:?}: use TYPE/NAME for every argument"))?;
            out.push((canonical_kind(k)?, n.to_string()));
        }
        return Ok(out);
    }
    let Some((kinds, names)) = targets.split_first() else {
        bail!("you must specify the type of resource, e.g. deployment my-nginx");
    };
    if names.is_empty() {
        bail!("resource(s) were provided, but no name was specified");
    }
    for k in kinds.split(',') {
        for n in names {
            out.push((canonical_kind(k)?, n.clone()));
        }
    }
    Ok(out)
}

fn canonical_kind(k: &str) -> Result<String> {
    Ok(match k.to_lowercase().as_str() {
        "po" | "pod" | "pods" => "pod",
        "deploy" | "deployment" | "deployments" | "deployment.apps" | "deployments.apps" => {
            "deployment"
        }
        "svc" | "service" | "services" => "service",
        "secret" | "secrets" => "secret",
        "cm" | "configmap" | "configmaps" => "configmap",
        other => bail!("the server doesn't have a resource type {other:?}"),
    }
    .to_string())
}

fn load_objects(files: &[PathBuf]) -> Result<lab::LabSpec> {
    super::existing_files(files)?;
    let spec = lab::load(files, &lab::Overrides::default())?;
    if spec.has_lab_document {
        bail!("a kind: Lab document only configures `netlab up`; it cannot change a running lab");
    }
    Ok(spec)
}

fn print_lines(lines: Vec<String>) -> Result<i32> {
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}

pub async fn apply(args: ApplyArgs, lab: Option<String>, mode: Mode) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let spec = load_objects(&args.files)?;
    let lines = converge::change(&lab, |st| {
        objects::apply(st, &spec, mode, chrono::Utc::now(), &mut rand::rng()).map_err(object_error)
    })
    .await?;
    print_lines(lines)
}

pub async fn delete(args: DeleteArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let mut targets: Vec<(String, String, String)> = Vec::new();
    if !args.files.is_empty() {
        let spec = load_objects(&args.files)?;
        let mut add = |kind: &str, meta: &ObjectMeta| {
            let name = meta.name.clone().unwrap_or_default();
            targets.push((kind.into(), ns_of(meta), name));
        };
        spec.deployments
            .iter()
            .for_each(|d| add("deployment", &d.object.metadata));
        spec.pods
            .iter()
            .for_each(|p| add("pod", &p.object.metadata));
        spec.services
            .iter()
            .for_each(|s| add("service", &s.object.metadata));
        spec.secrets
            .iter()
            .for_each(|s| add("secret", &s.object.metadata));
        spec.config_maps
            .iter()
            .for_each(|c| add("configmap", &c.object.metadata));
    } else {
        for (k, n) in kinds_and_names(&args.targets)? {
            targets.push((k, args.namespace.clone(), n));
        }
    }
    // Like kubectl: delete what exists, report what does not, exit 1 if any failed.
    let results = converge::change(&lab, |st| {
        let now = chrono::Utc::now();
        Ok(targets
            .iter()
            .map(|(kind, ns, name)| {
                objects::delete(st, kind, ns, name, now).map_err(|e| e.to_string())
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let mut code = 0;
    for r in results {
        match r {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("Error from server (NotFound): {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn ns_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

pub async fn scale(args: ScaleArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let targets = kinds_and_names(&args.targets)?;
    let lines = converge::change(&lab, |st| {
        let mut out = Vec::new();
        for (kind, name) in &targets {
            if kind != "deployment" {
                return Err(ControllerError::Runtime {
                    message: format!("cannot scale a {kind}: netlab scales deployments"),
                });
            }
            out.push(
                objects::scale(
                    st,
                    &args.namespace,
                    name,
                    args.replicas,
                    chrono::Utc::now(),
                    &mut rand::rng(),
                )
                .map_err(object_error)?,
            );
        }
        Ok(out)
    })
    .await?;
    print_lines(lines)
}

pub async fn expose(args: ExposeArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let targets = kinds_and_names(&args.targets)?;
    let [(kind, name)] = targets.as_slice() else {
        bail!("expose takes exactly one object, e.g. deployment/my-nginx");
    };
    let selector = match &args.selector {
        Some(s) => Some(parse_selector_map(s)?),
        None => None,
    };
    let line = converge::change(&lab, |st| {
        objects::expose(
            st,
            &ExposeRequest {
                kind,
                name,
                namespace: &args.namespace,
                service_name: args.name.as_deref(),
                port: args.port,
                target_port: args.target_port.as_deref(),
                protocol: args.protocol.as_deref(),
                type_: args.type_.as_deref(),
                selector,
            },
            chrono::Utc::now(),
            &mut rand::rng(),
        )
        .map_err(object_error)
    })
    .await?;
    println!("{line}");
    Ok(0)
}

fn one_target(targets: &[String], verb: &str) -> Result<(String, String)> {
    match kinds_and_names(targets)?.as_slice() {
        [(k, n)] => Ok((k.clone(), n.clone())),
        _ => bail!("{verb} takes exactly one object, e.g. svc my-nginx"),
    }
}

/// `kubectl patch TYPE NAME -p PATCH`.
pub async fn patch(args: PatchArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let (kind, name) = one_target(&args.targets, "patch")?;
    let target = objects::Target {
        kind: &kind,
        namespace: &args.namespace,
        name: &name,
    };
    let type_: crate::cluster::patch::PatchType = args.type_.parse().map_err(anyhow::Error::msg)?;
    let line = converge::change(&lab, |st| {
        let mut value = objects::get_json(st, &target).map_err(object_error)?;
        crate::cluster::patch::apply(&mut value, &args.patch, type_)
            .map_err(|m| ControllerError::Object(format!("{kind} {name:?}: {m}")))?;
        objects::update_json(
            st,
            &target,
            value,
            "patched",
            chrono::Utc::now(),
            &mut rand::rng(),
        )
        .map_err(object_error)
    })
    .await?;
    println!("{line}");
    Ok(0)
}

/// `kubectl edit TYPE NAME`: the object as YAML in `$KUBE_EDITOR`,
/// `$EDITOR` or vi; saved changes are applied. An invalid edit changes
/// nothing and keeps a copy of the file.
pub async fn edit(args: EditArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let (kind, name) = one_target(&args.targets, "edit")?;
    let target = objects::Target {
        kind: &kind,
        namespace: &args.namespace,
        name: &name,
    };
    let state = crate::controller::observed_state(&lab).await?;
    let before = objects::get_json(&state, &target).map_err(|e| anyhow::anyhow!("{e}"))?;
    let header = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit. If an error occurs while saving this file will be\n# reopened with the relevant failures.\n#\n";
    let text = format!("{header}{}", serde_yaml_ng::to_string(&before)?);
    let file = tempfile::Builder::new()
        .prefix(&format!("netlab-edit-{kind}-"))
        .suffix(".yaml")
        .tempfile()?;
    std::fs::write(file.path(), &text)?;
    let editor = std::env::var("KUBE_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .map_err(|e| anyhow::anyhow!("running the editor {editor:?}: {e}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}): no changes made");
    }
    let edited = std::fs::read_to_string(file.path())?;
    let body: String = edited
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if body.trim().is_empty() {
        println!("Edit cancelled, no changes made.");
        return Ok(0);
    }
    let keep = |why: String| -> anyhow::Error {
        let copy = std::env::temp_dir().join(
            file.path()
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default(),
        );
        let _ = std::fs::write(&copy, &edited);
        anyhow::anyhow!(
            "{why}\nA copy of your changes has been stored to {:?}",
            copy.display().to_string()
        )
    };
    let value: serde_json::Value = serde_yaml_ng::from_str(&body)
        .map_err(|e| keep(format!("the edited file is not valid YAML: {e}")))?;
    if value == before {
        println!("Edit cancelled, no changes made.");
        return Ok(0);
    }
    let line = converge::change(&lab, |st| {
        objects::update_json(
            st,
            &target,
            value,
            "edited",
            chrono::Utc::now(),
            &mut rand::rng(),
        )
        .map_err(object_error)
    })
    .await
    .map_err(|e| keep(e.to_string()))?;
    println!("{line}");
    Ok(0)
}

/// `--selector a=b,c=d` (equality only, as kubectl expose takes it).
fn parse_selector_map(s: &str) -> Result<std::collections::BTreeMap<String, String>> {
    s.split(',')
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--selector {s:?}: use key=value[,key=value]"))
        })
        .collect()
}

pub fn object_error(e: objects::ObjectError) -> ControllerError {
    ControllerError::Object(e.to_string())
}
