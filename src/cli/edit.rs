//! Verbs that change a running lab: `apply -f`, `create -f`, `delete`,
//! `scale`, `expose`, `patch`, `edit`. Each is what kubectl sends to the
//! lab's API (`client.rs`); the lab's process admits the change and
//! converges the host.

use super::client::{self, Client};
use super::get::{self, Kind};
use crate::cluster::objects::{self, ExposeRequest, Mode};
use crate::lab;
use anyhow::{bail, Result};
use serde_json::{json, Value};
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
fn kinds_and_names(targets: &[String]) -> Result<Vec<(Kind, String)>> {
    let mut out = Vec::new();
    if targets.first().is_some_and(|t| t.contains('/')) {
        for t in targets {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("{t:?}: use TYPE/NAME for every argument"))?;
            out.push((get::kind(k)?, n.to_string()));
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
            out.push((get::kind(k)?, n.clone()));
        }
    }
    Ok(out)
}

fn load_objects(files: &[PathBuf]) -> Result<lab::LabSpec> {
    super::existing_files(files)?;
    let spec = lab::load(files, &lab::Overrides::default())?;
    if spec.has_lab_document {
        bail!("a kind: Lab document only configures `netlab up`; it cannot change a running lab");
    }
    Ok(spec)
}

/// The objects of lab files as the API takes them, in the order a lab
/// applies them (Namespaces and access first, then Secrets and ConfigMaps,
/// so pods that mount them start at once). Every kind a lab file may hold
/// is here: none is skipped.
fn objects_of(spec: &lab::LabSpec) -> Result<Vec<(Kind, Value)>> {
    let mut out: Vec<(Kind, Value)> = Vec::new();
    let mut add = |plural: &str, v: Value| -> Result<()> {
        out.push((get::kind(plural)?, v));
        Ok(())
    };
    // Namespaces first, then who may do what in them, as kubectl's
    // order of a file that holds them would usually be.
    for x in &spec.namespaces {
        add("namespaces", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.access {
        use crate::cluster::access::AccessObject as A;
        let (plural, v) = match &x.object {
            A::ServiceAccount(o) => ("serviceaccounts", serde_json::to_value(o)?),
            A::Role(o) => ("roles", serde_json::to_value(o)?),
            A::RoleBinding(o) => ("rolebindings", serde_json::to_value(o)?),
            A::ClusterRole(o) => ("clusterroles", serde_json::to_value(o)?),
            A::ClusterRoleBinding(o) => ("clusterrolebindings", serde_json::to_value(o)?),
        };
        add(plural, v)?;
    }
    for x in &spec.secrets {
        add("secrets", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.config_maps {
        add("configmaps", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.network_policies {
        add("networkpolicies", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.deployments {
        add("deployments", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.pods {
        add("pods", serde_json::to_value(&x.object)?)?;
    }
    for x in &spec.services {
        add("services", serde_json::to_value(&x.object)?)?;
    }
    for (kind, v) in &mut out {
        v["apiVersion"] = kind.group_version().into();
        v["kind"] = kind.kind.into();
    }
    Ok(out)
}

fn ns_name(v: &Value) -> (String, String) {
    let m = &v["metadata"];
    (
        m["namespace"].as_str().unwrap_or("default").to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// What kubectl compares to say `unchanged`: the object without what the
/// server keeps changing.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

/// `apply -f` (server-side apply of each object: created or applied over
/// the existing one) and `create -f` (POST: existing objects refused).
/// As kubectl, every object is tried; the exit code says if one failed.
pub async fn apply(args: ApplyArgs, lab: Option<String>, mode: Mode) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let spec = load_objects(&args.files)?;
    let client = Client::connect(&lab).await?;
    let mut code = 0;
    for (kind, obj) in objects_of(&spec)? {
        let (ns, name) = ns_name(&obj);
        let path = client::path(kind, Some(&ns), Some(&name));
        let result = match mode {
            Mode::Create => {
                let q = client::query(&[("fieldManager", "netlab-create")]);
                let collection = client::path(kind, Some(&ns), None);
                client
                    .send(
                        http::Method::POST,
                        &format!("{collection}{q}"),
                        client::JSON,
                        &obj,
                    )
                    .await
                    .map(|_| "created")
            }
            Mode::Apply => {
                let q = client::query(&[("fieldManager", "netlab"), ("force", "true")]);
                let before = client.get_opt(&path).await?;
                client
                    .send(http::Method::PATCH, &format!("{path}{q}"), APPLY, &obj)
                    .await
                    .map(|after| match before {
                        None => "created",
                        Some(b) if comparable(&b) == comparable(&after) => "unchanged",
                        Some(_) => "configured",
                    })
            }
        };
        match result {
            Ok(verb) => println!("{}/{name} {verb}", get::prefix(kind)),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

const APPLY: &str = "application/apply-patch+yaml";

pub async fn delete(args: DeleteArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let mut targets: Vec<(Kind, String, String)> = Vec::new();
    if !args.files.is_empty() {
        let spec = load_objects(&args.files)?;
        // In the reverse of the order they are applied in: what is in a
        // namespace before the namespace (whose deletion takes everything
        // in it at once, and would leave the rest of the file not found).
        for (kind, obj) in objects_of(&spec)?.into_iter().rev() {
            let (ns, name) = ns_name(&obj);
            targets.push((kind, ns, name));
        }
    } else {
        for (k, n) in kinds_and_names(&args.targets)? {
            targets.push((k, args.namespace.clone(), n));
        }
    }
    let client = Client::connect(&lab).await?;
    // Like kubectl: delete what exists, report what does not, exit 1 if any failed.
    let mut code = 0;
    let body = json!({"propagationPolicy": "Background"});
    for (kind, ns, name) in targets {
        let path = client::path(kind, Some(&ns), Some(&name));
        match client
            .send(http::Method::DELETE, &path, client::JSON, &body)
            .await
        {
            Ok(_) => println!("{} \"{name}\" deleted", get::prefix(kind)),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub async fn scale(args: ScaleArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let targets = kinds_and_names(&args.targets)?;
    if args.replicas < 0 {
        bail!(
            "--replicas={}: the number of replicas must be 0 or more",
            args.replicas
        );
    }
    for (kind, _) in &targets {
        if !kind.subresources.iter().any(|(s, _, _)| *s == "scale") {
            bail!(
                "cannot scale {}: netlab scales deployments",
                kind.qualified()
            );
        }
    }
    let client = Client::connect(&lab).await?;
    let patch = json!({"spec": {"replicas": args.replicas}});
    for (kind, name) in targets {
        let path = client::path(kind, Some(&args.namespace), Some(&name)) + "/scale";
        client
            .send(
                http::Method::PATCH,
                &path,
                "application/merge-patch+json",
                &patch,
            )
            .await?;
        println!("{}/{name} scaled", get::prefix(kind));
    }
    Ok(0)
}

/// `kubectl expose`: as kubectl, the client reads the object, makes the
/// Service (`objects::expose`) and creates it.
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
    let client = Client::connect(&lab).await?;
    let source = client
        .get(
            &client::path(kind, Some(&args.namespace), Some(name)),
            client::JSON,
        )
        .await?;
    let svc = objects::expose(
        &source,
        &ExposeRequest {
            kind: kind.singular,
            name,
            namespace: &args.namespace,
            service_name: args.name.as_deref(),
            port: args.port,
            target_port: args.target_port.as_deref(),
            protocol: args.protocol.as_deref(),
            type_: args.type_.as_deref(),
            selector,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let services = get::kind("services")?;
    let q = client::query(&[("fieldManager", "kubectl-expose")]);
    let mut body = serde_json::to_value(&svc)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Service".into();
    client
        .send(
            http::Method::POST,
            &format!("{}{q}", client::path(services, Some(&args.namespace), None)),
            client::JSON,
            &body,
        )
        .await?;
    println!("service/{} exposed", svc.metadata.name.unwrap_or_default());
    Ok(0)
}

fn one_target(targets: &[String], verb: &str) -> Result<(Kind, String)> {
    match kinds_and_names(targets)?.as_slice() {
        [(k, n)] => Ok((k, n.clone())),
        _ => bail!("{verb} takes exactly one object, e.g. svc my-nginx"),
    }
}

/// `kubectl patch TYPE NAME -p PATCH`.
pub async fn patch(args: PatchArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let (kind, name) = one_target(&args.targets, "patch")?;
    let content_type = match args.type_.as_str() {
        "strategic" => "application/strategic-merge-patch+json",
        "merge" => "application/merge-patch+json",
        "json" => "application/json-patch+json",
        other => bail!("--type {other:?}: use strategic, merge or json"),
    };
    // kubectl takes the patch as JSON or YAML.
    let value: Value = serde_json::from_str(&args.patch)
        .or_else(|_| serde_yaml_ng::from_str(&args.patch))
        .map_err(|e| anyhow::anyhow!("unable to parse {:?}: {e}", args.patch))?;
    let client = Client::connect(&lab).await?;
    let path = client::path(kind, Some(&args.namespace), Some(&name));
    let before = client.get(&path, client::JSON).await?;
    let q = client::query(&[("fieldManager", "kubectl-patch")]);
    let after = client
        .send(
            http::Method::PATCH,
            &format!("{path}{q}"),
            content_type,
            &value,
        )
        .await?;
    let object = format!("{}/{name}", get::prefix(kind));
    match comparable(&before) == comparable(&after) {
        true => println!("{object} patched (no change)"),
        false => println!("{object} patched"),
    }
    Ok(0)
}

/// `kubectl edit TYPE NAME`: the object as YAML in `$KUBE_EDITOR`,
/// `$EDITOR` or vi; saved changes are sent back (PUT). An invalid edit
/// changes nothing and keeps a copy of the file.
pub async fn edit(args: EditArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let (kind, name) = one_target(&args.targets, "edit")?;
    let client = Client::connect(&lab).await?;
    let path = client::path(kind, Some(&args.namespace), Some(&name));
    let before = client.get(&path, client::JSON).await?;
    let header = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit. If an error occurs while saving this file will be\n# reopened with the relevant failures.\n#\n";
    let text = format!("{header}{}", serde_yaml_ng::to_string(&before)?);
    let file = tempfile::Builder::new()
        .prefix(&format!("netlab-edit-{}-", kind.singular))
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
    let value: Value = serde_yaml_ng::from_str(&body)
        .map_err(|e| keep(format!("the edited file is not valid YAML: {e}")))?;
    if value == before {
        println!("Edit cancelled, no changes made.");
        return Ok(0);
    }
    let q = client::query(&[("fieldManager", "kubectl-edit")]);
    client
        .send(
            http::Method::PUT,
            &format!("{path}{q}"),
            client::JSON,
            &value,
        )
        .await
        .map_err(|e| keep(e.to_string()))?;
    println!("{}/{name} edited", get::prefix(kind));
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
