//! `netlab images`: list, inspect and import into the local image store.

use super::printer::{human_duration, Printer};
use crate::paths;
use crate::runtime::Store;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: Option<ImagesCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// List the images in the store (the default).
    List,
    /// Print an image's config as JSON; exits 1 when the image is not in the store.
    Inspect { reference: String },
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
                    reference.tag.clone().unwrap_or_else(|| "<none>".into()),
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
