//! Reading files whose content and type someone else chose: the members of an
//! imported archive or OCI layout, and files of an image's root filesystem.
//! Only regular files are read (a symlink is never followed, a device or FIFO
//! never opened for reading: `/dev/zero` would never end, a FIFO never
//! answer), and never more than a cap, so a hostile file costs at most the
//! cap in memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// What containerd allows for a manifest, an index or an image config.
pub const JSON_LIMIT: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{path} is {kind}, not a regular file: refused")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than {limit} bytes: refused")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} lies outside its directory (through `..` or an absolute name): refused")]
    Outside { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Refused {
    /// Whether the file is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Refused::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` if it is a regular file itself (not through a symlink);
/// returns it with its size.
pub fn open_regular(path: &Path) -> Result<(File, u64), Refused> {
    let io = |source: io::Error| Refused::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a
    // symlink fails with ELOOP instead of being followed.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Refused::NotRegular {
                path: path.to_path_buf(),
                kind: "a symlink",
            })
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(Refused::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// The content of the regular file `path`, at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, Refused> {
    let (file, size) = open_regular(path)?;
    let too_large = || Refused::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    if size > limit {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| Refused::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// `dir/rel`, where `rel` is a name inside `dir` (no `..`, not absolute) and
/// every directory on the way is a real directory, not a symlink: a member
/// of an archive or layout is looked up inside it, never elsewhere.
pub fn path_under(dir: &Path, rel: &str) -> Result<PathBuf, Refused> {
    let p = Path::new(rel);
    let mut out = dir.to_path_buf();
    let parts: Vec<_> = p.components().collect();
    for (i, c) in parts.iter().enumerate() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => continue,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Refused::Outside {
                    path: PathBuf::from(rel),
                })
            }
        }
        if i + 1 < parts.len() {
            match std::fs::symlink_metadata(&out) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    return Err(Refused::NotRegular {
                        path: out,
                        kind: kind_of(m.file_type()),
                    })
                }
                Err(source) => return Err(Refused::Io { path: out, source }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_regular_files_up_to_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        let err = read_regular(&f, 4).unwrap_err();
        assert!(matches!(err, Refused::TooLarge { limit: 4, .. }), "{err}");
    }

    #[test]
    fn refuses_symlinks_devices_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("secret");
        std::fs::write(&target, b"secret").unwrap();
        let link = d.path().join("link");
        symlink(&target, &link).unwrap();
        let err = read_regular(&link, 100).unwrap_err();
        assert!(
            matches!(
                err,
                Refused::NotRegular {
                    kind: "a symlink",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("is a symlink"), "{err}");
        let err = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(
            matches!(
                err,
                Refused::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Must not block waiting for a writer.
        let err = read_regular(&fifo, 100).unwrap_err();
        assert!(
            matches!(err, Refused::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        let err = read_regular(d.path(), 100).unwrap_err();
        assert!(matches!(err, Refused::NotRegular { .. }), "{err}");
    }

    #[test]
    fn paths_under_a_directory_stay_in_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        assert_eq!(
            path_under(d.path(), "a/b/c").unwrap(),
            d.path().join("a/b/c")
        );
        assert_eq!(path_under(d.path(), "./x").unwrap(), d.path().join("x"));
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            let err = path_under(d.path(), bad).unwrap_err();
            assert!(matches!(err, Refused::Outside { .. }), "{bad}: {err}");
        }
        symlink("/etc", d.path().join("l")).unwrap();
        let err = path_under(d.path(), "l/passwd").unwrap_err();
        assert!(
            matches!(
                err,
                Refused::NotRegular {
                    kind: "a symlink",
                    ..
                }
            ),
            "{err}"
        );
    }
}
