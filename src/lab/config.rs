//! The optional `kind: Lab` document: the topology around the Kubernetes
//! objects. Everything has a default that mirrors the tutorial (DESIGN.md).
//!
//! ```yaml
//! apiVersion: netlab.dev/v1alpha1
//! kind: Lab
//! metadata:
//!   name: nginx
//! spec:
//!   nodes: 2                 # a count, or a list of names: [node-a, node-b]
//!   podCIDR: 10.244.0.0/16   # a /24 per node
//!   podCIDRMaskSize: 24      # each node's pod subnet (kube-controller-manager's
//!                            # --node-cidr-mask-size): 22 holds 1 021 pods a node
//!   serviceCIDR: 10.0.0.0/16
//!   nodeCIDR: 172.18.0.0/24  # the lab-internal LAN joining the nodes
//!   dns:                     # the cluster DNS (kube-dns at .10 of serviceCIDR)
//!     enabled: true
//!     upstreams: [127.0.0.1:53]  # where names outside cluster.local go;
//!                                # none: they are refused at once
//!   public:                  # the network outside the cluster (an "internet")
//!     cidr: 203.0.113.0/24   # nodes' ExternalIPs (.2, .3, …), the external host (.254)
//!     loadBalancerPool: 203.0.113.200-203.0.113.250   # LoadBalancer IPs
//!     hostAccess: false      # join it to the host with one veth
//!   diskSize: 10Gi           # the cap of the containers' writable layers (a sparse
//!                            # disk image per lab; at most the free space of /var/lib/netlab)
//!   timing:                  # Kubernetes' clocks for failure drills (its defaults)
//!     nodeMonitorGracePeriod: 50s    # a silent node turns NotReady/Unknown after this
//!     defaultTolerationSeconds: 300  # then its pods are evicted after this
//!   registries:              # registry mirrors, as in containerd/k3s registries.yaml
//!     mirrors:
//!       docker.io:
//!         endpoint: ["http://127.0.0.1:5000"]
//! ```

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "netlab.dev/v1alpha1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabDocument {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: LabMetadata,
    #[serde(default)]
    pub spec: LabDocSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabMetadata {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabDocSpec {
    pub nodes: Option<NodesSpec>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRMaskSize")]
    pub pod_cidr_mask_size: Option<i64>,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<String>,
    #[serde(rename = "nodeCIDR")]
    pub node_cidr: Option<String>,
    pub dns: Option<DnsDocSpec>,
    pub registries: Option<RegistriesSpec>,
    pub public: Option<PublicDocSpec>,
    /// A Kubernetes quantity (`64Mi`, `10Gi`) or a number of bytes.
    pub disk_size: Option<QuantityDoc>,
    pub timing: Option<TimingDocSpec>,
}

/// `spec.timing`: Kubernetes' clocks, which a drill may compress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimingDocSpec {
    /// A Go duration (`50s`, `2s`, `500ms`), as kube-controller-manager's
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace_period: Option<String>,
    /// The DefaultTolerationSeconds admission plugin's value.
    pub default_toleration_seconds: Option<i64>,
}

/// Kubernetes' clocks in a lab (the defaults are Kubernetes' own, 1.32).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    /// How long a node may stay silent before the node lifecycle
    /// controller marks it Unknown and taints it unreachable.
    pub node_monitor_grace_period_ms: u64,
    /// The `tolerationSeconds` every pod gets for the not-ready and
    /// unreachable NoExecute taints (unless it says otherwise).
    pub default_toleration_seconds: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            node_monitor_grace_period_ms: 50_000,
            default_toleration_seconds: 300,
        }
    }
}

/// A Go duration (`1h30m`, `50s`, `1.5s`, `500ms`), as Kubernetes' flags
/// and kubectl read them.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration: write it as 30s, 5m or 1h30m");
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// A quantity as YAML gives it: `10Gi` is text, `1000000` a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum QuantityDoc {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublicDocSpec {
    pub cidr: Option<String>,
    pub load_balancer_pool: Option<String>,
    pub host_access: Option<bool>,
}

/// `spec.registries`: mirrors only. Credentials belong in the host's
/// registries config, not in a lab file that gets shared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesSpec {
    #[serde(default)]
    pub mirrors: BTreeMap<String, MirrorSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDocSpec {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub upstreams: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NodesSpec {
    Count(i64),
    Names(Vec<String>),
}

/// The validated topology of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabConfig {
    pub name: String,
    pub nodes: Vec<String>,
    pub pod_cidr: Ipv4Net,
    /// Prefix length of each node's pod subnet (older state files: 24).
    #[serde(
        default = "default_pod_mask",
        skip_serializing_if = "is_default_pod_mask"
    )]
    pub pod_cidr_mask_size: u8,
    pub service_cidr: Ipv4Net,
    pub node_cidr: Ipv4Net,
    /// Registry mirrors: registry (`docker.io`) → endpoints, tried in order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// Older state files have no `dns`: they get the default.
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub public: PublicConfig,
    /// `spec.diskSize` in bytes, if the lab asked for one (default: the
    /// smaller of 10 GiB and the free space, decided at `up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    #[serde(default)]
    pub timing: Timing,
}

/// The lab's public network: what is outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicConfig {
    pub cidr: Ipv4Net,
    /// LoadBalancer addresses, first and last (inclusive).
    pub lb_pool: (std::net::Ipv4Addr, std::net::Ipv4Addr),
    /// Join the public network to the host (one veth, routes for `cidr`).
    #[serde(default)]
    pub host_access: bool,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig {
            cidr: DEFAULT_PUBLIC_CIDR.parse().expect("valid"),
            lb_pool: ([203, 0, 113, 200].into(), [203, 0, 113, 250].into()),
            host_access: false,
        }
    }
}

/// The external host every lab has on its public network.
pub const EXTERNAL_HOST: &str = "external";

/// The cluster DNS of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub enabled: bool,
    /// Where queries for names outside the cluster domain are forwarded
    /// (from the host's network namespace). Empty: they are refused.
    #[serde(default)]
    pub upstreams: Vec<std::net::SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            upstreams: Vec::new(),
        }
    }
}

pub const DEFAULT_NODES: usize = 2;
/// The default cap of a lab's writable layers (never more than the free
/// space of the image store's filesystem at `up`).
pub const DEFAULT_DISK_SIZE: u64 = 10 << 30;
/// The smallest disk `spec.diskSize` may ask for: ext4's own metadata takes
/// a few MiB.
pub const MIN_DISK_SIZE: u64 = 16 << 20;
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
/// A /24 per node, as the tutorial shows (node-1 → 10.244.1.0/24).
pub const DEFAULT_POD_CIDR_MASK_SIZE: u8 = 24;

fn default_pod_mask() -> u8 {
    DEFAULT_POD_CIDR_MASK_SIZE
}

fn is_default_pod_mask(m: &u8) -> bool {
    *m == DEFAULT_POD_CIDR_MASK_SIZE
}
pub const DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/16";
pub const DEFAULT_NODE_CIDR: &str = "172.18.0.0/24";
/// TEST-NET-3 (RFC 5737): documentation addresses, never routed anywhere.
pub const DEFAULT_PUBLIC_CIDR: &str = "203.0.113.0/24";

/// Lab names become part of namespace names (`netlab-<lab>.node.node-1`) and
/// cgroup paths, so they are DNS labels without dots, kept short.
pub fn validate_lab_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid lab name {name:?}: use 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// `run-my-nginx.yaml` → `run-my-nginx`; anything else folded into a valid name.
pub fn name_from_file(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(40);
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "lab".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names() {
        assert!(validate_lab_name("nginx").is_ok());
        assert!(validate_lab_name("a-1").is_ok());
        assert!(validate_lab_name("A").is_err());
        assert!(validate_lab_name("a.b").is_err());
        assert!(validate_lab_name("-a").is_err());
        assert!(validate_lab_name(&"a".repeat(41)).is_err());
        assert_eq!(
            name_from_file(std::path::Path::new("/x/run-my-nginx.yaml")),
            "run-my-nginx"
        );
        assert_eq!(name_from_file(std::path::Path::new("My_Lab.yml")), "my-lab");
    }
}
