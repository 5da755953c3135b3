//! Pulling images from registries (and pushing them), through the OCI
//! distribution API with `oci-client`, into the content-addressed store.
//!
//! A pull does what containerd's does: resolve the tag to a digest
//! (a HEAD when the store already has the image: an unchanged tag transfers
//! nothing), fetch the manifest (an image index or Docker manifest list
//! picks the host's platform), then the config and the layers the store
//! lacks. Every blob is checked against its digest before it gets its name;
//! every layer is unpacked once and checked against the config's diff_id;
//! only then is the reference named in the store, so a bad image never gets
//! a name. Mirrors are tried in order, then the registry itself.

use super::fetch::{self, Credentials, FetchError};
use super::progress::{short, Progress};
use super::reference::Reference;
use super::registry::{Auth, Endpoint, Registries};
use super::store::{self, Image, Store, StoreError};
use super::untrusted::JSON_LIMIT;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use oci_spec::image::{Descriptor, DescriptorBuilder, ImageManifest, MediaType};
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Layers downloaded at once.
const DOWNLOADS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("failed to pull {reference}: {}: {hint}", .attempts.join("; "))]
    Failed {
        reference: String,
        attempts: Vec<String>,
        hint: String,
    },
    #[error("failed to push {reference} to {endpoint}: {message}")]
    Push {
        reference: String,
        endpoint: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The registry or mirror it came from (`http://127.0.0.1:5000`).
    pub endpoint: String,
    /// The digest the reference resolved to (an index's, for multi-platform images).
    pub digest: String,
    /// Bytes transferred for blobs (0 when the store had everything).
    pub downloaded: u64,
    /// The tag still pointed to the image the store had.
    pub up_to_date: bool,
    /// The image's size: its compressed layers.
    pub size: u64,
    pub elapsed: Duration,
}

/// Pulls `reference` into `store`, trying the endpoints `registries` gives
/// for its registry in order.
pub async fn pull(
    store: &Store,
    reference: &Reference,
    registries: &Registries,
    progress: &Progress,
) -> Result<Pulled, PullError> {
    let start = Instant::now();
    let mut attempts = Vec::new();
    // Hosts that refused us: (host, whether we had credentials for it).
    let mut denied = Vec::new();
    for endpoint in registries.endpoints(&reference.registry) {
        let auth = registries.auth(&endpoint.host);
        let result = pull_from(store, reference, &endpoint, auth, progress).await;
        let what = if endpoint.mirror {
            format!("{} (mirror of {})", endpoint.url(), reference.registry)
        } else {
            endpoint.url()
        };
        let message = match result {
            Ok(mut pulled) => {
                pulled.elapsed = start.elapsed();
                return Ok(pulled);
            }
            Err(PullAttempt::Fatal(e)) => return Err(e),
            Err(PullAttempt::Failed(message)) => message,
            Err(PullAttempt::Denied(message)) => {
                let said = if auth.is_some() {
                    "the configured credentials were refused"
                } else {
                    "no credentials are configured for it"
                };
                denied.push((endpoint.host.clone(), auth.is_some()));
                format!("authentication failed ({said}): {message}")
            }
        };
        tracing::info!(%reference, endpoint = %what, %message, "pull attempt failed");
        attempts.push(format!("{what}: {message}"));
    }
    let config = Registries::config_path();
    let hint = match denied.first() {
        Some((host, had)) => format!(
            "{} credentials for \"{host}\" in {}, under `configs: \"{host}\": auth: {{username: …, password: …}}` (a token registry, as Docker Hub, exchanges them for a bearer token){}",
            if *had { "check the" } else { "give" },
            config.display(),
            if *had {
                ""
            } else {
                "; or the repository does not exist (Docker Hub denies unknown repositories so)"
            }
        ),
        None => format!(
            "check the image name and tag, that the registry runs and answers, and its mirrors and credentials ({}, --registry-mirror, NETLAB_REGISTRY_MIRRORS, the Lab's spec.registries)",
            config.display()
        ),
    };
    Err(PullError::Failed {
        reference: reference.to_string(),
        attempts,
        hint,
    })
}

enum PullAttempt {
    /// This endpoint could not serve the image: try the next.
    Failed(String),
    /// This endpoint wants credentials, or refused ours (or, as Docker Hub
    /// answers, the repository does not exist): try the next.
    Denied(String),
    /// The store failed: no other endpoint helps.
    Fatal(PullError),
}

impl From<StoreError> for PullAttempt {
    fn from(e: StoreError) -> Self {
        match e {
            // A blob that does not match its digest, a layer that does not
            // unpack: the endpoint served a bad image.
            StoreError::Digest { .. } | StoreError::Corrupt { .. } => {
                PullAttempt::Failed(e.to_string())
            }
            e => PullAttempt::Fatal(e.into()),
        }
    }
}

impl From<FetchError> for PullAttempt {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Status {
                status: 401 | 403, ..
            } => PullAttempt::Denied(e.to_string()),
            e => PullAttempt::Failed(e.to_string()),
        }
    }
}

fn failed(e: OciDistributionError) -> PullAttempt {
    let denied = match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    };
    if denied {
        PullAttempt::Denied(chain(&e))
    } else {
        PullAttempt::Failed(chain(&e))
    }
}

/// An error and its causes on one line (reqwest hides "connection refused"
/// in a source).
fn chain(e: &dyn std::error::Error) -> String {
    store::error_chain(e)
}

pub fn client(endpoint_plain_http: bool) -> Client {
    Client::new(ClientConfig {
        protocol: if endpoint_plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(5)),
        // A backstop: the stall timeout of each transfer (fetch.rs) comes first.
        read_timeout: Some(fetch::stall_timeout() * 2),
        platform_resolver: None,
        max_concurrent_download: DOWNLOADS,
        user_agent: concat!("netlab/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

/// The reference as oci-client sees it, pointed at `endpoint`.
fn oci_reference(reference: &Reference, endpoint: &Endpoint) -> oci_client::Reference {
    let (registry, repo) = (reference.registry.clone(), reference.repository.clone());
    let mut r = match (&reference.tag, &reference.digest) {
        (Some(t), Some(d)) => {
            oci_client::Reference::with_tag_and_digest(registry, repo, t.clone(), d.clone())
        }
        (None, Some(d)) => oci_client::Reference::with_digest(registry, repo, d.clone()),
        (t, None) => oci_client::Reference::with_tag(
            registry,
            repo,
            t.clone().unwrap_or_else(|| "latest".into()),
        ),
    };
    if endpoint.mirror || endpoint.host != reference.registry {
        r.set_mirror_registry(endpoint.host.clone());
    }
    r
}

fn by_digest(r: &oci_client::Reference, digest: &str) -> oci_client::Reference {
    let mut d = oci_client::Reference::with_digest(
        r.registry().to_string(),
        r.repository().to_string(),
        digest.to_string(),
    );
    if let Some(m) = r.namespace().map(|_| r.resolve_registry().to_string()) {
        d.set_mirror_registry(m);
    }
    d
}

pub fn registry_auth(auth: Option<&Auth>) -> RegistryAuth {
    use base64::Engine;
    let Some(a) = auth else {
        return RegistryAuth::Anonymous;
    };
    if let Some(t) = &a.identity_token {
        return RegistryAuth::Bearer(t.clone());
    }
    if let (Some(u), Some(p)) = (&a.username, &a.password) {
        return RegistryAuth::Basic(u.clone(), p.clone());
    }
    if let Some(encoded) = &a.auth {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
            if let Some((u, p)) = String::from_utf8_lossy(&bytes).split_once(':') {
                return RegistryAuth::Basic(u.to_string(), p.to_string());
            }
        }
    }
    RegistryAuth::Anonymous
}

async fn pull_from(
    store: &Store,
    reference: &Reference,
    endpoint: &Endpoint,
    auth: Option<&Auth>,
    progress: &Progress,
) -> Result<Pulled, PullAttempt> {
    let client = client(endpoint.plain_http);
    let oref = oci_reference(reference, endpoint);
    let auth = registry_auth(auth);
    let token = fetch::within(
        "authentication",
        fetch::stall_timeout(),
        client.auth(&oref, &auth, RegistryOperation::Pull),
    )
    .await?
    .map_err(failed)?;
    let credentials = match (token, &auth) {
        (Some(t), _) => Credentials::Bearer(t),
        (None, RegistryAuth::Basic(u, p)) => Credentials::Basic(u.clone(), p.clone()),
        (None, RegistryAuth::Bearer(t)) => Credentials::Bearer(t.clone()),
        (None, _) => Credentials::None,
    };
    let manifests = Manifests {
        http: http_client(),
        plain_http: endpoint.plain_http,
        credentials,
    };
    // Blobs written below have no name until the end: `images prune` waits.
    let _gc = store.gc_shared()?;

    // Unchanged tag: one HEAD, nothing transferred.
    if let (Some(before), Ok(image)) = (
        store.pulled_digest(reference),
        store.resolve(&reference.to_string()),
    ) {
        if store.is_complete(&image) {
            if let Ok(now) = client.fetch_manifest_digest(&oref, &auth).await {
                if now == before {
                    let size = image.layers.iter().map(|l| l.size()).sum();
                    return Ok(Pulled {
                        image,
                        endpoint: endpoint.url(),
                        digest: now,
                        downloaded: 0,
                        up_to_date: true,
                        size,
                        elapsed: Duration::ZERO,
                    });
                }
            }
        }
    }

    let top_bytes = manifests.get(&oref).await?;
    let top_digest = store::sha256_digest(&top_bytes);
    if let Some(want) = &reference.digest {
        if *want != top_digest {
            return Err(PullAttempt::Failed(format!(
                "the registry answered {want} with {top_digest}"
            )));
        }
    }
    // What this attempt writes, removed again if it fails.
    let mut added: Vec<String> = Vec::new();
    let result = fetch_image(
        store,
        reference,
        endpoint,
        (&client, &oref, &manifests),
        (top_bytes, top_digest),
        &mut added,
        progress,
    )
    .await;
    if result.is_err() {
        store.forget(&added);
    }
    result
}

/// Fetches the image a top manifest (or index) names, checks and unpacks
/// it, and names it `reference`; records the blobs it writes in `added`.
async fn fetch_image(
    store: &Store,
    reference: &Reference,
    endpoint: &Endpoint,
    (client, oref, manifests): (&Client, &oci_client::Reference, &Manifests),
    (top_bytes, top_digest): (Vec<u8>, String),
    added: &mut Vec<String>,
    progress: &Progress,
) -> Result<Pulled, PullAttempt> {
    let oref = oref.clone();
    let top: serde_json::Value = serde_json::from_slice(&top_bytes)
        .map_err(|e| PullAttempt::Failed(format!("manifest {top_digest} is not JSON: {e}")))?;
    let (manifest_bytes, manifest_digest, manifest_type) = if top.get("manifests").is_some() {
        let chosen = choose_platform(&top)?;
        let bytes = manifests.get(&by_digest(&oref, &chosen)).await?;
        check_digest("manifest", &bytes, &chosen)?;
        let mt = media_type_of(&bytes);
        if !store.has_blob(&top_digest, top_bytes.len() as u64) {
            store.put_blob(&top_digest, &top_bytes)?;
            added.push(top_digest.clone());
        }
        (bytes, chosen, mt)
    } else {
        let mt = media_type_of(&top_bytes);
        (top_bytes.clone(), top_digest.clone(), mt)
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        PullAttempt::Failed(format!(
            "manifest {manifest_digest} is not an image manifest: {e}"
        ))
    })?;
    for l in manifest.layers() {
        store::decompressor(l.media_type(), std::io::empty())
            .map(drop)
            .map_err(PullAttempt::Failed)?;
    }

    let mut downloaded = 0u64;
    let config = manifest.config();
    let cdigest = config.digest().to_string();
    if !store.has_blob(&cdigest, config.size()) {
        if config.size() > JSON_LIMIT {
            return Err(PullAttempt::Failed(format!(
                "image config {cdigest}: its descriptor declares {} bytes, more than the {JSON_LIMIT} a config may have (as containerd allows): refused",
                config.size()
            )));
        }
        let mut buf = Vec::new();
        let what = format!("image config {cdigest}");
        let stream = fetch::within(
            &what,
            fetch::stall_timeout(),
            client.pull_blob_stream(&oref, &oci_descriptor(config)),
        )
        .await?
        .map_err(failed)?;
        fetch::copy_capped(
            &what,
            fetch::stall_timeout(),
            stream.stream,
            config.size(),
            "its descriptor's size",
            &mut buf,
        )
        .await?;
        downloaded += buf.len() as u64;
        store.put_blob(&cdigest, &buf)?;
        added.push(cdigest.clone());
    }

    let missing: Vec<&Descriptor> = manifest
        .layers()
        .iter()
        .filter(|l| !store.has_blob(l.digest().as_ref(), l.size()))
        .collect();
    added.extend(missing.iter().map(|l| l.digest().to_string()));
    if !store.has_blob(&manifest_digest, manifest_bytes.len() as u64) {
        added.push(manifest_digest.clone());
    }
    let bytes: Vec<u64> = futures::stream::iter(missing.into_iter().map(|layer| {
        let (client, oref, store) = (client, &oref, store);
        async move { download_layer(client, oref, store, layer, progress).await }
    }))
    .buffer_unordered(DOWNLOADS)
    .try_collect()
    .await?;
    downloaded += bytes.iter().sum::<u64>();

    store.put_blob(&manifest_digest, &manifest_bytes)?;
    let image = store.image(reference.clone(), &manifest_digest)?;
    // Unpack before naming: an image whose layers do not unpack (hostile
    // paths, wrong diff_ids) never gets a name.
    let (s, i) = (store.clone(), image.clone());
    tokio::task::spawn_blocking(move || s.unpacked_layers(&i))
        .await
        .map_err(|e| PullAttempt::Failed(e.to_string()))??;
    let descriptor = DescriptorBuilder::default()
        .media_type(manifest_type)
        .size(manifest_bytes.len() as u64)
        .digest(
            oci_spec::image::Digest::from_str(&manifest_digest)
                .map_err(|e| PullAttempt::Failed(e.to_string()))?,
        )
        .build()
        .map_err(|e| PullAttempt::Failed(e.to_string()))?;
    store.tag(reference, descriptor, Some(&top_digest))?;
    let size = image.layers.iter().map(|l| l.size()).sum();
    Ok(Pulled {
        image,
        endpoint: endpoint.url(),
        digest: top_digest,
        downloaded,
        up_to_date: false,
        size,
        elapsed: Duration::ZERO,
    })
}

async fn download_layer(
    client: &Client,
    oref: &oci_client::Reference,
    store: &Store,
    layer: &Descriptor,
    progress: &Progress,
) -> Result<u64, PullAttempt> {
    let digest = layer.digest().to_string();
    let tmp = store.blob_tempfile()?;
    let file = tokio::fs::File::create(&tmp).await.map_err(|e| {
        PullAttempt::Fatal(
            StoreError::Io {
                path: tmp.clone(),
                source: e,
            }
            .into(),
        )
    })?;
    let bar = progress.bytes(&short(&digest), layer.size());
    let mut out = Counting {
        inner: file,
        bar: bar.clone(),
        n: 0,
    };
    // Never more than the descriptor declares: a registry that sends more
    // is refused at the first byte past it.
    let what = format!("layer {digest}");
    let stall = fetch::stall_timeout();
    let result = match fetch::within(
        &what,
        stall,
        client.pull_blob_stream(oref, &oci_descriptor(layer)),
    )
    .await
    {
        Ok(Ok(stream)) => fetch::copy_capped(
            &what,
            stall,
            stream.stream,
            layer.size(),
            "its descriptor's size",
            &mut out,
        )
        .await
        .map(drop)
        .map_err(PullAttempt::from),
        Ok(Err(e)) => Err(failed(e)),
        Err(e) => Err(e.into()),
    };
    bar.finish_and_clear();
    let n = out.n;
    let cleanup = |tmp: &PathBuf| {
        let _ = std::fs::remove_file(tmp);
    };
    if let Err(e) = result {
        cleanup(&tmp);
        return Err(e);
    }
    if n != layer.size() {
        cleanup(&tmp);
        return Err(PullAttempt::Failed(format!(
            "layer {digest}: {n} bytes received, its descriptor says {}",
            layer.size()
        )));
    }
    // oci-client checked the digest while streaming; the store checks the
    // file again before it gets its name.
    let (s, t, d) = (store.clone(), tmp.clone(), digest.clone());
    tokio::task::spawn_blocking(move || s.commit_blob(&t, &d))
        .await
        .map_err(|e| PullAttempt::Failed(e.to_string()))??;
    Ok(n)
}

/// Fetching manifests with a size cap (`fetch::manifest`), with the
/// credentials oci-client negotiated.
struct Manifests {
    http: reqwest::Client,
    plain_http: bool,
    credentials: Credentials,
}

impl Manifests {
    async fn get(&self, r: &oci_client::Reference) -> Result<Vec<u8>, PullAttempt> {
        let url = format!(
            "{scheme}://{registry}/v2/{repository}/manifests/{reference}{ns}",
            scheme = if self.plain_http { "http" } else { "https" },
            registry = r.resolve_registry(),
            repository = r.repository(),
            reference = r.digest().or(r.tag()).unwrap_or("latest"),
            ns = r
                .namespace()
                .map(|ns| format!("?ns={ns}"))
                .unwrap_or_default(),
        );
        let bytes = fetch::manifest(
            &self.http,
            &url,
            MANIFEST_TYPES,
            &self.credentials,
            JSON_LIMIT,
        )
        .await?;
        if let Some(d) = r.digest() {
            check_digest("manifest", &bytes, d)?;
        }
        Ok(bytes)
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(fetch::stall_timeout() * 2)
        .user_agent(concat!("netlab/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: d.size() as i64,
        ..Default::default()
    }
}

fn check_digest(what: &str, bytes: &[u8], digest: &str) -> Result<(), PullAttempt> {
    let actual = store::sha256_digest(bytes);
    if actual == digest {
        Ok(())
    } else {
        Err(StoreError::Digest {
            what: what.into(),
            expected: digest.into(),
            actual,
        }
        .into())
    }
}

fn media_type_of(bytes: &[u8]) -> MediaType {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(MediaType::from))
        .unwrap_or(MediaType::ImageManifest)
}

/// The host's platform in an image index (`linux/amd64`, …).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    ("linux", arch)
}

fn choose_platform(index: &serde_json::Value) -> Result<String, PullAttempt> {
    let (os, arch) = host_platform();
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut seen = Vec::new();
    for e in &entries {
        let p = &e["platform"];
        let (eos, earch) = (
            p["os"].as_str().unwrap_or("unknown"),
            p["architecture"].as_str().unwrap_or("unknown"),
        );
        if eos == os && earch == arch {
            if let Some(d) = e["digest"].as_str() {
                return Ok(d.to_string());
            }
        }
        seen.push(format!("{eos}/{earch}"));
    }
    Err(PullAttempt::Failed(format!(
        "the image index has no manifest for {os}/{arch} (it has {})",
        seen.join(", ")
    )))
}

/// An AsyncWrite that counts bytes into a progress bar.
struct Counting<W> {
    inner: W,
    bar: indicatif::ProgressBar,
    n: u64,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.n += n as u64;
                this.bar.inc(n as u64);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Pushes an image of the store to a registry as `destination` (blobs the
/// registry has are skipped). Pushes go to the registry itself, never a mirror.
pub async fn push(
    store: &Store,
    source: &Reference,
    destination: &Reference,
    registries: &Registries,
    progress: &Progress,
) -> Result<u64, PullError> {
    let image = store.resolve(&source.to_string())?;
    let endpoint = registries
        .endpoints(&destination.registry)
        .into_iter()
        .find(|e| !e.mirror)
        .expect("a registry is its own endpoint");
    let err = |message: String| PullError::Push {
        reference: destination.to_string(),
        endpoint: endpoint.url(),
        message,
    };
    let client = client(endpoint.plain_http);
    let oref = oci_reference(destination, &endpoint);
    let auth = registry_auth(registries.auth(&endpoint.host));
    client
        .auth(&oref, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| err(chain(&e)))?;
    let mut sent = 0;
    let blobs = image
        .layers
        .iter()
        .map(|l| (l.digest().to_string(), l.size()))
        .chain([(image.config_digest.clone(), 0)]);
    for (digest, size) in blobs {
        if client
            .blob_exists(&oref, &digest)
            .await
            .map_err(|e| err(chain(&e)))?
        {
            continue;
        }
        let bar = progress.bytes(&short(&digest), size);
        let data = tokio::fs::read(store.blob_path(&digest))
            .await
            .map_err(|e| err(format!("reading blob {digest}: {e}")))?;
        sent += data.len() as u64;
        client
            .push_blob(&oref, data, &digest)
            .await
            .map_err(|e| err(chain(&e)))?;
        bar.finish_and_clear();
    }
    let manifest = std::fs::read(store.blob_path(&image.manifest_digest))
        .map_err(|e| err(format!("reading manifest: {e}")))?;
    let content_type = media_type_of(&manifest).to_string();
    client
        .push_manifest_raw(
            &oref,
            manifest,
            http::HeaderValue::from_str(&content_type).map_err(|e| err(e.to_string()))?,
        )
        .await
        .map_err(|e| err(chain(&e)))?;
    Ok(sent)
}
