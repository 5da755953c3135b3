//! Nodes as kube-apiserver and the node lifecycle controller keep them
//! (pure): what an update of a node may change (its labels, annotations,
//! `spec.unschedulable` and `spec.taints`: `kubectl label`, `cordon`,
//! `uncordon`, `taint`), the taint a cordoned node carries, and the taint
//! manager, which evicts the pods of a node with a NoExecute taint they do
//! not tolerate.
//!
//! The rest of a node is the lab's (its Lab document's topology): a node
//! cannot be created or deleted through the API, nor its addresses changed.
//!
//! A drill stops a node (`netlab node stop`): the node is marked
//! [`STOPPED_ANNOTATION`] and its kubelet twin falls silent. The node
//! lifecycle controller ([`ClusterState::monitor_nodes`]) then does what
//! Kubernetes' does, on the lab's clock (`spec.timing`): after the node
//! monitor grace period the node's Ready condition turns Unknown, it gets
//! the `node.kubernetes.io/unreachable` taints, and its pods turn not
//! ready (their endpoints leave the Services); the taint manager evicts
//! them once their toleration (the DefaultTolerationSeconds admission's
//! 300 s) runs out, and their Deployments replace them elsewhere.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeSet;

use super::objects::ObjectError;
use super::scheduler::{eviction_due, UNSCHEDULABLE_TAINT};
use super::state::{namespace, pod_node, time, ClusterState};

/// On a node that a drill stopped: when it stopped (RFC 3339).
pub const STOPPED_ANNOTATION: &str = "netlab.dev/stopped";
/// On a node a drill cut off from others (`netlab partition`): their
/// names, comma-separated.
pub const PARTITION_ANNOTATION: &str = "netlab.dev/partitioned-from";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The DefaultTolerationSeconds admission plugin: a pod that does not
/// tolerate the not-ready and unreachable NoExecute taints itself gets a
/// toleration of each for `seconds`.
pub fn default_tolerations(pod: &mut Pod, seconds: i64) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        let taint = Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        if !tolerations
            .iter()
            .any(|t| super::scheduler::tolerates(t, &taint))
        {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
                ..Default::default()
            });
        }
    }
}

/// When node `n` was stopped by a drill, if it is stopped.
pub fn stopped_at(n: &Node) -> Option<DateTime<Utc>> {
    let a = n.metadata.annotations.as_ref()?.get(STOPPED_ANNOTATION)?;
    DateTime::parse_from_rfc3339(a)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `pod` is on a node a drill stopped (of
/// [`ClusterState::stopped_nodes`]): its kubelet is silent, so nothing of
/// the pod is started, restarted or removed meanwhile.
pub fn kubelet_silent(pod: &Pod, stopped: &BTreeSet<String>) -> bool {
    pod_node(pod).is_some_and(|n| stopped.contains(n))
}

/// Puts an updated node back: only what a user may change of it changes;
/// anything else changed is refused, naming the field.
pub fn update_node(
    st: &mut ClusterState,
    mut node: Node,
    now: DateTime<Utc>,
) -> Result<String, ObjectError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let i = st.node_index(&name)?;
    let before = st.nodes.get(i).map(|n| (*n).clone()).expect("found above");
    let mut spec = node.spec.take().unwrap_or_default();
    let old = before.spec.clone().unwrap_or_default();
    let fixed = |field: &str| {
        ObjectError::Invalid(format!(
            "Node {name:?} is invalid: {field}: Forbidden: a lab's node keeps what its Lab document gave it; only labels, annotations, spec.unschedulable and spec.taints change"
        ))
    };
    if spec.pod_cidr != old.pod_cidr || spec.pod_cidrs != old.pod_cidrs {
        return Err(fixed("spec.podCIDR"));
    }
    if spec.provider_id != old.provider_id {
        return Err(fixed("spec.providerID"));
    }
    let mut taints = spec.taints.take().unwrap_or_default();
    for t in &taints {
        if t.key.is_empty() {
            return Err(ObjectError::Invalid(format!(
                "Node {name:?} is invalid: spec.taints[].key: Required value"
            )));
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            return Err(ObjectError::Invalid(format!(
                "Node {name:?} is invalid: spec.taints[].effect: Unsupported value: {:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                t.effect
            )));
        }
    }
    // A NoExecute taint's clock starts when it is added.
    for t in taints.iter_mut().filter(|t| t.effect == "NoExecute") {
        let kept = old
            .taints
            .iter()
            .flatten()
            .find(|o| o.key == t.key && o.effect == t.effect)
            .and_then(|o| o.time_added.clone());
        t.time_added = t.time_added.take().or(kept).or(Some(Time(now)));
    }
    cordon_taint(&mut taints, spec.unschedulable == Some(true));
    spec.taints = (!taints.is_empty()).then_some(taints);
    if spec.unschedulable == Some(false) {
        spec.unschedulable = None;
    }
    let mut after = before.clone();
    after.metadata.labels = node.metadata.labels;
    // The drills' marks are the lab's, not the user's to add or take away.
    let mut annotations = node.metadata.annotations.unwrap_or_default();
    for key in [STOPPED_ANNOTATION, PARTITION_ANNOTATION] {
        annotations.remove(key);
        if let Some(mark) = before
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
        {
            annotations.insert(key.into(), mark.clone());
        }
    }
    after.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    after.spec = Some(spec);
    let changed = after != before;
    if changed {
        st.nodes.set(i, after);
    }
    Ok(format!(
        "node/{name} {}",
        if changed { "configured" } else { "unchanged" }
    ))
}

/// The node lifecycle controller's `TaintNodeByCondition` for a cordon: a
/// node marked unschedulable carries `node.kubernetes.io/unschedulable:
/// NoSchedule`, and loses it when uncordoned.
fn cordon_taint(taints: &mut Vec<Taint>, unschedulable: bool) {
    let is_cordon = |t: &Taint| t.key == UNSCHEDULABLE_TAINT && t.effect == "NoSchedule";
    let has = taints.iter().any(is_cordon);
    if unschedulable && !has {
        taints.push(Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    } else if !unschedulable && has {
        taints.retain(|t| !is_cordon(t));
    }
}

/// `MarkPodsNotReady`: the pod's Ready condition turns False (the rest of
/// its status is the silent kubelet's, left as it was).
fn mark_not_ready(p: &mut Pod, now: DateTime<Utc>) {
    let conditions = p
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .into_iter()
        .flatten();
    for c in conditions.filter(|c| c.type_ == "Ready") {
        c.status = "False".into();
        c.last_transition_time = Some(time(now));
    }
}

/// The node's Ready condition.
fn ready_condition(n: &mut Node) -> Option<&mut NodeCondition> {
    n.status
        .as_mut()?
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == "Ready")
}

impl ClusterState {
    /// The nodes a drill cut node `name` off from.
    pub fn partitioned_from(&self, name: &str) -> Vec<String> {
        self.nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .and_then(|n| n.metadata.annotations.as_ref()?.get(PARTITION_ANNOTATION))
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where node `name` is in the store.
    fn node_index(&self, name: &str) -> Result<usize, ObjectError> {
        self.nodes
            .iter()
            .position(|n| n.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| ObjectError::NotFound {
                kind: "nodes",
                name: name.into(),
            })
    }

    /// A drill's partition between nodes `a` and `b`, made (`cut`) or
    /// healed. Returns whether it changed.
    pub fn set_partition(&mut self, a: &str, b: &str, cut: bool) -> Result<bool, ObjectError> {
        if a == b {
            return Err(ObjectError::Invalid(format!(
                "a partition is between two nodes, not {a} and itself"
            )));
        }
        let mut changed = false;
        for (me, peer) in [(a, b), (b, a)] {
            let i = self.node_index(me)?;
            let mut peers = self.partitioned_from(me);
            let had = peers.iter().any(|p| p == peer);
            if had == cut {
                continue;
            }
            if cut {
                peers.push(peer.to_string());
                peers.sort();
            } else {
                peers.retain(|p| p != peer);
            }
            let mut n = self.nodes.get(i).cloned().expect("found above");
            let annotations = n.metadata.annotations.get_or_insert_with(Default::default);
            if peers.is_empty() {
                annotations.remove(PARTITION_ANNOTATION);
            } else {
                annotations.insert(PARTITION_ANNOTATION.into(), peers.join(","));
            }
            if annotations.is_empty() {
                n.metadata.annotations = None;
            }
            self.nodes.set(i, n);
            changed = true;
        }
        Ok(changed)
    }

    /// The nodes a drill stopped.
    pub fn stopped_nodes(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| stopped_at(n).is_some())
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }

    /// A drill's power switch: node `name` stopped (marked, from `now`) or
    /// started (unmarked; Ready again at once, its unreachable taints
    /// gone, as a kubelet that reports again). Returns whether it changed.
    pub fn set_power(
        &mut self,
        name: &str,
        on: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, ObjectError> {
        let i = self.node_index(name)?;
        let mut n = self.nodes.get(i).cloned().expect("found above");
        if (stopped_at(&n).is_none()) == on {
            return Ok(false);
        }
        let annotations = n.metadata.annotations.get_or_insert_with(Default::default);
        if on {
            annotations.remove(STOPPED_ANNOTATION);
            if annotations.is_empty() {
                n.metadata.annotations = None;
            }
        } else {
            annotations.insert(STOPPED_ANNOTATION.into(), now.to_rfc3339());
        }
        self.nodes.set(i, n);
        if on {
            self.node_reports(name, now);
        }
        Ok(true)
    }

    /// A node whose kubelet reports again: Ready, without the taints of
    /// silence.
    fn node_reports(&mut self, name: &str, now: DateTime<Utc>) -> bool {
        let Ok(i) = self.node_index(name) else {
            return false;
        };
        let mut n = self.nodes.get(i).cloned().expect("found above");
        let before = n.clone();
        if let Some(c) = ready_condition(&mut n).filter(|c| c.status != "True") {
            c.status = "True".into();
            c.reason = Some("KubeletReady".into());
            c.message = Some("kubelet is posting ready status".into());
            c.last_transition_time = Some(time(now));
            c.last_heartbeat_time = Some(time(now));
        }
        if let Some(spec) = n.spec.as_mut() {
            if let Some(t) = spec.taints.as_mut() {
                t.retain(|t| t.key != UNREACHABLE_TAINT);
                if t.is_empty() {
                    spec.taints = None;
                }
            }
        }
        if n == before {
            return false;
        }
        self.nodes.set(i, n);
        self.record(
            super::events::Involved {
                kind: "Node",
                namespace: "",
                name,
            },
            "Normal",
            "NodeReady",
            "kubelet",
            format!("Node {name} status is now: NodeReady"),
            now,
        );
        true
    }

    /// The node lifecycle controller: a stopped node silent for longer than
    /// the node monitor grace period turns Unknown, tainted unreachable
    /// (NoSchedule, and NoExecute from now), and its pods not ready.
    /// Returns whether anything changed.
    pub fn monitor_nodes(&mut self, now: DateTime<Utc>) -> bool {
        let grace =
            chrono::Duration::milliseconds(self.config.timing.node_monitor_grace_period_ms as i64);
        let mut changed = false;
        for i in 0..self.nodes.len() {
            let mut n = self.nodes.get(i).cloned().expect("in range");
            let name = n.metadata.name.clone().unwrap_or_default();
            let Some(since) = stopped_at(&n) else {
                continue;
            };
            if now < since + grace {
                continue;
            }
            let Some(c) = ready_condition(&mut n).filter(|c| c.status != "Unknown") else {
                continue;
            };
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(time(now));
            let spec = n.spec.get_or_insert_with(Default::default);
            let taints = spec.taints.get_or_insert_with(Vec::new);
            for effect in ["NoSchedule", "NoExecute"] {
                if !taints
                    .iter()
                    .any(|t| t.key == UNREACHABLE_TAINT && t.effect == effect)
                {
                    taints.push(Taint {
                        key: UNREACHABLE_TAINT.into(),
                        effect: effect.into(),
                        time_added: (effect == "NoExecute").then_some(Time(now)),
                        ..Default::default()
                    });
                }
            }
            self.nodes.set(i, n);
            let who = super::events::Involved {
                kind: "Node",
                namespace: "",
                name: &name,
            };
            self.record(
                who,
                "Normal",
                "NodeNotReady",
                "node-controller",
                format!("Node {name} status is now: NodeNotReady"),
                now,
            );
            // MarkPodsNotReady: their endpoints leave the Services.
            let on_node: Vec<usize> = (0..self.pods.len())
                .filter(|&j| pod_node(&self.pods[j]) == Some(name.as_str()))
                .collect();
            for j in on_node {
                let mut p = self.pods[j].clone();
                if super::state::pod_ready(&p) {
                    mark_not_ready(&mut p, now);
                    let (ns, pod) = (
                        namespace(&p.metadata).to_string(),
                        p.metadata.name.clone().unwrap_or_default(),
                    );
                    self.pods.set(j, p);
                    self.record(
                        super::events::Involved {
                            kind: "Pod",
                            namespace: &ns,
                            name: &pod,
                        },
                        "Warning",
                        "NodeNotReady",
                        "node-controller",
                        "Node is not ready".to_string(),
                        now,
                    );
                }
            }
            changed = true;
        }
        changed
    }

    /// The taint manager: each pod on a node with a NoExecute taint it does
    /// not tolerate (or tolerates for `tolerationSeconds`, now past) is
    /// deleted, gracefully, with a `TaintManagerEviction` event. Returns
    /// whether one was.
    pub fn evict_tainted(&mut self, now: DateTime<Utc>) -> bool {
        let due: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let node = pod_node(p).and_then(|n| {
                    self.nodes
                        .iter()
                        .find(|x| x.metadata.name.as_deref() == Some(n))
                });
                node.and_then(|n| eviction_due(p, n, now))
                    .is_some_and(|t| t <= now)
            })
            .map(|p| {
                (
                    namespace(&p.metadata).to_string(),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        for (ns, name) in &due {
            if super::objects::delete(self, "pod", ns, name, now).is_ok() {
                super::objects::grace(self, ns, name, None);
                self.record(
                    super::events::Involved {
                        kind: "Pod",
                        namespace: ns,
                        name,
                    },
                    "Normal",
                    "TaintManagerEviction",
                    "taint-eviction-controller",
                    format!("Marking for deletion Pod {ns}/{name}"),
                    now,
                );
            }
        }
        !due.is_empty()
    }

    /// When the next toleration runs out (the controller's loop must look
    /// again by then), if one will.
    pub fn next_eviction(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let n = pod_node(p)?;
                let node = self
                    .nodes
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(n))?;
                eviction_due(p, node, now)
            })
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab;
    use rand::SeedableRng;
    use std::path::Path;

    const LAB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      run: web\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: web\n    spec:\n      containers:\n      - name: web\n        image: nginx\n";

    fn plan() -> ClusterState {
        let spec = lab::load_str(Path::new("t.yaml"), LAB, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        ClusterState::plan(&spec, &Default::default(), Utc::now(), &mut rng).unwrap()
    }

    fn node(st: &ClusterState, name: &str) -> Node {
        st.nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .unwrap()
            .clone()
    }

    fn patched(st: &ClusterState, name: &str, spec: &str) -> Node {
        let mut n = node(st, name);
        let mut v = serde_json::to_value(&n).unwrap();
        let extra: serde_json::Value = serde_yaml_ng::from_str(spec).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v["spec"][k] = x.clone();
        }
        n = serde_json::from_value(v).unwrap();
        n
    }

    fn set(
        st: &mut ClusterState,
        name: &str,
        spec: &str,
        now: DateTime<Utc>,
    ) -> Result<String, ObjectError> {
        let n = patched(st, name, spec);
        update_node(st, n, now)
    }

    #[test]
    fn a_cordon_adds_its_taint_and_uncordon_takes_it_away() {
        let mut st = plan();
        let now = Utc::now();
        let line = set(&mut st, "node-1", "{unschedulable: true}", now);
        assert_eq!(line.unwrap(), "node/node-1 configured");
        let n = node(&st, "node-1");
        assert_eq!(n.spec.as_ref().unwrap().unschedulable, Some(true));
        let taints = n.spec.as_ref().unwrap().taints.clone().unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, UNSCHEDULABLE_TAINT);
        let same = node(&st, "node-1");
        let again = update_node(&mut st, same, now).unwrap();
        assert_eq!(again, "node/node-1 unchanged");
        set(&mut st, "node-1", "{unschedulable: false}", now).unwrap();
        let n = node(&st, "node-1");
        assert_eq!(n.spec.as_ref().unwrap().unschedulable, None);
        assert_eq!(n.spec.as_ref().unwrap().taints, None);
    }

    #[test]
    fn only_labels_annotations_cordon_and_taints_change() {
        let mut st = plan();
        let now = Utc::now();
        let err = set(&mut st, "node-1", "{podCIDR: 10.9.0.0/24}", now);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("spec.podCIDR: Forbidden"),
            "the pod range is the lab's"
        );
        let bad = patched(&st, "node-1", "{taints: [{key: k, effect: Sometimes}]}");
        let err = update_node(&mut st, bad, now).unwrap_err().to_string();
        assert!(
            err.contains("spec.taints[].effect: Unsupported value"),
            "{err}"
        );
        let mut labelled = node(&st, "node-2");
        labelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("disk".into(), "ssd".into());
        labelled.status = None;
        update_node(&mut st, labelled, now).unwrap();
        let n = node(&st, "node-2");
        assert_eq!(n.metadata.labels.as_ref().unwrap()["disk"], "ssd");
        assert!(n.status.is_some(), "the status stays the lab's");
    }

    #[test]
    fn a_no_execute_taint_evicts_the_pods_that_do_not_tolerate_it() {
        let mut st = plan();
        let t0 = Utc::now();
        let on = |st: &ClusterState, n: &str| {
            st.pods
                .iter()
                .filter(|p| pod_node(p) == Some(n) && p.metadata.deletion_timestamp.is_none())
                .count()
        };
        let before = on(&st, "node-1");
        assert!(before > 0);
        let taint = "{taints: [{key: drill, value: now, effect: NoExecute}]}";
        set(&mut st, "node-1", taint, t0).unwrap();
        let added = node(&st, "node-1").spec.unwrap().taints.unwrap()[0]
            .time_added
            .clone();
        assert_eq!(added, Some(Time(t0)), "the taint's clock starts");
        // A later update keeps the time the taint was added.
        let later = t0 + chrono::Duration::seconds(5);
        set(&mut st, "node-1", taint, later).unwrap();
        assert_eq!(
            node(&st, "node-1").spec.unwrap().taints.unwrap()[0].time_added,
            Some(Time(t0))
        );
        assert!(st.evict_tainted(t0));
        assert_eq!(on(&st, "node-1"), 0);
        let evicted = st
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .count();
        assert_eq!(evicted, before);
        assert!(st
            .events
            .iter()
            .any(|e| e.reason.as_deref() == Some("TaintManagerEviction")));
        assert!(!st.evict_tainted(t0), "once");
        assert_eq!(st.next_eviction(t0), None);
    }

    #[test]
    fn a_stopped_node_turns_unknown_after_the_grace_period_and_back_when_started() {
        let mut st = plan();
        st.config.timing.node_monitor_grace_period_ms = 2_000;
        let t0 = Utc::now();
        assert!(st.set_power("node-1", false, t0).unwrap());
        assert!(!st.set_power("node-1", false, t0).unwrap(), "once");
        assert_eq!(st.stopped_nodes(), BTreeSet::from(["node-1".to_string()]));
        let status = |st: &ClusterState| {
            node(st, "node-1").status.unwrap().conditions.unwrap()[0]
                .status
                .clone()
        };
        assert!(!st.monitor_nodes(t0 + chrono::Duration::milliseconds(1_900)));
        assert_eq!(status(&st), "True");
        let t1 = t0 + chrono::Duration::seconds(2);
        assert!(st.monitor_nodes(t1));
        assert!(!st.monitor_nodes(t1), "once");
        assert_eq!(status(&st), "Unknown");
        let taints = node(&st, "node-1").spec.unwrap().taints.unwrap();
        let keys: Vec<(&str, &str)> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                (UNREACHABLE_TAINT, "NoSchedule"),
                (UNREACHABLE_TAINT, "NoExecute")
            ]
        );
        let on_node: Vec<&Pod> = st
            .pods
            .iter()
            .filter(|p| pod_node(p) == Some("node-1"))
            .collect();
        assert!(!on_node.is_empty());
        assert!(on_node.iter().all(|p| !super::super::state::pod_ready(p)));
        // The eviction waits for the pods' toleration (default 300 s).
        assert_eq!(
            st.next_eviction(t1),
            Some(t1 + chrono::Duration::seconds(300))
        );
        assert!(st.set_power("node-1", true, t1).unwrap());
        assert_eq!(status(&st), "True");
        assert_eq!(node(&st, "node-1").spec.unwrap().taints, None);
        assert!(st.stopped_nodes().is_empty());
        assert!(st.set_power("node-9", true, t1).is_err());
    }

    #[test]
    fn pods_tolerate_a_silent_node_for_the_default_seconds_unless_they_say() {
        let mut p: Pod = serde_yaml_ng::from_str(
            "metadata: {name: p}\nspec:\n  containers: [{name: c}]\n  tolerations:\n  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 9}\n",
        )
        .unwrap();
        default_tolerations(&mut p, 300);
        let t = p.spec.unwrap().tolerations.unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].toleration_seconds, Some(9), "its own stays");
        assert_eq!(t[1].key.as_deref(), Some(NOT_READY_TAINT));
        assert_eq!(t[1].toleration_seconds, Some(300));
    }

    #[test]
    fn a_partition_marks_both_nodes_and_heals() {
        let mut st = plan();
        assert!(st.set_partition("node-1", "node-2", true).unwrap());
        assert!(!st.set_partition("node-2", "node-1", true).unwrap(), "once");
        assert_eq!(st.partitioned_from("node-1"), ["node-2"]);
        assert_eq!(st.partitioned_from("node-2"), ["node-1"]);
        // A user's update of the annotations keeps the drill's mark.
        let mut n = node(&st, "node-1");
        n.metadata.annotations = None;
        update_node(&mut st, n, Utc::now()).unwrap();
        assert_eq!(st.partitioned_from("node-1"), ["node-2"]);
        assert!(st.set_partition("node-1", "node-2", false).unwrap());
        assert!(st.partitioned_from("node-1").is_empty());
        assert_eq!(node(&st, "node-2").metadata.annotations, None);
        assert!(st.set_partition("node-1", "node-1", true).is_err());
        assert!(st.set_partition("node-1", "node-9", true).is_err());
    }
}
