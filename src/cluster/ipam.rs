//! Pod IP allocation inside a node's subnet (host-local IPAM, as the CNI plugin
//! does it): the lowest free address after the gateway.

use ipnet::Ipv4Net;
use std::collections::HashSet;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no free pod address left in {subnet} on node {node}: spread pods over more nodes or use fewer replicas")]
pub struct Exhausted {
    pub node: String,
    pub subnet: Ipv4Net,
}

/// `used` holds the addresses already taken on this node.
pub fn allocate(
    node: &str,
    subnet: Ipv4Net,
    used: &HashSet<Ipv4Addr>,
) -> Result<Ipv4Addr, Exhausted> {
    // .0 is the network, .1 the bridge, the last the broadcast address.
    subnet
        .hosts()
        .skip(1)
        .find(|a| !used.contains(a))
        .ok_or_else(|| Exhausted {
            node: node.into(),
            subnet,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_after_gateway() {
        let net: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let mut used = HashSet::new();
        assert_eq!(allocate("n", net, &used).unwrap().to_string(), "10.244.1.2");
        used.insert("10.244.1.2".parse().unwrap());
        assert_eq!(allocate("n", net, &used).unwrap().to_string(), "10.244.1.3");
        for a in net.hosts() {
            used.insert(a);
        }
        assert!(allocate("n", net, &used).is_err());
    }
}
