//! `netlab images`, `netlab pull`, `netlab push`: the local image store and
//! registries. The work is the runtime's; this is arguments and printing.

use super::printer::{human_duration, Printer};
use crate::controller::images::bytes;
use crate::paths;
use crate::runtime::{self, Progress, Reference, Registries, Store};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: Option<ImagesCommand>,
}

/// Registry mirrors on the command line; they win over the Lab document's
/// and the host's registries file (/etc/netlab/registries.yaml).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MirrorArgs {
    /// A mirror for a registry, tried before it: REGISTRY=URL, e.g.
    /// docker.io=http://127.0.0.1:5000 (repeat for more, in order).
    #[arg(
        long = "registry-mirror",
        env = "NETLAB_REGISTRY_MIRRORS",
        value_delimiter = ','
    )]
    pub registry_mirror: Vec<String>,
}

impl MirrorArgs {
    /// The host's registries file with these flags over it.
    pub fn registries(&self) -> Result<Registries> {
        let path = Registries::config_path();
        let file = Registries::load(&path)?;
        Ok(file.overlay(&Registries::from_flags(&self.registry_mirror)?))
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image: nginx, radial/busyboxplus:curl, host:port/repo@sha256:…
    pub image: String,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// No progress bars, only the result line.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// An image of the local store.
    pub image: String,
    /// Where to push it (default: the image's own name), e.g.
    /// 127.0.0.1:5000/library/nginx:latest.
    pub destination: Option<String>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// List the images in the store (the default).
    List,
    /// Print an image's config as JSON; exits 1 when the image is not in the store.
    Inspect { reference: String },
    /// Remove an image's name from the store (its blobs stay until `prune`).
    Rm { reference: String },
    /// Remove the blobs and unpacked layers that no image uses (layers a
    /// running container stacks are kept), and what failed pulls left.
    Prune,
    /// Import an OCI image layout directory or a `docker save` archive (tar).
    Import {
        /// The directory or archive.
        path: PathBuf,
        /// Name the image (needed when the source does not name it, or has several).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Make a one-layer image from a root filesystem directory.
    ImportRootfs {
        /// The root filesystem.
        rootfs: PathBuf,
        /// Name for the image, e.g. nginx or radial/busyboxplus:curl.
        #[arg(long)]
        tag: String,
        /// A JSON file holding the OCI image config (Entrypoint, Cmd, Env, ExposedPorts, …).
        #[arg(long)]
        config: PathBuf,
    },
}

fn progress(quiet: bool) -> Progress {
    if quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    }
}

/// `netlab pull IMAGE`.
pub async fn pull(args: PullArgs) -> Result<i32> {
    let reference = Reference::parse(&args.image).map_err(anyhow::Error::msg)?;
    let registries = args.mirrors.registries()?;
    let store = Store::new(&paths::data_dir());
    let pulled =
        runtime::pull::pull(&store, &reference, &registries, &progress(args.quiet)).await?;
    if pulled.up_to_date {
        println!(
            "{reference}: image is up to date ({}, from {}, 0 B downloaded)",
            pulled.digest, pulled.endpoint
        );
    } else {
        println!(
            "{reference}: pulled {} from {} in {:.2}s ({} downloaded, image {})",
            pulled.digest,
            pulled.endpoint,
            pulled.elapsed.as_secs_f64(),
            bytes(pulled.downloaded),
            bytes(pulled.size)
        );
    }
    Ok(0)
}

/// `netlab push IMAGE [DESTINATION]`.
pub async fn push(args: PushArgs) -> Result<i32> {
    let source = Reference::parse(&args.image).map_err(anyhow::Error::msg)?;
    let destination = match &args.destination {
        Some(d) => Reference::parse(d).map_err(anyhow::Error::msg)?,
        None => source.clone(),
    };
    let registries = MirrorArgs::default().registries()?;
    let store = Store::new(&paths::data_dir());
    let sent = runtime::pull::push(
        &store,
        &source,
        &destination,
        &registries,
        &progress(args.quiet),
    )
    .await?;
    println!("{destination}: pushed ({} uploaded)", bytes(sent));
    Ok(0)
}

pub async fn run(args: ImagesArgs) -> Result<i32> {
    let store = Store::new(&paths::data_dir());
    match args.command.unwrap_or(ImagesCommand::List) {
        ImagesCommand::List => {
            let mut t = Printer::new(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
            let now = chrono::Utc::now();
            for (reference, _) in store.list()? {
                let image = store.resolve(&reference.to_string())?;
                let created = image
                    .config
                    .created()
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|c| format!("{} ago", human_duration((now - c.to_utc()).num_seconds())))
                    .unwrap_or_else(|| "<unknown>".into());
                let size: u64 = image.layers.iter().map(|l| l.size()).sum();
                t.row([
                    reference.familiar_name(),
                    reference
                        .tag
                        .clone()
                        .or_else(|| reference.digest.clone())
                        .unwrap_or_else(|| "<none>".into()),
                    image.id(),
                    created,
                    format!("{:.1}MB", size as f64 / 1e6),
                ]);
            }
            print!("{}", t.render());
            Ok(0)
        }
        ImagesCommand::Inspect { reference } => match store.resolve(&reference) {
            Ok(image) => {
                println!("{}", serde_json::to_string_pretty(&image.config)?);
                Ok(0)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(1)
            }
        },
        ImagesCommand::Rm { reference } => {
            super::require_root()?;
            let r = Reference::parse(&reference).map_err(anyhow::Error::msg)?;
            if store.untag(&r)? {
                println!("Untagged: {r}");
                Ok(0)
            } else {
                eprintln!("error: no image {r} in the store");
                Ok(1)
            }
        }
        ImagesCommand::Prune => {
            super::require_root()?;
            let s = store.clone();
            let pruned = tokio::task::spawn_blocking(move || s.prune())
                .await
                .expect("prune task")
                .context("pruning the image store")?;
            for d in &pruned.blobs {
                println!("deleted: {d}");
            }
            for d in &pruned.in_use {
                println!("kept (a running container uses it): {}", d.display());
            }
            println!(
                "Total reclaimed space: {} ({} blobs, {} directories)",
                bytes(pruned.bytes),
                pruned.blobs.len(),
                pruned.dirs.len()
            );
            Ok(0)
        }
        ImagesCommand::Import { path, tag } => {
            super::require_root()?;
            let (s, p) = (store.clone(), path.clone());
            let names = tokio::task::spawn_blocking(move || s.import(&p, tag.as_deref()))
                .await
                .expect("import task")
                .with_context(|| format!("importing {}", path.display()))?;
            for r in names {
                let image = store.resolve(&r.to_string())?;
                println!("imported {r} ({})", image.id());
            }
            Ok(0)
        }
        ImagesCommand::ImportRootfs {
            rootfs,
            tag,
            config,
        } => {
            super::require_root()?;
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading image config {}", config.display()))?;
            let image_config: oci_spec::image::Config = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an OCI image config", config.display()))?;
            if !rootfs.is_dir() {
                anyhow::bail!("{} is not a directory", rootfs.display());
            }
            let reference = store.import_rootfs(&rootfs, &tag, image_config)?;
            let image = store.resolve(&reference.to_string())?;
            eprintln!("imported {reference} ({})", image.id());
            Ok(0)
        }
    }
}
