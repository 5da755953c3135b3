//! The Deployment controller (kube-controller-manager's `deployment`): a
//! Deployment owns one ReplicaSet per pod template it has had, named
//! `<deployment>-<pod-template-hash>`; the ReplicaSets own the pods
//! (`replicasets.rs`). A template change makes a new ReplicaSet and rolls
//! the pods over to it within `maxSurge`/`maxUnavailable` (default 25 %
//! each), or all at once with `Recreate`; old ReplicaSets are scaled to 0
//! and kept (`revisionHistoryLimit`, default 10) for `rollout history`.
//! The status (replicas, updated, ready, available, the Available and
//! Progressing conditions) is what `kubectl rollout status` and `kubectl
//! wait --for=condition=Available` read.
//!
//! The decisions (`fenceposts`, `new_rs_replicas`, `old_rs_replicas`) are
//! pure functions of counts, as in Kubernetes' `deployment/util` and
//! `rolling.go`; the sync applies them to the store one step at a time, and
//! the lab's process calls it again as pods become ready.

use super::events::Involved;
use super::names;
use super::replicasets::{controlled_by, controller_of, desired, owner_ref, HASH_LABEL};
use super::state::{namespace, time, uid, ClusterState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment its ReplicaSets do not copy
/// (`skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// `spec.replicas`, default 1.
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// An int-or-percent of `total`: a percentage rounds up for maxSurge and
/// down for maxUnavailable (`intstr.GetScaledValueFromIntOrPercent`).
fn scaled(v: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    let percent = |p: i32| {
        let x = p as i64 * total as i64;
        (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
    };
    match v {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse().ok()) {
            Some(p) => percent(p),
            None => percent(default_percent),
        },
        None => percent(default_percent),
    }
}

/// `(maxSurge, maxUnavailable)` as numbers of pods (`ResolveFenceposts`);
/// both 0 would deadlock, so maxUnavailable is then 1. Recreate: (0, all).
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let want = replicas(d);
    if is_recreate(d) {
        return (0, want);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), 25, want, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), 25, want, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// The new ReplicaSet's next size in a rolling update (`NewRSNewReplicas`):
/// up towards `replicas`, never past `replicas + max_surge` pods in all.
pub fn new_rs_replicas(replicas: i32, max_surge: i32, all_pods: i32, new_rs: i32) -> i32 {
    let max_total = replicas + max_surge;
    if all_pods >= max_total {
        return new_rs;
    }
    new_rs + (max_total - all_pods).min(replicas - new_rs).max(0)
}

/// The spec and status counts of a ReplicaSet the rolling update reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub available: i32,
}

/// The old ReplicaSets' next sizes, oldest first (`reconcileOldReplicaSets`):
/// unhealthy pods go first, then healthy ones while at least
/// `replicas - max_unavailable` stay available.
pub fn old_rs_replicas(
    replicas: i32,
    max_unavailable: i32,
    new: Counts,
    olds: &[Counts],
) -> Vec<i32> {
    let mut out: Vec<i32> = olds.iter().map(|o| o.replicas).collect();
    let old_pods: i32 = out.iter().sum();
    if old_pods == 0 {
        return out;
    }
    let all = old_pods + new.replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return out;
    }
    // cleanupUnhealthyReplicas
    let mut cleaned = 0;
    for (i, o) in olds.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = out[i] - o.available;
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(max_scaled_down - cleaned);
        out[i] -= down;
        cleaned += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    let available: i32 = new.available + olds.iter().map(|o| o.available).sum::<i32>();
    if available <= min_available {
        return out;
    }
    let total = available - min_available;
    let mut done = 0;
    for r in out.iter_mut() {
        if done >= total {
            break;
        }
        let down = (*r).min(total - done);
        *r -= down;
        done += down;
    }
    out
}

/// Whether a ReplicaSet's template is its Deployment's, but for the
/// `pod-template-hash` label the ReplicaSet's carries (`EqualIgnoreHash`).
/// Compared in place: copying every template to compare it cost a
/// 1 000-pod lab's step 5 ms.
fn same_but_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn labels(t: &PodTemplateSpec) -> Vec<(&String, &String)> {
        t.metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != HASH_LABEL)
            .collect()
    }
    let rest = |t: &PodTemplateSpec| {
        t.metadata.as_ref().map(|m| ObjectMeta {
            labels: None,
            ..m.clone()
        })
    };
    a.spec == b.spec && labels(a) == labels(b) && {
        // Without labels, a missing metadata and an empty one are alike,
        // as they were when the labels were taken out of a copy.
        let (ra, rb) = (rest(a), rest(b));
        ra.unwrap_or_default() == rb.unwrap_or_default()
    }
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn has_annotation(meta: &ObjectMeta, key: &str, value: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        == Some(value)
}

fn set_annotation(meta: &mut ObjectMeta, key: &str, value: String) -> bool {
    let a = meta.annotations.get_or_insert_with(BTreeMap::new);
    if a.get(key) == Some(&value) {
        return false;
    }
    a.insert(key.to_string(), value);
    true
}

/// A Deployment's condition set as `SetDeploymentCondition` does: an
/// unchanged status and reason is left alone; the transition time moves
/// only when the status does.
fn set_condition(
    conds: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    let old = conds.iter().find(|c| c.type_ == type_).cloned();
    if let Some(o) = &old {
        if o.status == status && o.reason.as_deref() == Some(reason) {
            return;
        }
    }
    let transition = match &old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(time(now)),
    };
    conds.retain(|c| c.type_ != type_);
    conds.push(DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(time(now)),
        last_transition_time: transition,
    });
    // Available before Progressing, as kubectl shows them.
    conds.sort_by_key(|c| c.type_ != "Available");
}

impl ClusterState {
    /// The indices of the ReplicaSets a Deployment controls, oldest first.
    fn owned_replica_sets(&self, dep_uid: &str, ns: &str) -> Vec<usize> {
        (0..self.replica_sets.len())
            .filter(|&i| {
                let m = &self.replica_sets[i].metadata;
                namespace(m) == ns && controlled_by(m, dep_uid)
            })
            .collect()
    }

    /// The ReplicaSet of a Deployment's current template, if it has one.
    fn new_replica_set(&self, dep: &Deployment, owned: &[usize]) -> Option<usize> {
        let none = PodTemplateSpec::default();
        let template = dep.spec.as_ref().map_or(&none, |s| &s.template);
        owned.iter().copied().find(|&i| {
            self.replica_sets[i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_but_hash(t, template))
        })
    }

    /// Sets a ReplicaSet's size and its replicas annotations
    /// (`scaleReplicaSetAndRecordEvent`). Returns whether it changed.
    fn scale_replica_set(
        &mut self,
        i: usize,
        to: i32,
        dep: &Deployment,
        now: DateTime<Utc>,
    ) -> bool {
        let (surge, _) = fenceposts(dep);
        let want = replicas(dep);
        let (want_s, max_s) = (want.to_string(), (want + surge).to_string());
        // Read first: a write through `&mut` copies the shared object.
        let rs = &self.replica_sets[i];
        let mut changed = false;
        if !has_annotation(&rs.metadata, DESIRED_REPLICAS, &want_s)
            || !has_annotation(&rs.metadata, MAX_REPLICAS, &max_s)
        {
            let rs = &mut self.replica_sets[i];
            changed |= set_annotation(&mut rs.metadata, DESIRED_REPLICAS, want_s);
            changed |= set_annotation(&mut rs.metadata, MAX_REPLICAS, max_s);
        }
        let from = desired(&self.replica_sets[i]);
        if from == to {
            return changed;
        }
        let rs = &mut self.replica_sets[i];
        rs.spec.get_or_insert_with(Default::default).replicas = Some(to);
        rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(1) + 1);
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let dep_name = dep.metadata.name.as_deref().unwrap_or_default();
        let verb = if to > from { "up" } else { "down" };
        self.record(
            Involved {
                kind: "Deployment",
                namespace: namespace(&dep.metadata),
                name: dep_name,
            },
            "Normal",
            "ScalingReplicaSet",
            "deployment-controller",
            format!("Scaled {verb} replica set {rs_name} to {to} from {from}"),
            now,
        );
        true
    }

    /// A new ReplicaSet for a Deployment's template, of `size` replicas
    /// (`getNewReplicaSet`). Returns its index.
    fn create_replica_set(
        &mut self,
        d: usize,
        revision: i64,
        size: i32,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> usize {
        let dep = self.deployments[d].clone();
        let spec = dep.spec.clone().unwrap_or_default();
        let ns = namespace(&dep.metadata).to_string();
        let dep_name = dep.metadata.name.clone().unwrap_or_default();
        // A ReplicaSet of that name with another template (or owner): the
        // collision count goes up and the hash with it.
        let mut collisions = dep.status.as_ref().and_then(|s| s.collision_count);
        let (hash, rs_name) = loop {
            let hash = names::pod_template_hash(&spec.template, collisions);
            let rs_name = format!("{dep_name}-{hash}");
            if self.replica_set(&ns, &rs_name).is_none() {
                break (hash, rs_name);
            }
            collisions = Some(collisions.unwrap_or(0) + 1);
        };
        if collisions != dep.status.as_ref().and_then(|s| s.collision_count) {
            self.deployments[d]
                .status
                .get_or_insert_with(Default::default)
                .collision_count = collisions;
        }
        let mut template = spec.template.clone();
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash);
        let (surge, _) = fenceposts(&dep);
        let want = replicas(&dep);
        let mut annotations: BTreeMap<String, String> = dep
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(DESIRED_REPLICAS.into(), want.to_string());
        annotations.insert(MAX_REPLICAS.into(), (want + surge).to_string());
        annotations.insert(REVISION.into(), revision.to_string());
        self.replica_sets.push(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &dep.metadata)]),
                uid: Some(uid(rng)),
                creation_timestamp: Some(time(now)),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: Some(Default::default()),
        });
        if size > 0 {
            self.record(
                Involved {
                    kind: "Deployment",
                    namespace: &ns,
                    name: &dep_name,
                },
                "Normal",
                "ScalingReplicaSet",
                "deployment-controller",
                format!("Scaled up replica set {rs_name} to {size}"),
                now,
            );
        }
        self.replica_sets.len() - 1
    }

    /// Orphan ReplicaSets in the Deployment's namespace whose labels its
    /// selector matches become its own (`ClaimReplicaSets`).
    fn adopt_replica_sets(&mut self, dep: &Deployment) -> bool {
        let Some(sel) = dep
            .spec
            .as_ref()
            .and_then(|s| super::replicasets::selector_of(&s.selector))
        else {
            return false;
        };
        let ns = namespace(&dep.metadata).to_string();
        let mut changed = false;
        for mut rs in self.replica_sets.iter_mut() {
            let m = &rs.metadata;
            if namespace(m) == ns
                && controller_of(m).is_none()
                && m.deletion_timestamp.is_none()
                && sel.matches(m.labels.as_ref())
            {
                rs.metadata
                    .owner_references
                    .get_or_insert_with(Vec::new)
                    .push(owner_ref("apps/v1", "Deployment", &dep.metadata));
                changed = true;
            }
        }
        changed
    }

    /// One step of the Deployment controller for every Deployment. Returns
    /// whether anything changed.
    pub(super) fn sync_deployments(
        &mut self,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> bool {
        let mut changed = false;
        // What each Deployment controls, found once (not by a scan of
        // every ReplicaSet per Deployment), and again after a step that
        // changed something (it may have added, adopted or removed some).
        let mut owned = self.replica_sets_by_controller();
        let orphans = self.replica_sets.iter().any(|r| {
            controller_of(&r.metadata).is_none() && r.metadata.deletion_timestamp.is_none()
        });
        for d in 0..self.deployments.len() {
            let step = self.sync_deployment(d, &owned, orphans, now, rng);
            if step {
                owned = self.replica_sets_by_controller();
            }
            changed |= step;
        }
        changed
    }

    /// The indices of the ReplicaSets by their controller's (namespace,
    /// uid), oldest first.
    fn replica_sets_by_controller(&self) -> HashMap<(String, String), Vec<usize>> {
        let mut out: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, r) in self.replica_sets.iter().enumerate() {
            if let Some(o) = controller_of(&r.metadata) {
                out.entry((namespace(&r.metadata).to_string(), o.uid.clone()))
                    .or_default()
                    .push(i);
            }
        }
        out
    }

    fn sync_deployment(
        &mut self,
        d: usize,
        by_controller: &HashMap<(String, String), Vec<usize>>,
        orphans: bool,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> bool {
        let dep = self.deployments[d].clone();
        let dep_uid = dep.metadata.uid.clone().unwrap_or_default();
        let ns = namespace(&dep.metadata).to_string();
        let want = replicas(&dep);
        let (surge, unavailable) = fenceposts(&dep);
        let mut changed = orphans && self.adopt_replica_sets(&dep);
        let owned = if changed {
            self.owned_replica_sets(&dep_uid, &ns)
        } else {
            by_controller
                .get(&(ns.clone(), dep_uid.clone()))
                .cloned()
                .unwrap_or_default()
        };
        let new = self.new_replica_set(&dep, &owned);
        let olds: Vec<usize> = owned.iter().copied().filter(|&i| Some(i) != new).collect();
        let max_old_revision = olds
            .iter()
            .map(|&i| revision(&self.replica_sets[i].metadata))
            .max()
            .unwrap_or(0);
        let spec_sum = |st: &ClusterState, rs: &[usize]| -> i32 {
            rs.iter().map(|&i| desired(&st.replica_sets[i])).sum()
        };
        let status_sum = |st: &ClusterState, rs: &[usize]| -> i32 {
            rs.iter()
                .map(|&i| st.replica_sets[i].status.as_ref().map_or(0, |s| s.replicas))
                .sum()
        };
        let available = |st: &ClusterState, i: usize| -> i32 {
            st.replica_sets[i]
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        };

        if is_recreate(&dep) {
            // Old pods all go before a new one starts.
            for &i in &olds {
                changed |= self.scale_replica_set(i, 0, &dep, now);
            }
            if status_sum(self, &olds) > 0 {
                return changed;
            }
        }
        let new = match new {
            Some(i) => {
                // A template seen before (a rollback) is the newest revision again.
                if revision(&self.replica_sets[i].metadata) <= max_old_revision {
                    set_annotation(
                        &mut self.replica_sets[i].metadata,
                        REVISION,
                        (max_old_revision + 1).to_string(),
                    );
                    changed = true;
                }
                i
            }
            None => {
                let size = if is_recreate(&dep) {
                    want
                } else {
                    new_rs_replicas(want, surge, spec_sum(self, &olds), 0)
                };
                changed = true;
                self.create_replica_set(d, max_old_revision + 1, size, now, rng)
            }
        };
        let rev = revision(&self.replica_sets[new].metadata).to_string();
        if !has_annotation(&self.deployments[d].metadata, REVISION, &rev) {
            changed |= set_annotation(&mut self.deployments[d].metadata, REVISION, rev);
        }

        // reconcileNewReplicaSet: one scaling per step.
        let new_size = desired(&self.replica_sets[new]);
        let target = if new_size > want || is_recreate(&dep) {
            want
        } else {
            let all = new_size + spec_sum(self, &olds);
            new_rs_replicas(want, surge, all, new_size)
        };
        if self.scale_replica_set(new, target, &dep, now) {
            return true;
        }
        // reconcileOldReplicaSets
        let mut active: Vec<usize> = olds
            .iter()
            .copied()
            .filter(|&i| desired(&self.replica_sets[i]) > 0)
            .collect();
        active.sort_by_key(|&i| {
            self.replica_sets[i]
                .metadata
                .creation_timestamp
                .clone()
                .map(|t| t.0)
        });
        let counts: Vec<Counts> = active
            .iter()
            .map(|&i| Counts {
                replicas: desired(&self.replica_sets[i]),
                available: available(self, i),
            })
            .collect();
        let new_counts = Counts {
            replicas: desired(&self.replica_sets[new]),
            available: available(self, new),
        };
        let sizes = old_rs_replicas(want, unavailable, new_counts, &counts);
        for (k, &i) in active.iter().enumerate() {
            changed |= self.scale_replica_set(i, sizes[k], &dep, now);
        }
        changed |= self.clean_up_history(&dep, &olds);
        changed
    }

    /// Old ReplicaSets scaled to 0 and without pods beyond
    /// `revisionHistoryLimit` (default 10) go, oldest revision first.
    fn clean_up_history(&mut self, dep: &Deployment, olds: &[usize]) -> bool {
        let limit = dep
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut idle: Vec<usize> = olds
            .iter()
            .copied()
            .filter(|&i| {
                let rs = &self.replica_sets[i];
                desired(rs) == 0 && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
            })
            .collect();
        if idle.len() <= limit {
            return false;
        }
        idle.sort_by_key(|&i| revision(&self.replica_sets[i].metadata));
        let doomed: Vec<Option<String>> = idle[..idle.len() - limit]
            .iter()
            .map(|&i| self.replica_sets[i].metadata.uid.clone())
            .collect();
        self.replica_sets
            .retain(|rs| !doomed.contains(&rs.metadata.uid));
        true
    }

    /// Every Deployment's status from its ReplicaSets (`calculateStatus`
    /// and `syncRolloutStatus`). Returns whether one changed.
    pub(super) fn refresh_deployments_status(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        // Only Deployments' statuses change here: one index serves all.
        let by_controller = self.replica_sets_by_controller();
        for d in 0..self.deployments.len() {
            let dep = &self.deployments[d];
            let dep_uid = dep.metadata.uid.clone().unwrap_or_default();
            let ns = namespace(&dep.metadata).to_string();
            let owned = by_controller
                .get(&(ns, dep_uid))
                .cloned()
                .unwrap_or_default();
            let new = self.new_replica_set(dep, &owned);
            let status_of = |i: usize| self.replica_sets[i].status.clone().unwrap_or_default();
            let sum = |f: &dyn Fn(usize) -> i32| owned.iter().map(|&i| f(i)).sum::<i32>();
            let actual = sum(&|i| status_of(i).replicas);
            let spec_total = sum(&|i| desired(&self.replica_sets[i]));
            let ready = sum(&|i| status_of(i).ready_replicas.unwrap_or(0));
            let available = sum(&|i| status_of(i).available_replicas.unwrap_or(0));
            let updated = new.map_or(0, |i| status_of(i).replicas);
            let want = replicas(dep);
            let (_, max_unavailable) = fenceposts(dep);
            let old = dep.status.clone().unwrap_or_default();
            let nz = |n: i32| (n != 0).then_some(n);
            let mut status = DeploymentStatus {
                observed_generation: dep.metadata.generation,
                replicas: nz(actual),
                updated_replicas: nz(updated),
                ready_replicas: nz(ready),
                available_replicas: nz(available),
                unavailable_replicas: nz((spec_total - available).max(0)),
                collision_count: old.collision_count,
                conditions: old.conditions.clone(),
                ..Default::default()
            };
            let mut conds = status.conditions.take().unwrap_or_default();
            if available >= want - max_unavailable {
                set_condition(
                    &mut conds,
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                    now,
                );
            } else {
                set_condition(
                    &mut conds,
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                    now,
                );
            }
            if let Some(i) = new {
                let rs_name = self.replica_sets[i]
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_default();
                let complete = updated == want && actual == want && available == want;
                if complete {
                    set_condition(
                        &mut conds,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                        now,
                    );
                } else {
                    set_condition(
                        &mut conds,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{rs_name}\" is progressing."),
                        now,
                    );
                }
            }
            // The new ReplicaSet's failure to make pods is the Deployment's
            // (syncRolloutStatus copies it; gone when it is gone).
            let failure = new.and_then(|i| {
                let s = self.replica_sets[i].status.as_ref()?;
                s.conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "ReplicaFailure")
                    .cloned()
            });
            match failure {
                Some(f) => set_condition(
                    &mut conds,
                    "ReplicaFailure",
                    &f.status,
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.unwrap_or_default(),
                    now,
                ),
                None => conds.retain(|c| c.type_ != "ReplicaFailure"),
            }
            status.conditions = Some(conds);
            if dep.status.as_ref() != Some(&status) {
                self.deployments[d].status = Some(status);
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(replicas: i32, surge: Option<&str>, unavailable: Option<&str>) -> Deployment {
        let v = |s: Option<&str>| {
            s.map(|s| match s.parse::<i32>() {
                Ok(n) => serde_json::json!(n),
                Err(_) => serde_json::json!(s),
            })
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {},
                "strategy": {"rollingUpdate": {"maxSurge": v(surge), "maxUnavailable": v(unavailable)}},
            }
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        // Defaults 25 %/25 %: of 2 pods, surge 1 (0.5 up), unavailable 0.
        assert_eq!(fenceposts(&dep(2, None, None)), (1, 0));
        assert_eq!(fenceposts(&dep(10, None, None)), (3, 2));
        assert_eq!(fenceposts(&dep(4, Some("2"), Some("50%"))), (2, 2));
        // Both 0 would never progress: one may be unavailable.
        assert_eq!(fenceposts(&dep(3, Some("0"), Some("0"))), (0, 1));
        let mut r = dep(3, None, None);
        r.spec.as_mut().unwrap().strategy =
            Some(serde_json::from_value(serde_json::json!({"type": "Recreate"})).unwrap());
        assert_eq!(fenceposts(&r), (0, 3));
    }

    #[test]
    fn templates_compare_without_their_hash_label() {
        let t = |labels: &[(&str, &str)], image: &str| -> PodTemplateSpec {
            serde_json::from_value(serde_json::json!({
                "metadata": {"labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
                "spec": {"containers": [{"name": "c", "image": image}]},
            }))
            .unwrap()
        };
        let dep = t(&[("app", "x")], "nginx");
        assert!(same_but_hash(
            &t(&[("app", "x"), (HASH_LABEL, "abc")], "nginx"),
            &dep
        ));
        assert!(same_but_hash(&dep, &dep));
        assert!(!same_but_hash(
            &t(&[("app", "x"), (HASH_LABEL, "abc")], "nginx:2"),
            &dep
        ));
        assert!(!same_but_hash(
            &t(&[("app", "y"), (HASH_LABEL, "abc")], "nginx"),
            &dep
        ));
        assert!(!same_but_hash(
            &t(&[("app", "x"), ("b", "1")], "nginx"),
            &dep
        ));
        // Only the hash label was there: as no labels at all.
        assert!(same_but_hash(
            &t(&[(HASH_LABEL, "abc")], "nginx"),
            &t(&[], "nginx")
        ));
        let mut annotated = dep.clone();
        annotated.metadata.as_mut().unwrap().annotations =
            Some([("a".to_string(), "1".to_string())].into());
        assert!(!same_but_hash(&annotated, &dep));
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        // A first rollout: 0 old pods, straight to the count.
        assert_eq!(new_rs_replicas(3, 1, 0, 0), 3);
        // 2 old pods, surge 1: one new pod at a time.
        assert_eq!(new_rs_replicas(2, 1, 2, 0), 1);
        assert_eq!(new_rs_replicas(2, 1, 3, 1), 1);
        assert_eq!(new_rs_replicas(2, 1, 2, 1), 2);
        // Scaling up with no rollout: all at once.
        assert_eq!(new_rs_replicas(5, 2, 2, 2), 5);
    }

    #[test]
    fn old_replica_sets_shrink_only_while_enough_stay_available() {
        let c = |replicas, available| Counts {
            replicas,
            available,
        };
        // 2 replicas, maxUnavailable 0: the new pod is not ready yet, so
        // no old pod may go.
        assert_eq!(old_rs_replicas(2, 0, c(1, 0), &[c(2, 2)]), [2]);
        // It is ready: one old pod goes.
        assert_eq!(old_rs_replicas(2, 0, c(1, 1), &[c(2, 2)]), [1]);
        // Unhealthy old pods go first, even below what is available.
        assert_eq!(old_rs_replicas(2, 0, c(1, 1), &[c(2, 0)]), [1]);
        // Oldest first, across several old ReplicaSets.
        assert_eq!(old_rs_replicas(4, 1, c(2, 2), &[c(1, 1), c(3, 3)]), [0, 1]);
        assert_eq!(old_rs_replicas(4, 0, c(0, 0), &[c(1, 1), c(3, 3)]), [1, 3]);
    }

    const LAB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n---\napiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  dns:\n    enabled: false\n";

    fn lab() -> (ClusterState, rand::rngs::StdRng) {
        use rand::SeedableRng;
        let spec =
            crate::lab::load_str(std::path::Path::new("t.yaml"), LAB, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let st = ClusterState::plan(&spec, &Default::default(), Utc::now(), &mut rng).unwrap();
        (st, rng)
    }

    /// What the lab's process does between two steps: deleted pods stop,
    /// the others start and become ready.
    fn kubelet(st: &mut ClusterState) {
        st.pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        for mut p in &mut st.pods {
            let s = p.status.get_or_insert_with(Default::default);
            s.phase = Some("Running".into());
            s.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]);
        }
    }

    fn condition(st: &ClusterState, type_: &str) -> (String, String) {
        let c = st.deployments[0]
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap();
        let c = c.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone().unwrap())
    }

    #[test]
    fn a_deployment_owns_a_replica_set_that_owns_the_pods() {
        let (mut st, mut rng) = lab();
        assert_eq!(st.replica_sets.len(), 1);
        let rs = &st.replica_sets[0];
        let dep = &st.deployments[0];
        let hash = rs.metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("my-nginx-{hash}").as_str())
        );
        let o = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str()),
            ("Deployment", "my-nginx")
        );
        assert_eq!(Some(&o.uid), dep.metadata.uid.as_ref());
        assert_eq!(
            (o.controller, o.block_owner_deletion),
            (Some(true), Some(true))
        );
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[DESIRED_REPLICAS], "2");
        assert_eq!(a[MAX_REPLICAS], "3");
        assert_eq!(
            rs.spec
                .as_ref()
                .unwrap()
                .selector
                .match_labels
                .as_ref()
                .unwrap()[HASH_LABEL],
            hash
        );
        assert_eq!(dep.metadata.annotations.as_ref().unwrap()[REVISION], "1");
        assert_eq!(st.pods.len(), 2);
        for p in &st.pods {
            let name = p.metadata.name.as_deref().unwrap();
            let suffix = name.strip_prefix(&format!("my-nginx-{hash}-")).unwrap();
            assert_eq!(suffix.len(), 5, "{name}");
            assert_eq!(p.metadata.labels.as_ref().unwrap()[HASH_LABEL], hash);
            assert!(controlled_by(
                &p.metadata,
                rs.metadata.uid.as_deref().unwrap()
            ));
        }
        // Not ready yet: progressing, not available (maxUnavailable 0 of 2).
        assert_eq!(condition(&st, "Available").0, "False");
        kubelet(&mut st);
        assert!(st.reconcile_workloads(Utc::now(), &mut rng).unwrap());
        assert_eq!(
            condition(&st, "Available"),
            ("True".into(), "MinimumReplicasAvailable".into())
        );
        assert_eq!(
            condition(&st, "Progressing"),
            ("True".into(), "NewReplicaSetAvailable".into())
        );
        let s = st.deployments[0].status.clone().unwrap();
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(2), Some(2), Some(2), Some(2), None)
        );
        assert_eq!(s.observed_generation, Some(1));
        // Level-based: nothing more to do.
        assert!(!st.reconcile_workloads(Utc::now(), &mut rng).unwrap());
    }

    #[test]
    fn a_template_change_rolls_within_surge_and_keeps_the_old_replica_set() {
        let (mut st, mut rng) = lab();
        kubelet(&mut st);
        st.reconcile_workloads(Utc::now(), &mut rng).unwrap();
        let old_uid = st.replica_sets[0].metadata.uid.clone().unwrap();
        let mut dep = st.deployments[0].clone();
        dep.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("nginx:1.27".into());
        crate::cluster::objects::apply_deployment(
            &mut st,
            dep,
            crate::cluster::objects::Mode::Apply,
            Utc::now(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(st.deployments[0].metadata.generation, Some(2));
        let mut steps = 0;
        loop {
            st.reconcile_workloads(Utc::now(), &mut rng).unwrap();
            // Never more than replicas + maxSurge pods, never fewer than
            // replicas - maxUnavailable ready ones.
            let live = st
                .pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            assert!(live <= 3, "{live} pods");
            let ready = st
                .pods
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none() && crate::cluster::state::pod_ready(p)
                })
                .count();
            assert!(ready >= 2, "{ready} ready");
            if condition(&st, "Progressing").1 == "NewReplicaSetAvailable" {
                break;
            }
            kubelet(&mut st);
            steps += 1;
            assert!(steps < 10, "the rollout does not finish");
        }
        assert!(steps >= 2, "one pod at a time: {steps} steps");
        assert_eq!(st.replica_sets.len(), 2);
        let old = st
            .replica_sets
            .iter()
            .find(|r| r.metadata.uid.as_deref() == Some(old_uid.as_str()))
            .unwrap();
        assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
        let new = st
            .replica_sets
            .iter()
            .find(|r| r.metadata.uid.as_deref() != Some(old_uid.as_str()))
            .unwrap();
        assert_eq!(new.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        assert_eq!(
            st.deployments[0].metadata.annotations.as_ref().unwrap()[REVISION],
            "2"
        );
        assert_eq!(
            st.deployments[0]
                .status
                .as_ref()
                .unwrap()
                .observed_generation,
            Some(2)
        );
        let new_uid = new.metadata.uid.clone().unwrap();
        assert!(st
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .all(|p| controlled_by(&p.metadata, &new_uid)));
        let events: Vec<String> = st
            .events_for("Deployment", "default", "my-nginx")
            .iter()
            .map(|e| e.message.clone().unwrap())
            .collect();
        assert!(
            events
                .iter()
                .any(|m| m.starts_with("Scaled down replica set ") && m.ends_with(" to 0 from 1")),
            "{events:?}"
        );
    }

    #[test]
    fn deleting_owners_collects_or_orphans_their_dependents() {
        use crate::cluster::gc::Propagation;
        use crate::cluster::objects::delete_with;
        let now = Utc::now();
        // A ReplicaSet deleted under a live Deployment comes back, with new pods.
        let (mut st, mut rng) = lab();
        let rs_name = st.replica_sets[0].metadata.name.clone().unwrap();
        let rs_uid = st.replica_sets[0].metadata.uid.clone();
        delete_with(
            &mut st,
            "replicaset",
            "default",
            &rs_name,
            Propagation::Background,
            now,
        )
        .unwrap();
        assert!(st
            .pods
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()));
        st.reconcile_workloads(now, &mut rng).unwrap();
        assert_eq!(st.replica_sets.len(), 1);
        assert_eq!(
            st.replica_sets[0].metadata.name.as_deref(),
            Some(rs_name.as_str())
        );
        assert_ne!(st.replica_sets[0].metadata.uid, rs_uid);
        assert_eq!(
            st.pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count(),
            2
        );
        // Orphan: the pods stay, and the recreated ReplicaSet adopts them.
        kubelet(&mut st);
        let pods: Vec<_> = st.pods.iter().map(|p| p.metadata.name.clone()).collect();
        delete_with(
            &mut st,
            "replicaset",
            "default",
            &rs_name,
            Propagation::Orphan,
            now,
        )
        .unwrap();
        assert!(st
            .pods
            .iter()
            .all(|p| p.metadata.owner_references.is_none()
                && p.metadata.deletion_timestamp.is_none()));
        st.reconcile_workloads(now, &mut rng).unwrap();
        let uid = st.replica_sets[0].metadata.uid.clone().unwrap();
        assert!(st.pods.iter().all(|p| controlled_by(&p.metadata, &uid)));
        assert_eq!(
            st.pods
                .iter()
                .map(|p| p.metadata.name.clone())
                .collect::<Vec<_>>(),
            pods
        );
        // Orphaning a Deployment keeps its ReplicaSet and pods, unowned.
        let mut orphaned = st.clone();
        delete_with(
            &mut orphaned,
            "deployment",
            "default",
            "my-nginx",
            Propagation::Orphan,
            now,
        )
        .unwrap();
        orphaned.reconcile_workloads(now, &mut rng).unwrap();
        assert_eq!(orphaned.replica_sets.len(), 1);
        assert!(orphaned.replica_sets[0].metadata.owner_references.is_none());
        assert_eq!(
            orphaned
                .pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count(),
            2
        );
        // Background and Foreground take the ReplicaSets and pods along.
        for policy in [Propagation::Background, Propagation::Foreground] {
            let mut st = st.clone();
            delete_with(&mut st, "deployment", "default", "my-nginx", policy, now).unwrap();
            st.reconcile_workloads(now, &mut rng).unwrap();
            assert!(st.replica_sets.is_empty(), "{policy:?}");
            assert!(
                st.pods
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some()),
                "{policy:?}"
            );
        }
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_go() {
        let (mut st, mut rng) = lab();
        st.deployments[0]
            .spec
            .as_mut()
            .unwrap()
            .revision_history_limit = Some(1);
        for image in ["a", "b", "c"] {
            let mut dep = st.deployments[0].clone();
            dep.spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .containers[0]
                .image = Some(image.into());
            crate::cluster::objects::apply_deployment(
                &mut st,
                dep,
                crate::cluster::objects::Mode::Apply,
                Utc::now(),
                &mut rng,
            )
            .unwrap();
            for _ in 0..10 {
                kubelet(&mut st);
                st.reconcile_workloads(Utc::now(), &mut rng).unwrap();
            }
        }
        // The current one and one old one.
        assert_eq!(st.replica_sets.len(), 2);
        let mut revs: Vec<i64> = st
            .replica_sets
            .iter()
            .map(|r| revision(&r.metadata))
            .collect();
        revs.sort();
        assert_eq!(revs, [3, 4]);
    }
}
