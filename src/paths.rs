//! Where a lab lives on the host, and how its kernel objects are named. Every
//! name carries the lab's name, so `down` can find everything of a lab even
//! when its state file is lost (DESIGN.md, "The lab on the host").
//!
//! - runtime state: `/run/netlab/<lab>/` (state.json, runc root, pod dirs)
//! - images: `/var/lib/netlab/` (OCI layout + unpacked layers)
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

pub fn runc_root(lab: &str) -> PathBuf {
    lab_dir(lab).join("runc")
}

pub fn pod_dir(lab: &str, namespace: &str, pod: &str) -> PathBuf {
    lab_dir(lab).join("pods").join(format!("{namespace}_{pod}"))
}

pub fn container_log(lab: &str, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_dir(lab, namespace, pod).join(format!("{container}.log"))
}

/// runc ids allow `[\w+-.]`: `<namespace>_<pod>_<container>` is unique in a lab.
pub fn container_id(namespace: &str, pod: &str, container: &str) -> String {
    format!("{namespace}_{pod}_{container}")
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
    format!("netlab-{lab}.pod.{namespace}.{pod}")
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
}
