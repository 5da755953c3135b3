//! What the proxy is asked to implement: pure data.
//!
//! The caller (the controller) turns Kubernetes Services, EndpointSlices and
//! the node list into these types; the proxy never sees Kubernetes objects.
//! Only the endpoints kube-proxy would use are given (a port's ready ones,
//! or when it has none, its serving terminating ones), so "no endpoints"
//! means "reject".

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A service port's transport protocol, spelled like Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The keyword nft uses (`meta l4proto tcp`, `inet_proto` map keys).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.nft())
    }
}

/// One usable backend of a service port: where to DNAT to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The target port on the pod.
    pub port: u16,
    /// The node the pod runs on (decides `externalTrafficPolicy: Local`).
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// The port's name; "" if unnamed (then the service has only this port).
    pub name: String,
    pub protocol: Protocol,
    /// The port on the cluster IP and the external IPs.
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// None: headless, no rules at all.
    pub cluster_ip: Option<Ipv4Addr>,
    /// LoadBalancer ingress IPs and `externalIPs`: handled like the cluster
    /// IP, but as "external" traffic (masqueraded, or `Local` policy).
    pub external_ips: Vec<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP` with this timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`.
    pub external_traffic_local: bool,
    /// `loadBalancerSourceRanges`: when not empty, only these sources may
    /// reach the LoadBalancer addresses (`load_balancer_ips`); the rest is
    /// dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<Ipv4Net>,
    /// The LoadBalancer ingress addresses among `external_ips`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<Ipv4Addr>,
}

/// The node whose table is generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Addresses NodePorts answer on (kube-proxy's `nodePortAddresses`).
    pub node_ips: Vec<Ipv4Addr>,
    /// The pod CIDR of the whole lab, e.g. 10.244.0.0/16: traffic from
    /// outside it to a cluster IP is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The service CIDR, e.g. 10.0.0.0/16: unallocated cluster IPs are dropped.
    pub service_cidr: Ipv4Net,
    /// The `hostPort`s of the pods on this node (what the CNI portmap
    /// plugin implements, not kube-proxy: they live in the same table here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
    /// The addresses of the nodes a drill cut this one off from
    /// (`netlab partition`): their LAN and public addresses and pod
    /// subnets. Traffic to or from them is dropped here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitioned: Vec<Ipv4Net>,
}

/// A pod's container port published on its node's addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPort {
    pub protocol: Protocol,
    /// The port on the node.
    pub host_port: u16,
    /// `hostIP`: only this node address (None: every one of `node_ips`).
    pub host_ip: Option<Ipv4Addr>,
    /// "namespace/name" of the pod, for names and comments.
    pub pod: String,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}
