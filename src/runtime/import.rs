//! Importing images made elsewhere: an OCI image layout (a directory, or a
//! tar of one) or a `docker save` archive. Blobs are checked against their
//! digests and layers unpacked (and checked against the config's diff_ids)
//! before any name is given, exactly as for a pull.
//!
//! An archive is hostile until checked: only its regular files and
//! directories are extracted (into a private directory beside the store), a
//! symlink or hard link is honoured only as an alias of another member of the
//! archive, and devices, FIFOs and links that lead outside the archive are
//! refused. Every file of a layout is read as a regular file under the
//! layout's directory (never through a symlink), JSON members (index,
//! manifests, configs) at most `untrusted::JSON_LIMIT`. Nothing of the host
//! but the archive is ever read, and a failed import removes what it added.

use super::reference::Reference;
use super::store::{
    annotation, descriptor, io_err, read_json, sha256_digest, HashingWriter, Store, StoreError,
    NAME_ANNOTATION, REF_ANNOTATION,
};
use super::untrusted::{self, Refused, JSON_LIMIT};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifestBuilder, MediaType};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed to resolve one alias inside an archive.
const MAX_ALIASES: usize = 40;

/// The blobs an import wrote, to remove if it fails.
#[derive(Default)]
struct Added(Vec<String>);

impl Store {
    pub fn import(&self, path: &Path, tag: Option<&str>) -> Result<Vec<Reference>, StoreError> {
        let tag = tag
            .map(Reference::parse)
            .transpose()
            .map_err(StoreError::Reference)?;
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        // Keeps `images prune` from removing blobs this import has written
        // but not yet named.
        let _gc = self.gc_shared()?;
        let mut added = Added::default();
        let result = self.import_from(path, tag.as_ref(), &mut added);
        if result.is_err() {
            self.forget(&added.0);
        }
        result
    }

    fn import_from(
        &self,
        path: &Path,
        tag: Option<&Reference>,
        added: &mut Added,
    ) -> Result<Vec<Reference>, StoreError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            return self.import_layout(path, tag, added);
        }
        if !meta.is_file() {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                message: "neither a directory nor a regular file (a tar archive): refused".into(),
            });
        }
        let tmp = self.root.join(format!(".import-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let result = extract(path, &tmp).and_then(|()| {
            if tmp.join("manifest.json").exists() {
                self.import_docker_archive(&tmp, tag, added)
            } else if tmp.join("index.json").exists() {
                self.import_layout(&tmp, tag, added)
            } else {
                Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    message: "neither a `docker save` archive (manifest.json) nor an OCI layout (index.json)".into(),
                })
            }
        });
        let _ = fs::remove_dir_all(&tmp);
        // Name the archive, not the private directory, in errors.
        result.map_err(|e| match e {
            StoreError::Corrupt { path: p, message } if p.starts_with(&tmp) => {
                StoreError::Corrupt {
                    path: path.to_path_buf(),
                    message: format!(
                        "{}: {message}",
                        p.strip_prefix(&tmp).unwrap_or(&p).display()
                    ),
                }
            }
            e => e,
        })
    }

    /// Copies a regular file (already open) into the store as a blob,
    /// hashing it on the way; checks it against `expected` if given.
    /// Returns its digest and size.
    fn copy_in(
        &self,
        src: &Path,
        file: File,
        expected: Option<&str>,
        added: &mut Added,
    ) -> Result<(String, u64), StoreError> {
        let tmp = self.blob_tempfile()?;
        let copied = (|| {
            let out = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut hash = HashingWriter::new(out);
            io::copy(&mut io::BufReader::new(file), &mut hash).map_err(io_err(src))?;
            let (out, digest, size) = hash.finish();
            // On disk before it gets its name (see `commit_blob`).
            out.sync_all().map_err(io_err(&tmp))?;
            Ok((digest, size))
        })();
        let (digest, size) = match copied {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Some(want) = expected {
            if want != digest {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::Digest {
                    what: format!("blob {}", src.display()),
                    expected: want.into(),
                    actual: digest,
                });
            }
        }
        if self.blob_path(&digest).exists() {
            let _ = fs::remove_file(&tmp);
        } else {
            let path = self.blob_path(&digest);
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            added.0.push(digest.clone());
        }
        Ok((digest, size))
    }

    /// Copies blob `digest` of the layout in `dir` in, checking its digest
    /// and, for JSON blobs, that it is at most `JSON_LIMIT`.
    fn copy_blob_from(
        &self,
        dir: &Path,
        digest: &str,
        json: bool,
        added: &mut Added,
    ) -> Result<(), StoreError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| StoreError::Corrupt {
                path: dir.to_path_buf(),
                message: format!("{digest} is not a sha256 digest: only sha256 is supported"),
            })?;
        if self.blob_path(digest).exists() {
            return Ok(());
        }
        let src = untrusted::path_under(dir, &format!("blobs/sha256/{hex}")).map_err(refused)?;
        let (file, size) = untrusted::open_regular(&src).map_err(refused)?;
        if json && size > JSON_LIMIT {
            return Err(refused(Refused::TooLarge {
                path: src,
                limit: JSON_LIMIT,
            }));
        }
        self.copy_in(&src, file, Some(digest), added).map(drop)
    }

    fn import_layout(
        &self,
        dir: &Path,
        tag: Option<&Reference>,
        added: &mut Added,
    ) -> Result<Vec<Reference>, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: dir.to_path_buf(),
            message,
        };
        let index_path = untrusted::path_under(dir, "index.json").map_err(refused)?;
        let index: ImageIndex = read_json(&index_path, "index.json")?;
        let entries = index.manifests();
        if tag.is_some() && entries.len() != 1 {
            return Err(corrupt(format!(
                "--tag names one image, but the layout has {}",
                entries.len()
            )));
        }
        let mut named = Vec::new();
        for d in entries {
            let name = match tag {
                Some(t) => t.clone(),
                None => {
                    let text = annotation(d, NAME_ANNOTATION)
                        .or_else(|| annotation(d, REF_ANNOTATION))
                        .ok_or_else(|| {
                            corrupt(format!(
                                "manifest {} has no name: give one with --tag",
                                d.digest()
                            ))
                        })?;
                    Reference::parse(text).map_err(|e| {
                        corrupt(format!("{e}: give the image a full name with --tag"))
                    })?
                }
            };
            let mut digest = d.digest().to_string();
            let mut media_type = d.media_type().clone();
            self.copy_blob_from(dir, &digest, true, added)?;
            if matches!(media_type, MediaType::ImageIndex)
                || media_type.to_string().contains("manifest.list")
            {
                let nested: ImageIndex =
                    read_json(&self.blob_path(&digest), &format!("index {digest}"))?;
                let (os, arch) = super::pull::host_platform();
                let chosen = nested
                    .manifests()
                    .iter()
                    .find(|m| {
                        m.platform().as_ref().is_some_and(|p| {
                            p.os().to_string() == os && p.architecture().to_string() == arch
                        })
                    })
                    .ok_or_else(|| corrupt(format!("index {digest} has no {os}/{arch} image")))?;
                digest = chosen.digest().to_string();
                media_type = chosen.media_type().clone();
                self.copy_blob_from(dir, &digest, true, added)?;
            }
            let manifest: oci_spec::image::ImageManifest =
                read_json(&self.blob_path(&digest), &format!("manifest {digest}"))?;
            self.copy_blob_from(dir, manifest.config().digest().as_ref(), true, added)?;
            for l in manifest.layers() {
                self.copy_blob_from(dir, l.digest().as_ref(), false, added)?;
            }
            let size = fs::metadata(self.blob_path(&digest))
                .map_err(io_err(dir))?
                .len();
            self.name_after_unpacking(&name, descriptor(media_type, size, &digest)?)?;
            named.push(name);
        }
        Ok(named)
    }

    /// `docker save`: manifest.json lists each image's config file, layer
    /// tars (bottom first) and RepoTags.
    fn import_docker_archive(
        &self,
        dir: &Path,
        tag: Option<&Reference>,
        added: &mut Added,
    ) -> Result<Vec<Reference>, StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let corrupt = |message: String| StoreError::Corrupt {
            path: dir.to_path_buf(),
            message,
        };
        let manifest_path = untrusted::path_under(dir, "manifest.json").map_err(refused)?;
        let entries: Vec<Entry> = read_json(&manifest_path, "manifest.json")?;
        if tag.is_some() && entries.len() != 1 {
            return Err(corrupt(format!(
                "--tag names one image, but the archive has {}",
                entries.len()
            )));
        }
        let mut named = Vec::new();
        for e in entries {
            let config_path = untrusted::path_under(dir, &e.config).map_err(refused)?;
            let config_bytes =
                untrusted::read_regular(&config_path, JSON_LIMIT).map_err(refused)?;
            let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
                .map_err(|err| {
                    corrupt(format!("{}: not an image config (JSON): {err}", e.config))
                })?;
            drop(config);
            let config_digest = sha256_digest(&config_bytes);
            if !self.blob_path(&config_digest).exists() {
                self.put_blob(&config_digest, &config_bytes)?;
                added.0.push(config_digest.clone());
            }
            let mut layers = Vec::new();
            for l in &e.layers {
                let src = untrusted::path_under(dir, l).map_err(refused)?;
                let (mut file, _) = untrusted::open_regular(&src).map_err(refused)?;
                let mut magic = [0u8; 4];
                let n = read_up_to(&mut file, &mut magic).map_err(io_err(&src))?;
                let media_type = match &magic[..n] {
                    [0x1f, 0x8b, ..] => MediaType::ImageLayerGzip,
                    [0x28, 0xb5, 0x2f, 0xfd] => MediaType::ImageLayerZstd,
                    _ => MediaType::ImageLayer,
                };
                io::Seek::rewind(&mut file).map_err(io_err(&src))?;
                let (digest, size) = self.copy_in(&src, file, None, added)?;
                layers.push(descriptor(media_type, size, &digest)?);
            }
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(descriptor(
                    MediaType::ImageConfig,
                    config_bytes.len() as u64,
                    &config_digest,
                )?)
                .layers(layers)
                .build()
                .map_err(|e| self.corrupt(e))?;
            let json = manifest.to_string().map_err(|e| self.corrupt(e))?;
            let existed = self.blob_path(&sha256_digest(json.as_bytes())).exists();
            let desc = self.put_json(MediaType::ImageManifest, &json)?;
            if !existed {
                added.0.push(desc.digest().to_string());
            }
            let names: Vec<Reference> = match tag {
                Some(t) => vec![t.clone()],
                None => e
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| Reference::parse(t).map_err(StoreError::Reference))
                    .collect::<Result<_, _>>()?,
            };
            if names.is_empty() {
                return Err(corrupt(format!(
                    "image {config_digest} has no RepoTags: give it a name with --tag"
                )));
            }
            for name in names {
                self.name_after_unpacking(&name, desc.clone())?;
                named.push(name);
            }
        }
        Ok(named)
    }

    /// Unpacks an image's layers (checking them), then names it.
    fn name_after_unpacking(
        &self,
        name: &Reference,
        manifest: Descriptor,
    ) -> Result<(), StoreError> {
        let image = self.image(name.clone(), manifest.digest().as_ref())?;
        self.unpacked_layers(&image)?;
        self.tag(name, manifest, None)
    }
}

fn refused(e: Refused) -> StoreError {
    let path = match &e {
        Refused::NotRegular { path, .. }
        | Refused::TooLarge { path, .. }
        | Refused::Outside { path }
        | Refused::Io { path, .. } => path.clone(),
    };
    StoreError::Corrupt {
        path,
        message: e.to_string(),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A member's name inside the archive: normal components only.
fn member_path(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Where a link member leads inside the archive: a symlink's target is
/// relative to the link's directory, a hard link's to the archive's root;
/// `None` when it leads outside (an absolute target, or `..` above the root).
fn link_target(member: &Path, target: &Path, hard: bool) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut out: Vec<std::ffi::OsString> = if hard {
        Vec::new()
    } else {
        member
            .parent()
            .map(|p| p.iter().map(|c| c.to_os_string()).collect())
            .unwrap_or_default()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// Extracts the regular files and directories of the tar `archive` into
/// `dst`; links that lead to another member become copies of it (hard links
/// inside `dst`); anything else is refused.
fn extract(archive: &Path, dst: &Path) -> Result<(), StoreError> {
    let bad = |message: String| StoreError::Corrupt {
        path: archive.to_path_buf(),
        message,
    };
    let unreadable = |e: io::Error| bad(format!("not a readable tar archive: {e}"));
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    let mut aliases: HashMap<PathBuf, PathBuf> = HashMap::new();
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name = entry.path().map_err(unreadable)?.into_owned();
        let rel = member_path(&name).ok_or_else(|| {
            bad(format!(
                "member {} lies outside the archive (`..` or an absolute name): refused",
                name.display()
            ))
        })?;
        let kind = entry.header().entry_type();
        let out = dst.join(&rel);
        match kind {
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ if rel.as_os_str().is_empty() => {}
            tar::EntryType::Directory => fs::create_dir_all(&out).map_err(io_err(&out))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = out.parent() {
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                // create_new: a member named twice, or over a directory, is refused.
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&out)
                    .map_err(|e| {
                        bad(format!(
                            "member {}: {e} (named twice in the archive?)",
                            name.display()
                        ))
                    })?;
                io::copy(&mut entry, &mut f).map_err(unreadable)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let hard = kind == tar::EntryType::Link;
                let target = entry
                    .link_name()
                    .map_err(unreadable)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let inside = link_target(&rel, &target, hard).ok_or_else(|| {
                    bad(format!(
                        "member {} is a {} to {}, outside the archive: refused (nothing of the host is read)",
                        name.display(),
                        if hard { "hard link" } else { "symlink" },
                        target.display()
                    ))
                })?;
                aliases.insert(rel, inside);
            }
            other => {
                return Err(bad(format!(
                    "member {} is a {}: refused (only regular files, directories and links between members are read from an archive)",
                    name.display(),
                    kind_name(other)
                )))
            }
        }
    }
    // Links become hard links to the regular member they lead to (through
    // other links), made inside `dst` only.
    for (link, first) in &aliases {
        let mut target = first.clone();
        let mut hops = 0;
        while let Some(next) = aliases.get(&target) {
            hops += 1;
            if hops > MAX_ALIASES {
                return Err(bad(format!(
                    "member {}: a loop of links: refused",
                    link.display()
                )));
            }
            target = next.clone();
        }
        let src = dst.join(&target);
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(bad(format!(
                    "member {} links to {}, which is not a regular file of the archive: refused",
                    link.display(),
                    target.display()
                )))
            }
        }
        let out = dst.join(link);
        if let Some(p) = out.parent() {
            fs::create_dir_all(p).map_err(io_err(p))?;
        }
        fs::hard_link(&src, &out).map_err(|e| {
            bad(format!(
                "member {}: {e} (named twice in the archive?)",
                link.display()
            ))
        })?;
    }
    Ok(())
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::GNUSparse => "sparse file",
        _ => "special member",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_stay_inside() {
        assert_eq!(
            member_path(Path::new("./a/b")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(member_path(Path::new("../a")).is_none());
        assert!(member_path(Path::new("/etc/shadow")).is_none());
    }

    #[test]
    fn links_resolve_inside_the_archive_or_not_at_all() {
        let m = Path::new("abc/layer.tar");
        assert_eq!(
            link_target(m, Path::new("../def/layer.tar"), false).unwrap(),
            PathBuf::from("def/layer.tar")
        );
        assert_eq!(
            link_target(m, Path::new("def/layer.tar"), true).unwrap(),
            PathBuf::from("def/layer.tar")
        );
        assert!(link_target(m, Path::new("/dev/zero"), false).is_none());
        assert!(link_target(m, Path::new("../../etc/shadow"), false).is_none());
        assert!(link_target(m, Path::new("../etc/shadow"), true).is_none());
    }
}
