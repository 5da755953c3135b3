//! Where a lab lives on the host, and how its kernel objects are named. Every
//! name carries the lab's name, so `down` can find everything of a lab even
//! when its state file is lost (DESIGN.md, "The lab on the host").
//!
//! - runtime state: `/run/netlab/<lab>/` (store.redb: the objects, runc root, pod dirs)
//! - images: `/var/lib/netlab/` (OCI layout + unpacked layers)
//! - containers' writable layers: `/var/lib/netlab/labs/<lab>/` (the lab's
//!   disk image, mounted at `writable/`; `runtime::disk`)
//! - network namespaces: `/run/netns/netlab-<lab>.dc`,
//!   `netlab-<lab>.node.<node>`, `netlab-<lab>.pod.<namespace>.<pod>`
//!   (lab names have no dots, so `netlab-<lab>.` is an exact prefix)
//! - cgroups: `/sys/fs/cgroup/<controller>/netlab-<lab>/<container>`

use std::path::PathBuf;

pub fn run_dir() -> PathBuf {
    std::env::var_os("NETLAB_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netlab"))
}

pub fn data_dir() -> PathBuf {
    std::env::var_os("NETLAB_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/netlab"))
}

pub fn lab_dir(lab: &str) -> PathBuf {
    run_dir().join(lab)
}

/// Claims a lab's directory for `up`: made here or not at all, so that of
/// two `up`s of one lab exactly one goes on (the other touches nothing).
/// Readable by root only: it holds the store (with the lab's Secrets), the
/// OCI bundles (with env values from Secrets), the volumes and the
/// container logs.
pub fn claim_lab_dir(lab: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = lab_dir(lab);
    std::fs::create_dir_all(run_dir())?;
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// `/var/lib/netlab/labs/<lab>`: the lab's disk (image and mount point)
/// for its containers' writable layers, on disk rather than in `/run`.
/// Not under `NETLAB_DATA_DIR` (the image store, which a command may
/// point elsewhere): `down` must find a lab's disk whatever store the
/// `up` used. `NETLAB_LABS_DIR` moves it.
pub fn disk_dir(lab: &str) -> PathBuf {
    labs_dir().join(lab)
}

/// Where every lab's disk is (see [`disk_dir`]).
pub fn labs_dir() -> PathBuf {
    std::env::var_os("NETLAB_LABS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/netlab/labs"))
}

/// Where the lab's disk is mounted.
pub fn writable_dir(lab: &str) -> PathBuf {
    crate::runtime::disk::mount_point(&disk_dir(lab))
}

/// A pod's writable layers: `<writable>/<namespace>_<pod>`, named as its pod
/// directory is.
pub fn pod_writable_dir(lab: &str, namespace: &str, pod: &str) -> PathBuf {
    writable_dir(lab).join(bounded(format!("{namespace}_{pod}")))
}

/// A container's overlay upperdir and workdir go here.
pub fn container_writable_dir(lab: &str, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_writable_dir(lab, namespace, pod).join(container)
}

pub fn runc_root(lab: &str) -> PathBuf {
    lab_dir(lab).join("runc")
}

pub fn pod_dir(lab: &str, namespace: &str, pod: &str) -> PathBuf {
    lab_dir(lab)
        .join("pods")
        .join(bounded(format!("{namespace}_{pod}")))
}

pub fn container_log(lab: &str, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_dir(lab, namespace, pod).join(format!("{container}.log"))
}

/// runc ids allow `[\w+-.]`: `<namespace>_<pod>_<container>` is unique in a lab.
/// Bounded like every kernel name (see [`bounded`]).
pub fn container_id(namespace: &str, pod: &str, container: &str) -> String {
    bounded(format!("{namespace}_{pod}_{container}"))
}

pub fn netns_prefix(lab: &str) -> String {
    format!("netlab-{lab}.")
}

pub fn dc_netns(lab: &str) -> String {
    format!("netlab-{lab}.dc")
}

pub fn node_netns(lab: &str, node: &str) -> String {
    format!("netlab-{lab}.node.{node}")
}

pub fn pod_netns(lab: &str, namespace: &str, pod: &str) -> String {
    bounded(format!("netlab-{lab}.pod.{namespace}.{pod}"))
}

/// The longest name netlab gives a file, directory, namespace or runc
/// container: the kernel allows 255 bytes per path component, and a few are
/// left for what is put beside a name (`.json`, `.lock`, a temporary suffix).
pub const MAX_NAME: usize = 240;

/// A name as the kernel will take it. Kubernetes allows 253-character pod
/// names and 63-character namespaces, so `<namespace>_<pod>_<container>` can
/// reach 380 bytes; a name over [`MAX_NAME`] keeps its start (so `down` still
/// finds it by the lab's prefix, and people still recognise it) and ends in
/// a hash of the whole name, so that two long names never meet.
pub fn bounded(name: String) -> String {
    if name.len() <= MAX_NAME {
        return name;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let mut keep = MAX_NAME - 17;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}-{}", &name[..keep], &hash[..16])
}

/// A host outside the cluster, on the lab's public network (`host/external`).
pub fn host_netns(lab: &str, host: &str) -> String {
    format!("netlab-{lab}.host.{host}")
}

/// The host's veth of host access: `nl-` and a hash of the lab's name, so
/// `down` finds it from the name alone.
pub fn host_access_ifname(lab: &str) -> String {
    crate::net::ifname("nl-", lab)
}

pub fn cgroup_parent(lab: &str) -> String {
    format!("netlab-{lab}")
}

pub fn cgroups_path(lab: &str, container_id: &str) -> String {
    format!("/{}/{container_id}", cgroup_parent(lab))
}

/// The lab a namespace name belongs to, if it is one of netlab's.
pub fn lab_of_netns(name: &str) -> Option<&str> {
    name.strip_prefix("netlab-")?
        .split_once('.')
        .map(|(lab, _)| lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_lab() {
        assert_eq!(node_netns("a", "node-1"), "netlab-a.node.node-1");
        assert!(pod_netns("a-b", "default", "p").starts_with(&netns_prefix("a-b")));
        assert!(!pod_netns("a-b", "default", "p").starts_with(&netns_prefix("a")));
        assert_eq!(lab_of_netns("netlab-a-b.dc"), Some("a-b"));
        assert_eq!(lab_of_netns("other"), None);
    }

    #[test]
    fn every_valid_kubernetes_name_makes_a_kernel_name() {
        let ns = "n".repeat(63);
        let pod = |c: char| format!("{}{c}", "p".repeat(252));
        let a = pod_netns("lab", &ns, &pod('a'));
        let b = pod_netns("lab", &ns, &pod('b'));
        assert_eq!(a.len(), MAX_NAME);
        assert_ne!(a, b, "long names differ by their hash");
        assert!(
            a.starts_with(&netns_prefix("lab")),
            "down finds it by prefix"
        );
        assert_eq!(a, pod_netns("lab", &ns, &pod('a')), "stable");
        let id = container_id(&ns, &pod('a'), &"c".repeat(63));
        assert!(id.len() <= MAX_NAME);
        let dir = pod_dir("lab", &ns, &pod('a'));
        assert!(dir.file_name().unwrap().len() <= MAX_NAME);
        // Short names are left as they are.
        assert_eq!(
            pod_netns("lab", "default", "web"),
            "netlab-lab.pod.default.web"
        );
        assert_eq!(container_id("default", "web", "c"), "default_web_c");
    }
}
