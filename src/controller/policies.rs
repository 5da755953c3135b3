//! The network policy twin: every node's `ip netlab-policy` table made to
//! say what the lab's NetworkPolicies say, as the network plugin of a
//! cluster does (Kubernetes itself enforces nothing). Run by the service
//! plane after the proxy's rules, so that a settled lab has both.
//!
//! The policies are resolved for the whole lab (`cluster::reachability`),
//! each node's table made from its own isolated pods (`proxy::policy`),
//! and only the difference to what the node has is sent, in one batch. A
//! lab without policies has no such table: the twin costs nothing until
//! the first policy comes, and removes the tables when the last goes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::ControllerError;
use crate::cluster::{reachability, ClusterState, Collection};
use crate::net::NetNs;
use crate::paths;
use crate::proxy::{self, policy, Ruleset};

/// What a sync read, to tell whether anything changed (by pointer).
struct Inputs {
    policies: Collection<NetworkPolicy>,
    pods: Collection<Pod>,
    namespaces: Collection<Namespace>,
    nodes: Vec<String>,
}

#[derive(Default)]
pub struct Twin {
    last: Option<Inputs>,
    /// Per node: the table as applied (absent: the node has none).
    applied: HashMap<String, Ruleset>,
    /// Whether this process has removed tables an earlier one may have
    /// left (it knows nothing of them).
    swept: bool,
}

impl Twin {
    pub async fn sync(&mut self, lab: &str, st: &ClusterState) -> Result<(), ControllerError> {
        let same = self.last.as_ref().is_some_and(|l| {
            l.policies.same(&st.network_policies)
                && l.pods.same(&st.pods)
                && l.namespaces.same(&st.namespaces)
                && l.nodes == st.config.nodes
        });
        if same {
            return Ok(());
        }
        let quiet = st.network_policies.is_empty() && self.applied.is_empty() && self.swept;
        if !quiet {
            let policies: Vec<&NetworkPolicy> = st.network_policies.iter().collect();
            let pods: Vec<&Pod> = st.pods.iter().collect();
            let namespaces: Vec<&Namespace> = st.namespaces.iter().collect();
            let mut wanted = reachability::node_tables(&policies, &pods, &namespaces);
            let mut errors = Vec::new();
            for node in &st.config.nodes {
                if let Err(e) = self.node(lab, node, wanted.remove(node)).await {
                    errors.push(format!("node {node}: {e}"));
                }
            }
            self.swept = true;
            if !errors.is_empty() {
                // Unknown state: the next sync compares nothing and
                // rewrites every table.
                self.last = None;
                self.applied.clear();
                self.swept = false;
                return Err(ControllerError::Runtime {
                    message: format!("syncing network policy rules: {}", errors.join("; ")),
                });
            }
        }
        self.last = Some(Inputs {
            policies: st.network_policies.clone(),
            pods: st.pods.clone(),
            namespaces: st.namespaces.clone(),
            nodes: st.config.nodes.clone(),
        });
        Ok(())
    }

    /// Makes `node`'s table `want` (None: no table).
    async fn node(
        &mut self,
        lab: &str,
        node: &str,
        want: Option<Ruleset>,
    ) -> Result<(), proxy::ProxyError> {
        let old = self.applied.get(node);
        if old.is_none() && want.is_none() && self.swept {
            return Ok(());
        }
        let netns = paths::node_netns(lab, node);
        let ns = NetNs::open(&netns).map_err(|source| proxy::ProxyError::Netns {
            op: "opening",
            netns: netns.clone(),
            source,
        })?;
        let tx = match (old, &want) {
            (_, None) => proxy::ruleset::delete_transaction(),
            (None, Some(new)) => new.create_transaction(),
            (Some(old), Some(new)) => proxy::diff(old, new),
        }
        .in_table(policy::TABLE);
        let commands = tx.commands();
        let res = proxy::netlink::apply(&ns, &tx).await;
        match (res, &want, old.is_some()) {
            (Ok(()), _, _) => {}
            // The table changed behind our back: write it whole.
            (Err(e), Some(new), true) => {
                tracing::warn!(node, error = %e, "network policy diff refused; rewriting the table");
                let tx = new.create_transaction().in_table(policy::TABLE);
                proxy::netlink::apply(&ns, &tx).await?;
            }
            (Err(e), _, _) => {
                self.applied.remove(node);
                return Err(e);
            }
        }
        tracing::debug!(node, commands, "network policy rules synced");
        match want {
            Some(rs) => self.applied.insert(node.to_string(), rs),
            None => self.applied.remove(node),
        };
        Ok(())
    }
}
