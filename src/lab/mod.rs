//! The `lab` layer: lab files (multi-document Kubernetes YAML plus an optional
//! `kind: Lab` document) parsed into the real Kubernetes types and validated.
//! Pure: it reads files and nothing else, so a bad lab file changes nothing on
//! the host.

pub mod config;
pub mod documents;
pub mod error;
pub mod validate;

pub use config::LabConfig;
pub use error::{LabError, Source};

use crate::cluster::access::AccessObject;
use config::{LabDocument, NodesSpec};
use documents::Document;
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::path::{Path, PathBuf};

/// A Kubernetes object with the place it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub at: Source,
    pub object: T,
}

/// Everything a lab file set asks for, validated.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub config: LabConfig,
    pub deployments: Vec<Sourced<Deployment>>,
    pub pods: Vec<Sourced<Pod>>,
    pub services: Vec<Sourced<Service>>,
    pub secrets: Vec<Sourced<Secret>>,
    pub config_maps: Vec<Sourced<ConfigMap>>,
    pub namespaces: Vec<Sourced<Namespace>>,
    /// ServiceAccounts and RBAC's objects (`cluster::access`).
    pub access: Vec<Sourced<AccessObject>>,
    /// Defaulted and validated when stored (`cluster::network_policies`),
    /// as kube-apiserver does on each write.
    pub network_policies: Vec<Sourced<NetworkPolicy>>,
    /// Whether the files had a `kind: Lab` document (only `up` takes one).
    pub has_lab_document: bool,
    /// Where the Lab document is (for errors `up` finds on the host, such
    /// as a `spec.diskSize` larger than the free space).
    pub lab_at: Option<Source>,
}

/// Options from the command line that override the Lab document.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
}

/// Reads, parses and validates lab files. All problems are reported together.
pub fn load(paths: &[PathBuf], overrides: &Overrides) -> Result<LabSpec, LabError> {
    let mut documents = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: path.clone(),
            source,
        })?;
        documents.extend(documents::split(path, &text)?);
    }
    let default_name = paths
        .first()
        .map(|p| config::name_from_file(p))
        .unwrap_or_else(|| "lab".into());
    from_documents(documents, &default_name, overrides)
}

/// Parses one YAML text (for tests and `apply` from stdin later).
pub fn load_str(file: &Path, text: &str, overrides: &Overrides) -> Result<LabSpec, LabError> {
    let documents = documents::split(file, text)?;
    from_documents(documents, &config::name_from_file(file), overrides)
}

fn from_documents(
    documents: Vec<Document>,
    default_name: &str,
    overrides: &Overrides,
) -> Result<LabSpec, LabError> {
    let mut errors = Vec::new();
    let mut lab_doc: Option<(LabDocument, Source)> = None;
    let mut deployments = Vec::new();
    let mut pods = Vec::new();
    let mut services = Vec::new();
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    let mut access = Vec::new();
    let mut network_policies = Vec::new();
    let mut namespaces = Vec::new();

    for doc in documents {
        let expected = match doc.kind.as_str() {
            "Lab" => config::API_VERSION,
            "Deployment" => "apps/v1",
            "Pod" | "Service" | "Secret" | "ConfigMap" | "ServiceAccount" | "Namespace" => "v1",
            "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
                "rbac.authorization.k8s.io/v1"
            }
            "NetworkPolicy" => "networking.k8s.io/v1",
            "Endpoints" => {
                errors.push(LabError::invalid(
                    &doc.at,
                    doc.object_name(),
                    "Endpoints are computed by netlab from the Services' selectors: remove this document (supported: Deployment, Pod, Service, Secret, ConfigMap, Lab)",
                ));
                continue;
            }
            other => {
                errors.push(LabError::invalid(
                    &doc.at,
                    doc.object_name(),
                    format!("unknown kind {other:?}: netlab understands Deployment (apps/v1), Pod, Service, Secret, ConfigMap, ServiceAccount and Namespace (v1), Role, RoleBinding, ClusterRole and ClusterRoleBinding (rbac.authorization.k8s.io/v1), NetworkPolicy (networking.k8s.io/v1), and Lab ({})", config::API_VERSION),
                ));
                continue;
            }
        };
        if doc.api_version != expected {
            errors.push(LabError::invalid(
                &doc.at,
                doc.object_name(),
                format!(
                    "apiVersion {:?} is not served for kind {}: use apiVersion: {expected}",
                    doc.api_version, doc.kind
                ),
            ));
            continue;
        }
        match doc.kind.as_str() {
            "Lab" => match doc.parse::<LabDocument>() {
                Ok(lab) => {
                    if let Some((_, first)) = &lab_doc {
                        errors.push(LabError::invalid(
                            &doc.at,
                            "Lab",
                            format!("a second Lab document (the first is at {first}): keep one"),
                        ));
                    } else {
                        lab_doc = Some((lab, doc.at.clone()));
                    }
                }
                Err(e) => errors.push(e),
            },
            "Deployment" => match doc.parse::<Deployment>() {
                Ok(object) => deployments.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "Pod" => match doc.parse::<Pod>() {
                Ok(object) => pods.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "Service" => match doc.parse::<Service>() {
                Ok(object) => services.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "Secret" => match doc.parse::<Secret>() {
                Ok(object) => secrets.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "Namespace" => match doc.parse::<Namespace>() {
                Ok(object) => namespaces.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "ConfigMap" => match doc.parse::<ConfigMap>() {
                Ok(object) => config_maps.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            "NetworkPolicy" => match doc.parse::<NetworkPolicy>() {
                Ok(object) => network_policies.push(Sourced {
                    at: doc.at.clone(),
                    object,
                }),
                Err(e) => errors.push(e),
            },
            kind => {
                let parsed = match kind {
                    "ServiceAccount" => doc.parse().map(AccessObject::ServiceAccount),
                    "Role" => doc.parse().map(AccessObject::Role),
                    "RoleBinding" => doc.parse().map(AccessObject::RoleBinding),
                    "ClusterRole" => doc.parse().map(AccessObject::ClusterRole),
                    "ClusterRoleBinding" => doc.parse().map(AccessObject::ClusterRoleBinding),
                    _ => unreachable!(),
                };
                match parsed {
                    Ok(object) => access.push(Sourced {
                        at: doc.at.clone(),
                        object,
                    }),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    validate::access(&mut access, &mut errors);

    let has_lab_document = lab_doc.is_some();
    let lab_at = lab_doc.as_ref().map(|(_, at)| at.clone());
    let config = match lab_config(lab_doc, default_name, overrides) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if let Some(config) = &config {
        validate::objects(
            config,
            &mut deployments,
            &mut pods,
            &mut services,
            &mut secrets,
            &mut config_maps,
            &mut errors,
        );
    }
    LabError::collect(errors)?;
    Ok(LabSpec {
        has_lab_document,
        lab_at,
        config: config.expect("no errors means a config"),
        deployments,
        pods,
        services,
        secrets,
        config_maps,
        namespaces,
        access,
        network_policies,
    })
}

fn lab_config(
    doc: Option<(LabDocument, Source)>,
    default_name: &str,
    overrides: &Overrides,
) -> Result<LabConfig, LabError> {
    let (lab, at) = match doc {
        Some((lab, at)) => (Some(lab), at),
        None => (
            None,
            Source {
                file: PathBuf::from("<defaults>"),
                line: 0,
            },
        ),
    };
    let spec = lab.as_ref().map(|l| l.spec.clone()).unwrap_or_default();
    let bad = |msg: String| LabError::invalid(&at, "Lab", msg);

    let name = overrides
        .name
        .clone()
        .or_else(|| lab.as_ref().and_then(|l| l.metadata.name.clone()))
        .unwrap_or_else(|| default_name.to_string());
    config::validate_lab_name(&name).map_err(bad)?;

    let nodes: Vec<String> = match spec.nodes {
        None => (1..=config::DEFAULT_NODES)
            .map(|i| format!("node-{i}"))
            .collect(),
        Some(NodesSpec::Count(n)) if (1..=250).contains(&n) => {
            (1..=n).map(|i| format!("node-{i}")).collect()
        }
        Some(NodesSpec::Count(n)) => {
            return Err(bad(format!(
                "spec.nodes: {n} is out of range: a lab has 1 to 250 nodes"
            )))
        }
        Some(NodesSpec::Names(names)) => {
            if names.is_empty() || names.len() > 250 {
                return Err(bad("spec.nodes: list 1 to 250 node names".into()));
            }
            for (i, n) in names.iter().enumerate() {
                validate::dns_label(n)
                    .map_err(|m| bad(format!("spec.nodes[{i}]: node name {n:?} {m}")))?;
                if names[..i].contains(n) {
                    return Err(bad(format!("spec.nodes: node {n:?} is listed twice")));
                }
            }
            names
        }
    };

    let cidr = |field: &str, value: Option<String>, default: &str| -> Result<Ipv4Net, LabError> {
        let text = value.unwrap_or_else(|| default.to_string());
        let net: Ipv4Net = text.parse().map_err(|_| {
            bad(format!(
                "spec.{field}: {text:?} is not an IPv4 CIDR (write it like {default})"
            ))
        })?;
        if net.network() != net.addr() {
            return Err(bad(format!(
                "spec.{field}: {text} has host bits set: did you mean {}?",
                net.trunc()
            )));
        }
        Ok(net)
    };
    let pod_cidr = cidr("podCIDR", spec.pod_cidr, config::DEFAULT_POD_CIDR)?;
    let service_cidr = cidr(
        "serviceCIDR",
        spec.service_cidr,
        config::DEFAULT_SERVICE_CIDR,
    )?;
    let node_cidr = cidr("nodeCIDR", spec.node_cidr, config::DEFAULT_NODE_CIDR)?;

    // A subnet per node (a /24 unless spec.podCIDRMaskSize says otherwise),
    // numbered from 1 (node-1 → 10.244.1.0/24), as the tutorial shows.
    let mask = match spec.pod_cidr_mask_size {
        None => config::DEFAULT_POD_CIDR_MASK_SIZE,
        Some(m) if (16..=28).contains(&m) => m as u8,
        Some(m) => {
            return Err(bad(format!(
                "spec.podCIDRMaskSize: {m} is out of range: use 16 to 28 (24 gives each node 253 pods, 22 gives 1 021)"
            )))
        }
    };
    let needed = nodes.len() + 1;
    let available = if pod_cidr.prefix_len() > mask {
        0
    } else {
        1usize << (mask - pod_cidr.prefix_len())
    };
    if available < needed {
        return Err(bad(format!(
            "spec.podCIDR: {pod_cidr} has room for {} node /{mask}s, the lab needs {needed}: use a larger range such as 10.244.0.0/16",
            available.saturating_sub(1)
        )));
    }
    let lan_hosts = (1u64 << (32 - node_cidr.prefix_len())).saturating_sub(3);
    if (nodes.len() as u64) > lan_hosts {
        return Err(bad(format!(
            "spec.nodeCIDR: {node_cidr} is too small for {} nodes",
            nodes.len()
        )));
    }
    for (a, an, b, bn) in [
        (pod_cidr, "podCIDR", service_cidr, "serviceCIDR"),
        (pod_cidr, "podCIDR", node_cidr, "nodeCIDR"),
        (service_cidr, "serviceCIDR", node_cidr, "nodeCIDR"),
    ] {
        if a.contains(&b) || b.contains(&a) {
            return Err(bad(format!(
                "spec.{an} {a} overlaps spec.{bn} {b}: pick ranges that do not overlap"
            )));
        }
    }
    let dns = match spec.dns {
        None => config::DnsConfig::default(),
        Some(d) => {
            let mut upstreams = Vec::new();
            for (i, u) in d.upstreams.iter().enumerate() {
                let addr = u
                    .parse::<std::net::SocketAddr>()
                    .or_else(|_| u.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| {
                        bad(format!(
                            "spec.dns.upstreams[{i}]: {u:?} is not an address: write it like 192.0.2.53 or 127.0.0.1:5353"
                        ))
                    })?;
                upstreams.push(addr);
            }
            config::DnsConfig {
                enabled: d.enabled.unwrap_or(true),
                upstreams,
            }
        }
    };
    let public = public_config(
        spec.public.unwrap_or_default(),
        nodes.len(),
        &[
            (pod_cidr, "podCIDR"),
            (service_cidr, "serviceCIDR"),
            (node_cidr, "nodeCIDR"),
        ],
    )
    .map_err(bad)?;
    let mut registry_mirrors = std::collections::BTreeMap::new();
    for (registry, mirror) in spec.registries.iter().flat_map(|r| r.mirrors.iter()) {
        for e in &mirror.endpoint {
            if e.is_empty() || e.chars().any(char::is_whitespace) {
                return Err(bad(format!(
                    "spec.registries.mirrors.{registry}.endpoint {e:?}: write [http[s]://]host[:port]"
                )));
            }
        }
        registry_mirrors.insert(registry.clone(), mirror.endpoint.clone());
    }
    let disk_size = match &spec.disk_size {
        None => None,
        Some(q) => {
            let text = match q {
                config::QuantityDoc::Int(n) => n.to_string(),
                config::QuantityDoc::Text(t) => t.clone(),
            };
            let bytes = crate::cluster::resources::bytes(&text)
                .map_err(|m| bad(format!("spec.diskSize: {m}")))?;
            if (bytes as u64) < config::MIN_DISK_SIZE {
                return Err(bad(format!(
                    "spec.diskSize: {text} is too small for the containers' writable layers: use at least 16Mi"
                )));
            }
            Some(bytes as u64)
        }
    };
    let mut timing = config::Timing::default();
    if let Some(t) = &spec.timing {
        if let Some(g) = &t.node_monitor_grace_period {
            let d = config::go_duration(g)
                .map_err(|m| bad(format!("spec.timing.nodeMonitorGracePeriod: {m}")))?;
            if d.is_zero() {
                return Err(bad(
                    "spec.timing.nodeMonitorGracePeriod: must be more than 0".to_string(),
                ));
            }
            timing.node_monitor_grace_period_ms = d.as_millis() as u64;
        }
        if let Some(s) = t.default_toleration_seconds {
            if s < 0 {
                return Err(bad(format!(
                    "spec.timing.defaultTolerationSeconds: {s}: must be 0 or more"
                )));
            }
            timing.default_toleration_seconds = s;
        }
    }
    Ok(LabConfig {
        name,
        disk_size,
        timing,
        nodes,
        pod_cidr,
        pod_cidr_mask_size: mask,
        service_cidr,
        node_cidr,
        dns,
        registry_mirrors,
        public,
    })
}

/// `spec.public`: the public network's range, its LoadBalancer pool, and
/// host access, checked against the lab's other ranges and its node count.
fn public_config(
    doc: config::PublicDocSpec,
    nodes: usize,
    others: &[(Ipv4Net, &str)],
) -> Result<config::PublicConfig, String> {
    use std::net::Ipv4Addr;
    let default = config::PublicConfig::default();
    let cidr = match &doc.cidr {
        None => default.cidr,
        Some(text) => {
            let net: Ipv4Net = text.parse().map_err(|_| {
                format!(
                    "spec.public.cidr: {text:?} is not an IPv4 CIDR (write it like 203.0.113.0/24)"
                )
            })?;
            if net.network() != net.addr() {
                return Err(format!(
                    "spec.public.cidr: {text} has host bits set: did you mean {}?",
                    net.trunc()
                ));
            }
            if net.prefix_len() > 24 {
                return Err(format!(
                    "spec.public.cidr: {text} is too small: use a /24 or larger"
                ));
            }
            net
        }
    };
    for (other, name) in others {
        if cidr.contains(other) || other.contains(&cidr) {
            return Err(format!(
                "spec.public.cidr {cidr} overlaps spec.{name} {other}: pick ranges that do not overlap"
            ));
        }
    }
    let nth = |n: u32| Ipv4Addr::from(u32::from(cidr.network()) + n);
    let pool = match &doc.load_balancer_pool {
        None => (nth(200), nth(250)),
        Some(text) => {
            let parse = |s: &str| s.trim().parse::<Ipv4Addr>();
            let range = if let Some((a, b)) = text.split_once('-') {
                parse(a).ok().zip(parse(b).ok())
            } else if let Ok(net) = text.parse::<Ipv4Net>() {
                Some((net.network(), net.broadcast()))
            } else {
                None
            };
            let (a, b) = range.ok_or_else(|| {
                format!("spec.public.loadBalancerPool: {text:?}: write a range (203.0.113.200-203.0.113.250) or a CIDR")
            })?;
            if a > b {
                return Err(format!(
                    "spec.public.loadBalancerPool: {text:?} starts after it ends"
                ));
            }
            (a, b)
        }
    };
    if !cidr.contains(&pool.0) || !cidr.contains(&pool.1) {
        return Err(format!(
            "spec.public.loadBalancerPool {}-{} is not inside spec.public.cidr {cidr}",
            pool.0, pool.1
        ));
    }
    // .1 the public network's bridge, .2… the nodes, .254 the external host.
    let last_node = nth(nodes as u32 + 1);
    let external = nth(254);
    let reserved = [nth(1), nth(253), external];
    if pool.0 <= last_node || reserved.iter().any(|r| (pool.0..=pool.1).contains(r)) {
        return Err(format!(
            "spec.public.loadBalancerPool {}-{} overlaps the nodes' ExternalIPs ({}-{last_node}), the bridge ({}), host access (.253) or the external host ({external}): pick addresses above the nodes' and below .253",
            pool.0, pool.1, nth(2), nth(1)
        ));
    }
    if last_node >= external {
        return Err(format!(
            "spec.public.cidr {cidr}: {nodes} nodes do not fit below the external host ({external}): use a larger range"
        ));
    }
    Ok(config::PublicConfig {
        cidr,
        lb_pool: pool,
        host_access: doc.host_access.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUTORIAL: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 2
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: nginx
        ports:
        - containerPort: 80
"#;

    fn load(text: &str) -> Result<LabSpec, LabError> {
        load_str(Path::new("labs/test.yaml"), text, &Overrides::default())
    }

    #[test]
    fn tutorial_file_with_defaults() {
        let spec = load_str(
            Path::new("run-my-nginx.yaml"),
            TUTORIAL,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(spec.config.name, "run-my-nginx");
        assert_eq!(spec.config.nodes, vec!["node-1", "node-2"]);
        assert_eq!(spec.config.pod_cidr.to_string(), "10.244.0.0/16");
        assert_eq!(spec.deployments.len(), 1);
        assert_eq!(
            spec.deployments[0].object.spec.as_ref().unwrap().replicas,
            Some(2)
        );
    }

    #[test]
    fn lab_document_sets_topology() {
        let text = format!(
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nmetadata:\n  name: demo\nspec:\n  nodes: [a, b, c]\n  podCIDR: 10.88.0.0/16\n---\n{TUTORIAL}"
        );
        let spec = load(&text).unwrap();
        assert_eq!(spec.config.name, "demo");
        assert_eq!(spec.config.nodes, vec!["a", "b", "c"]);
        assert_eq!(spec.config.pod_cidr.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn namespaces_are_lab_objects() {
        let spec = load(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  labels: {{team: blue}}\n---\n{TUTORIAL}"
        ))
        .unwrap();
        assert_eq!(spec.namespaces.len(), 1);
        let err = load("apiVersion: v2\nkind: Namespace\nmetadata:\n  name: web\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("use apiVersion: v1"), "{err}");
    }

    #[test]
    fn network_policies_are_lab_objects() {
        let spec = load(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\nspec:\n  podSelector: {{}}\n---\n{TUTORIAL}"
        ))
        .unwrap();
        assert_eq!(spec.network_policies.len(), 1);
        let err =
            load("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata:\n  name: deny\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("use apiVersion: networking.k8s.io/v1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_kind_names_file_line_and_kind() {
        let err = load("apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("labs/test.yaml:1"), "{err}");
        assert!(err.contains("Frobnicator/x"), "{err}");
        assert!(err.contains("unknown kind"), "{err}");
    }

    #[test]
    fn invalid_cidr() {
        let err =
            load("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDR: 10.244.0.0/33\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("podCIDR"), "{err}");
        assert!(err.contains("not an IPv4 CIDR"), "{err}");
        let err =
            load("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDR: 10.244.0.0/25\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("room for"), "{err}");
        let err =
            load("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDRMaskSize: 30\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("podCIDRMaskSize"), "{err}");
        let err = load(
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDR: 10.244.0.0/22\n  podCIDRMaskSize: 22\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("room for 0 node /22s"), "{err}");
        let spec =
            load("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDRMaskSize: 22\n")
                .unwrap();
        assert_eq!(spec.config.pod_cidr_mask_size, 22);
        let lab = |size: &str| {
            load(&format!(
                "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  diskSize: {size}\n"
            ))
        };
        assert_eq!(lab("64Mi").unwrap().config.disk_size, Some(64 << 20));
        assert_eq!(lab("1G").unwrap().config.disk_size, Some(1_000_000_000));
        assert_eq!(lab("33554432").unwrap().config.disk_size, Some(32 << 20));
        let err = lab("1Mi").unwrap_err().to_string();
        assert!(
            err.contains(":1: Lab: spec.diskSize: 1Mi is too small"),
            "{err}"
        );
        let err = lab("lots").unwrap_err().to_string();
        assert!(
            err.contains("spec.diskSize: \"lots\" is not a quantity"),
            "{err}"
        );
        // Kubernetes' clocks: its defaults, or compressed for a drill.
        let timing = |t: &str| {
            load(&format!(
                "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  timing: {t}\n"
            ))
        };
        let t = timing("{}").unwrap().config.timing;
        assert_eq!(
            (t.node_monitor_grace_period_ms, t.default_toleration_seconds),
            (50_000, 300)
        );
        let t = timing("{nodeMonitorGracePeriod: 1.5s, defaultTolerationSeconds: 3}")
            .unwrap()
            .config
            .timing;
        assert_eq!(
            (t.node_monitor_grace_period_ms, t.default_toleration_seconds),
            (1_500, 3)
        );
        for (bad, says) in [
            (
                "{nodeMonitorGracePeriod: soon}",
                "spec.timing.nodeMonitorGracePeriod: \"soon\" is not a duration",
            ),
            ("{nodeMonitorGracePeriod: 0s}", "must be more than 0"),
            (
                "{defaultTolerationSeconds: -1}",
                "spec.timing.defaultTolerationSeconds: -1",
            ),
            ("{gracePeriod: 1s}", "unknown field `gracePeriod`"),
        ] {
            let err = timing(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = load(
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  serviceCIDR: 10.244.0.0/16\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("overlaps"), "{err}");
    }

    #[test]
    fn negative_replicas() {
        let err = load(&TUTORIAL.replace("replicas: 2", "replicas: -1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Deployment/my-nginx"), "{err}");
        assert!(err.contains("replicas"), "{err}");
    }

    #[test]
    fn duplicate_names() {
        let err = load(&format!("{TUTORIAL}---\n{TUTORIAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("defined twice"), "{err}");
        assert!(err.contains("labs/test.yaml:1"), "{err}");
    }

    #[test]
    fn wrong_field_type_points_at_line() {
        let err = load(&TUTORIAL.replace("containerPort: 80", "containerPort: eighty"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("labs/test.yaml:19"), "{err}");
    }

    #[test]
    fn all_errors_are_reported() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Nope\n",
            TUTORIAL.replace("replicas: 2", "replicas: -3")
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("2 problems"), "{err}");
    }
}
