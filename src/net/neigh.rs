//! Permanent IPv4 neighbour (ARP) entries between a node and its pods.
//!
//! Every lab shares one kernel, and the kernel's ARP table is shared by all
//! network namespaces: `net.ipv4.neigh.default.gc_thresh3` (1 024 by
//! default, a host-wide setting) caps the learned entries of all of them
//! together. Learned by ARP, a node would hold an entry per pod and every
//! pod one for its gateway: 2 000 entries at 1 000 pods, and past the cap
//! the kernel drops packets ("neighbor table overflow!"): connections to
//! fresh pods time out until older entries age out (it made a 1 000-pod
//! `up` spend a minute probing).
//!
//! Both ends of each pod's link are known when it is made (the pod's MAC
//! follows its address, the bridge's is fixed: see `link.rs`), so netlab
//! writes them as permanent entries, which the kernel exempts from the cap
//! and from garbage collection, and no ARP is needed between a node and its
//! pods. Pods on the same node still find each other by ARP.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::AddressFamily;

use super::conn::Conn;
use super::error::{nl_to_io, NetError};

/// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`.
pub(crate) async fn set_permanent(
    conn: &Conn,
    index: u32,
    ifname: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Result<(), NetError> {
    conn.handle
        .neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&mac)
        .replace()
        .execute()
        .await
        .map_err(|e| NetError::nl("adding", conn.obj(&format!("neighbour {ip} on"), ifname), e))
}

/// `ip neigh del <ip> dev <index>`. Ok if there is no such entry.
pub(crate) async fn delete(
    conn: &Conn,
    index: u32,
    ifname: &str,
    ip: Ipv4Addr,
) -> Result<(), NetError> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match conn.handle.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) => {
            let io = nl_to_io(e);
            if io.raw_os_error() == Some(libc::ENOENT) {
                Ok(())
            } else {
                Err(NetError::os(
                    "deleting",
                    conn.obj(&format!("neighbour {ip} on"), ifname),
                    io,
                ))
            }
        }
    }
}
