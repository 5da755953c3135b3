//! `netlab create -f FILE`, `create secret tls|generic`, `create configmap`
//! (kubectl's generators), and `netlab cert`, which makes the tutorial's
//! self-signed key and certificate without openssl.

use crate::cluster::objects::Mode;
use crate::cluster::secrets::{self, Entry};
use crate::cluster::tls;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    /// Files with the objects (Deployment, Pod, Service, Secret, ConfigMap).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CreateWhat {
    /// Create a secret (tls or generic).
    #[command(subcommand)]
    Secret(SecretKind),
    /// Create a configmap from files, directories or literal values.
    #[command(visible_alias = "cm")]
    Configmap(ConfigMapArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretKind {
    /// A kubernetes.io/tls secret from a certificate and its key.
    Tls(TlsArgs),
    /// An Opaque secret from files, directories or literal values.
    Generic(GenericArgs),
}

#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    pub name: String,
    /// The PEM certificate (chain) file.
    #[arg(long)]
    pub cert: PathBuf,
    /// The PEM private key file.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct Sources {
    /// [KEY=]PATH: a file (key: its name, or KEY), or every file of a directory.
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// KEY=VALUE.
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct GenericArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: Sources,
    /// The secret's type (default Opaque).
    #[arg(long = "type")]
    pub type_: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct ConfigMapArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: Sources,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// The subject, as openssl's -subj: /CN=my-nginx/O=my-nginx. Clients
    /// check the CN (also written as a subjectAltName) against the name
    /// they connect to: use the Service's name.
    #[arg(long)]
    pub subj: String,
    /// More subjectAltNames (DNS names or IPs), e.g. my-nginx.default.svc.cluster.local.
    #[arg(long = "san")]
    pub alt_names: Vec<String>,
    /// Where to write the private key (mode 0600).
    #[arg(long)]
    pub keyout: Option<PathBuf>,
    /// Where to write the certificate.
    #[arg(long = "out")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// rsa (2048 bits, as the tutorial's openssl command) or ecdsa (P-256).
    #[arg(long = "key-type", default_value = "rsa")]
    pub key_type: String,
    /// Also create a kubernetes.io/tls secret of this name in the lab.
    #[arg(long)]
    pub secret: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub async fn run(args: CreateArgs, lab: Option<String>) -> Result<i32> {
    match args.what {
        None if args.files.is_empty() => bail!(
            "nothing to create: give -f FILE, or `secret tls|generic NAME …`, or `configmap NAME …`"
        ),
        None => {
            super::edit::apply(
                super::edit::ApplyArgs { files: args.files },
                lab,
                Mode::Create,
            )
            .await
        }
        Some(CreateWhat::Secret(SecretKind::Tls(a))) => {
            let cert = read(&a.cert, "--cert")?;
            let key = read(&a.key, "--key")?;
            let secret = secrets::tls_secret(&a.name, &a.namespace, &cert, &key).map_err(|m| {
                anyhow::anyhow!(
                    "{m} (--cert {} --key {})",
                    a.cert.display(),
                    a.key.display()
                )
            })?;
            create_secret(lab, secret).await
        }
        Some(CreateWhat::Secret(SecretKind::Generic(a))) => {
            let entries = entries(&a.sources)?;
            let secret =
                secrets::generic_secret(&a.name, &a.namespace, a.type_.as_deref(), entries)
                    .map_err(anyhow::Error::msg)?;
            create_secret(lab, secret).await
        }
        Some(CreateWhat::Configmap(a)) => {
            let entries = entries(&a.sources)?;
            let cm =
                secrets::config_map(&a.name, &a.namespace, entries).map_err(anyhow::Error::msg)?;
            create_object(lab, "configmaps", serde_json::to_value(cm)?).await
        }
    }
}

async fn create_secret(
    lab: Option<String>,
    secret: k8s_openapi::api::core::v1::Secret,
) -> Result<i32> {
    create_object(lab, "secrets", serde_json::to_value(secret)?).await
}

/// POSTs one object to the lab's API and prints kubectl's answer.
async fn create_object(
    lab: Option<String>,
    plural: &str,
    mut obj: serde_json::Value,
) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let kind = super::get::kind(plural)?;
    obj["apiVersion"] = kind.group_version().into();
    obj["kind"] = kind.kind.into();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let client = super::client::Client::connect(&lab).await?;
    let q = super::client::query(&[("fieldManager", "kubectl-create")]);
    let path = format!("{}{q}", super::client::path(kind, Some(&ns), None));
    client
        .send(http::Method::POST, &path, super::client::JSON, &obj)
        .await?;
    println!("{}/{name} created", super::get::prefix(kind));
    Ok(0)
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
}

/// The entries of `--from-file` and `--from-literal`, in kubectl's way.
fn entries(sources: &Sources) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for spec in &sources.from_file {
        let (key, path) = secrets::file_key(spec);
        let path = Path::new(path);
        let origin = format!("--from-file={spec}");
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{origin}: the path {} does not exist", path.display()))?;
        if meta.is_dir() {
            if key.is_some() {
                bail!("{origin}: a key cannot be given for a directory");
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                // kubectl skips names that are not valid keys in a directory.
                if secrets::valid_key(&name).is_err() {
                    continue;
                }
                out.push(Entry {
                    key: name,
                    value: std::fs::read(&f)?,
                    origin: origin.clone(),
                });
            }
        } else {
            let key = match key {
                Some(k) => k.to_string(),
                None => path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            };
            out.push(Entry {
                key,
                value: read(path, "--from-file")?,
                origin,
            });
        }
    }
    for l in &sources.from_literal {
        out.push(secrets::literal(l).map_err(anyhow::Error::msg)?);
    }
    if out.is_empty() {
        bail!("give at least one --from-file or --from-literal");
    }
    Ok(out)
}

/// `netlab cert`: a key and a self-signed certificate, written to files
/// and/or stored as a TLS secret.
pub async fn cert(args: CertArgs, lab: Option<String>) -> Result<i32> {
    if args.keyout.is_none() && args.out.is_none() && args.secret.is_none() {
        bail!("nothing to do: give --keyout and --out (files), --secret NAME (a TLS secret in the lab), or both");
    }
    if args.keyout.is_some() != args.out.is_some() {
        bail!("give both --keyout (the key) and --out (the certificate)");
    }
    let key = match args.key_type.as_str() {
        "rsa" => tls::KeyKind::Rsa,
        "ecdsa" => tls::KeyKind::Ecdsa,
        other => bail!("--key-type {other:?}: use rsa or ecdsa"),
    };
    let made = tls::self_signed(&tls::Request {
        subject: args.subj.clone(),
        alt_names: args.alt_names.clone(),
        days: args.days,
        key,
    })
    .map_err(anyhow::Error::msg)?;
    if let Some(name) = &args.secret {
        // Check the lab before writing anything.
        super::require_root()?;
        let secret = secrets::tls_secret(
            name,
            &args.namespace,
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
        )
        .map_err(anyhow::Error::msg)?;
        create_secret(lab, secret).await?;
    }
    if let (Some(keyout), Some(out)) = (&args.keyout, &args.out) {
        write_private(keyout, made.key_pem.as_bytes())?;
        std::fs::write(out, made.cert_pem.as_bytes())
            .with_context(|| format!("--out {}", out.display()))?;
        eprintln!(
            "wrote {} (private key, mode 0600) and {} (self-signed, {}, {} days)",
            keyout.display(),
            out.display(),
            args.subj,
            args.days
        );
    }
    Ok(0)
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("--keyout {}", path.display()))?;
    // An existing file keeps its mode: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    Ok(())
}
