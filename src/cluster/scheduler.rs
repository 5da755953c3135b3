//! kube-scheduler's decision, pure: which node a pod goes to.
//!
//! Filters, then a score, as kube-scheduler does, with the filters netlab
//! needs: `spec.nodeName` (the pod is already bound), and `NodePorts` (a
//! node where another pod holds one of the pod's `hostPort`s cannot take
//! it). The score is "fewest pods". No feasible node: the pod stays
//! Pending, unbound, with a `FailedScheduling` event; it is tried again at
//! every later change.

use k8s_openapi::api::core::v1::Pod;

use super::state::pod_node;

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
    nodes: &[String],
    pods: impl IntoIterator<Item = &'a Pod> + Copy,
) -> Result<String, Unschedulable> {
    if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return Ok(n);
    }
    let wanted = host_ports(pod);
    let free = |n: &str| {
        wanted.is_empty()
            || !pods
                .into_iter()
                .filter(|p| pod_node(p) == Some(n) && holds_node(p))
                .flat_map(host_ports)
                .any(|used| wanted.iter().any(|w| w.conflicts(&used)))
    };
    let count = |n: &str| {
        pods.into_iter()
            .filter(|p| pod_node(p) == Some(n) && p.metadata.deletion_timestamp.is_none())
            .count()
    };
    let feasible: Vec<&String> = nodes.iter().filter(|n| free(n)).collect();
    match feasible.into_iter().min_by_key(|n| count(n)) {
        Some(n) => Ok(n.clone()),
        None => Err(Unschedulable {
            message: format!(
                "0/{total} nodes are available: {total} node(s) didn't have free ports for the requested pod ports.",
                total = nodes.len()
            ),
        }),
    }
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
        let nodes = vec!["node-1".to_string(), "node-2".to_string()];
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
        let one = ["node-1".to_string()];
        assert_eq!(pick(&pod(None, web), &one, &[done]), Ok("node-1".into()));
        let taken = [pod(Some("node-1"), web), pod(Some("node-2"), web)];
        assert_eq!(
            pick(&pod(Some("node-2"), web), &nodes, &taken),
            Ok("node-2".into())
        );
    }
}
