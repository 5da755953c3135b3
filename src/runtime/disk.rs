//! A lab's disk for its containers' writable layers: a sparse file
//! (`/var/lib/netlab/labs/<lab>/disk.img`) holding an ext4 filesystem,
//! loop-mounted at `/var/lib/netlab/labs/<lab>/writable`. Every container's
//! overlay upperdir and workdir live inside it, so a container that writes
//! without end gets ENOSPC at the lab's cap, and the host's `/run` (RAM on
//! stock Debian/Ubuntu) and `/var` are never filled. The file is sparse: a
//! 10 GiB disk costs what its containers wrote.
//!
//! The loop device is attached with `LO_FLAGS_AUTOCLEAR`, as mount(8) does
//! it: once the filesystem is unmounted (and no overlay holds it), the kernel
//! detaches the device by itself, and a process killed between attaching and
//! mounting leaves nothing, since closing its last fd clears it too.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Makes the lab's run directory (`paths::lab_dir`: bundles, logs,
/// volumes, the runtime's state, the store) a tmpfs of its own, as `/run`
/// is on stock Debian/Ubuntu. Where `/run` is on a disk instead, every
/// pod's dozen files went through the root filesystem's inode allocator,
/// which scans past recently deleted inodes: at 1 000 pods that was a
/// third of the time spent starting them. `down` unmounts it last.
pub fn mount_run_dir(dir: &Path) -> io::Result<()> {
    nix::mount::mount(
        Some("netlab"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(|e| io::Error::other(format!("mounting a tmpfs at {}: {e}", dir.display())))
}

/// The image file in a lab's disk directory (`paths::disk_dir`).
pub fn image_path(dir: &Path) -> PathBuf {
    dir.join("disk.img")
}

/// Where the lab's disk is mounted: containers' upper and work dirs go under
/// it (`paths::writable_dir`).
pub fn mount_point(dir: &Path) -> PathBuf {
    dir.join("writable")
}

/// Free bytes of the filesystem that holds `dir` (or its nearest existing parent).
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let mut d = dir;
    while !d.exists() {
        d = d.parent().unwrap_or(Path::new("/"));
    }
    let s = nix::sys::statvfs::statvfs(d).map_err(io::Error::from)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Creates the sparse image of `size` bytes, makes an ext4 filesystem in it
/// and mounts it; the lab's directory is root's only (writable layers hold
/// whatever containers write, secrets included).
pub fn create(dir: &Path, size: u64) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir.parent().expect("labs/<lab> has a parent"))?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?
        }
        Err(e) => return Err(e),
    }
    let image = image_path(dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&image)
        .map_err(|e| at(&image, e))?;
    file.set_len(size).map_err(|e| at(&image, e))?;
    mkfs(&image)?;
    let mnt = mount_point(dir);
    std::fs::create_dir_all(&mnt)?;
    let device = attach(&file)?;
    // The device stays attached while mounted; our fd may close after.
    let mounted = nix::mount::mount(
        Some(device.path.as_path()),
        &mnt,
        Some("ext4"),
        nix::mount::MsFlags::empty(),
        // The inode tables of a fresh sparse file are zeros already: no
        // background thread needs to write them (and un-sparse the file).
        Some("noinit_itable"),
    );
    drop(device);
    mounted.map_err(|e| {
        io::Error::other(format!(
            "mounting the lab's disk {} at {}: {e}",
            image.display(),
            mnt.display()
        ))
    })?;
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o700))?;
    Ok(mnt)
}

/// Whether the lab's disk is mounted (containers must not write their layers
/// onto the filesystem beneath the mount point, which has no cap).
pub fn is_mounted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mnt = mount_point(dir);
    match (std::fs::metadata(&mnt), mnt.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

/// Unmounts the lab's disk (waiting for it, so that the autoclear loop
/// device is gone when this returns; lazily if something still holds it)
/// and removes the image and the lab's directory. Idempotent.
pub fn remove(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for m in super::rootfs::mounts_under(dir) {
        match nix::mount::umount2(&m, nix::mount::MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(_) => {
                if let Err(e) = super::rootfs::unmount(&m) {
                    errors.push(e.to_string());
                }
            }
        }
    }
    // A device attached by a process killed before it mounted, or one that
    // lost its autoclear flag: detached by hand.
    for dev in loop_devices_of(dir) {
        if let Err(e) = detach(&dev) {
            errors.push(format!("detaching {}: {e}", dev.display()));
        }
    }
    // The kernel frees an autoclear device after its last close from a
    // work queue, so it can outlive the unmount by a moment: wait for it,
    // so that a `down` that returned left nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !loop_devices_of(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for dev in loop_devices_of(dir) {
        errors.push(format!(
            "loop device {} still backs the lab's disk: detach it with `losetup -d {}`",
            dev.display(),
            dev.display()
        ));
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            errors.push(format!("removing {}: {e}", dir.display()));
        }
    }
    errors
}

/// Loop devices whose backing file is under `dir` (from sysfs, as `losetup -j`).
pub fn loop_devices_of(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("loop/backing_file"))
                        .is_ok_and(|b| b.trim_end().starts_with(&prefix))
                })
                .map(|e| Path::new("/dev").join(e.file_name()))
                .collect()
        })
        .unwrap_or_default()
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `mkfs.ext4` with the options that make it fast on a sparse file (about
/// 20 ms here): no journal (a lab's writable layers do not outlive the lab,
/// and a crash means `down`), lazy inode tables, no discard, and no blocks
/// reserved for root (containers run as root: the cap is the whole disk).
fn mkfs(image: &Path) -> io::Result<()> {
    let out = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            "-O",
            "^has_journal,^resize_inode",
        ])
        .arg(image)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("running mkfs.ext4: {e}: install e2fsprogs (apt-get install e2fsprogs, or scripts/setup.sh)"),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mkfs.ext4 {} failed: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

// The loop driver's ioctls (linux/loop.h): a stable kernel ABI that the libc
// crate does not carry.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device, open.
struct Device {
    path: PathBuf,
    _file: File,
}

/// Attaches `file` to a free loop device with autoclear (LOOP_CONFIGURE,
/// Linux 5.8+). Another process may take the same free device between
/// GET_FREE and CONFIGURE: then it is busy, and we ask again.
fn attach(file: &File) -> io::Result<Device> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| at(Path::new("/dev/loop-control"), e))?;
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::other(format!(
                "no free loop device: {}",
                io::Error::last_os_error()
            )));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(at(&path, e)),
        };
        // SAFETY: an all-zero loop_config is valid (no offset, no encryption).
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd() as u32;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads a loop_config of this layout.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
        if rc == 0 {
            return Ok(Device { path, _file: dev });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(io::Error::other(format!(
                "attaching the lab's disk to {}: {e} (netlab needs Linux 5.8 or later)",
                path.display()
            )));
        }
    }
    Err(io::Error::other("no free loop device after 32 tries"))
}

fn detach(dev: &Path) -> io::Result<()> {
    let f = OpenOptions::new().read(true).open(dev)?;
    // SAFETY: LOOP_CLR_FD takes no argument. On a device still in use the
    // kernel sets autoclear instead, which frees it when the use ends.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD as _) };
    let e = io::Error::last_os_error();
    if rc == 0 || e.raw_os_error() == Some(libc::ENXIO) {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_config_matches_the_kernel_layout() {
        // linux/loop.h: loop_info64 is 232 bytes, loop_config 304.
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn image_and_mount_point_are_in_the_labs_directory() {
        let d = Path::new("/var/lib/netlab/labs/web");
        assert_eq!(
            image_path(d),
            Path::new("/var/lib/netlab/labs/web/disk.img")
        );
        assert!(mount_point(d).starts_with(d));
    }
}
