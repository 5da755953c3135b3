//! Unpacking an image layer into a directory that overlayfs uses as a lower
//! layer. Hostile archives must not escape the directory: absolute paths and
//! `..` are refused, `tar`'s `unpack_in` refuses to write through symlinks
//! that point outside (and hard links to outside), and whiteouts are only
//! made in real directories of the layer, never through a symlink. OCI
//! whiteouts become overlayfs whiteouts (a 0:0 character device) and opaque
//! markers become the `trusted.overlay.opaque` xattr, so that stacked layers
//! hide what they delete. Device nodes and FIFOs are skipped; ownership and
//! modes (setuid included) are kept, as Docker keeps them; extended
//! attributes from the archive are not applied, so a layer cannot forge
//! overlayfs's own `trusted.overlay.*` attributes.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The default cap of what one layer unpacks to (its uncompressed stream).
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 8 << 30;
/// The most entries one layer may have (a large distribution layer has
/// tens of thousands): past it, a layer of empty files would exhaust inodes.
pub const MAX_LAYER_ENTRIES: u64 = 1_000_000;

/// What one layer may unpack to: a gzip or zstd bomb (a few KB that expand
/// to many GB) would otherwise fill `/var/lib/netlab/layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the uncompressed stream (`NETLAB_MAX_LAYER_SIZE`, in bytes).
    pub bytes: u64,
    pub entries: u64,
}

impl Limits {
    pub fn from_env() -> Limits {
        Limits {
            bytes: std::env::var("NETLAB_MAX_LAYER_SIZE")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_LAYER_SIZE),
            entries: MAX_LAYER_ENTRIES,
        }
    }
}

/// `8 GiB`, `10.0 MB`: a cap as people read it.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// A reader that fails once more than `limit` bytes came through, and says
/// so in a flag (the error itself reaches the caller wrapped by `tar`).
pub struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            left: limit,
            exceeded: Default::default(),
        }
    }
    /// Set once the cap was passed.
    pub fn exceeded(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.exceeded.clone()
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the layer unpacks to more than its cap",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn unpack_layer(reader: impl Read, dst: &Path) -> io::Result<()> {
    unpack_layer_within(reader, dst, MAX_LAYER_ENTRIES)
}

/// Unpacks at most `max_entries` entries.
pub fn unpack_layer_within(reader: impl Read, dst: &Path, max_entries: u64) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    for (n, entry) in archive.entries()?.enumerate() {
        if n as u64 >= max_entries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the layer has more than {max_entries} entries: refused"),
            ));
        }
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // the root directory itself
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE {
            let parent = real_dir(dst, rel.parent().unwrap_or(Path::new("")))?;
            xattr_set(&parent, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("layer entry {}: not a valid whiteout", raw.display()),
                ));
            }
            let parent = real_dir(dst, rel.parent().unwrap_or(Path::new("")))?;
            let target = parent.join(hidden);
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target)?,
                Ok(_) => std::fs::remove_file(&target)?,
                Err(_) => {}
            }
            nix::sys::stat::mknod(
                &target,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            )
            .map_err(io::Error::from)?;
            continue;
        }
        match entry.header().entry_type() {
            // Containers get their /dev from the runtime; device nodes and
            // FIFOs in images are skipped, as rootless runtimes do.
            tar::EntryType::Block | tar::EntryType::Char | tar::EntryType::Fifo => continue,
            _ => {}
        }
        if !entry.unpack_in(dst)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("layer entry {} escapes the root filesystem", raw.display()),
            ));
        }
    }
    Ok(())
}

/// `dst/rel` as a directory made of real directories only (created when
/// missing): a whiteout or opaque marker must never act through a symlink,
/// which could point anywhere on the host.
fn real_dir(dst: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut dir = dst.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "layer entry under {} goes through a symlink or file",
                        rel.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&dir)?,
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// `./a/b` → `a/b`; `/a` → `a`; anything with `..` is an attack.
fn safe_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("layer entry {} escapes the root filesystem", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name to build hostile archives.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files() {
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&tar_of(&[("./etc/hostname", b"x")])[..], dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("etc/hostname")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn caps_entries_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let three = tar_of(&[("a", b"x"), ("b", b"y"), ("c", b"z")]);
        let err = unpack_layer_within(&three[..], dir.path(), 2).unwrap_err();
        assert!(err.to_string().contains("more than 2 entries"), "{err}");
        let big = tar_of(&[("zeros", &[0u8; 100_000][..])]);
        for d in ["x", "y"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let mut capped = Capped::new(&big[..], 10_000);
        let flag = capped.exceeded();
        assert!(unpack_layer(&mut capped, &dir.path().join("x")).is_err());
        assert!(flag.load(std::sync::atomic::Ordering::SeqCst));
        let mut roomy = Capped::new(&big[..], 1 << 20);
        unpack_layer(&mut roomy, &dir.path().join("y")).unwrap();
        assert!(!roomy.exceeded().load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(human(8 << 30), "8 GiB");
        assert_eq!(human(10_000_000), "10000000 bytes");
    }

    #[test]
    fn refuses_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("root");
        std::fs::create_dir(&inner).unwrap();
        let err = unpack_layer(&tar_of(&[("../evil", b"x")])[..], &inner).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn refuses_writing_through_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_path("link").unwrap();
        h.set_link_name(&outside).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_path("link/pwned").unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(unpack_layer(&data[..], &inner).is_err());
        assert!(!outside.join("pwned").exists());
    }
}
