//! A drill's power switch for a node (`netlab node stop|start|restart`),
//! run by the lab's process when its API is asked
//! (`POST /netlab/nodes/NODE/stop|start`).
//!
//! Stop is a power cut: the node is marked stopped in the store first (its
//! kubelet twin falls silent: nothing on it is restarted, started or
//! removed), then its containers are killed and its ports on the lab's LAN
//! and public bridges go down. What Kubernetes makes of a silent node
//! follows on the lab's clock (`cluster::nodes`). Start brings the ports
//! up and unmarks the node: it is Ready again, and its kubelet twin
//! restarts the pods' containers and finishes what was deleted meanwhile.

use super::faults::FaultError;
use crate::cluster::state;
use crate::net;
use crate::paths;
use crate::runtime::Runc;

/// The API path of the switch: `/netlab/nodes/NODE/stop` or `…/start`.
pub const PATH_PREFIX: &str = "/netlab/nodes/";

/// The node and the action (`true`: start) a path asks for.
pub fn parse(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (node, action) = rest.split_once('/')?;
    match action {
        "stop" => Some((node, false)),
        "start" => Some((node, true)),
        _ => None,
    }
}

/// The node's ports on the lab's bridges (in the datacenter namespace).
pub fn ports(node: &str) -> Vec<String> {
    vec![net::ifname("n-", node), net::ifname("p-", node)]
}

/// Stops (`on` false) or starts node `node`; what was done, in a line.
pub async fn switch(
    lab: &str,
    store: &crate::store::ObjectStore,
    node: &str,
    on: bool,
) -> Result<String, FaultError> {
    let now = chrono::Utc::now();
    if on {
        net::set_links(&paths::dc_netns(lab), &ports(node), true).await?;
    }
    let changed = store.update(|st| st.set_power(node, on, now).map_err(FaultError::from))?;
    if !changed {
        let already = if on { "runs" } else { "is stopped" };
        return Ok(format!("node/{node} {already} already"));
    }
    if on {
        return Ok(format!("node/{node} started"));
    }
    // The power cut: every container of the node's pods, then its links.
    let runc = Runc::new(&paths::runc_root(lab));
    let snapshot = store.snapshot();
    let ids: Vec<String> = snapshot
        .state
        .pods
        .iter()
        .filter(|p| state::pod_node(p) == Some(node))
        .flat_map(|p| {
            let ns = state::namespace(&p.metadata).to_string();
            let name = p.metadata.name.clone().unwrap_or_default();
            p.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(move |c| paths::container_id(&ns, &name, &c.name))
                .collect::<Vec<_>>()
        })
        .collect();
    let kills = ids.iter().map(|id| runc.kill(id, "SIGKILL"));
    let killed = futures::future::join_all(kills)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    net::set_links(&paths::dc_netns(lab), &ports(node), false).await?;
    tracing::info!(lab, node, killed, "node stopped by a drill");
    Ok(format!("node/{node} stopped"))
}

/// The API path of a partition: `/netlab/partition?a=NODE&b=NODE&heal=BOOL`.
pub const PARTITION_PATH: &str = "/netlab/partition";

/// Cuts nodes `a` and `b` off from each other (or heals the cut): the
/// store says so, and every node's rules follow (`proxy::rules`'s
/// partition chains). What was done, in a line.
pub fn partition(
    store: &crate::store::ObjectStore,
    a: &str,
    b: &str,
    heal: bool,
) -> Result<String, FaultError> {
    let changed = store.update(|st| st.set_partition(a, b, !heal).map_err(FaultError::from))?;
    Ok(match (heal, changed) {
        (false, true) => format!("node/{a} and node/{b} partitioned"),
        (false, false) => format!("node/{a} and node/{b} are partitioned already"),
        (true, true) => format!("node/{a} and node/{b} healed"),
        (true, false) => format!("node/{a} and node/{b} were not partitioned"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_name_a_node_and_an_action() {
        assert_eq!(
            super::parse("/netlab/nodes/node-1/stop"),
            Some(("node-1", false))
        );
        assert_eq!(
            super::parse("/netlab/nodes/node-2/start"),
            Some(("node-2", true))
        );
        assert_eq!(super::parse("/netlab/nodes/node-2/reboot"), None);
        assert_eq!(super::parse("/netlab/nodes/node-2"), None);
    }
}
