//! The lab's process making the host match the state after a change: one
//! level-based step (start pending pods, remove deleted ones, recompute
//! Endpoints, sync every node's service rules), under the lab's lock.

use super::{pods, proxier, ControllerError};
use crate::cluster::ClusterState;
use crate::paths;
use crate::runtime::{Progress, Runc, Store};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An exclusive lock on a lab: every command that changes it holds one, so
/// two `netlab` commands never interleave their changes.
pub struct LabLock {
    _file: nix::fcntl::Flock<File>,
}

impl LabLock {
    pub fn acquire(lab: &str) -> Result<LabLock, ControllerError> {
        let dir = paths::lab_dir(lab);
        paths::create_lab_dir(lab).map_err(|e| ControllerError::io(&dir, e))?;
        let path = dir.join("lock");
        let file = File::create(&path).map_err(|e| ControllerError::io(&path, e))?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| ControllerError::io(&path, e.into()))?;
        Ok(LabLock { _file: file })
    }
}

/// A removal that ended: the pod's store key, and what went wrong.
type Ended = (String, Vec<String>);

/// Pods being stopped and removed in the background, by store key; the
/// loop is woken when one is done.
#[derive(Default)]
pub struct Removals {
    running: HashSet<String>,
    done: Arc<Mutex<Vec<Ended>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Removals {
    fn key(p: &Pod) -> String {
        crate::store::key("pods", &p.metadata)
    }

    /// Starts removing the pods not being removed yet; returns those.
    pub fn start<'a>(&mut self, lab: &str, pods: &'a [Pod]) -> Vec<&'a Pod> {
        let mut started = Vec::new();
        for p in pods {
            let key = Removals::key(p);
            if !self.running.insert(key.clone()) {
                continue;
            }
            tracing::debug!(lab, pod = %key, "removing");
            let (lab, pod) = (lab.to_string(), p.clone());
            let (done, wake) = (self.done.clone(), self.wake.clone());
            tokio::spawn(async move {
                let errors = pods::remove_pod(&lab, &pod).await;
                done.lock().expect("removals").push((key, errors));
                wake.notify_one();
            });
            started.push(p);
        }
        started
    }

    /// The removals that ended since the last call, with their errors.
    pub fn finished(&mut self) -> Vec<Ended> {
        let done = std::mem::take(&mut *self.done.lock().expect("removals"));
        for (key, _) in &done {
            self.running.remove(key);
        }
        done
    }

    /// Whether a pod's removal is under way (or ended, not yet collected).
    pub fn busy_with(&self, p: &Pod) -> bool {
        self.running.contains(&Removals::key(p))
            && !self
                .done
                .lock()
                .expect("removals")
                .iter()
                .any(|(k, _)| *k == Removals::key(p))
    }

    /// How many removals are under way.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Resolves when a removal ends.
    pub async fn ended(&self) {
        self.wake.notified().await
    }
}

/// One step towards the state: pods first (so Endpoints see them), then
/// Endpoints, then the proxy rules on every node.
pub async fn converge(
    lab: &str,
    st: &mut ClusterState,
    removals: &mut Removals,
) -> Result<(), ControllerError> {
    // Deployments first: a deleted pod of a Deployment is replaced (with a
    // new name and address), a changed template rolls its pods.
    st.reconcile_workloads(chrono::Utc::now(), &mut rand::rng())?;

    // Pods marked for deletion: their endpoints leave the rules first (as
    // Kubernetes removes a terminating pod from Endpoints), then they stop,
    // in the background (a grace period may last 30 s); a pod leaves the
    // store once its containers and network are gone.
    if st
        .pods
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_some())
    {
        st.refresh_endpoints();
        proxier::sync_all(lab, st).await?;
        let doomed: Vec<Pod> = st
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .cloned()
            .collect();
        for p in removals.start(lab, &doomed) {
            let who = crate::cluster::events::involved("Pod", &p.metadata);
            for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
                st.record(
                    who.clone(),
                    "Normal",
                    "Killing",
                    "kubelet",
                    format!("Stopping container {}", c.name),
                    chrono::Utc::now(),
                );
            }
        }
        let mut errors = Vec::new();
        for (key, e) in removals.finished() {
            st.pods
                .retain(|p| p.metadata.deletion_timestamp.is_none() || Removals::key(p) != key);
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(ControllerError::Runtime {
                message: errors.join("\n"),
            });
        }
    }

    // Pods no node could take (their hostPorts were taken): the pods
    // removed above may have freed one, as kube-scheduler retries.
    st.schedule_pending()?;

    // Pods placed but not started: network, containers, readiness.
    let pending: Vec<&Pod> = st.pods.iter().filter(|p| pods::is_pending(p)).collect();
    if !pending.is_empty() {
        let store = Store::new(&paths::data_dir());
        let registries = super::images::registries(&st.config)?;
        let wanted = super::images::wanted(
            pending
                .iter()
                .filter(|p| !crate::cluster::dns::is_builtin(p))
                .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter())),
        );
        let images = super::images::ensure(wanted, &store, &registries, &Progress::hidden()).await;
        let plans: Vec<_> = pending
            .iter()
            .filter_map(|p| super::up::pod_plan(st, p))
            .collect();
        let t = std::time::Instant::now();
        // What a killed earlier attempt left of these pods goes first.
        let leftovers: Vec<Pod> = pending
            .iter()
            .filter(|p| {
                let ns = crate::cluster::state::namespace(&p.metadata);
                let name = p.metadata.name.as_deref().unwrap_or_default();
                paths::pod_dir(lab, ns, name).exists()
                    || crate::net::NetNs::exists(&paths::pod_netns(lab, ns, name))
            })
            .map(|p| {
                let mut p = (*p).clone();
                if let Some(s) = p.spec.as_mut() {
                    s.termination_grace_period_seconds = Some(0);
                }
                p
            })
            .collect();
        if !leftovers.is_empty() {
            tracing::info!(
                lab,
                pods = leftovers.len(),
                "removing what an interrupted start left"
            );
            pods::remove_pods(lab, &leftovers).await?;
        }
        crate::net::add_pods(&plans).await?;
        let runc = Runc::new(&paths::runc_root(lab));
        let pids = pods::start_all(lab, st, &store, &images, &runc).await?;
        tracing::debug!(
            lab,
            pods = pids.len(),
            elapsed_ms = t.elapsed().as_millis() as u64,
            "pods started"
        );
        pods::wait_serving(lab, st, &pids, Duration::from_secs(60)).await?;
        tracing::debug!(
            lab,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "pods serving"
        );
    }

    st.refresh_deployment_status();
    st.refresh_endpoints();
    proxier::sync_all(lab, st).await
}
