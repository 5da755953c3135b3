//! IPv4 addresses on links.

use std::net::IpAddr;

use ipnet::Ipv4Net;

use super::conn::Conn;
use super::error::NetError;

/// `ip addr add <net> dev <ifname>` (ifname only used in messages).
///
/// Only the address with its prefix length is given; the kernel adds the
/// connected route for the prefix itself — but only if the link is already
/// up, so callers bring links up first.
pub(crate) async fn add(
    conn: &Conn,
    index: u32,
    ifname: &str,
    net: Ipv4Net,
) -> Result<(), NetError> {
    conn.handle
        .address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await
        .map_err(|e| NetError::nl("adding", conn.obj(&format!("address {net} to"), ifname), e))
}
