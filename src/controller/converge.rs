//! The lab's process making the host match the state after a change: one
//! level-based step (start pending pods, remove deleted ones). Endpoints and rules follow in the service plane.

use super::{pods, ControllerError};
use crate::cluster::nodes::kubelet_silent;
use crate::cluster::ClusterState;
use crate::paths;
use crate::runtime::{Progress, Runc, Store};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A task that ended: the store keys of its pods, and what went wrong.
type Ended = (Vec<String>, Vec<String>);

/// Work on pods that goes on while the loop steps, by the pods' store
/// keys; the loop is woken when a task ends.
#[derive(Default)]
pub struct Tasks {
    running: HashSet<String>,
    done: Arc<Mutex<Vec<Ended>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Tasks {
    /// A pod's key.
    pub fn key(p: &Pod) -> String {
        crate::store::key("pods", &p.metadata)
    }

    /// Runs `work` (which answers its errors) for the pods `keys`.
    pub fn spawn(
        &mut self,
        keys: Vec<String>,
        work: impl std::future::Future<Output = Vec<String>> + Send + 'static,
    ) {
        self.running.extend(keys.iter().cloned());
        let (done, wake) = (self.done.clone(), self.wake.clone());
        tokio::spawn(async move {
            let errors = work.await;
            done.lock().expect("tasks").push((keys, errors));
            wake.notify_one();
        });
    }

    /// The tasks that ended since the last call.
    pub fn finished(&mut self) -> Vec<Ended> {
        let done = std::mem::take(&mut *self.done.lock().expect("tasks"));
        for k in done.iter().flat_map(|(keys, _)| keys) {
            self.running.remove(k);
        }
        done
    }

    /// Whether a task for the pod runs (or ended, not yet collected).
    pub fn busy_with(&self, p: &Pod) -> bool {
        let key = Tasks::key(p);
        self.running.contains(&key)
            && !self
                .done
                .lock()
                .expect("tasks")
                .iter()
                .any(|(keys, _)| keys.contains(&key))
    }

    /// Whether a task under way holds `key` (ended ones not yet collected
    /// included: the loop collects them at its next step).
    pub fn holds(&self, key: &str) -> bool {
        self.running.contains(key)
    }

    /// How many pods have a task under way.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Resolves when a task ends.
    pub async fn ended(&self) {
        self.wake.notified().await
    }
}

/// What the lab's loop has going on in the background: pods being removed
/// (a grace period may last 30 s), pods just started, until they serve
/// (up to 60 s), and what no pod owns being removed (keyed by its names,
/// see [`super::orphans::Unowned::keys`]).
#[derive(Default)]
pub struct Background {
    pub removals: Tasks,
    pub starts: Tasks,
    pub sweeps: Tasks,
}

impl Background {
    /// How many pods (or names no pod owns) are being started or removed.
    pub fn busy(&self) -> usize {
        self.removals.running() + self.starts.running() + self.sweeps.running()
    }

    /// Resolves when a task ends.
    pub async fn ended(&self) {
        tokio::select! {
            _ = self.removals.ended() => {}
            _ = self.starts.ended() => {}
            _ = self.sweeps.ended() => {}
        }
    }

    /// Pods whose wait ended: those that serve are marked ready; the
    /// errors of the others. Returns whether a pod changed.
    pub fn served(&mut self, st: &mut ClusterState) -> (bool, Vec<String>) {
        let mut changed = false;
        let mut errors = Vec::new();
        for (keys, e) in self.starts.finished() {
            if e.is_empty() {
                let pods: Vec<(String, String)> = keys
                    .iter()
                    .filter_map(|k| {
                        let mut parts = k.splitn(3, '/').skip(1);
                        Some((parts.next()?.to_string(), parts.next()?.to_string()))
                    })
                    .collect();
                changed |= pods::mark_serving(st, &pods);
            }
            errors.extend(e);
        }
        (changed, errors)
    }
}

/// One step towards the state: pods stopped and started (the service
/// plane follows with Endpoints and the rules). `plane` is how far the
/// service plane is, `seen` the store's revision that `st` holds.
pub async fn converge(
    lab: &str,
    st: &mut ClusterState,
    bg: &mut Background,
    plane: &tokio::sync::watch::Receiver<u64>,
    seen: u64,
) -> Result<(), ControllerError> {
    // Deployments first: a deleted pod of a Deployment is replaced (with a
    // new name and address), a changed template rolls its pods.
    st.reconcile_workloads(chrono::Utc::now(), &mut rand::rng())?;

    // Nothing of a pod on a node a drill stopped is started or removed: its
    // kubelet is silent (its deleted pods stay Terminating, as Kubernetes
    // shows them, until the node starts again).
    let stopped = st.stopped_nodes();
    // Pods marked for deletion: their endpoints leave the rules first (the
    // service plane takes a terminating pod out of Endpoints, as Kubernetes
    // does), then they stop, in the background (a grace period may last
    // 30 s); a pod leaves the store once its containers and network are gone.
    if st
        .pods
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_some())
    {
        // Removals that ended first: their pods leave the store (and are not
        // removed a second time below).
        let mut errors = Vec::new();
        for (keys, e) in bg.removals.finished() {
            st.pods.retain(|p| {
                p.metadata.deletion_timestamp.is_none() || !keys.contains(&Tasks::key(p))
            });
            errors.extend(e);
        }
        let doomed: Vec<Pod> = st
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter(|p| !kubelet_silent(p, &stopped))
            .cloned()
            .collect();
        for p in &doomed {
            // Under way, or ended after the collection above (collected at
            // the next step).
            if bg.removals.holds(&Tasks::key(p)) {
                continue;
            }
            let (lab, pod, mut plane) = (lab.to_string(), p.clone(), plane.clone());
            bg.removals.spawn(vec![Tasks::key(p)], async move {
                // Out of every node's rules first (bounded: a plane that
                // fails to sync must not keep a pod from stopping).
                let _ = tokio::time::timeout(RULES_FIRST, plane.wait_for(|r| *r >= seen)).await;
                pods::remove_pod(&lab, &pod).await
            });
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
    let pending: Vec<&Pod> = st
        .pods
        .iter()
        .filter(|p| pods::is_pending(p) && !kubelet_silent(p, &stopped))
        .collect();
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
        let (count, t) = (pending.len(), std::time::Instant::now());
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
        let network = t.elapsed();
        let runc = Runc::new(&paths::runc_root(lab));
        let pids = pods::start_all(lab, st, &store, &images, &runc).await?;
        // The scale benchmark reads the containers' share from this line.
        tracing::info!(
            lab,
            pods = count,
            network_ms = network.as_millis() as u64,
            containers_ms = (t.elapsed() - network).as_millis() as u64,
            "pods started"
        );
        // They are ready once they serve: checked in the background.
        let check = pods::serving(lab, st, &pids, Duration::from_secs(60));
        let keys = check
            .pods()
            .into_iter()
            .map(|(ns, name)| format!("pods/{ns}/{name}"))
            .collect();
        bg.starts.spawn(keys, async move {
            check
                .wait()
                .await
                .err()
                .map(|e| vec![e.to_string()])
                .unwrap_or_default()
        });
    }

    st.refresh_deployment_status();
    Ok(())
}

/// How long a pod's removal waits for its endpoints to leave the rules.
const RULES_FIRST: Duration = Duration::from_secs(2);
