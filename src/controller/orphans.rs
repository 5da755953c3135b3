//! What no object owns: containers, pod namespaces and pod directories that a
//! client killed partway (`kill -9` of `netlab apply`) left behind.
//!
//! A write records what it will create in the store before the lab's
//! process creates it (the write is committed first), so after a crash every pod that was
//! being started is in the state, Pending, with its address reserved: the
//! controller finishes starting it. Whatever is on the host under the lab's
//! names and matches no pod of the state is removed here, so an address is
//! never served by a process that the state has forgotten (and then given to
//! a new pod).
//!
//! The decision is pure ([`unowned`]); [`remove`] acts on it, in the
//! background of the lab's loop (a removal takes 100 ms a pod: the loop
//! goes on starting pods meanwhile, except one whose names are being
//! removed, see [`Unowned::keys`]).

use crate::cluster::{state, ClusterState};
use crate::net::NetNs;
use crate::paths;
use crate::runtime::{rootfs, Runc};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The names the pods of a state own on the host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub containers: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub pod_dirs: BTreeSet<PathBuf>,
}

pub fn owned(lab: &str, st: &ClusterState) -> Owned {
    let mut o = Owned::default();
    for pod in &st.pods {
        let ns = state::namespace(&pod.metadata);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        // A hostNetwork pod has no namespace of its own (its node's is
        // never a candidate: only pod namespaces are).
        if !crate::cluster::host_network::is_host_network(pod) {
            o.netns.insert(paths::pod_netns(lab, ns, name));
        }
        o.pod_dirs.insert(paths::pod_dir(lab, ns, name));
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            o.containers.insert(paths::container_id(ns, name, &c.name));
        }
    }
    o
}

/// What is on the host and not owned, each list sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unowned {
    pub containers: Vec<String>,
    pub netns: Vec<String>,
    pub pod_dirs: Vec<PathBuf>,
}

impl Unowned {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.netns.is_empty() && self.pod_dirs.is_empty()
    }

    /// Every name found, as one list of keys (a pod directory by its
    /// path): what a removal under way holds.
    pub fn keys(&self) -> Vec<String> {
        let dirs = self.pod_dirs.iter().map(|d| d.display().to_string());
        self.containers
            .iter()
            .chain(&self.netns)
            .cloned()
            .chain(dirs)
            .collect()
    }

    /// Leaves out what `held` says is being removed already.
    pub fn without(mut self, held: impl Fn(&str) -> bool) -> Unowned {
        self.containers.retain(|c| !held(c));
        self.netns.retain(|n| !held(n));
        self.pod_dirs.retain(|d| !held(&d.display().to_string()));
        self
    }
}

/// The keys of what a pod owns on the host (as [`Unowned::keys`] names
/// them): a pod whose names are being removed waits for the removal.
pub fn keys_of(lab: &str, pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    let ns = state::namespace(&pod.metadata);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut keys = vec![
        paths::pod_netns(lab, ns, name),
        paths::pod_dir(lab, ns, name).display().to_string(),
    ];
    keys.extend(
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| paths::container_id(ns, name, &c.name)),
    );
    keys
}

/// Pure: the containers, pod namespaces and pod directories found on the host
/// that the state does not own. Only pod namespaces are candidates (the
/// lab's dc, nodes and hosts are the lab's own, not a pod's).
pub fn unowned(
    lab: &str,
    owned: &Owned,
    containers: impl IntoIterator<Item = String>,
    netns: impl IntoIterator<Item = String>,
    pod_dirs: impl IntoIterator<Item = PathBuf>,
) -> Unowned {
    let pod_prefix = format!("{}pod.", paths::netns_prefix(lab));
    let mut u = Unowned {
        containers: containers
            .into_iter()
            .filter(|c| !owned.containers.contains(c))
            .collect(),
        netns: netns
            .into_iter()
            .filter(|n| n.starts_with(&pod_prefix) && !owned.netns.contains(n))
            .collect(),
        pod_dirs: pod_dirs
            .into_iter()
            .filter(|d| !owned.pod_dirs.contains(d))
            .collect(),
    };
    u.containers.sort();
    u.netns.sort();
    u.pod_dirs.sort();
    u
}

/// What the state does not own on the host now: `containers` are the ids
/// the runtime lists (the caller has just listed them).
pub fn find(lab: &str, st: &ClusterState, containers: impl IntoIterator<Item = String>) -> Unowned {
    // A pod's directory and its writable layers (on the lab's disk) share
    // a name: either one found makes the pod's directory a candidate.
    let pods_dir = paths::lab_dir(lab).join("pods");
    let names = |d: PathBuf| -> Vec<std::ffi::OsString> {
        std::fs::read_dir(d)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let mut found_names = names(pods_dir.clone());
    found_names.extend(names(paths::writable_dir(lab)));
    found_names.sort();
    found_names.dedup();
    // lost+found is the disk's own.
    let dirs: Vec<PathBuf> = found_names
        .into_iter()
        .filter(|n| n != "lost+found")
        .map(|n| pods_dir.join(n))
        .collect();
    unowned(
        lab,
        &owned(lab, st),
        containers,
        NetNs::list(&paths::netns_prefix(lab)),
        dirs,
    )
}

/// Removes what [`find`] found: containers (killed at once: no object
/// asks for a grace period), then mounts and directories, then
/// namespaces. Returns the errors it met.
pub async fn remove(lab: &str, runc: &Runc, found: &Unowned) -> Vec<String> {
    let mut errors = Vec::new();
    let mut pids = Vec::new();
    for id in &found.containers {
        if let Ok(s) = runc.state(id).await {
            pids.push(s.pid);
        }
        if let Err(e) = runc.delete_force(id).await {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = super::down::wait_gone(&pids).await {
        errors.push(e);
    }
    for dir in &found.pod_dirs {
        for m in rootfs::mounts_under(dir) {
            if let Err(e) = rootfs::unmount(&m) {
                errors.push(e.to_string());
            }
        }
        let writable = dir.file_name().map(|n| paths::writable_dir(lab).join(n));
        for d in std::iter::once(dir.clone()).chain(writable) {
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(format!("removing {}: {e}", d.display()))
                }
                _ => {}
            }
        }
    }
    for n in &found.netns {
        if let Err(e) = crate::net::remove_pod(n, None).await {
            errors.push(e.to_string());
        }
    }
    if !found.is_empty() {
        tracing::info!(
            lab,
            containers = found.containers.len(),
            netns = found.netns.len(),
            dirs = found.pod_dirs.len(),
            "removed what no pod owns"
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_of(pods: &[(&str, &str, &[&str])]) -> Owned {
        let mut o = Owned::default();
        for (ns, pod, containers) in pods {
            o.netns.insert(paths::pod_netns("l", ns, pod));
            o.pod_dirs.insert(paths::pod_dir("l", ns, pod));
            for c in *containers {
                o.containers.insert(paths::container_id(ns, pod, c));
            }
        }
        o
    }

    /// (what, containers, namespaces, pod dirs found; what is unowned)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Unowned);

    /// A pod created again under a name whose leftovers are being removed
    /// is recognised by the keys of that removal.
    #[test]
    fn a_pod_is_known_by_the_keys_of_its_leftovers() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        }))
        .unwrap();
        let found = unowned(
            "l",
            &Owned::default(),
            ["a", "b"].map(|c| paths::container_id("default", "web-1", c)),
            [paths::pod_netns("l", "default", "web-1")],
            [paths::pod_dir("l", "default", "web-1")],
        );
        let mut keys = found.keys();
        let mut of_pod = keys_of("l", &pod);
        keys.sort();
        of_pod.sort();
        assert_eq!(keys, of_pod);
        // What a removal under way holds is not found again.
        let held: std::collections::HashSet<String> = keys.into_iter().collect();
        assert!(found.without(|k| held.contains(k)).is_empty());
    }

    #[test]
    fn what_no_pod_owns() {
        let o = owned_of(&[
            ("default", "web-1", &["nginx"]),
            ("default", "web-2", &["a", "b"]),
        ]);
        let cases: Vec<Case> = vec![
            (
                "all owned",
                vec!["default_web-1_nginx", "default_web-2_a"],
                vec![
                    "netlab-l.pod.default.web-1",
                    "netlab-l.dc",
                    "netlab-l.node.node-1",
                ],
                vec!["default_web-2"],
                Unowned::default(),
            ),
            (
                "a killed apply's pod",
                vec!["default_web-1_nginx", "default_web-3_nginx"],
                vec!["netlab-l.pod.default.web-3", "netlab-l.node.node-1"],
                vec!["default_web-1", "default_web-3"],
                Unowned {
                    containers: vec!["default_web-3_nginx".into()],
                    netns: vec!["netlab-l.pod.default.web-3".into()],
                    pod_dirs: vec![paths::pod_dir("l", "default", "web-3")],
                },
            ),
            (
                "another lab's names are not ours",
                vec![],
                vec!["netlab-m.pod.default.web-9"],
                vec![],
                Unowned::default(),
            ),
            (
                "a removed container of a pod that stays",
                vec!["default_web-1_sidecar"],
                vec![],
                vec![],
                Unowned {
                    containers: vec!["default_web-1_sidecar".into()],
                    ..Default::default()
                },
            ),
        ];
        for (what, containers, netns, dirs, want) in cases {
            let got = unowned(
                "l",
                &o,
                containers.into_iter().map(String::from),
                netns.into_iter().map(String::from),
                dirs.into_iter()
                    .map(|d| paths::lab_dir("l").join("pods").join(d)),
            );
            assert_eq!(got, want, "{what}");
        }
    }
}
