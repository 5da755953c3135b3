//! The LoadBalancer speaker: makes every node announce exactly the
//! addresses `cluster::loadbalancer::announcements` gives it (MetalLB's
//! layer-2 mode), and records MetalLB's `nodeAssigned` event when a
//! service's announcing node changes. It remembers what it applied, so a
//! step with nothing new costs no netlink call.

use crate::cluster::loadbalancer::{announcements, ingress_ips};
use crate::cluster::state::namespace;
use crate::cluster::ClusterState;
use crate::paths;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Default)]
pub struct Speaker {
    /// Per node, what it announces now (None: not looked at yet).
    applied: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Speaker {
    /// Applies the announcements; true when an event was recorded.
    pub async fn sync(&mut self, lab: &str, st: &mut ClusterState) -> bool {
        let wanted = announcements(st);
        let mut changed = false;
        for (node, ips) in &wanted {
            if self.applied.get(node) == Some(ips) {
                continue;
            }
            match crate::net::public::announce(&paths::node_netns(lab, node), ips).await {
                Ok((added, removed)) => {
                    if added + removed > 0 {
                        tracing::info!(node = %node, added, removed, "load balancer addresses announced");
                    }
                    let before = self
                        .applied
                        .insert(node.clone(), ips.clone())
                        .unwrap_or_default();
                    for ip in ips.iter().filter(|ip| !before.contains(ip)) {
                        changed |= record_assigned(st, node, *ip);
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "announcing load balancer addresses")
                }
            }
        }
        changed
    }
}

fn record_assigned(st: &mut ClusterState, node: &str, ip: Ipv4Addr) -> bool {
    let Some(svc) = st.services.iter().find(|s| ingress_ips(s).contains(&ip)) else {
        return false;
    };
    let (ns, name) = (
        namespace(&svc.metadata).to_string(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    st.record(
        crate::cluster::events::Involved {
            kind: "Service",
            namespace: &ns,
            name: &name,
        },
        "Normal",
        "nodeAssigned",
        "metallb-speaker",
        format!("announcing from node \"{node}\" with protocol \"layer2\""),
        chrono::Utc::now(),
    );
    true
}
