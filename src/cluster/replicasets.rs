//! The ReplicaSet controller (kube-controller-manager's `replicaset`): each
//! ReplicaSet keeps `spec.replicas` live pods of its template, named
//! `<replicaset>-<5 safe characters>` and owned by it through a controller
//! ownerReference. It adopts orphan pods its selector matches, creates what
//! is missing and deletes the surplus in `ActivePods` order (unscheduled,
//! then not running, then not ready, then the newest first), and writes its
//! status from the pods it owns. Pure: the lab's process then starts and
//! stops the pods.

use super::collection::Collection;
use super::events::Involved;
use super::names;
use super::state::{namespace, pod_node, pod_ready, time, uid, ClusterState, StateError};
use super::Selector;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{HashMap, HashSet};

/// The label the Deployment controller puts on a ReplicaSet, its selector,
/// its template and so its pods.
pub const HASH_LABEL: &str = "pod-template-hash";

/// The controller ownerReference of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta`'s controller is the object with uid `owner`.
pub fn controlled_by(meta: &ObjectMeta, owner: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == owner)
}

/// The pods that are not being deleted, by their controller's (namespace,
/// uid), as indexes into `pods`: one pass instead of a scan of every pod
/// per ReplicaSet (half a million looks at 500 ReplicaSets of 1 000 pods).
pub fn live_pods_by_controller(pods: &Collection<Pod>) -> HashMap<(&str, &str), Vec<usize>> {
    let mut out: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, p) in pods.iter().enumerate() {
        let m = &p.metadata;
        if m.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(o) = controller_of(m) {
            out.entry((namespace(m), o.uid.as_str()))
                .or_default()
                .push(i);
        }
    }
    out
}

/// A controller ownerReference to `owner`, as controllers write them.
pub fn owner_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A ReplicaSet's desired count (`spec.replicas`, default 1).
pub fn desired(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The selector of a ReplicaSet or Deployment, its `matchLabels` (the only
/// form netlab's lab files and controllers write). None when empty: an
/// empty selector adopts nothing.
pub fn selector_of(
    s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<Selector> {
    s.match_labels
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(Selector::from_labels)
}

/// A new pod of a ReplicaSet, named as the ReplicaSet controller names them
/// (`generateName: <rs>-`).
pub fn pod_for(rs: &ReplicaSet, now: DateTime<Utc>, rng: &mut impl rand::Rng) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = Some(names::generated(&rs_name, rng));
    meta.generate_name = Some(format!("{rs_name}-"));
    meta.namespace = rs.metadata.namespace.clone();
    meta.creation_timestamp = Some(time(now));
    meta.uid = Some(uid(rng));
    meta.owner_references = Some(vec![owner_ref("apps/v1", "ReplicaSet", &rs.metadata)]);
    Pod {
        metadata: meta,
        spec: template.spec,
        status: None,
    }
}

/// The order in which a ReplicaSet deletes its surplus pods
/// (`controller.ActivePods`, simplified): unscheduled before scheduled,
/// not running before running, not ready before ready, newer before older
/// (pods are kept in creation order, so a later index is newer).
pub fn deletion_order(pods: &[&Pod]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..pods.len()).collect();
    let running = |p: &Pod| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            || p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
    };
    idx.sort_by_key(|&i| {
        let p = pods[i];
        (
            pod_node(p).is_some(),
            running(p),
            pod_ready(p),
            std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            std::cmp::Reverse(i),
        )
    });
    idx
}

/// [`live_pods_by_controller`] with owned keys (for a loop that edits
/// the pods).
fn owned_index(pods: &Collection<Pod>) -> HashMap<(String, String), Vec<usize>> {
    live_pods_by_controller(pods)
        .into_iter()
        .map(|((ns, uid), v)| ((ns.to_string(), uid.to_string()), v))
        .collect()
}

impl ClusterState {
    /// The ReplicaSet controller's step for every ReplicaSet. Returns
    /// whether anything changed.
    pub(super) fn sync_replica_sets(
        &mut self,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> Result<bool, StateError> {
        let mut changed = false;
        let uids: HashSet<String> = self
            .replica_sets
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .collect();
        // Only pods with no controller, or one no ReplicaSet is, can be
        // adopted: usually none or a few (a bare pod, `kubectl run`), and
        // each ReplicaSet looks at those only (looking at every pod made a
        // step of a 1 000-pod lab of 500 ReplicaSets cost 25 ms).
        let orphans = |pods: &Collection<Pod>| -> Vec<usize> {
            (0..pods.len())
                .filter(|&i| {
                    let m = &pods[i].metadata;
                    m.deletion_timestamp.is_none()
                        && controller_of(m).is_none_or(|o| !uids.contains(&o.uid))
                })
                .collect()
        };
        let mut orphaned = orphans(&self.pods);
        // A ReplicaSet's step marks only its own pods and adds pods at the
        // end: the index stays right for the others, unless one adopts.
        let mut by_owner: HashMap<(String, String), Vec<usize>> = owned_index(&self.pods);
        for i in 0..self.replica_sets.len() {
            let rs = self.replica_sets[i].clone();
            if !orphaned.is_empty() && self.adopt_pods(&rs, &orphaned) {
                changed = true;
                by_owner = owned_index(&self.pods);
                orphaned = orphans(&self.pods);
            }
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            let ns = namespace(&rs.metadata).to_string();
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            let owned: Vec<usize> = by_owner
                .get(&(ns.clone(), rs_uid.clone()))
                .cloned()
                .unwrap_or_default();
            let want = desired(&rs) as usize;
            // Why pods could not be made this pass (kube's ReplicaFailure).
            let mut failure = None;
            let who = Involved {
                kind: "ReplicaSet",
                namespace: &ns,
                name: &rs_name,
            };
            if owned.len() > want {
                let pods: Vec<&Pod> = owned.iter().map(|&p| &self.pods[p]).collect();
                let victims: Vec<usize> = deletion_order(&pods)
                    .into_iter()
                    .take(owned.len() - want)
                    .map(|k| owned[k])
                    .collect();
                for v in victims {
                    self.pods[v].metadata.deletion_timestamp = Some(time(now));
                    let pod = self.pods[v].metadata.name.clone().unwrap_or_default();
                    self.record(
                        who.clone(),
                        "Normal",
                        "SuccessfulDelete",
                        "replicaset-controller",
                        format!("Deleted pod: {pod}"),
                        now,
                    );
                }
                changed = true;
            }
            for _ in owned.len()..want {
                let mut pod = pod_for(&rs, now, rng);
                // 5 random characters collide now and then (birthday odds:
                // ~3 % at 1 000 replicas): never reuse a name that exists.
                while self
                    .pods
                    .iter()
                    .any(|p| p.metadata.name == pod.metadata.name && namespace(&p.metadata) == ns)
                {
                    pod = pod_for(&rs, now, rng);
                }
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                match self.place(pod) {
                    // kube-apiserver refuses the pods: the ReplicaSet says
                    // why, and tries again at its next pass.
                    Err(StateError::Forbidden(m)) => {
                        let message = format!("Error creating: {m}");
                        changed |= self.record_failure(
                            who,
                            "FailedCreate",
                            "replicaset-controller",
                            message,
                            now,
                        );
                        failure = Some(m);
                        break;
                    }
                    placed => placed?,
                }
                self.record(
                    who.clone(),
                    "Normal",
                    "SuccessfulCreate",
                    "replicaset-controller",
                    format!("Created pod: {pod_name}"),
                    now,
                );
                changed = true;
            }
            changed |= replica_failure(&mut self.replica_sets[i], failure, now);
        }
        Ok(changed)
    }

    /// Of the `orphaned` pods (no controller, or one with a uid no
    /// ReplicaSet has: state written before ReplicaSets were objects),
    /// those whose controller is this ReplicaSet by name, or that have
    /// none and match its selector, become its own.
    fn adopt_pods(&mut self, rs: &ReplicaSet, orphaned: &[usize]) -> bool {
        let ns = namespace(&rs.metadata).to_string();
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let selector = rs.spec.as_ref().and_then(|s| selector_of(&s.selector));
        let mut changed = false;
        for &i in orphaned {
            let m = &self.pods[i].metadata;
            if namespace(m) != ns {
                continue;
            }
            let adopt = match controller_of(m) {
                Some(o) => o.kind == "ReplicaSet" && o.name == rs_name,
                None => selector
                    .as_ref()
                    .is_some_and(|s| s.matches(m.labels.as_ref())),
            };
            if adopt {
                let p = &mut self.pods[i];
                let refs = p.metadata.owner_references.get_or_insert_with(Vec::new);
                refs.retain(|o| o.controller != Some(true));
                refs.push(owner_ref("apps/v1", "ReplicaSet", &rs.metadata));
                changed = true;
            }
        }
        changed
    }

    /// Every ReplicaSet's status from the pods it owns. Returns whether one
    /// changed.
    pub(super) fn refresh_replica_set_status(&mut self) -> bool {
        let mut changed = false;
        let by_owner = live_pods_by_controller(&self.pods);
        for i in 0..self.replica_sets.len() {
            let rs = &self.replica_sets[i];
            let rs_uid = rs.metadata.uid.as_deref().unwrap_or_default();
            let ns = namespace(&rs.metadata);
            let owned: Vec<&Pod> = by_owner
                .get(&(ns, rs_uid))
                .into_iter()
                .flatten()
                .map(|&p| &self.pods[p])
                .collect();
            let total = owned.len() as i32;
            let ready = owned.iter().filter(|p| pod_ready(p)).count() as i32;
            // Kubernetes omits zero counts (omitempty), all but `replicas`.
            let nz = |n: i32| (n != 0).then_some(n);
            let status = ReplicaSetStatus {
                replicas: total,
                fully_labeled_replicas: nz(total),
                ready_replicas: nz(ready),
                // minReadySeconds is 0 here: available as soon as ready.
                available_replicas: nz(ready),
                observed_generation: rs.metadata.generation,
                conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
                ..Default::default()
            };
            if rs.status.as_ref() != Some(&status) {
                self.replica_sets[i].status = Some(status);
                changed = true;
            }
        }
        changed
    }

    /// A ReplicaSet by namespace and name.
    pub fn replica_set(&self, ns: &str, name: &str) -> Option<&ReplicaSet> {
        self.replica_sets
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name) && namespace(&r.metadata) == ns)
    }
}

/// The ReplicaSet's `ReplicaFailure` condition, as the ReplicaSet
/// controller keeps it: set (FailedCreate) while its pods are refused,
/// removed once a pass makes them. Returns whether it changed.
fn replica_failure(rs: &mut ReplicaSet, failure: Option<String>, now: DateTime<Utc>) -> bool {
    let had = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "ReplicaFailure"))
    };
    if failure.is_none() && !had(rs) {
        return false;
    }
    let status = rs.status.get_or_insert_with(Default::default);
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let before = conds.clone();
    match failure {
        Some(message) => {
            if !conds
                .iter()
                .any(|c| c.type_ == "ReplicaFailure" && c.message.as_deref() == Some(&message))
            {
                conds.retain(|c| c.type_ != "ReplicaFailure");
                conds.push(ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some("FailedCreate".into()),
                    message: Some(message),
                    last_transition_time: Some(time(now)),
                });
            }
        }
        None => conds.retain(|c| c.type_ != "ReplicaFailure"),
    }
    let changed = *conds != before;
    if conds.is_empty() {
        status.conditions = None;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(node: bool, ready: bool, secs: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(DateTime::from_timestamp(secs, 0).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.then(|| "node-1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(if ready { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn surplus_pods_go_unscheduled_then_unready_then_newest_first() {
        let pods = [
            pod(true, true, 10),  // 0: old, ready
            pod(true, true, 20),  // 1: newer, ready
            pod(true, false, 5),  // 2: not ready
            pod(false, false, 1), // 3: not even scheduled
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(deletion_order(&refs), [3, 2, 1, 0]);
    }

    #[test]
    fn owner_references_are_controller_references() {
        let meta = ObjectMeta {
            name: Some("my-nginx-abc".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        };
        let o = owner_ref("apps/v1", "ReplicaSet", &meta);
        assert_eq!(
            (o.controller, o.block_owner_deletion, o.name.as_str()),
            (Some(true), Some(true), "my-nginx-abc")
        );
        let child = ObjectMeta {
            owner_references: Some(vec![o]),
            ..Default::default()
        };
        assert!(controlled_by(&child, "u-1"));
        assert!(!controlled_by(&child, "u-2"));
    }
}
