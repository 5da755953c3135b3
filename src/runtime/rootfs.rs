//! A container's root filesystem: the image's unpacked layers stacked
//! read-only with overlayfs, plus a writable upper layer of its own, so that
//! a hundred pods of one image cost one image on disk. The upper layer lives
//! on the lab's disk (`runtime::disk`), so its size is capped; the mount
//! point stays in the bundle under `/run/netlab/<lab>`.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io;
use std::path::{Path, PathBuf};

/// Mounts `bundle/rootfs` as overlay of `layers` (bottom first) with
/// `writable/upper` and `writable/work`; returns the mount point.
pub fn mount_overlay(layers: &[PathBuf], writable: &Path, bundle: &Path) -> io::Result<PathBuf> {
    let (upper, work, merged) = (
        writable.join("upper"),
        writable.join("work"),
        bundle.join("rootfs"),
    );
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)?;
    }
    // overlayfs lists lower layers top first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| {
        io::Error::other(format!(
            "mounting overlay rootfs at {}: {e}",
            merged.display()
        ))
    })?;
    Ok(merged)
}

/// Every mount point at or below `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    crate::net::netns::mount_points(&info, |p| p.starts_with(dir))
}

/// Lazily unmounts; a mount that is already gone is not an error.
pub fn unmount(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "unmounting {}: {e}",
            path.display()
        ))),
    }
}
