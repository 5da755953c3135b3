//! Writing a pod's volumes on the host, as the kubelet's atomic writer
//! does: the files of a secret or configMap volume live in a hidden
//! timestamped directory, `..data` points at it, and each visible name is
//! a symlink through `..data`. An update writes a new directory and swaps
//! `..data` in one rename, so a container never sees half a change (and
//! `ls -la` in the container looks as on a Kubernetes node).
//!
//! Layout: `<pod dir>/volumes/` (0700: only root on the host reaches the
//! files) holds one directory per volume, which containers bind-mount.

use crate::cluster::volumes::{PodVolume, VolumeKind};
use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

const DATA: &str = "..data";

pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

pub fn volume_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    volumes_dir(pod_dir).join(volume)
}

fn mkdir(dir: &Path, mode: u32) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Writes every volume of a pod; true when some content changed.
pub fn setup(pod_dir: &Path, volumes: &[PodVolume]) -> io::Result<bool> {
    std::fs::create_dir_all(pod_dir)?;
    mkdir(&volumes_dir(pod_dir), 0o700)?;
    let mut changed = false;
    for v in volumes {
        let dir = volume_dir(pod_dir, &v.name);
        match v.kind {
            // Shared scratch space: anyone in the pod may write (1777 would
            // be tmpfs'; a plain directory is 0777 in Kubernetes).
            VolumeKind::EmptyDir => mkdir(&dir, 0o777)?,
            VolumeKind::Secret | VolumeKind::ConfigMap | VolumeKind::Projected => {
                mkdir(&dir, 0o755)?;
                changed |= write_atomically(&dir, v)?;
            }
        }
    }
    Ok(changed)
}

/// (path, mode, contents) of the files `..data` holds now.
fn current(dir: &Path) -> Option<BTreeSet<(String, u32, Vec<u8>)>> {
    let data = dir.join(DATA);
    std::fs::symlink_metadata(&data).ok()?;
    let mut out = BTreeSet::new();
    let mut stack = vec![(data.clone(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()? {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = e.metadata().ok()?;
            if meta.is_dir() {
                stack.push((e.path(), rel));
            } else {
                let mode = meta.permissions().mode() & 0o777;
                out.insert((rel, mode, std::fs::read(e.path()).ok()?));
            }
        }
    }
    Some(out)
}

fn write_atomically(dir: &Path, v: &PodVolume) -> io::Result<bool> {
    let wanted: BTreeSet<(String, u32, Vec<u8>)> = v
        .files
        .iter()
        .map(|f| (f.path.clone(), f.mode, f.data.clone()))
        .collect();
    if current(dir).as_ref() == Some(&wanted) {
        return Ok(false);
    }
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let fresh = dir.join(&stamp);
    mkdir(&fresh, 0o755)?;
    for f in &v.files {
        let path = fresh.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // The visible names: one symlink per top-level entry.
    let visible: BTreeSet<String> = v
        .files
        .iter()
        .map(|f| f.path.split('/').next().unwrap_or_default().to_string())
        .collect();
    for name in &visible {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !visible.contains(&name) {
            std::fs::remove_file(e.path())?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// The kubelet's `SetVolumeOwnership` for a pod with an `fsGroup`, part 1
/// (pure): every file of a secret or configMap volume becomes readable by
/// the group (`| 0440`; these volumes are read-only).
pub fn with_fs_group(volumes: &mut [PodVolume]) {
    for v in volumes {
        for f in &mut v.files {
            f.mode |= 0o440;
        }
    }
}

/// Part 2, after [`setup`]: everything in the pod's volumes belongs to the
/// group `gid`, and directories are setgid so that what the container
/// creates in an emptyDir does too.
pub fn chown_group(pod_dir: &Path, volumes: &[PodVolume], gid: u32) -> io::Result<()> {
    let mut stack: Vec<PathBuf> = volumes
        .iter()
        .map(|v| volume_dir(pod_dir, &v.name))
        .collect();
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        if meta.is_dir() {
            let mode = meta.permissions().mode() & 0o7777;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o2000))?;
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::volumes::File;

    fn vol(files: &[(&str, u32, &str)]) -> PodVolume {
        PodVolume {
            name: "v".into(),
            kind: VolumeKind::Secret,
            files: files
                .iter()
                .map(|(p, m, d)| File {
                    path: p.to_string(),
                    mode: *m,
                    data: d.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn atomic_layout_update_and_idempotence() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = tmp.path().join("pod");
        let v1 = vol(&[("tls.crt", 0o600, "cert"), ("conf/a.conf", 0o644, "a")]);
        assert!(setup(&pod, std::slice::from_ref(&v1)).unwrap());
        let dir = volume_dir(&pod, "v");
        assert_eq!(
            std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
            "cert"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/a.conf")).unwrap(),
            "a"
        );
        assert!(std::fs::symlink_metadata(dir.join("tls.crt"))
            .unwrap()
            .file_type()
            .is_symlink());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.join("tls.crt")), 0o600);
        assert_eq!(mode(&volumes_dir(&pod)), 0o700);
        assert!(!setup(&pod, std::slice::from_ref(&v1)).unwrap());
        let v2 = vol(&[("tls.crt", 0o600, "new")]);
        assert!(setup(&pod, &[v2]).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("tls.crt")).unwrap(), "new");
        assert!(std::fs::symlink_metadata(dir.join("conf")).is_err());
        // One timestamped directory is left: the current one.
        let hidden = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(hidden, 1);
    }
}
