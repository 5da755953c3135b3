//! Garbage collection of the image store: `netlab images prune` removes the
//! blobs no named image uses, the unpacked layers of blobs it removes (unless
//! a running container stacks them: an overlay mount of a live lab lists them
//! as lowerdirs), and what dead pulls and imports left (`.tmp-<pid>-…`,
//! `.import-<pid>`). A failed pull or import calls `forget` on the blobs it
//! wrote, which removes them under the same rules.
//!
//! Pulls and imports hold a shared lock (`.gc.lock`) while they write blobs
//! that no name holds yet; prune takes it exclusively, so it never removes
//! what a pull in progress is about to name (containerd uses leases for this).

use super::store::{annotation, io_err, Store, StoreError, PULLED_ANNOTATION};
use super::untrusted::{self, JSON_LIMIT};
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// What `prune` removed and kept.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Digests of the removed blobs.
    pub blobs: Vec<String>,
    /// Removed unpacked layers and leftovers of dead pulls and imports.
    pub dirs: Vec<PathBuf>,
    /// Bytes freed (blobs and temporary files; unpacked layers not counted).
    pub bytes: u64,
    /// Unpacked layers no image names any more, kept because a running
    /// container uses them.
    pub in_use: Vec<PathBuf>,
}

impl Store {
    fn gc_lock(&self, how: FlockArg) -> Result<Flock<File>, StoreError> {
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let path = self.root.join(".gc.lock");
        let f = File::create(&path).map_err(io_err(&path))?;
        Flock::lock(f, how).map_err(|(_, e)| io_err(&path)(e.into()))
    }

    /// Held by a pull or import while it writes blobs not yet named.
    pub fn gc_shared(&self) -> Result<Flock<File>, StoreError> {
        self.gc_lock(FlockArg::LockShared)
    }

    /// Every blob a named image uses: its manifest (or index), config and
    /// layers, and the index it was pulled through.
    pub fn referenced(&self) -> Result<HashSet<String>, StoreError> {
        let mut keep = HashSet::new();
        for d in self.read_index()?.manifests() {
            if let Some(p) = annotation(d, PULLED_ANNOTATION) {
                self.mark(p, &mut keep);
            }
            self.mark(d.digest().as_ref(), &mut keep);
        }
        Ok(keep)
    }

    /// Marks `digest` and, if it is a manifest or an index in the store,
    /// what it refers to.
    fn mark(&self, digest: &str, keep: &mut HashSet<String>) {
        if !is_sha256(digest) || !keep.insert(digest.to_string()) {
            return;
        }
        let Ok(bytes) = untrusted::read_regular(&self.blob_path(digest), JSON_LIMIT) else {
            return; // a layer, or not in the store
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let digest_of = |d: &serde_json::Value| d["digest"].as_str().map(String::from);
        for child in v["manifests"].as_array().into_iter().flatten() {
            if let Some(d) = digest_of(child) {
                self.mark(&d, keep);
            }
        }
        if let Some(d) = digest_of(&v["config"]) {
            if is_sha256(&d) {
                keep.insert(d);
            }
        }
        for layer in v["layers"].as_array().into_iter().flatten() {
            if let Some(d) = digest_of(layer).filter(|d| is_sha256(d)) {
                keep.insert(d);
            }
        }
    }

    /// The unpacked directory of layer `digest`.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.layers.join(digest.replace(':', "-"))
    }

    /// Removes blobs a failed pull or import wrote (and their unpacked
    /// layers), unless a named image uses them or a container stacks them.
    /// Best effort: what cannot be removed now `prune` removes later.
    pub fn forget(&self, digests: &[String]) {
        if digests.is_empty() {
            return;
        }
        let Ok(keep) = self.referenced() else {
            return;
        };
        let mounts = mount_table();
        for d in digests
            .iter()
            .filter(|d| is_sha256(d) && !keep.contains(*d))
        {
            let _ = fs::remove_file(self.blob_path(d));
            let dir = self.layer_dir(d);
            if !in_use(&mounts, &dir) {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }

    /// `netlab images prune`.
    pub fn prune(&self) -> Result<Pruned, StoreError> {
        let _gc = self.gc_lock(FlockArg::LockExclusive)?;
        let keep = self.referenced()?;
        let mounts = mount_table();
        let mut out = Pruned::default();
        let blobs = self.root.join("blobs/sha256");
        for (name, path) in entries(&blobs)? {
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            let remove = if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                !keep.contains(&format!("sha256:{name}"))
            } else {
                leftover_of_dead_process(&name)
            };
            if remove {
                remove_path(&path)?;
                out.bytes += size;
                if !name.starts_with('.') && !name.contains(".tmp") {
                    out.blobs.push(format!("sha256:{name}"));
                }
            }
        }
        for (name, path) in entries(&self.layers)? {
            if let Some(hex) = name.strip_prefix("sha256-") {
                if keep.contains(&format!("sha256:{hex}")) {
                    continue;
                }
                if in_use(&mounts, &path) {
                    out.in_use.push(path);
                    continue;
                }
            } else if !leftover_of_dead_process(&name) {
                continue;
            }
            remove_path(&path)?;
            out.dirs.push(path);
        }
        for (name, path) in entries(&self.root)? {
            if name.starts_with(".import-") && leftover_of_dead_process(&name) {
                remove_path(&path)?;
                out.dirs.push(path);
            }
        }
        Ok(out)
    }
}

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_err(dir))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}

fn remove_path(path: &Path) -> Result<(), StoreError> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    r.map_err(io_err(path))
}

/// The pid a temporary name carries: `.tmp-<pid>-…`, `.tmp-layer-<pid>`,
/// `.import-<pid>`, `<name>.tmp<pid>`.
fn pid_of_leftover(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(".tmp-layer-")
        .or_else(|| name.strip_prefix(".tmp-"))
        .or_else(|| name.strip_prefix(".import-"))
        .or_else(|| name.rsplit_once(".tmp").map(|(_, p)| p))?;
    rest.split('-').next()?.parse().ok()
}

/// A temporary file or directory whose process is gone (a live one's is
/// kept: it may be a pull or an `up` unpacking a layer right now).
fn leftover_of_dead_process(name: &str) -> bool {
    pid_of_leftover(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// The mount tables of this process and of init: a running container's
/// overlay lists the unpacked layers it stacks as lowerdirs.
fn mount_table() -> String {
    ["/proc/self/mountinfo", "/proc/1/mountinfo"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a mount uses `dir` (as a lowerdir, or mounted on it): its path
/// followed by a separator of mount options (`:`, `,`, space, end).
fn in_use(mounts: &str, dir: &Path) -> bool {
    let p = dir.display().to_string();
    mounts.match_indices(&p).any(|(i, _)| {
        let before = mounts[..i].chars().next_back();
        let after = mounts[i + p.len()..].chars().next();
        matches!(before, Some('=' | ':' | ' ' | ','))
            && matches!(after, None | Some(':' | ',' | ' ' | '\n' | '/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_name_their_process() {
        assert_eq!(pid_of_leftover(".tmp-123-4"), Some(123));
        assert_eq!(pid_of_leftover(".tmp-layer-77"), Some(77));
        assert_eq!(pid_of_leftover(".import-9"), Some(9));
        assert_eq!(pid_of_leftover(".tmp-55-sha256-abc"), Some(55));
        assert_eq!(pid_of_leftover("index.tmp42"), Some(42));
        assert_eq!(pid_of_leftover("abc"), None);
        let me = std::process::id();
        assert!(!leftover_of_dead_process(&format!(".tmp-{me}-1")));
        // Pids above the kernel's pid_max never run.
        assert!(leftover_of_dead_process(".tmp-4999999-1"));
    }

    #[test]
    fn lowerdirs_of_overlay_mounts_are_in_use() {
        let info = "98 30 0:50 / /run/netlab/lab/pods/x/c/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/netlab/layers/sha256-bb:/var/lib/netlab/layers/sha256-aa,upperdir=/var/lib/netlab/labs/lab/writable/x/c/upper,workdir=/var/lib/netlab/labs/lab/writable/x/c/work";
        let l = |s: &str| PathBuf::from(format!("/var/lib/netlab/layers/{s}"));
        assert!(in_use(info, &l("sha256-aa")));
        assert!(in_use(info, &l("sha256-bb")));
        assert!(!in_use(info, &l("sha256-a")));
        assert!(!in_use(info, &l("sha256-cc")));
        // A lab's disk beside the layers is not a layer in use.
        let disk = "52 27 7:0 / /var/lib/netlab/labs/lab/writable rw,relatime - ext4 /dev/loop0 rw";
        assert!(!in_use(disk, &l("sha256-aa")));
    }

    #[test]
    fn digests_are_checked() {
        assert!(is_sha256(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256("sha256:../../etc"));
        assert!(!is_sha256(&"a".repeat(64)));
    }
}
