//! The cluster DNS as objects (pure): the `kube-dns` Service and the
//! `coredns` Deployment in `kube-system`, as kubeadm creates them, and the
//! `/etc/resolv.conf` a kubelet writes for each pod.
//!
//! The server itself is netlab's own (`crate::dns`), run by the lab's
//! controller inside the coredns pods' network namespaces: the pods are
//! marked with [`BUILTIN_ANNOTATION`] and have no runc container.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::lab::LabConfig;

/// The cluster domain, as every kubelet's `--cluster-domain` defaults it.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
pub const DEPLOYMENT: &str = "coredns";
/// On pods whose "container" is a server inside the controller.
pub const BUILTIN_ANNOTATION: &str = "netlab.dev/builtin";
pub const BUILTIN_DNS: &str = "dns";
/// What `describe pod` shows as the image of the built-in DNS server.
pub const IMAGE: &str = "netlab/cluster-dns:builtin";

fn labels() -> BTreeMap<String, String> {
    [("k8s-app".to_string(), "kube-dns".to_string())].into()
}

/// Whether a pod runs netlab's built-in DNS server rather than containers.
pub fn is_builtin(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BUILTIN_ANNOTATION))
        .is_some_and(|v| v == BUILTIN_DNS)
}

/// `kube-dns` at the service CIDR's .10, 53/UDP and 53/TCP.
pub fn service(dns_ip: Ipv4Addr) -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::Int(53)),
        ..Default::default()
    };
    let mut svc_labels = labels();
    svc_labels.insert("kubernetes.io/name".into(), "CoreDNS".into());
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(svc_labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(dns_ip.to_string()),
            selector: Some(labels()),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The `coredns` Deployment: one replica whose pods carry the built-in mark.
pub fn deployment() -> Deployment {
    let port = |name: &str, protocol: &str| ContainerPort {
        name: Some(name.into()),
        container_port: 53,
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(DEPLOYMENT.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    annotations: Some(
                        [(BUILTIN_ANNOTATION.to_string(), BUILTIN_DNS.to_string())].into(),
                    ),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "coredns".into(),
                        image: Some(IMAGE.into()),
                        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
                        ..Default::default()
                    }],
                    dns_policy: Some("Default".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod's `/etc/resolv.conf`, as the kubelet writes it for its
/// `dnsPolicy` and `dnsConfig`. `node_resolv` is the node's own file (the
/// host's), used by `Default`; with the cluster DNS off, `ClusterFirst`
/// falls back to it as the kubelet does without `--cluster-dns`.
///
/// A hostNetwork pod is the kubelet's exception (`getPodDNSType`): there
/// `ClusterFirst` means the node's file, as `Default` does, and only
/// `ClusterFirstWithHostNet` asks for the cluster DNS (which a normal pod
/// gets from either).
pub fn resolv_conf(pod: &Pod, config: &LabConfig, node_resolv: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = crate::cluster::state::namespace(&pod.metadata);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = crate::cluster::host_network::spec_is_host_network(&spec);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let (mut nameservers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "None" => Default::default(),
            _ if cluster && config.dns.enabled => (
                vec![crate::cluster::services::dns_ip(config.service_cidr).to_string()],
                vec![
                    format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                    format!("svc.{CLUSTER_DOMAIN}"),
                    CLUSTER_DOMAIN.to_string(),
                ],
                vec!["ndots:5".to_string()],
            ),
            _ => parse_resolv(node_resolv),
        };
    if let Some(cfg) = &spec.dns_config {
        for n in cfg.nameservers.iter().flatten() {
            if !nameservers.contains(n) {
                nameservers.push(n.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !searches.contains(s) {
                searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    // The kubelet's limits: 3 nameservers, 32 search domains.
    nameservers.truncate(3);
    searches.truncate(32);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut n, mut s, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => n.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => s = words.map(String::from).collect(),
            Some("options") => o.extend(words.map(String::from)),
            _ => {}
        }
    }
    (n, s, o)
}

/// Kubernetes' rules for `dnsPolicy` and `dnsConfig` (pod validation).
pub fn validate_pod_dns(spec: &PodSpec) -> Result<(), String> {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    if !["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"].contains(&policy) {
        return Err(format!("spec.dnsPolicy: Unsupported value: {policy:?}: supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""));
    }
    let cfg = spec.dns_config.clone().unwrap_or_default();
    let nameservers = cfg.nameservers.unwrap_or_default();
    if policy == "None" && nameservers.is_empty() {
        return Err("spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None".into());
    }
    if nameservers.len() > 3 {
        return Err(format!("spec.dnsConfig.nameservers: Invalid value: {nameservers:?}: must not have more than 3 nameservers"));
    }
    for (i, n) in nameservers.iter().enumerate() {
        if n.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "spec.dnsConfig.nameservers[{i}]: Invalid value: {n:?}: must be a valid IP address"
            ));
        }
    }
    if cfg.searches.unwrap_or_default().len() > 32 {
        return Err(
            "spec.dnsConfig.searches: Invalid value: must not have more than 32 search paths"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    fn config(enabled: bool) -> LabConfig {
        LabConfig {
            disk_size: None,
            name: "t".into(),
            nodes: vec!["node-1".into()],
            pod_cidr: "10.244.0.0/16".parse().unwrap(),
            pod_cidr_mask_size: 24,
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            node_cidr: "172.18.0.0/24".parse().unwrap(),
            registry_mirrors: Default::default(),
            dns: crate::lab::config::DnsConfig {
                enabled,
                upstreams: vec![],
            },
            public: Default::default(),
            timing: Default::default(),
        }
    }

    fn pod(ns: &str, policy: Option<&str>, cfg: Option<PodDNSConfig>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(String::from),
                dns_config: cfg,
                ..Default::default()
            }),
            status: None,
        }
    }

    const HOST: &str = "# host\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";

    #[test]
    fn cluster_first_is_the_kubelets_file() {
        assert_eq!(
            resolv_conf(&pod("web", None, None), &config(true), HOST),
            "search web.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_uses_the_node_file_and_dns_config_merges() {
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["192.0.2.9".into()]),
            searches: Some(vec!["my.dns.search.suffix".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        assert_eq!(
            resolv_conf(&pod("default", Some("Default"), None), &config(true), HOST),
            "search example.org\nnameserver 192.0.2.1\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf(
                &pod("default", Some("ClusterFirst"), Some(cfg.clone())),
                &config(true),
                HOST
            ),
            "search default.svc.cluster.local svc.cluster.local cluster.local my.dns.search.suffix\nnameserver 10.0.0.10\nnameserver 192.0.2.9\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            resolv_conf(
                &pod("default", Some("None"), Some(cfg)),
                &config(true),
                HOST
            ),
            "search my.dns.search.suffix\nnameserver 192.0.2.9\noptions ndots:2 edns0\n"
        );
        // No cluster DNS: ClusterFirst falls back to the node's file.
        assert_eq!(
            resolv_conf(&pod("default", None, None), &config(false), HOST),
            "search example.org\nnameserver 192.0.2.1\noptions edns0\n"
        );
    }

    #[test]
    fn host_network_pods_ask_for_the_cluster_dns_only_with_host_net() {
        let host_net = |policy: Option<&str>| {
            let mut p = pod("web", policy, None);
            p.spec.as_mut().unwrap().host_network = Some(true);
            p
        };
        let cluster = "search web.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n";
        let node = "search example.org\nnameserver 192.0.2.1\noptions edns0\n";
        let table = [
            // (hostNetwork pod?, dnsPolicy, the file)
            (true, None, node),
            (true, Some("ClusterFirst"), node),
            (true, Some("Default"), node),
            (true, Some("ClusterFirstWithHostNet"), cluster),
            (false, Some("ClusterFirstWithHostNet"), cluster),
            (false, None, cluster),
        ];
        for (hn, policy, want) in table {
            let p = if hn {
                host_net(policy)
            } else {
                pod("web", policy, None)
            };
            assert_eq!(
                resolv_conf(&p, &config(true), HOST),
                want,
                "hostNetwork {hn}, {policy:?}"
            );
        }
        // No cluster DNS: the node's file, whatever the policy.
        assert_eq!(
            resolv_conf(
                &host_net(Some("ClusterFirstWithHostNet")),
                &config(false),
                HOST
            ),
            node
        );
    }

    #[test]
    fn dns_policy_validation() {
        let spec = |policy: &str, ns: Vec<&str>| PodSpec {
            dns_policy: Some(policy.into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(ns.into_iter().map(String::from).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(validate_pod_dns(&spec("None", vec![]))
            .unwrap_err()
            .contains("at least one DNS nameserver"));
        assert!(validate_pod_dns(&spec("Sometimes", vec![])).is_err());
        assert!(validate_pod_dns(&spec("None", vec!["not-an-ip"])).is_err());
        assert!(validate_pod_dns(&spec("None", vec!["192.0.2.1"])).is_ok());
    }

    #[test]
    fn builtin_pods_are_marked() {
        let d = deployment();
        let t = d.spec.unwrap().template;
        let p = Pod {
            metadata: t.metadata.unwrap(),
            spec: t.spec,
            status: None,
        };
        assert!(is_builtin(&p));
        let s = service("10.0.0.10".parse().unwrap());
        assert_eq!(s.spec.unwrap().ports.unwrap().len(), 2);
    }
}
