//! `hostNetwork: true`, pure: a pod that has no network namespace of its
//! own. Its containers join its node's (`netlab-<lab>.node.<node>`), so it
//! has no veth and no address from the node's pod range: its pod IP is the
//! node's InternalIP, and a port it listens on is the node's port.
//!
//! What Kubernetes does around it, and where netlab does the same:
//! - the API server defaults each `hostPort` to its `containerPort`
//!   ([`default_host_ports`], when a pod is placed) and refuses another
//!   value ([`validate`]), so the scheduler's NodePorts filter keeps two
//!   pods that listen on one port apart (`scheduler.rs`);
//! - the pod's address is its node's (`state.rs`, `bind`); IPAM is not
//!   asked, so nothing is allocated or released for it;
//! - `dnsPolicy: ClusterFirst` falls back to the node's resolver, and
//!   `ClusterFirstWithHostNet` asks for the cluster DNS (`dns.rs`);
//! - its hostname is the node's ([`hostname`]).

use k8s_openapi::api::core::v1::{Pod, PodSpec};

/// Whether a pod shares its node's network namespace.
pub fn is_host_network(p: &Pod) -> bool {
    p.spec.as_ref().is_some_and(spec_is_host_network)
}

pub fn spec_is_host_network(s: &PodSpec) -> bool {
    s.host_network == Some(true)
}

/// The API server's defaulting of a hostNetwork pod (`SetDefaults_Pod`):
/// every container port without a `hostPort` gets its `containerPort`,
/// since the process listens on the node's port whatever the spec says.
/// Pods only, as since Kubernetes 1.28: a Deployment's template keeps what
/// the user wrote, its pods get the default when they are created.
pub fn default_host_ports(p: &mut Pod) {
    let Some(spec) = p.spec.as_mut().filter(|s| spec_is_host_network(s)) else {
        return;
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for port in containers.flat_map(|c| c.ports.iter_mut().flatten()) {
        if port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
}

/// The API server's rule (`validateHostNetwork`): on a hostNetwork pod a
/// `hostPort` other than its `containerPort` cannot be honoured (there is
/// no translation between the two: the process binds the node's port).
pub fn validate(spec: &PodSpec, path: &str) -> Vec<String> {
    if !spec_is_host_network(spec) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            match p.host_port {
                Some(hp) if hp != 0 && hp != p.container_port => out.push(format!(
                    "{path}.containers[{i}].ports[{j}].hostPort: Invalid value: {hp}: must match `containerPort` ({}) when `hostNetwork` is true: drop hostPort or make it equal",
                    p.container_port
                )),
                _ => {}
            }
        }
    }
    out
}

/// The pod's hostname (its UTS name, `/etc/hostname`, `$HOSTNAME`): the
/// node's for a hostNetwork pod (netlab's node name: a node has no UTS
/// namespace of its own), else `spec.hostname` or the pod's name, at most
/// 63 characters as the kubelet truncates it.
pub fn hostname(p: &Pod) -> String {
    let spec = p.spec.as_ref();
    let name = match spec {
        Some(s) if spec_is_host_network(s) => s.node_name.clone(),
        Some(s) => s.hostname.clone(),
        None => None,
    }
    .or_else(|| p.metadata.name.clone())
    .unwrap_or_default();
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn host_ports(p: &Pod) -> Vec<Option<i32>> {
        p.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.host_port)
            .collect()
    }

    const PORTS: &str = "  containers:\n  - name: c\n    ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP, hostPort: 0}, {containerPort: 9090, hostPort: 9090}]\n";

    #[test]
    fn host_ports_default_to_container_ports_on_host_network_pods_only() {
        let mut p = pod(&format!(
            "metadata: {{name: p}}\nspec:\n  hostNetwork: true\n{PORTS}"
        ));
        default_host_ports(&mut p);
        assert_eq!(host_ports(&p), [Some(80), Some(53), Some(9090)]);
        // The scheduler now sees the ports the pod takes on its node.
        let claims = crate::cluster::scheduler::host_ports(&p);
        assert_eq!(claims.len(), 3, "{claims:?}");
        assert_eq!((claims[1].protocol.as_str(), claims[1].port), ("UDP", 53));

        let mut normal = pod(&format!("metadata: {{name: p}}\nspec:\n{PORTS}"));
        default_host_ports(&mut normal);
        assert_eq!(host_ports(&normal), [None, Some(0), Some(9090)]);
    }

    #[test]
    fn a_different_host_port_is_refused_on_host_network() {
        let spec = |hn: bool| -> PodSpec {
            serde_yaml_ng::from_str(&format!(
                "hostNetwork: {hn}\ncontainers:\n- name: c\n  ports: [{{containerPort: 80}}, {{containerPort: 81, hostPort: 81}}, {{containerPort: 82, hostPort: 8082}}]\n"
            ))
            .unwrap()
        };
        let got = validate(&spec(true), "spec.template.spec");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("spec.template.spec.containers[0].ports[2].hostPort: Invalid value: 8082: must match `containerPort` (82)"),
            "{}",
            got[0]
        );
        assert!(validate(&spec(false), "spec").is_empty());
    }

    #[test]
    fn host_network_pods_take_the_node_hostname() {
        let p = pod("metadata: {name: web-1}\nspec:\n  hostNetwork: true\n  hostname: ignored\n  nodeName: node-2\n  containers: []\n");
        assert_eq!(hostname(&p), "node-2");
        let p = pod("metadata: {name: web-1}\nspec:\n  hostname: mine\n  nodeName: node-2\n  containers: []\n");
        assert_eq!(hostname(&p), "mine");
        let p = pod("metadata: {name: web-1}\nspec:\n  containers: []\n");
        assert_eq!(hostname(&p), "web-1");
        assert!(is_host_network(&pod(
            "metadata: {name: a}\nspec:\n  hostNetwork: true\n  containers: []\n"
        )));
        assert!(!is_host_network(&pod("metadata: {name: a}\n")));
    }
}
