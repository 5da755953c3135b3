//! The cluster DNS in the controller: one server per `coredns` pod, in that
//! pod's network namespace, answering from a zone rebuilt at each commit
//! of the lab's store (a watch, so answers follow object changes at once).

use std::collections::HashMap;

use crate::cluster::{dns as cdns, state, ClusterState};
use crate::dns::zone::Inputs;
use crate::dns::{Handler, Server, SharedZone, Zone};
use crate::net::NetNs;
use crate::paths;
use crate::store::ObjectStore;

/// The lab's DNS servers, by pod (`namespace/name`).
pub struct DnsServers {
    zone: SharedZone,
    servers: HashMap<String, Server>,
}

impl DnsServers {
    /// Starts following the lab's store; servers start in [`sync`].
    pub fn start(store: &ObjectStore) -> DnsServers {
        let mut changes = store.subscribe();
        let first = changes.borrow_and_update().state.clone();
        let zone = SharedZone::new(Zone::build(&first));
        let mut built = Inputs::of(&first);
        let shared = zone.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let st = changes.borrow_and_update().state.clone();
                // Statuses alone (most commits) leave the zone as it is.
                let inputs = Inputs::of(&st);
                if !inputs.same(&built) {
                    shared.set(Zone::build(&st));
                    built = inputs;
                }
            }
        });
        DnsServers {
            zone,
            servers: HashMap::new(),
        }
    }

    /// Serves every running DNS pod, stops serving those that are gone, and
    /// marks each DNS pod ready exactly when its server runs. Returns whether
    /// a pod's readiness changed.
    pub fn sync(&mut self, lab: &str, st: &mut ClusterState) -> bool {
        let mut changed = false;
        let mut wanted = Vec::new();
        for mut pod in st.pods.iter_mut().filter(|p| cdns::is_builtin(p)) {
            let ns = state::namespace(&pod.metadata).to_string();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            let running = pod.metadata.deletion_timestamp.is_none()
                && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let (Some(ip), true) = (state::pod_ip(&pod), running) else {
                continue;
            };
            wanted.push(key.clone());
            if !self.servers.contains_key(&key) {
                let handler = Handler::new(self.zone.clone(), st.config.dns.upstreams.clone());
                let served = NetNs::open(&paths::pod_netns(lab, &ns, &name))
                    .map_err(|e| e.to_string())
                    .and_then(|netns| Server::serve_in(&netns, ip, handler));
                match served {
                    Ok(server) => {
                        tracing::info!(pod = %key, %ip, "cluster DNS serving");
                        self.servers.insert(key.clone(), server);
                    }
                    Err(e) => tracing::warn!(pod = %key, error = %e, "cluster DNS cannot serve"),
                }
            }
            let ready = self.servers.contains_key(&key);
            if state::pod_ready(&pod) != ready {
                super::pods::set_ready(&mut pod, ready);
                changed = true;
            }
        }
        let gone: Vec<String> = self
            .servers
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(s) = self.servers.remove(&k) {
                tracing::info!(pod = %k, "cluster DNS stopped");
                tokio::spawn(s.stop());
            }
        }
        changed
    }
}
