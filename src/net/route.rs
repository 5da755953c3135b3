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

/// `ip route add default via <via>`.
pub(crate) async fn add_default(conn: &Conn, via: Ipv4Addr) -> Result<(), NetError> {
    add_via(
        conn,
        Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid"),
        via,
    )
    .await
}
