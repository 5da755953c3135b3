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
use super::{unpack, untrusted};
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
/// The digest a tag resolved to when it was pulled (an image index's digest
/// when the registry served one): what `pull` compares with the registry's
/// answer to know that nothing changed.
pub const PULLED_ANNOTATION: &str = "dev.netlab.image.pulled-digest";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image {reference} is not in the local image store ({store}): pull it with `netlab pull {reference}`, or build the demo images with scripts/setup.sh")]
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
    /// A layer that unpacks to more than netlab allows (a decompression bomb).
    #[error("{0}")]
    LayerTooLarge(String),
    #[error("{what} digest mismatch: expected {expected}, got {actual}: the content was altered on the way or in the registry")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
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
    /// The digests of the uncompressed layers (the config's `rootfs.diff_ids`),
    /// checked when a layer is unpacked.
    pub diff_ids: Vec<String>,
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

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    pub(super) fn read_index(&self) -> Result<ImageIndex, StoreError> {
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

    pub(super) fn corrupt(&self, e: impl ToString) -> StoreError {
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
        let found = self.list()?.into_iter().find(|(r, d)| {
            *r == wanted
                || wanted.digest.as_ref().is_some_and(|dg| {
                    r.name() == wanted.name()
                        && (d.digest().to_string() == *dg
                            || annotation(d, PULLED_ANNOTATION) == Some(dg.as_str()))
                })
        });
        let Some((_, descriptor)) = found else {
            return Err(StoreError::NotFound {
                reference: wanted.to_string(),
                store: self.root.clone(),
            });
        };
        self.image(wanted, descriptor.digest().as_ref())
    }

    /// The image whose manifest (in the store) has `manifest_digest`.
    pub fn image(&self, reference: Reference, manifest_digest: &str) -> Result<Image, StoreError> {
        let wanted = reference;
        let manifest_digest = manifest_digest.to_string();
        let mpath = self.blob_path(&manifest_digest);
        let manifest: ImageManifest = read_json(&mpath, "manifest")?;
        let cdigest = manifest.config().digest().to_string();
        let cpath = self.blob_path(&cdigest);
        let config: ImageConfiguration = read_json(&cpath, "image config")?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(StoreError::Corrupt {
                path: mpath,
                message: format!(
                    "image {wanted}: {} layers but {} diff_ids in its config",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        Ok(Image {
            reference: wanted,
            manifest_digest,
            config_digest: cdigest,
            config,
            layers: manifest.layers().clone(),
            diff_ids,
        })
    }

    /// The digest `reference` resolved to when it was last pulled.
    pub fn pulled_digest(&self, reference: &Reference) -> Option<String> {
        self.list()
            .ok()?
            .into_iter()
            .find(|(r, _)| r == reference)
            .and_then(|(_, d)| annotation(&d, PULLED_ANNOTATION).map(String::from))
    }

    /// Whether a blob is in the store with the given size.
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// Whether every blob of an image is in the store (a pull can skip it).
    pub fn is_complete(&self, image: &Image) -> bool {
        image
            .layers
            .iter()
            .all(|l| self.has_blob(l.digest().as_ref(), l.size()))
    }

    /// Stores a blob given in full, after checking it against its digest.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(StoreError::Digest {
                what: "blob".into(),
                expected: digest.into(),
                actual,
            });
        }
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        let dir = self.root.join("blobs/sha256");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.write_atomic(&path, bytes)
    }

    /// A fresh temporary file beside the blobs, to download or copy a blob
    /// into and then `commit_blob` it under its digest.
    pub fn blob_tempfile(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("blobs/sha256");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir.join(format!(".tmp-{}-{}", std::process::id(), next_temp())))
    }

    /// Moves a downloaded temporary file under its digest, after checking
    /// its content against it.
    pub fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<(), StoreError> {
        let file = File::open(tmp).map_err(io_err(tmp))?;
        let mut hash = HashingWriter::new(io::sink());
        io::copy(&mut io::BufReader::new(file), &mut hash).map_err(io_err(tmp))?;
        let (_, actual, _) = hash.finish();
        if actual != digest {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::Digest {
                what: "blob".into(),
                expected: digest.into(),
                actual,
            });
        }
        // On disk before it has its name: a crash never leaves a blob whose
        // name promises content it does not hold.
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(tmp))?;
        let path = self.blob_path(digest);
        fs::rename(tmp, &path).map_err(io_err(&path))
    }

    /// Removes a name from the store (its blobs stay: other names may share
    /// them). Returns whether the name was there.
    pub fn untag(&self, reference: &Reference) -> Result<bool, StoreError> {
        let name = reference.to_string();
        if !self.root.join("index.json").exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| annotation(d, NAME_ANNOTATION) != Some(name.as_str()))
            .cloned()
            .collect();
        let removed = manifests.len() != before;
        index.set_manifests(manifests);
        self.write_atomic(
            &self.root.join("index.json"),
            index.to_string().map_err(|e| self.corrupt(e))?.as_bytes(),
        )?;
        Ok(removed)
    }

    /// Names a manifest (already in the store) `reference` in `index.json`,
    /// replacing what the name pointed to before.
    pub fn tag(
        &self,
        reference: &Reference,
        mut manifest: Descriptor,
        pulled_digest: Option<&str>,
    ) -> Result<(), StoreError> {
        let name = reference.to_string();
        let mut annotations = HashMap::from([
            (NAME_ANNOTATION.to_string(), name.clone()),
            (
                REF_ANNOTATION.to_string(),
                reference.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        ]);
        if let Some(d) = pulled_digest {
            annotations.insert(PULLED_ANNOTATION.to_string(), d.to_string());
        }
        manifest.set_annotations(Some(annotations));
        manifest.set_platform(None);
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| annotation(d, NAME_ANNOTATION) != Some(name.as_str()))
            .cloned()
            .collect();
        manifests.push(manifest);
        index.set_manifests(manifests);
        self.write_atomic(
            &self.root.join("index.json"),
            index.to_string().map_err(|e| self.corrupt(e))?.as_bytes(),
        )?;
        self.write_atomic(
            &self.root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
    }

    /// The unpacked directory of every layer of `image`, bottom first,
    /// unpacking (once, shared by all containers) what is not there yet.
    pub fn unpacked_layers(&self, image: &Image) -> Result<Vec<PathBuf>, StoreError> {
        fs::create_dir_all(&self.layers).map_err(io_err(&self.layers))?;
        let mut dirs = Vec::new();
        for (i, layer) in image.layers.iter().enumerate() {
            let digest = layer.digest().to_string();
            let dir = self.layers.join(digest.replace(':', "-"));
            if !dir.exists() {
                // Unpack beside and rename: a crash never leaves half a layer
                // under its final name, and concurrent `up`s race harmlessly.
                // Its own directory per call: two pulls in one process may
                // unpack the same layer at once, and must not share one.
                let tmp = self.layers.join(format!(
                    ".tmp-{}-{}-{}",
                    std::process::id(),
                    digest.replace(':', "-"),
                    next_temp()
                ));
                let _ = fs::remove_dir_all(&tmp);
                fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
                let blob = self.blob_path(&digest);
                let file = File::open(&blob).map_err(io_err(&blob))?;
                let reader = decompressor(layer.media_type(), io::BufReader::new(file)).map_err(
                    |message| StoreError::Corrupt {
                        path: blob.clone(),
                        message: format!("layer {digest}: {message}"),
                    },
                )?;
                // The uncompressed stream must hash to the config's diff_id,
                // as containerd checks it: the blob digest only covers the
                // compressed bytes.
                let limits = unpack::Limits::from_env();
                let capped = unpack::Capped::new(reader, limits.bytes);
                let too_large = capped.exceeded();
                let mut hashed = HashingReader::new(capped);
                let unpacked = unpack::unpack_layer_within(&mut hashed, &tmp, limits.entries)
                    .and_then(|()| {
                        io::copy(&mut hashed, &mut io::sink())?;
                        Ok(())
                    });
                let diff_id = hashed.finish();
                if too_large.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(StoreError::LayerTooLarge(format!(
                        "image {}: layer {digest} unpacks to more than {} (NETLAB_MAX_LAYER_SIZE), so it was refused as a decompression bomb",
                        image.reference,
                        unpack::human(limits.bytes)
                    )));
                }
                let failure = match unpacked {
                    Err(e) => Some(format!("unpacking layer {digest}: {}", error_chain(&e))),
                    Ok(()) if image.diff_ids.get(i).is_some_and(|want| *want != diff_id) => {
                        Some(format!(
                            "layer {digest}: its content hashes to {diff_id}, but the image config says {}",
                            image.diff_ids[i]
                        ))
                    }
                    Ok(()) => None,
                };
                if let Some(message) = failure {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(StoreError::Corrupt {
                        path: blob.clone(),
                        message: format!("image {}: {message}", image.reference),
                    });
                }
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
        let manifest_desc = self.put_json(
            MediaType::ImageManifest,
            &manifest.to_string().map_err(|e| self.corrupt(e))?,
        )?;
        drop(_lock);
        self.tag(&reference, manifest_desc, None)?;
        Ok(reference)
    }

    pub(super) fn put_json(
        &self,
        media_type: MediaType,
        json: &str,
    ) -> Result<Descriptor, StoreError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())));
        let path = self.blob_path(&digest);
        if !path.exists() {
            self.write_atomic(&path, json.as_bytes())?;
        }
        descriptor(media_type, json.len() as u64, &digest)
    }

    /// Writes a file whole or not at all: a temporary file of this process
    /// *and call* (two pulls of one process may write the same blob at
    /// once), synced, then renamed over the name.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), next_temp()));
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .map_err(io_err(&tmp))
            .and_then(|()| fs::rename(&tmp, path).map_err(io_err(path)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// An exclusive lock on the store for writers (imports).
    pub(super) fn lock(&self) -> Result<nix::fcntl::Flock<File>, StoreError> {
        let path = self.root.join(".lock");
        let f = File::create(&path).map_err(io_err(&path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(&path)(e.into()))
    }
}

/// A number no other temporary file of this process has.
pub(super) fn next_temp() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

pub(super) fn descriptor(
    media_type: MediaType,
    size: u64,
    digest: &str,
) -> Result<Descriptor, StoreError> {
    let digest = Digest::from_str(digest).map_err(|e| StoreError::Reference(e.to_string()))?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .size(size)
        .digest(digest)
        .build()
        .map_err(|e| StoreError::Reference(e.to_string()))
}

/// A writer that hashes (sha256) and counts what passes through it.
pub(super) struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    pub(super) fn finish(self) -> (W, String, u64) {
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

pub(super) fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations().as_ref()?.get(key).map(String::as_str)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer blob's reader, decompressed as its media type says (gzip, zstd or
/// plain tar, OCI and Docker names alike).
pub fn decompressor<'a>(
    media_type: &MediaType,
    reader: impl io::Read + 'a,
) -> Result<Box<dyn io::Read + 'a>, String> {
    let mt = media_type.to_string();
    if mt.ends_with("gzip") || mt.ends_with(".gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(reader)))
    } else if mt.ends_with("zstd") {
        let d =
            ruzstd::decoding::StreamingDecoder::new(reader).map_err(|e| format!("zstd: {e}"))?;
        Ok(Box::new(d))
    } else if mt.ends_with(".tar") || mt.ends_with("rootfs.diff.tar") {
        Ok(Box::new(reader))
    } else {
        Err(format!(
            "layer media type {mt} is not supported (gzip, zstd or plain tar layers are)"
        ))
    }
}

/// A reader that hashes (sha256) what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: io::Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
        }
    }
    fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A JSON blob of the store (a manifest, an index, a config): a regular file
/// of at most `untrusted::JSON_LIMIT`, parsed as `what`.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<T, StoreError> {
    let bytes =
        untrusted::read_regular(path, untrusted::JSON_LIMIT).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!("{what}: {e}"),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        message: format!("{what} is not valid JSON of its kind: {e}"),
    })
}

/// An error and its causes on one line: `tar` says "failed to unpack
/// `etc/shadow`" and hides the reason in a source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;

    /// Two pulls in one process (an `up` pulls its images at once) may
    /// unpack a layer they share at the same moment: each in a directory
    /// of its own, so the layer that gets the name is whole.
    #[test]
    fn concurrent_unpacks_of_one_layer_leave_it_whole() {
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        for i in 0..400 {
            std::fs::write(rootfs.join(format!("f{i}")), vec![b'x'; 4096]).unwrap();
        }
        let store = Store::new(&work.path().join("data"));
        store
            .import_rootfs(&rootfs, "netlabtest/race:1", Config::default())
            .unwrap();
        let image = store.resolve("netlabtest/race:1").unwrap();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| store.unpacked_layers(&image)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            assert!(r.is_ok(), "{r:?}");
        }
        let dir = &results[0].as_ref().unwrap()[0];
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(files, 400, "the named layer is whole");
        let leftovers: Vec<_> = std::fs::read_dir(&store.layers)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_writes_of_one_blob_leave_it_whole() {
        let work = tempfile::tempdir().unwrap();
        let store = Store::new(work.path());
        let bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let digest = sha256_digest(&bytes);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let _ = std::fs::remove_file(store.blob_path(&digest));
                        store.put_blob(&digest, &bytes).unwrap();
                    }
                });
            }
        });
        assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), bytes);
    }
}

#[cfg(test)]
mod error_tests {
    #[test]
    fn unpack_errors_say_why() {
        // `a` is a file, then `a/b` must go under it: tar says "failed to
        // unpack" and hides the reason ("Not a directory") in a source.
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("a", &b"x"[..]), ("a/b", &b"y"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = super::unpack::unpack_layer(&data[..], dir.path()).unwrap_err();
        let text = super::error_chain(&e);
        assert!(text.contains("os error"), "{text}");
        assert!(text.len() > e.to_string().len(), "{text}");
    }
}
