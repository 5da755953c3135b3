//! Link faults (issue 19's drills), made by the lab's process when its API
//! is asked (`api::drills`): a netem qdisc on a node's, pod's or the
//! external host's `eth0` (`crate::net::tc`), the list of those in force,
//! and a node's ports on the lab's bridges taken down or up. Everything
//! lives in the lab's own namespaces, so `down` takes it away with them.
//! The kernel is the record of what is in force: `list_netem` reads it.

use crate::cluster::{host_network, state, ClusterState};
use crate::net::{self, tc::Netem, NetError};
use crate::paths;
use crate::store::ObjectStore;

/// Why a fault could not be made.
#[derive(Debug)]
pub enum FaultError {
    /// The target does not exist (the message names what does).
    NotFound(String),
    /// The target cannot take it, or the kernel cannot do it.
    Invalid(String),
    Failed(String),
}

impl From<crate::cluster::objects::ObjectError> for FaultError {
    fn from(e: crate::cluster::objects::ObjectError) -> Self {
        use crate::cluster::objects::ObjectError;
        match e {
            ObjectError::NotFound { .. } => FaultError::NotFound(e.to_string()),
            e => FaultError::Invalid(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for FaultError {
    fn from(e: crate::store::StoreError) -> Self {
        FaultError::Failed(e.to_string())
    }
}

impl From<NetError> for FaultError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Refused { .. } => FaultError::Invalid(e.to_string()),
            e => FaultError::Failed(e.to_string()),
        }
    }
}

const TARGETS: &str = "write node/NODE, pod/POD (with its namespace) or host/external";

fn require_node(st: &ClusterState, lab: &str, node: &str) -> Result<(), FaultError> {
    let names: Vec<&str> = st
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    if names.contains(&node) {
        return Ok(());
    }
    Err(FaultError::NotFound(format!(
        "nodes {node:?} not found in lab {lab} (nodes: {})",
        names.join(", ")
    )))
}

/// The network namespace whose `eth0` is `target`'s.
fn netns_of(
    st: &ClusterState,
    lab: &str,
    target: &str,
    namespace: &str,
) -> Result<String, FaultError> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| FaultError::Invalid(format!("{target:?}: {TARGETS}")))?;
    match kind {
        "node" | "nodes" | "no" => {
            require_node(st, lab, name)?;
            Ok(paths::node_netns(lab, name))
        }
        "pod" | "pods" | "po" => {
            let pod = st
                .pods
                .iter()
                .find(|p| {
                    state::namespace(&p.metadata) == namespace
                        && p.metadata.name.as_deref() == Some(name)
                })
                .ok_or_else(|| {
                    FaultError::NotFound(format!(
                        "pods {name:?} not found in namespace {namespace:?} of lab {lab}"
                    ))
                })?;
            if host_network::is_host_network(pod) {
                return Err(FaultError::Invalid(format!(
                    "pod {namespace}/{name} is on its node's network (hostNetwork): put netem on node/{} instead",
                    state::pod_node(pod).unwrap_or("NODE")
                )));
            }
            Ok(paths::pod_netns(lab, namespace, name))
        }
        "host" | "hosts" if name == crate::lab::config::EXTERNAL_HOST => {
            Ok(paths::host_netns(lab, name))
        }
        _ => Err(FaultError::Invalid(format!("{target:?}: {TARGETS}"))),
    }
}

/// Puts `netem` on `target`'s `eth0`, or takes it away (None). What was
/// done, in a line.
pub async fn set_netem(
    lab: &str,
    store: &ObjectStore,
    target: &str,
    namespace: &str,
    netem: Option<&Netem>,
) -> Result<String, FaultError> {
    let netns = netns_of(&store.snapshot().state, lab, target, namespace)?;
    net::set_netem(&netns, "eth0", netem).await?;
    Ok(match netem {
        Some(n) => format!("{target}: netem {}", n.describe()),
        None => format!("{target}: netem cleared"),
    })
}

/// What netem is in force on the lab's nodes, pods and external host:
/// (target, tc's words for it).
pub async fn list_netem(lab: &str, store: &ObjectStore) -> Vec<(String, String)> {
    let mut targets: Vec<(String, String)> = Vec::new();
    {
        let snapshot = store.snapshot();
        let st = &snapshot.state;
        for n in st.nodes.iter().filter_map(|n| n.metadata.name.as_deref()) {
            targets.push((format!("node/{n}"), paths::node_netns(lab, n)));
        }
        for p in st.pods.iter().filter(|p| !host_network::is_host_network(p)) {
            let (ns, name) = (
                state::namespace(&p.metadata),
                p.metadata.name.as_deref().unwrap_or_default(),
            );
            targets.push((format!("pod/{ns}/{name}"), paths::pod_netns(lab, ns, name)));
        }
    }
    let external = crate::lab::config::EXTERNAL_HOST;
    targets.push((format!("host/{external}"), paths::host_netns(lab, external)));
    let mut rows = Vec::new();
    for (target, netns) in targets {
        // A pod starting or going has no namespace for a moment.
        if let Ok(Some(n)) = net::get_netem(&netns, "eth0").await {
            rows.push((target, n.describe()));
        }
    }
    rows
}

/// Takes node `node`'s ports on the lab's bridges down or up. What was
/// done, in a line.
pub async fn set_links(
    lab: &str,
    store: &ObjectStore,
    node: &str,
    up: bool,
) -> Result<String, FaultError> {
    require_node(&store.snapshot().state, lab, node)?;
    net::set_links(&paths::dc_netns(lab), &super::power::ports(node), up).await?;
    Ok(format!(
        "node/{node}: links {}",
        if up { "up" } else { "down" }
    ))
}
