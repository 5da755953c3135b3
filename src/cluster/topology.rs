//! Addresses of the lab's nodes, derived from the Lab config alone (pure), so
//! that `up`, `down`, `get nodes` and the network plan always agree.
//!
//! - node LAN (`nodeCIDR`, default 172.18.0.0/24): .1 is the datacenter
//!   bridge, node *i* (0-based) gets .(i+2);
//! - pods (`podCIDR`, default 10.244.0.0/16): node *i* gets the /24 (or
//!   `podCIDRMaskSize`) number i+1 (node-1 → 10.244.1.0/24, as in the
//!   tutorial), its bridge is .1;
//! - the public network (`public.cidr`, default 203.0.113.0/24): .1 is its
//!   bridge, node *i* has the ExternalIP .(i+2), the external host .254;
//!   LoadBalancer IPs come from `public.lbPool` (.200-.250).

use crate::lab::LabConfig;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddresses {
    pub name: String,
    pub index: usize,
    /// Address on the lab-internal LAN, with the LAN prefix.
    pub lan: Ipv4Net,
    /// The node's pod subnet (a /24 unless `podCIDRMaskSize` says otherwise).
    pub pod_subnet: Ipv4Net,
    /// The node bridge's address in its pod subnet, with the /24 prefix.
    pub gateway: Ipv4Net,
    /// The node's ExternalIP on the public network, with its prefix.
    pub external: Ipv4Net,
}

/// The public network's bridge address (in the dc namespace).
pub fn public_bridge(config: &LabConfig) -> Ipv4Net {
    host(config.public.cidr, 1)
}

/// The external host's address on the public network.
pub fn external_host(config: &LabConfig) -> Ipv4Net {
    host(config.public.cidr, 254)
}

/// The host's end of host access (`public.hostAccess`).
pub fn host_access(config: &LabConfig) -> Ipv4Net {
    host(config.public.cidr, 253)
}

pub fn dc_address(config: &LabConfig) -> Ipv4Net {
    host(config.node_cidr, 1)
}

pub fn nodes(config: &LabConfig) -> Vec<NodeAddresses> {
    let mut subnets = config
        .pod_cidr
        .subnets(config.pod_cidr_mask_size)
        .expect("validated: podCIDR is as large as a node's subnet");
    subnets.next(); // the first is left unused, so node-1 owns x.y.1.0/24
    config
        .nodes
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let pod_subnet = subnets.next().expect("validated: enough /24s");
            NodeAddresses {
                name: name.clone(),
                index,
                lan: host(config.node_cidr, index as u32 + 2),
                pod_subnet,
                gateway: host(pod_subnet, 1),
                external: host(config.public.cidr, index as u32 + 2),
            }
        })
        .collect()
}

/// The n-th address of a network, with the network's prefix.
pub fn host(net: Ipv4Net, n: u32) -> Ipv4Net {
    let addr = Ipv4Addr::from(u32::from(net.network()) + n);
    Ipv4Net::new(addr, net.prefix_len()).expect("prefix from a valid net")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(nodes: usize) -> LabConfig {
        LabConfig {
            disk_size: None,
            registry_mirrors: Default::default(),
            name: "t".into(),
            nodes: (1..=nodes).map(|i| format!("node-{i}")).collect(),
            pod_cidr: "10.244.0.0/16".parse().unwrap(),
            pod_cidr_mask_size: 24,
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            node_cidr: "172.18.0.0/24".parse().unwrap(),
            dns: Default::default(),
            public: Default::default(),
            timing: Default::default(),
        }
    }

    #[test]
    fn default_addresses() {
        let c = config(2);
        assert_eq!(dc_address(&c).to_string(), "172.18.0.1/24");
        let n = nodes(&c);
        assert_eq!(n[0].lan.to_string(), "172.18.0.2/24");
        assert_eq!(n[0].pod_subnet.to_string(), "10.244.1.0/24");
        assert_eq!(n[0].gateway.to_string(), "10.244.1.1/24");
        assert_eq!(n[1].lan.to_string(), "172.18.0.3/24");
        assert_eq!(n[1].pod_subnet.to_string(), "10.244.2.0/24");
        assert_eq!(n[1].external.to_string(), "203.0.113.3/24");
        assert_eq!(external_host(&c).to_string(), "203.0.113.254/24");
    }

    #[test]
    fn larger_node_subnets() {
        let mut c = config(2);
        c.pod_cidr_mask_size = 22;
        let n = nodes(&c);
        assert_eq!(n[0].pod_subnet.to_string(), "10.244.4.0/22");
        assert_eq!(n[0].gateway.to_string(), "10.244.4.1/22");
        assert_eq!(n[1].pod_subnet.to_string(), "10.244.8.0/22");
    }
}
