//! Resolving a path of an image inside its root filesystem, as runc's
//! `securejoin` does: symlinks are followed, but an absolute target starts
//! again at the root filesystem and `..` never climbs above it, so a hostile
//! image whose `/etc/passwd` is a symlink to a host file (`/etc/shadow`,
//! `../../../../etc/shadow`) resolves to a path *inside* the image. What the
//! path finally names (a device, a FIFO, a huge file) is for the reader to
//! check: `untrusted::read_regular` does.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// As Linux's MAXSYMLINKS: a loop of links ends with an error, not a hang.
const MAX_SYMLINKS: usize = 40;

/// `root/path` with every symlink on the way resolved inside `root`.
/// Components that do not exist are appended as they are (a later open
/// fails with "not found"). Only an I/O error other than "not found", or a
/// symlink loop, is an error.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    // Components still to walk, front first.
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    // The resolved path below root, as normal components.
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: more than {MAX_SYMLINKS} symlinks (a loop?)",
                            path.display()
                        ),
                    ));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved.push(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(c),
            Err(e) => return Err(e),
        }
    }
    Ok(join(root, &resolved))
}

/// Normal components and `..`, in order; `/` and `.` dropped.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        (d, root)
    }

    #[test]
    fn plain_paths_join() {
        let (_d, root) = rootfs();
        assert_eq!(
            secure_join(&root, Path::new("/etc/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(&root, Path::new("../../etc/./passwd")).unwrap(),
            root.join("etc/passwd")
        );
    }

    #[test]
    fn absolute_symlinks_stay_in_the_root() {
        let (_d, root) = rootfs();
        symlink("/etc/shadow", root.join("etc/passwd")).unwrap();
        assert_eq!(
            secure_join(&root, Path::new("/etc/passwd")).unwrap(),
            root.join("etc/shadow")
        );
    }

    #[test]
    fn relative_symlinks_cannot_climb_out() {
        let (_d, root) = rootfs();
        symlink("../../../../../../etc/shadow", root.join("etc/passwd")).unwrap();
        assert_eq!(
            secure_join(&root, Path::new("etc/passwd")).unwrap(),
            root.join("etc/shadow")
        );
    }

    #[test]
    fn symlinked_directories_are_followed_inside() {
        let (_d, root) = rootfs();
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/real", root.join("lnk")).unwrap();
        symlink("../lnk/x", root.join("etc/y")).unwrap();
        assert_eq!(
            secure_join(&root, Path::new("/etc/y")).unwrap(),
            root.join("real/x")
        );
        // A directory symlink to the host's / is the rootfs's /.
        symlink("/", root.join("top")).unwrap();
        assert_eq!(
            secure_join(&root, Path::new("/top/etc/passwd")).unwrap(),
            root.join("etc/passwd")
        );
    }

    #[test]
    fn loops_are_an_error() {
        let (_d, root) = rootfs();
        symlink("/etc/b", root.join("etc/a")).unwrap();
        symlink("/etc/a", root.join("etc/b")).unwrap();
        let err = secure_join(&root, Path::new("/etc/a")).unwrap_err();
        assert!(err.to_string().contains("symlinks"), "{err}");
    }
}
