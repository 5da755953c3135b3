//! The cluster DNS in the controller: one server per `coredns` pod, in that
//! pod's network namespace, answering from a zone rebuilt whenever the
//! lab's state file changes (checked every [`WATCH`], so answers follow
//! object changes within tens of milliseconds).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cluster::{dns as cdns, state, ClusterState};
use crate::dns::{Handler, Server, SharedZone, Zone};
use crate::net::NetNs;
use crate::paths;

/// How often the state file is checked for changes.
const WATCH: Duration = Duration::from_millis(20);

/// The lab's DNS servers, by pod (`namespace/name`).
pub struct DnsServers {
    zone: SharedZone,
    servers: HashMap<String, Server>,
}

impl DnsServers {
    /// Starts watching the lab's state file; servers start in [`sync`].
    pub fn start(lab: &str) -> DnsServers {
        let dir = paths::lab_dir(lab);
        let zone = match ClusterState::load(&dir) {
            Ok(st) => Zone::build(&st),
            Err(_) => Zone::empty(
                crate::lab::config::DEFAULT_SERVICE_CIDR
                    .parse()
                    .expect("cidr"),
                crate::lab::config::DEFAULT_POD_CIDR.parse().expect("cidr"),
            ),
        };
        let zone = SharedZone::new(zone);
        tokio::spawn(watch(dir.join(state::STATE_FILE), dir, zone.clone()));
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
        for pod in st.pods.iter_mut().filter(|p| cdns::is_builtin(p)) {
            let ns = state::namespace(&pod.metadata).to_string();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            let running = pod.metadata.deletion_timestamp.is_none()
                && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let (Some(ip), true) = (state::pod_ip(pod), running) else {
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
            if state::pod_ready(pod) != ready {
                super::pods::set_ready(pod, ready);
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

/// Rebuilds the zone whenever the state file is replaced (it is written
/// with a rename, so a new inode or mtime means new content).
async fn watch(file: PathBuf, dir: PathBuf, zone: SharedZone) {
    let stamp = |f: &PathBuf| -> Option<(u64, SystemTime, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(f).ok()?;
        Some((m.ino(), m.modified().ok()?, m.len()))
    };
    let mut last = stamp(&file);
    loop {
        tokio::time::sleep(WATCH).await;
        let now = stamp(&file);
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        if let Ok(st) = ClusterState::load(&dir) {
            zone.set(Zone::build(&st));
        }
    }
}
