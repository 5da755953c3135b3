//! The lab's public network: what is *outside* the cluster.
//!
//! ```text
//!  dc netns:        pub0 (203.0.113.1/24) ─┬─ p-<node> … ─┬─ h-external
//!                                          │ veth          │ veth
//!  node netns:      eth1 (203.0.113.2/24)  ┘  (ExternalIP)  │
//!  host netns:      eth0 (203.0.113.254/24) ───────────────┘ ("netlab-<lab>.host.external")
//! ```
//!
//! The external host has only its connected route: pod IPs and clusterIPs
//! are unreachable from it, as from the internet; a node's ExternalIP (and
//! so its NodePorts) and LoadBalancer IPs are on its own network.
//!
//! LoadBalancer IPs are announced the way MetalLB's layer-2 mode does it,
//! by one node per address: here the node adds the address (/32) to its
//! public interface, so it answers ARP for it; the proxy rules on that node
//! DNAT it like any external IP. [`announce`] makes a node's set of
//! announced addresses exactly the given one.
//!
//! Host access (off by default): one veth from the host's root namespace
//! (`nl-<lab>`, .253 of the public range) to the public bridge; the only
//! route it brings is the public range's connected route. Nothing else of
//! the host is touched, and it refuses to start when that range overlaps a
//! route the host already has.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use serde::{Deserialize, Serialize};

use super::conn::Conn;
use super::error::NetError;
use super::netns::NetNs;
use super::{addr, link, netns};

/// The public network of one lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicPlan {
    /// The dc namespace (it exists: [`super::apply`] made it).
    pub dc_netns: String,
    /// "pub0".
    pub bridge: String,
    /// 203.0.113.1/24.
    pub addr: Ipv4Net,
    pub nodes: Vec<PublicPort>,
    /// The external host(s): namespaces of their own.
    pub hosts: Vec<PublicPort>,
    /// The host's end of host access, when asked for.
    pub host_access: Option<HostAccess>,
}

/// A namespace's interface on the public network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicPort {
    pub netns: String,
    /// The veth end on the bridge, in the dc namespace.
    pub dc_port: String,
    /// The interface in `netns` ("eth1" on nodes, "eth0" on hosts).
    pub ifname: String,
    pub addr: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAccess {
    /// The veth in the host's root namespace, e.g. "nl-nginx".
    pub ifname: String,
    pub addr: Ipv4Net,
}

/// The public interface of nodes.
pub const NODE_IFNAME: &str = "eth1";

/// Builds the public network: bridge, node ports, external hosts, host
/// access. The node namespaces exist; host namespaces are created here.
pub async fn apply(plan: &PublicPlan) -> Result<(), NetError> {
    netns::check_ours("configure netns", &plan.dc_netns)?;
    let dc_ns = NetNs::open(&plan.dc_netns)?;
    let dc = Conn::open(&dc_ns)?;
    let bridge = link::add_bridge(&dc, &plan.bridge).await?;
    addr::add(&dc, bridge, &plan.bridge, plan.addr).await?;
    for n in &plan.nodes {
        netns::check_ours("configure netns", &n.netns)?;
        let ns = NetNs::open(&n.netns)?;
        port(&dc, bridge, n, &ns).await?;
    }
    for h in &plan.hosts {
        netns::check_ours("create netns", &h.netns)?;
        let ns = NetNs::create(&h.netns)?;
        port(&dc, bridge, h, &ns).await?;
        let conn = Conn::open(&ns)?;
        link::set_up(&conn, "lo").await?;
    }
    if let Some(access) = &plan.host_access {
        let root = NetNs::root()?;
        link::add_veth(&dc, &access.ifname, bridge, &access.ifname, &root, None).await?;
        let conn = Conn::host()?;
        link::set_up(&conn, &access.ifname).await?;
        let idx = link::index(&conn, &access.ifname).await?;
        addr::add(&conn, idx, &access.ifname, access.addr).await?;
    }
    Ok(())
}

async fn port(dc: &Conn, bridge: u32, p: &PublicPort, ns: &NetNs) -> Result<(), NetError> {
    link::add_veth(dc, &p.dc_port, bridge, &p.ifname, ns, None).await?;
    let conn = Conn::open(ns)?;
    link::set_up(&conn, &p.ifname).await?;
    let idx = link::index(&conn, &p.ifname).await?;
    addr::add(&conn, idx, &p.ifname, p.addr).await
}

/// Removes host access (the host's veth; its peer goes with it).
/// Idempotent. The namespaces go with [`super::teardown`].
pub async fn remove_host_access(ifname: &str) -> Result<(), NetError> {
    if !ifname.starts_with("nl-") {
        return Err(NetError::os(
            "deleting",
            format!("link {ifname}"),
            std::io::Error::other("not a netlab host-access link (nl-…)"),
        ));
    }
    let conn = Conn::host()?;
    link::delete(&conn, ifname).await.map(|_| ())
}

/// Routes of the host's root namespace that overlap `net` (host access
/// must not shadow or be shadowed by them), as "dst dev".
pub async fn host_routes_overlapping(net: Ipv4Net) -> Result<Vec<String>, NetError> {
    let conn = Conn::host()?;
    super::route::overlapping(&conn, net).await
}

/// The IPv4 addresses (with their prefixes) of `ifname` in `netns`, e.g.
/// the external host's `eth0` for `netlab graph`.
pub async fn addresses(netns: &str, ifname: &str) -> Result<Vec<Ipv4Net>, NetError> {
    let conn = Conn::open(&NetNs::open(netns)?)?;
    let idx = link::index(&conn, ifname).await?;
    Ok(listed(&conn, idx, ifname)
        .await?
        .into_iter()
        .filter_map(|(ip, m)| Ipv4Net::new(ip, m.header.prefix_len).ok())
        .collect())
}

/// The IPv4 addresses of `ifname`, with their messages (to delete them).
async fn listed(
    conn: &Conn,
    idx: u32,
    ifname: &str,
) -> Result<Vec<(Ipv4Addr, AddressMessage)>, NetError> {
    let mut msgs = conn
        .handle
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute();
    let mut have = Vec::new();
    while let Some(m) = msgs
        .try_next()
        .await
        .map_err(|e| NetError::nl("listing", conn.obj("addresses of", ifname), e))?
    {
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = ip {
            have.push((ip, m));
        }
    }
    Ok(have)
}

/// Makes the set of LoadBalancer addresses `node_netns` announces exactly
/// `wanted` (added as /32 on its public interface). Returns (added, removed).
pub async fn announce(node_netns: &str, wanted: &[Ipv4Addr]) -> Result<(usize, usize), NetError> {
    netns::check_ours("configure netns", node_netns)?;
    let ns = NetNs::open(node_netns)?;
    let conn = Conn::open(&ns)?;
    let idx = link::index(&conn, NODE_IFNAME).await?;
    let mut have = listed(&conn, idx, NODE_IFNAME).await?;
    have.retain(|(_, m)| m.header.prefix_len == 32);
    let mut removed = 0;
    for (ip, m) in &have {
        if !wanted.contains(ip) {
            conn.handle
                .address()
                .del(m.clone())
                .execute()
                .await
                .map_err(|e| {
                    NetError::nl(
                        "removing",
                        conn.obj(&format!("address {ip} from"), NODE_IFNAME),
                        e,
                    )
                })?;
            removed += 1;
        }
    }
    let mut added = 0;
    for ip in wanted {
        if !have.iter().any(|(h, _)| h == ip) {
            let net = Ipv4Net::new(*ip, 32).expect("/32");
            addr::add(&conn, idx, NODE_IFNAME, net).await?;
            added += 1;
        }
    }
    Ok((added, removed))
}
