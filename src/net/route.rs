//! IPv4 routes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::RouteMessageBuilder;

use super::conn::Conn;
use super::error::NetError;

/// `ip route add <dst> via <via>`. No output device is given: the kernel
/// picks it from the connected route that covers `via` (which therefore has
/// to exist, i.e. the address is on an up link already).
pub(crate) async fn add_via(conn: &Conn, dst: Ipv4Net, via: Ipv4Addr) -> Result<(), NetError> {
    // Normalise 10.244.2.7/24 to 10.244.2.0/24: the kernel rejects a
    // destination with host bits set.
    let dst = dst.trunc();
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .gateway(via)
        .build();
    conn.handle
        .route()
        .add(msg)
        .execute()
        .await
        .map_err(|e| NetError::nl("adding", conn.obj(&format!("route {dst} via"), via), e))
}

/// Routes of the main table (not the default route) whose destination
/// overlaps `net`, as "dst dev-index" for messages.
pub(crate) async fn overlapping(conn: &Conn, net: Ipv4Net) -> Result<Vec<String>, NetError> {
    use futures::TryStreamExt;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute};
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = conn.handle.route().get(filter).execute();
    let mut out = Vec::new();
    while let Some(r) = routes
        .try_next()
        .await
        .map_err(|e| NetError::nl("listing", conn.obj("routes", ""), e))?
    {
        let len = r.header.destination_prefix_length;
        if len == 0 || r.header.table != 254 {
            continue;
        }
        let dst = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let Some(dst) = dst.and_then(|d| Ipv4Net::new(d, len).ok()) else {
            continue;
        };
        if dst.contains(&net) || net.contains(&dst) {
            let dev = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            out.push(format!("{dst} (interface #{})", dev.unwrap_or(0)));
        }
    }
    Ok(out)
}

/// `ip route add default via <via>`.
pub(crate) async fn add_default(conn: &Conn, via: Ipv4Addr) -> Result<(), NetError> {
    add_via(
        conn,
        Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid"),
        via,
    )
    .await
}
