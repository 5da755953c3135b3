//! netlab's local image store: an OCI image layout on disk
//! (`/var/lib/netlab/images`: `oci-layout`, `index.json`, `blobs/sha256/…`),
//! plus a cache of unpacked layers (`/var/lib/netlab/layers/<digest>/`) that
//! every container of an image shares read-only through overlayfs.
//!
//! Images are named in `index.json` with containerd's annotation
//! `io.containerd.image.name` (the full normalized reference) and the OCI
//! `org.opencontainers.image.ref.name` (the tag), so `skopeo`/`umoci` can
//! read the layout too.

use super::reference::Reference;
use super::unpack;
use oci_spec::image::{
    Arch, Config, Descriptor, DescriptorBuilder, Digest, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const NAME_ANNOTATION: &str = "io.containerd.image.name";
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image {reference} is not in the local image store ({store}): build the demo images with scripts/build-images.sh, or import it with `netlab images import-rootfs`")]
    NotFound { reference: String, store: PathBuf },
    #[error("{0}")]
    Reference(String),
    #[error("image store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image store {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image resolved from the store.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: Reference,
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: ImageConfiguration,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
}

impl Image {
    pub fn runtime_config(&self) -> Config {
        self.config.config().clone().unwrap_or_default()
    }
    /// Short id as `docker images` shows it: the config digest's first 12 hex digits.
    pub fn id(&self) -> String {
        let hex = self.config_digest.trim_start_matches("sha256:");
        hex.chars().take(12).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub layers: PathBuf,
}

impl Store {
    pub fn new(base: &Path) -> Store {
        Store {
            root: base.join("images"),
            layers: base.join("layers"),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root.join("index.json");
        if !path.exists() {
            return ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::<Descriptor>::new())
                .build()
                .map_err(|e| self.corrupt(e));
        }
        ImageIndex::from_file(&path).map_err(|e| StoreError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    fn corrupt(&self, e: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.root.clone(),
            message: e.to_string(),
        }
    }

    /// All named images in the store.
    pub fn list(&self) -> Result<Vec<(Reference, Descriptor)>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = d.annotations().as_ref()?.get(NAME_ANNOTATION)?;
                Some((Reference::parse(name).ok()?, d.clone()))
            })
            .collect())
    }

    /// Looks an image up by reference (`nginx`, `radial/busyboxplus:curl`).
    pub fn resolve(&self, reference: &str) -> Result<Image, StoreError> {
        let wanted = Reference::parse(reference).map_err(StoreError::Reference)?;
        let found = self
            .list()?
            .into_iter()
            .find(|(r, d)| match &wanted.digest {
                Some(dg) => r.name() == wanted.name() && d.digest().to_string() == *dg,
                None => *r == wanted,
            });
        let Some((_, descriptor)) = found else {
            return Err(StoreError::NotFound {
                reference: wanted.to_string(),
                store: self.root.clone(),
            });
        };
        let manifest_digest = descriptor.digest().to_string();
        let mpath = self.blob_path(&manifest_digest);
        let manifest = ImageManifest::from_file(&mpath).map_err(|e| StoreError::Corrupt {
            path: mpath.clone(),
            message: e.to_string(),
        })?;
        let cdigest = manifest.config().digest().to_string();
        let cpath = self.blob_path(&cdigest);
        let config = ImageConfiguration::from_file(&cpath).map_err(|e| StoreError::Corrupt {
            path: cpath,
            message: e.to_string(),
        })?;
        Ok(Image {
            reference: wanted,
            manifest_digest,
            config_digest: cdigest,
            config,
            layers: manifest.layers().clone(),
        })
    }

    /// The unpacked directory of every layer of `image`, bottom first,
    /// unpacking (once, shared by all containers) what is not there yet.
    pub fn unpacked_layers(&self, image: &Image) -> Result<Vec<PathBuf>, StoreError> {
        fs::create_dir_all(&self.layers).map_err(io_err(&self.layers))?;
        let mut dirs = Vec::new();
        for layer in &image.layers {
            let digest = layer.digest().to_string();
            let dir = self.layers.join(digest.replace(':', "-"));
            if !dir.exists() {
                // Unpack beside and rename: a crash never leaves half a layer
                // under its final name, and concurrent `up`s race harmlessly.
                let tmp = self.layers.join(format!(
                    ".tmp-{}-{}",
                    std::process::id(),
                    digest.replace(':', "-")
                ));
                let _ = fs::remove_dir_all(&tmp);
                fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
                let blob = self.blob_path(&digest);
                let file = File::open(&blob).map_err(io_err(&blob))?;
                let gz = matches!(
                    layer.media_type(),
                    MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip
                ) || layer.media_type().to_string().ends_with("gzip");
                let reader: Box<dyn io::Read> = if gz {
                    Box::new(flate2::read::GzDecoder::new(io::BufReader::new(file)))
                } else {
                    Box::new(io::BufReader::new(file))
                };
                unpack::unpack_layer(reader, &tmp).map_err(|e| StoreError::Corrupt {
                    path: blob.clone(),
                    message: format!("unpacking layer {digest}: {e}"),
                })?;
                if let Err(e) = fs::rename(&tmp, &dir) {
                    let _ = fs::remove_dir_all(&tmp);
                    if !dir.exists() {
                        return Err(io_err(&dir)(e));
                    }
                }
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }

    /// Builds a one-layer image from a root filesystem directory and names
    /// it `tag` (used by scripts/build-images.sh).
    pub fn import_rootfs(
        &self,
        rootfs: &Path,
        tag: &str,
        config: Config,
    ) -> Result<Reference, StoreError> {
        let reference = Reference::parse(tag).map_err(StoreError::Reference)?;
        let blobs = self.root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let _lock = self.lock()?;

        // Layer: tar (uncompressed digest = diff_id) inside gzip (blob digest).
        let tmp = blobs.join(format!(".tmp-layer-{}", std::process::id()));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let blob_hash = HashingWriter::new(file);
        let gz = flate2::write::GzEncoder::new(blob_hash, flate2::Compression::fast());
        let mut tar_hash = HashingWriter::new(gz);
        {
            let mut builder = tar::Builder::new(&mut tar_hash);
            builder.follow_symlinks(false);
            builder.mode(tar::HeaderMode::Complete);
            builder
                .append_dir_all(".", rootfs)
                .map_err(io_err(rootfs))?;
            builder.finish().map_err(io_err(rootfs))?;
        }
        let (gz, diff_id, _) = tar_hash.finish();
        let blob_hash = gz.finish().map_err(io_err(&tmp))?;
        let (file, layer_digest, layer_size) = blob_hash.finish();
        file.sync_all().map_err(io_err(&tmp))?;
        let layer_path = self.blob_path(&layer_digest);
        fs::rename(&tmp, &layer_path).map_err(io_err(&layer_path))?;

        let arch = match std::env::consts::ARCH {
            "x86_64" => Arch::Amd64,
            "aarch64" => Arch::ARM64,
            other => Arch::Other(other.to_string()),
        };
        let image_config = ImageConfigurationBuilder::default()
            .architecture(arch)
            .os(Os::Linux)
            .created(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .config(config)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id])
                    .build()
                    .map_err(|e| self.corrupt(e))?,
            )
            .build()
            .map_err(|e| self.corrupt(e))?;
        let config_desc = self.put_json(
            MediaType::ImageConfig,
            &image_config.to_string().map_err(|e| self.corrupt(e))?,
        )?;
        let layer_desc = descriptor(MediaType::ImageLayerGzip, layer_size, &layer_digest)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(vec![layer_desc])
            .build()
            .map_err(|e| self.corrupt(e))?;
        let mut manifest_desc = self.put_json(
            MediaType::ImageManifest,
            &manifest.to_string().map_err(|e| self.corrupt(e))?,
        )?;
        manifest_desc.set_annotations(Some(HashMap::from([
            (NAME_ANNOTATION.to_string(), reference.to_string()),
            (
                REF_ANNOTATION.to_string(),
                reference.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        ])));

        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(NAME_ANNOTATION))
                    .is_none_or(|n| *n != reference.to_string())
            })
            .cloned()
            .collect();
        manifests.push(manifest_desc);
        index.set_manifests(manifests);
        self.write_atomic(
            &self.root.join("index.json"),
            index.to_string().map_err(|e| self.corrupt(e))?.as_bytes(),
        )?;
        self.write_atomic(
            &self.root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(reference)
    }

    fn put_json(&self, media_type: MediaType, json: &str) -> Result<Descriptor, StoreError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())));
        let path = self.blob_path(&digest);
        if !path.exists() {
            self.write_atomic(&path, json.as_bytes())?;
        }
        descriptor(media_type, json.len() as u64, &digest)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    }

    /// An exclusive lock on the store for writers (imports).
    fn lock(&self) -> Result<nix::fcntl::Flock<File>, StoreError> {
        let path = self.root.join(".lock");
        let f = File::create(&path).map_err(io_err(&path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(&path)(e.into()))
    }
}

fn descriptor(media_type: MediaType, size: u64, digest: &str) -> Result<Descriptor, StoreError> {
    let digest = Digest::from_str(digest).map_err(|e| StoreError::Reference(e.to_string()))?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .size(size)
        .digest(digest)
        .build()
        .map_err(|e| StoreError::Reference(e.to_string()))
}

/// A writer that hashes (sha256) and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.size,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
