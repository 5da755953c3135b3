//! Nodes as kube-apiserver and the node lifecycle controller keep them
//! (pure): what an update of a node may change (its labels, annotations,
//! `spec.unschedulable` and `spec.taints`: `kubectl label`, `cordon`,
//! `uncordon`, `taint`), the taint a cordoned node carries, and the taint
//! manager, which evicts the pods of a node with a NoExecute taint they do
//! not tolerate.
//!
//! The rest of a node is the lab's (its Lab document's topology): a node
//! cannot be created or deleted through the API, nor its addresses changed.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::objects::ObjectError;
use super::scheduler::{eviction_due, UNSCHEDULABLE_TAINT};
use super::state::{namespace, pod_node, ClusterState};

/// Puts an updated node back: only what a user may change of it changes;
/// anything else changed is refused, naming the field.
pub fn update_node(
    st: &mut ClusterState,
    mut node: Node,
    now: DateTime<Utc>,
) -> Result<String, ObjectError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let i = st
        .nodes
        .iter()
        .position(|n| n.metadata.name.as_deref() == Some(name.as_str()))
        .ok_or_else(|| ObjectError::NotFound {
            kind: "nodes",
            name: name.clone(),
        })?;
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
    after.metadata.annotations = node.metadata.annotations;
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

impl ClusterState {
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
}
