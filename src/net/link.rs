//! Links: bridges, veth pairs, up/down, lookup, interface naming.

use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth};
use sha2::{Digest, Sha256};

use super::conn::Conn;
use super::error::{nl_to_io, NetError};
use super::netns::NetNs;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// `prefix` + the first 8 hex chars of sha256(`key`), e.g.
/// `ifname("veth", "netlab-a.pod.default.web-1")` → `"veth1a2b3c4d"`.
///
/// Interface names are limited to 15 bytes, so object names are never pasted
/// in; the hash keeps names short, stable across runs and (practically)
/// unique. Panics if `prefix` is longer than 7 bytes or not a valid
/// interface-name fragment: that is a programming error, not input.
pub fn ifname(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let name = format!("{prefix}{}", &hex::encode(digest)[..8]);
    assert!(
        name.len() <= IFNAME_MAX,
        "interface name {name:?} is longer than {IFNAME_MAX} bytes (prefix {prefix:?} too long)"
    );
    assert!(
        invalid_ifname(&name).is_none(),
        "interface name {name:?} is invalid: {}",
        invalid_ifname(&name).unwrap_or_default()
    );
    name
}

/// Why the kernel would reject `name` as an interface name (dev_valid_name),
/// or None if it is fine.
pub fn invalid_ifname(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > IFNAME_MAX {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("not allowed")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some("contains '/', ':', NUL or whitespace")
    } else {
        None
    }
}

/// A fixed, locally administered unicast MAC derived from (netns, ifname).
///
/// Bridges get one because otherwise the kernel gives a bridge the lowest
/// MAC of its ports and changes it whenever ports come and go, which makes
/// the gateway's MAC (as cached by every pod) drift as pods are added.
pub fn stable_mac(netns: &str, ifname: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("{netns}/{ifname}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    mac
}

/// `ip link set <name> up` or `down`.
pub(crate) async fn set_state(conn: &Conn, name: &str, up: bool) -> Result<(), NetError> {
    let link = LinkUnspec::new_with_name(name);
    let msg = if up { link.up() } else { link.down() }.build();
    conn.handle.link().change(msg).execute().await.map_err(|e| {
        let what = if up { "bringing up" } else { "bringing down" };
        NetError::nl(what, conn.obj("link", name), e)
    })
}

/// `ip link set <name> up`.
pub(crate) async fn set_up(conn: &Conn, name: &str) -> Result<(), NetError> {
    conn.handle
        .link()
        .change(LinkUnspec::new_with_name(name).up().build())
        .execute()
        .await
        .map_err(|e| NetError::nl("bringing up", conn.obj("link", name), e))
}

/// Interface index of `name`.
pub(crate) async fn index(conn: &Conn, name: &str) -> Result<u32, NetError> {
    let found = conn
        .handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|e| NetError::nl("looking up", conn.obj("link", name), e))?;
    match found {
        Some(msg) => Ok(msg.header.index),
        None => Err(NetError::os(
            "looking up",
            conn.obj("link", name),
            std::io::Error::from_raw_os_error(libc::ENODEV),
        )),
    }
}

/// Create bridge `name` (up, with a stable MAC) and return its index.
pub(crate) async fn add_bridge(conn: &Conn, name: &str) -> Result<u32, NetError> {
    let mac = stable_mac(conn.netns(), name);
    conn.handle
        .link()
        .add(LinkBridge::new(name).address(mac.to_vec()).build())
        .execute()
        .await
        .map_err(|e| NetError::nl("creating", conn.obj("bridge", name), e))?;
    index(conn, name).await
}

/// Create a veth pair: `name` in `conn`'s namespace, up and enslaved to
/// `controller`; its peer `peer_name`, still down, created directly inside
/// `peer_ns`.
///
/// The peer cannot be created up: the kernel configures (opens) the peer
/// before tying the two ends together, and opening a veth without a peer
/// fails with ENOTCONN. Bring it up afterwards from its own namespace.
///
/// The peer is *born* in the other namespace (IFLA_NET_NS_FD inside the peer
/// message) instead of being created here and moved afterwards: a pod's
/// "eth0" could not even be created in the node namespace, which has an
/// "eth0" of its own, and it saves a request per pod.
pub(crate) async fn add_veth(
    conn: &Conn,
    name: &str,
    controller: u32,
    peer_name: &str,
    peer_ns: &NetNs,
    peer_mac: Option<[u8; 6]>,
) -> Result<(), NetError> {
    // One queue each way on both ends, asked for explicitly. Without the
    // attributes the kernel allocates a queue per CPU and then cuts the
    // real number down to 1 (veth_init_queues), and cutting it on a
    // registered device waits for an RCU grace period (synchronize_net)
    // while holding the RTNL lock: twice per pair, stalling every other
    // netlink request on the host. With concurrent pods that wait was
    // most of the bring-up time (benches/podnet.rs). The result is the
    // same: one real queue per direction.
    let mut peer = LinkUnspec::new_with_name(peer_name)
        .setns_by_fd(peer_ns.fd().as_raw_fd())
        .append_extra_attribute(LinkAttribute::NumTxQueues(1))
        .append_extra_attribute(LinkAttribute::NumRxQueues(1));
    if let Some(mac) = peer_mac {
        peer = peer.address(mac.to_vec());
    }
    let peer = peer.build();
    let msg = LinkVeth::new(name, peer_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .append_extra_attribute(LinkAttribute::NumTxQueues(1))
        .append_extra_attribute(LinkAttribute::NumRxQueues(1))
        .up()
        .controller(controller)
        .build();
    conn.handle.link().add(msg).execute().await.map_err(|e| {
        NetError::os(
            "creating",
            format!(
                "veth {name} in netns {} (peer {peer_name} in netns {})",
                conn.netns(),
                peer_ns.name()
            ),
            nl_to_io(e),
        )
    })
}

/// Turn on hairpin mode on a bridge port: the bridge may then send a frame
/// back out of the port it came in on. Kubernetes needs this for a pod that
/// reaches a Service whose chosen endpoint is the pod itself: br_netfilter
/// DNATs the frame on the bridge and it must go back to the same veth.
/// (Port options travel in RTM_NEWLINK: RTM_SETLINK ignores them silently.)
pub(crate) async fn set_hairpin(conn: &Conn, name: &str) -> Result<(), NetError> {
    let idx = index(conn, name).await?;
    conn.handle
        .link()
        .set_port(LinkBridgePort::new(idx).hairpin(true).build())
        .execute()
        .await
        .map_err(|e| NetError::nl("setting hairpin mode on", conn.obj("bridge port", name), e))
}

/// The MAC of a pod's eth0, derived from its address as the CNI bridge
/// plugin does (0a:58 + the IPv4 bytes). When a pod's address is reused by a
/// new pod, the node's neighbour cache still maps it to the old MAC; with a
/// MAC that follows the address the stale entry stays right, instead of
/// black-holing the new pod for the seconds ARP takes to notice.
pub fn mac_for_ip(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// Delete link `name`. Returns false if it did not exist.
pub(crate) async fn delete(conn: &Conn, name: &str) -> Result<bool, NetError> {
    let res = conn
        .handle
        .link()
        .del_with_message(LinkUnspec::new_with_name(name).build())
        .execute()
        .await;
    match res {
        Ok(()) => Ok(true),
        Err(e) => {
            let io = nl_to_io(e);
            if io.raw_os_error() == Some(libc::ENODEV) {
                Ok(false)
            } else {
                Err(NetError::os("deleting", conn.obj("link", name), io))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_is_short_stable_and_prefixed() {
        let a = ifname(
            "veth",
            "netlab-lab.pod.default.a-very-long-pod-name-that-would-never-fit",
        );
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert_eq!(
            a,
            ifname(
                "veth",
                "netlab-lab.pod.default.a-very-long-pod-name-that-would-never-fit"
            )
        );
        assert_ne!(a, ifname("veth", "netlab-lab.pod.default.b"));
        // sha256("") = e3b0c442...
        assert_eq!(ifname("n-", ""), "n-e3b0c442");
        assert!(ifname("1234567", "x").len() == 15);
    }

    #[test]
    #[should_panic(expected = "longer than 15 bytes")]
    fn ifname_rejects_long_prefix() {
        ifname("12345678", "x");
    }

    #[test]
    fn ifname_validation() {
        assert!(invalid_ifname("eth0").is_none());
        assert!(invalid_ifname("cni0").is_none());
        assert!(invalid_ifname("").is_some());
        assert!(invalid_ifname("a:b").is_some());
        assert!(invalid_ifname("a b").is_some());
        assert!(invalid_ifname("0123456789abcdef").is_some());
        assert!(invalid_ifname("0123456789abcde").is_none());
    }

    #[test]
    fn macs_are_stable_unicast_and_local() {
        let m = stable_mac("netlab-x.node.node-1", "cni0");
        assert_eq!(m, stable_mac("netlab-x.node.node-1", "cni0"));
        assert_ne!(m, stable_mac("netlab-x.node.node-2", "cni0"));
        assert_eq!(m[0] & 0x01, 0, "multicast bit set");
        assert_eq!(m[0] & 0x02, 0x02, "not locally administered");
    }
}
