//! kube-scheduler's decision, pure: which node a pod goes to.
//!
//! Filters, then a score, as kube-scheduler does, with the filters netlab
//! needs, in kube-scheduler's order: `NodeUnschedulable` (a cordoned node
//! takes only pods that tolerate `node.kubernetes.io/unschedulable`),
//! `TaintToleration` (NoSchedule and NoExecute taints the pod does not
//! tolerate), `NodeAffinity` (`nodeSelector` and required node affinity)
//! and `NodePorts` (a node where another pod holds one of the pod's
//! `hostPort`s cannot take it). `spec.nodeName` binds without filters. The
//! score is "fewest pods". No feasible node: the pod stays Pending,
//! unbound, with a `FailedScheduling` event whose message counts each
//! node's first failed filter, as kube-scheduler's does; it is tried again
//! at every later change.

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, Pod, Taint, Toleration};
use std::collections::BTreeMap;

use super::state::pod_node;

/// The taint a cordoned node carries (`TaintNodeByCondition`).
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// One `hostPort` a pod asks for: (protocol, hostIP, hostPort). An empty
/// or `0.0.0.0` hostIP means every address of the node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub protocol: String,
    pub host_ip: Option<String>,
    pub port: i32,
}

impl HostPort {
    /// Two claims conflict when protocol and port are the same and their
    /// addresses overlap (the same one, or either is "all"), as the
    /// NodePorts filter decides.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// The hostPorts a pod's containers ask for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty() && ip != "0.0.0.0"),
                port,
            })
        })
        .collect()
}

/// Whether a pod still holds its node's resources: bound and not finished
/// (a terminating pod still holds its ports, as in Kubernetes).
fn holds_node(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Whether `toleration` tolerates `taint` (`Toleration.ToleratesTaint`):
/// the same effect unless the toleration names none, the same key unless
/// it names none (with `Exists`: every taint), the same value unless
/// `Exists`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The pod's tolerations.
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The node's taints.
pub fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// The first of `taints` with one of `effects` that the pod does not tolerate.
fn untolerated<'t>(pod: &Pod, taints: &'t [Taint], effects: &[&str]) -> Option<&'t Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations(pod).iter().any(|tol| tolerates(tol, t)))
}

fn node_name(n: &Node) -> &str {
    n.metadata.name.as_deref().unwrap_or_default()
}

/// One requirement of a node selector term on the node's labels.
fn label_requirement(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let got = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or(&[]);
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => got.is_some_and(|v| values.contains(v)),
        "NotIn" => got.is_none_or(|v| !values.contains(v)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                got.and_then(|v| number(v)),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// The `NodeAffinity` filter: the pod's `nodeSelector` (every label), and
/// its required node affinity (any term; every requirement of a term).
fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector = spec.node_selector.iter().flatten();
    if !selector.into_iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let Some(required) = required else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        let fields = BTreeMap::from([("metadata.name".to_string(), node_name(node).to_string())]);
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let field_exprs = term.match_fields.as_deref().unwrap_or(&[]);
        // A term with no requirement matches nothing (as in Kubernetes).
        (!exprs.is_empty() || !field_exprs.is_empty())
            && exprs.iter().all(|r| label_requirement(r, labels))
            && field_exprs.iter().all(|r| label_requirement(r, &fields))
    })
}

/// Why no node fits, in kube-scheduler's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
}

/// The node for `pod` among `nodes` (in the lab's order), given the pods
/// already there. `spec.nodeName` binds without filters, as in Kubernetes
/// (the kubelet would then refuse the pod; netlab lets it start).
pub fn pick<'a>(
    pod: &Pod,
    nodes: &[impl std::borrow::Borrow<Node>],
    pods: impl IntoIterator<Item = &'a Pod> + Copy,
) -> Result<String, Unschedulable> {
    if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return Ok(n);
    }
    let wanted = host_ports(pod);
    let ports_free = |n: &str| {
        wanted.is_empty()
            || !pods
                .into_iter()
                .filter(|p| pod_node(p) == Some(n) && holds_node(p))
                .flat_map(host_ports)
                .any(|used| wanted.iter().any(|w| w.conflicts(&used)))
    };
    // Each node's first failed filter, in kube-scheduler's order.
    let refusal = |node: &Node| -> Option<String> {
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        let cordon = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if unschedulable && !tolerations(pod).iter().any(|t| tolerates(t, &cordon)) {
            return Some("node(s) were unschedulable".into());
        }
        // A node a drill stopped takes no pod (its kubelet would never
        // start one); in its taint's words, which it soon carries.
        if super::nodes::stopped_at(node).is_some() {
            return Some(format!(
                "node(s) had untolerated taint {{{}: }}",
                super::nodes::UNREACHABLE_TAINT
            ));
        }
        if let Some(t) = untolerated(pod, taints(node), &["NoSchedule", "NoExecute"]) {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ));
        }
        if !affinity_matches(pod, node) {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
        if !ports_free(node_name(node)) {
            return Some("node(s) didn't have free ports for the requested pod ports".into());
        }
        None
    };
    let count = |n: &str| {
        pods.into_iter()
            .filter(|p| pod_node(p) == Some(n) && p.metadata.deletion_timestamp.is_none())
            .count()
    };
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible = Vec::new();
    for n in nodes.iter().map(|n| n.borrow()) {
        match refusal(n) {
            None => feasible.push(node_name(n)),
            Some(why) => *reasons.entry(why).or_default() += 1,
        }
    }
    if let Some(n) = feasible.into_iter().min_by_key(|n| count(n)) {
        return Ok(n.to_string());
    }
    let mut counted: Vec<String> = reasons
        .iter()
        .map(|(why, k)| format!("{k} {why}"))
        .collect();
    counted.sort();
    Err(Unschedulable {
        message: format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            counted.join(", ")
        ),
    })
}

/// The NoExecute taints of `node` that `pod` does not tolerate for ever,
/// and when each evicts it (the taint manager): at once without a
/// toleration, else `tolerationSeconds` after the taint was added. The
/// earliest is the pod's eviction time; None: the pod may stay.
pub fn eviction_due(
    pod: &Pod,
    node: &Node,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    taints(node)
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .filter_map(|t| {
            let added = t.time_added.as_ref().map(|a| a.0).unwrap_or(now);
            let matching: Vec<&Toleration> = tolerations(pod)
                .iter()
                .filter(|tol| tolerates(tol, t))
                .collect();
            if matching.is_empty() {
                return Some(added);
            }
            // The shortest bound among those that tolerate it; none: for ever.
            matching
                .iter()
                .filter_map(|tol| tol.toleration_seconds)
                .min()
                .map(|s| added + chrono::Duration::seconds(s.max(0)))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, ports: &str) -> Pod {
        let mut p: Pod = serde_yaml_ng::from_str(&format!(
            "metadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    ports: {ports}\n"
        ))
        .unwrap();
        p.spec.as_mut().unwrap().node_name = node.map(String::from);
        p
    }

    /// A node from YAML for its `spec` (and `metadata.labels` in `labels`).
    fn node(name: &str, spec: &str) -> Node {
        node_with(name, "{}", spec)
    }

    fn node_with(name: &str, labels: &str, spec: &str) -> Node {
        let spec = if spec.is_empty() { "{}" } else { spec };
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: {name}, labels: {labels}}}\nspec: {spec}\n"
        ))
        .unwrap()
    }

    fn with_spec(mut p: Pod, yaml: &str) -> Pod {
        let mut v = serde_json::to_value(&p).unwrap();
        let extra: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v["spec"][k] = x.clone();
        }
        p = serde_json::from_value(v).unwrap();
        p
    }

    #[test]
    fn tolerations_match_as_kubernetes_decides() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: (!v.is_empty()).then(|| v.into()),
            effect: e.into(),
            ..Default::default()
        };
        let tol = |yaml: &str| -> Toleration { serde_yaml_ng::from_str(yaml).unwrap() };
        let t = taint("dedicated", "gpu", "NoSchedule");
        let table = [
            ("{key: dedicated, value: gpu, effect: NoSchedule}", true),
            ("{key: dedicated, operator: Equal, value: gpu}", true),
            ("{key: dedicated, value: cpu}", false),
            ("{key: dedicated, operator: Exists}", true),
            (
                "{key: dedicated, operator: Exists, effect: NoExecute}",
                false,
            ),
            ("{operator: Exists}", true),
            ("{key: other, operator: Exists}", false),
            ("{key: dedicated, operator: Bogus}", false),
        ];
        for (yaml, want) in table {
            assert_eq!(tolerates(&tol(yaml), &t), want, "{yaml}");
        }
    }

    #[test]
    fn cordons_taints_and_selectors_filter_nodes_with_the_schedulers_words() {
        let cordoned = node("node-1", "{unschedulable: true}");
        let tainted = node(
            "node-2",
            "{taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}",
        );
        let soft = node("node-2", "{taints: [{key: x, effect: PreferNoSchedule}]}");
        let plain = node("node-2", "");
        let disk = node_with("node-2", "{disk: ssd, rank: '5'}", "");
        let p = pod(None, "[]");
        let names = |n: &[Node]| pick(&p, n, &[]);
        assert_eq!(
            names(&[cordoned.clone(), plain.clone()]),
            Ok("node-2".into())
        );
        assert_eq!(names(&[cordoned.clone(), soft]), Ok("node-2".into()));
        assert_eq!(
            names(&[cordoned.clone(), tainted.clone()]).unwrap_err().message,
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."
        );
        // Tolerating the cordon's taint, or the node's, lets the pod in.
        let tolerant = with_spec(
            p.clone(),
            "tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]",
        );
        assert_eq!(
            pick(&tolerant, std::slice::from_ref(&cordoned), &[]),
            Ok("node-1".into())
        );
        let gpu = with_spec(p.clone(), "tolerations: [{key: dedicated, value: gpu}]");
        assert_eq!(
            pick(&gpu, std::slice::from_ref(&tainted), &[]),
            Ok("node-2".into())
        );
        // nodeSelector and required node affinity.
        let ssd = with_spec(p.clone(), "nodeSelector: {disk: ssd}");
        assert_eq!(
            pick(&ssd, &[node("node-1", ""), disk.clone()], &[]),
            Ok("node-2".into())
        );
        assert_eq!(
            pick(&ssd, &[node("node-1", ""), plain.clone()], &[])
                .unwrap_err()
                .message,
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
        let affinity = |exprs: &str| {
            with_spec(
                p.clone(),
                &format!("affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{exprs}]}}}}}}"),
            )
        };
        let cases = [
            (
                "{matchExpressions: [{key: disk, operator: In, values: [ssd, nvme]}]}",
                true,
            ),
            (
                "{matchExpressions: [{key: disk, operator: NotIn, values: [ssd]}]}",
                false,
            ),
            ("{matchExpressions: [{key: disk, operator: Exists}]}", true),
            (
                "{matchExpressions: [{key: disk, operator: DoesNotExist}]}",
                false,
            ),
            (
                "{matchExpressions: [{key: rank, operator: Gt, values: ['4']}]}",
                true,
            ),
            (
                "{matchExpressions: [{key: rank, operator: Lt, values: ['4']}]}",
                false,
            ),
            (
                "{matchFields: [{key: metadata.name, operator: In, values: [node-2]}]}",
                true,
            ),
            (
                "{matchFields: [{key: metadata.name, operator: In, values: [node-1]}]}",
                false,
            ),
            // Terms are ORed; an empty term matches nothing.
            (
                "{}, {matchExpressions: [{key: disk, operator: Exists}]}",
                true,
            ),
            ("{}", false),
        ];
        for (terms, fits) in cases {
            let got = pick(&affinity(terms), std::slice::from_ref(&disk), &[]);
            assert_eq!(got.is_ok(), fits, "{terms}");
        }
        // The first failed filter is the one counted.
        let both = node_with("node-1", "{}", "{unschedulable: true}");
        assert_eq!(
            pick(&ssd, &[both], &[]).unwrap_err().message,
            "0/1 nodes are available: 1 node(s) were unschedulable."
        );
    }

    #[test]
    fn no_execute_taints_evict_at_once_or_after_the_toleration() {
        let now = chrono::Utc::now();
        let added = now - chrono::Duration::seconds(10);
        let mut n = node(
            "node-1",
            "{taints: [{key: node.kubernetes.io/unreachable, effect: NoExecute}]}",
        );
        n.spec.as_mut().unwrap().taints.as_mut().unwrap()[0].time_added =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(added));
        let p = pod(Some("node-1"), "[]");
        assert_eq!(eviction_due(&p, &n, now), Some(added));
        let tol = |secs: &str| {
            with_spec(
                p.clone(),
                &format!("tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute{secs}}}]"),
            )
        };
        assert_eq!(
            eviction_due(&tol(", tolerationSeconds: 300"), &n, now),
            Some(added + chrono::Duration::seconds(300))
        );
        assert_eq!(eviction_due(&tol(""), &n, now), None);
        assert_eq!(eviction_due(&p, &node("node-1", ""), now), None);
        let soft = node("node-1", "{taints: [{key: x, effect: NoSchedule}]}");
        assert_eq!(eviction_due(&p, &soft, now), None);
    }

    #[test]
    fn host_ports_conflict_as_the_node_ports_filter_decides() {
        let hp = |proto: &str, ip: Option<&str>, port| HostPort {
            protocol: proto.into(),
            host_ip: ip.map(String::from),
            port,
        };
        let table = [
            (hp("TCP", None, 80), hp("TCP", None, 80), true),
            (hp("TCP", None, 80), hp("UDP", None, 80), false),
            (hp("TCP", None, 80), hp("TCP", None, 81), false),
            (hp("TCP", Some("1.1.1.1"), 80), hp("TCP", None, 80), true),
            (hp("TCP", None, 80), hp("TCP", Some("1.1.1.1"), 80), true),
            (
                hp("TCP", Some("1.1.1.1"), 80),
                hp("TCP", Some("1.1.1.1"), 80),
                true,
            ),
            (
                hp("TCP", Some("1.1.1.1"), 80),
                hp("TCP", Some("2.2.2.2"), 80),
                false,
            ),
        ];
        for (i, (a, b, want)) in table.iter().enumerate() {
            assert_eq!(a.conflicts(b), *want, "case {i}: {a:?} {b:?}");
        }
        let p = pod(
            None,
            "[{containerPort: 80, hostPort: 8080}, {containerPort: 53, protocol: UDP, hostPort: 53, hostIP: 0.0.0.0}, {containerPort: 9}]",
        );
        assert_eq!(
            host_ports(&p),
            vec![hp("TCP", None, 8080), hp("UDP", None, 53)]
        );
    }

    #[test]
    fn a_taken_host_port_sends_the_pod_elsewhere_or_leaves_it_pending() {
        let nodes = vec![node("node-1", ""), node("node-2", "")];
        let web = "[{containerPort: 80, hostPort: 8080}]";
        let other = "[{containerPort: 80, hostPort: 9090}]";
        let plain = "[{containerPort: 80}]";
        // (pods already placed, the new pod's ports, expected node)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let table: &[Case] = &[
            (&[], web, Some("node-1")),
            // fewest pods wins among free nodes
            (&[("node-1", plain)], plain, Some("node-2")),
            (&[("node-1", web)], web, Some("node-2")),
            // node-2 has more pods but node-1's port is taken
            (
                &[("node-1", web), ("node-2", plain), ("node-2", plain)],
                web,
                Some("node-2"),
            ),
            (&[("node-1", web), ("node-2", web)], web, None),
            (&[("node-1", web), ("node-2", web)], other, Some("node-1")),
            (&[("node-1", web), ("node-2", web)], plain, Some("node-1")),
        ];
        for (i, (placed, ports, want)) in table.iter().enumerate() {
            let pods: Vec<Pod> = placed.iter().map(|(n, p)| pod(Some(n), p)).collect();
            let got = pick(&pod(None, ports), &nodes, &pods);
            match want {
                Some(n) => assert_eq!(got, Ok(n.to_string()), "case {i}"),
                None => assert_eq!(
                    got.unwrap_err().message,
                    "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
                    "case {i}"
                ),
            }
        }
        // A finished pod frees its port; nodeName binds whatever the ports.
        let mut done = pod(Some("node-1"), web);
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let one = [node("node-1", "")];
        assert_eq!(pick(&pod(None, web), &one, &[done]), Ok("node-1".into()));
        let taken = [pod(Some("node-1"), web), pod(Some("node-2"), web)];
        assert_eq!(
            pick(&pod(Some("node-2"), web), &nodes, &taken),
            Ok("node-2".into())
        );
    }
}
