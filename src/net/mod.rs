//! The network layer: a Kubernetes-like flat pod network built from network
//! namespaces, veth pairs and bridges on one host.
//!
//! This module is the only place in netlab that speaks netlink and the only
//! place that enters namespaces. Topology:
//!
//! ```text
//!  dc netns:    lan0 (172.18.0.1/24) ── n-xxxx ─┬─ ... one port per node
//!               routes: 10.244.1.0/24 via 172.18.0.2 … (the lab's API answers pods)
//!                                               │ veth
//!  node netns:  eth0 (172.18.0.2/24)  ──────────┘   ip_forward=1
//!               cni0 (10.244.1.1/24) ── vethxxxx ─┐ routes: 10.244.2.0/24 via 172.18.0.3
//!                                                 │ veth
//!  pod netns:   eth0 (10.244.1.5/24)  ────────────┘ default via 10.244.1.1
//! ```
//!
//! Plain routing, no NAT: every packet keeps its real source address.
//!
//! Everything that touches the kernel goes through one rtnetlink connection
//! per namespace, opened on the caller's tokio runtime (see `conn.rs`), and
//! pods are configured concurrently.

mod addr;
mod conn;
pub mod error;
pub mod link;
mod neigh;
pub mod netns;
pub mod plan;
pub mod public;
mod route;
pub mod sysctl;
pub mod tc;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

pub use error::NetError;
pub use link::{ifname, IFNAME_MAX};
pub use netns::{MountNs, NetNs, NETNS_PREFIX, NETNS_RUN_DIR};
pub use plan::{validate_pods, DcPlan, NetPlan, NodePlan, PodPlan};

use conn::Conn;
use netns::NetNsFactory;

/// Pods configured at the same time. Enough to keep both the kernel and
/// our side busy; more only adds open sockets.
const POD_CONCURRENCY: usize = 32;

/// Build the whole network of `plan`: dc, then nodes (concurrently), then
/// pods (concurrently). All-or-nothing: on failure, the namespaces this call
/// created are deleted again and the first error is returned. Namespaces
/// that already existed are never touched (creating them fails with EEXIST).
///
/// Must run inside a tokio runtime (connections are spawned on it). If the
/// future is dropped before it finishes, nothing is rolled back: call
/// [`teardown`] for the lab's prefix.
pub async fn apply(plan: &NetPlan) -> Result<(), NetError> {
    plan.validate()?;
    let start = Instant::now();
    let created = Created::default();
    let res = build(plan, &created).await;
    match &res {
        Ok(()) => tracing::debug!(
            nodes = plan.nodes.len(),
            pods = plan.pods.len(),
            elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
            "network applied"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "network apply failed, rolling back");
            created.rollback();
        }
    }
    res
}

/// Add pods to nodes that already exist (scale-up). All-or-nothing like
/// [`apply`]: on failure the pods created by this call are removed again.
/// The netem qdisc on interface `ifname` of namespace `netns`: set, or
/// (None) removed.
pub async fn set_netem(
    netns: &str,
    ifname: &str,
    netem: Option<&tc::Netem>,
) -> Result<(), NetError> {
    let ns = NetNs::open(netns)?;
    let conn = Conn::open(&ns)?;
    tc::set(&conn, ifname, netem).await
}

/// The netem qdisc on interface `ifname` of namespace `netns`, if any.
pub async fn get_netem(netns: &str, ifname: &str) -> Result<Option<tc::Netem>, NetError> {
    let ns = NetNs::open(netns)?;
    let conn = Conn::open(&ns)?;
    tc::get(&conn, ifname).await
}

/// Brings links of namespace `netns` up or down (a node cut off from its
/// networks: its ports on the lab's LAN and public bridges, down).
pub async fn set_links(netns: &str, links: &[String], up: bool) -> Result<(), NetError> {
    let ns = NetNs::open(netns)?;
    let conn = Conn::open(&ns)?;
    for l in links {
        link::set_state(&conn, l, up).await?;
    }
    Ok(())
}

pub async fn add_pods(pods: &[PodPlan]) -> Result<(), NetError> {
    validate_pods(pods)?;
    let mut nodes: HashMap<(&str, &str), NodeCtx> = HashMap::new();
    for p in pods {
        let key = (p.node_netns.as_str(), p.bridge.as_str());
        if let std::collections::hash_map::Entry::Vacant(slot) = nodes.entry(key) {
            slot.insert(NodeCtx::open(&p.node_netns, &p.bridge).await?);
        }
    }
    let created = Created::default();
    let res = build_pods(
        pods,
        |p| &nodes[&(p.node_netns.as_str(), p.bridge.as_str())],
        &created,
    )
    .await;
    if let Err(e) = &res {
        tracing::warn!(error = %e, "adding pods failed, rolling back");
        // The nodes stay, so remove the node-side veths now rather than
        // whenever the kernel gets round to destroying the pod namespaces.
        for p in pods.iter().filter(|p| created.contains(&p.netns)) {
            let node = &nodes[&(p.node_netns.as_str(), p.bridge.as_str())];
            if let Err(e) = link::delete(&node.conn, &p.host_veth).await {
                tracing::warn!(error = %e, "rollback");
            }
        }
        created.rollback();
    }
    res
}

/// Where a pod's link ends on its node, to remove the node's neighbour
/// entry for the pod's address with the pod (see neigh.rs).
pub struct PodLink<'a> {
    pub node_netns: &'a str,
    pub bridge: &'a str,
    pub addr: std::net::Ipv4Addr,
}

impl PodPlan {
    pub fn link(&self) -> PodLink<'_> {
        PodLink {
            node_netns: &self.node_netns,
            bridge: &self.bridge,
            addr: self.addr.addr(),
        }
    }
}

/// Remove one pod's network. Idempotent: Ok if it is already gone.
pub async fn remove_pod(pod_netns: &str, link: Option<PodLink<'_>>) -> Result<(), NetError> {
    netns::check_ours("remove pod netns", pod_netns)?;
    let mut first_err = None;
    if let Some(l) = link {
        if let Err(e) = forget_pod(&l).await {
            first_err = Some(e);
        }
    }
    match NetNs::open(pod_netns) {
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(()),
        // Not a usable namespace (e.g. a half-created leftover): just delete it.
        Err(e) => tracing::debug!(error = %e, "removing pod netns without opening it"),
        Ok(ns) => {
            // Delete eth0 explicitly: that removes both veth ends at once.
            // Destroying a namespace is asynchronous in the kernel (and
            // blocked entirely while a process still lives in it), so the
            // node-side veth would otherwise linger, and re-adding the same
            // pod right away would fail with "File exists".
            let res = match Conn::open(&ns) {
                Ok(conn) => link::delete(&conn, "eth0").await.map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                first_err = Some(e);
            }
        }
    }
    NetNs::delete(pod_netns)?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Deletes the node's permanent neighbour entry for a pod's address
/// (without it, the address answers "no route to host" again once the pod
/// is gone, as a learned entry would fail). Ok if the node is gone.
async fn forget_pod(l: &PodLink<'_>) -> Result<(), NetError> {
    netns::check_ours("configure netns", l.node_netns)?;
    let ns = match NetNs::open(l.node_netns) {
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(()),
        other => other?,
    };
    let conn = Conn::open(&ns)?;
    let bridge = match link::index(&conn, l.bridge).await {
        Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(()),
        other => other?,
    };
    neigh::delete(&conn, bridge, l.bridge, l.addr).await
}

/// Delete every namespace `/run/netns/<prefix>*`: pods first, then nodes,
/// then the rest (dc). Continues past failures and returns all of them;
/// an empty vector means everything is gone. Idempotent.
///
/// `prefix` must start with `netlab-`; end it with a `.` (e.g.
/// `netlab-mylab.`) or lab `my` would also match lab `mylab`.
pub async fn teardown(prefix: &str) -> Vec<NetError> {
    if let Err(e) = netns::check_ours("tear down", prefix) {
        return vec![e];
    }
    let mut names = NetNs::list(prefix);
    names.sort_by_key(|n| teardown_rank(n));
    let start = Instant::now();
    let errors: Vec<NetError> = names
        .iter()
        .filter_map(|n| NetNs::delete(n).err())
        .collect();
    tracing::debug!(
        namespaces = names.len(),
        failures = errors.len(),
        elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
        "network torn down"
    );
    errors
}

fn teardown_rank(name: &str) -> u8 {
    if name.contains(".pod.") {
        0
    } else if name.contains(".node.") || name.contains(".host.") {
        1
    } else {
        2
    }
}

/// Namespaces created by one apply/add_pods call, for rollback.
#[derive(Default)]
struct Created(Mutex<Vec<String>>);

impl Created {
    fn create(&self, name: &str) -> Result<NetNs, NetError> {
        let ns = NetNs::create(name)?;
        self.record(name);
        Ok(ns)
    }

    fn record(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_string());
    }

    fn contains(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|n| n == name)
    }

    fn rollback(&self) {
        let mut names = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        names.sort_by_key(|n| teardown_rank(n));
        for n in names {
            if let Err(e) = NetNs::delete(&n) {
                tracing::warn!(error = %e, "rollback");
            }
        }
    }
}

/// A configured node: its connection and the bridge pods attach to.
struct NodeCtx {
    conn: Conn,
    bridge_idx: u32,
    bridge: String,
    /// The bridge's MAC: the pods' gateway (set when it was made, `add_bridge`).
    bridge_mac: [u8; 6],
    // Keeps the namespace fd open as long as we configure it.
    _ns: NetNs,
}

impl NodeCtx {
    async fn open(netns: &str, bridge: &str) -> Result<NodeCtx, NetError> {
        netns::check_ours("configure netns", netns)?;
        let ns = NetNs::open(netns)?;
        let conn = Conn::open(&ns)?;
        let bridge_idx = link::index(&conn, bridge).await?;
        Ok(NodeCtx {
            conn,
            bridge_idx,
            bridge: bridge.to_string(),
            bridge_mac: link::stable_mac(netns, bridge),
            _ns: ns,
        })
    }
}

async fn build(plan: &NetPlan, created: &Created) -> Result<(), NetError> {
    let dc_ns = created.create(&plan.dc.netns)?;
    let dc = Conn::open(&dc_ns)?;
    link::set_up(&dc, "lo").await?;
    let lan = link::add_bridge(&dc, &plan.dc.bridge).await?;
    addr::add(&dc, lan, &plan.dc.bridge, plan.dc.addr).await?;

    let nodes =
        futures::future::try_join_all(plan.nodes.iter().map(|n| build_node(n, &dc, lan, created)))
            .await?;
    // After the nodes: a route's gateway must be a neighbour already.
    for (dst, via) in &plan.dc.routes {
        route::add_via(&dc, *dst, *via).await?;
    }
    drop(dc);

    let by_ns: HashMap<&str, &NodeCtx> = plan
        .nodes
        .iter()
        .zip(&nodes)
        .map(|(n, ctx)| (n.netns.as_str(), ctx))
        .collect();
    build_pods(&plan.pods, |p| by_ns[p.node_netns.as_str()], created).await
}

async fn build_node(
    n: &NodePlan,
    dc: &Conn,
    lan: u32,
    created: &Created,
) -> Result<NodeCtx, NetError> {
    let ns = created.create(&n.netns)?;
    link::add_veth(dc, &n.dc_port, lan, "eth0", &ns, None).await?;

    let conn = Conn::open(&ns)?;
    link::set_up(&conn, "lo").await?;
    link::set_up(&conn, "eth0").await?;
    let eth0 = link::index(&conn, "eth0").await?;
    addr::add(&conn, eth0, "eth0", n.lan_addr).await?;
    let bridge_idx = link::add_bridge(&conn, &n.bridge).await?;
    addr::add(&conn, bridge_idx, &n.bridge, n.gateway).await?;
    for (dst, via) in &n.routes {
        route::add_via(&conn, *dst, *via).await?;
    }
    sysctl::set(&ns, "net.ipv4.ip_forward", "1")?;
    Ok(NodeCtx {
        conn,
        bridge_idx,
        bridge: n.bridge.clone(),
        bridge_mac: link::stable_mac(&n.netns, &n.bridge),
        _ns: ns,
    })
}

async fn build_pods<'a, F>(
    pods: &'a [PodPlan],
    node_of: F,
    created: &Created,
) -> Result<(), NetError>
where
    F: Fn(&'a PodPlan) -> &'a NodeCtx,
{
    if pods.is_empty() {
        return Ok(());
    }
    let factory = NetNsFactory::start(pod_netns_init)?;
    let res = futures::stream::iter(pods)
        .map(|p| build_pod(p, node_of(p), &factory))
        .buffer_unordered(POD_CONCURRENCY)
        .try_for_each(|()| futures::future::ready(Ok(())))
        .await;
    // Record after the stream is gone: a namespace created for a pod whose
    // future was dropped (because another failed) is on this list too.
    for name in factory.finish() {
        created.record(&name);
    }
    res
}

/// Runs in each new pod namespace on the factory thread, before it leaves:
/// IPv6 off for the interfaces made from now on (eth0; lo, made with the
/// namespace, keeps ::1), as Docker does for containers on IPv4-only
/// networks; then the namespace's netlink socket.
///
/// The lab is IPv4 only, and with IPv6 on, every pod's eth0 coming up sends
/// router solicitations, DAD and MLD multicasts that the node's bridge
/// floods to every other pod port: work that grows with the square of the
/// pods on a node (about half the CPU time of a 1 000-pod bring-up,
/// benches/podnet.rs). /proc/sys/net is the calling thread's namespace's.
fn pod_netns_init() -> std::io::Result<rtnetlink::sys::Socket> {
    match std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") {
        // No IPv6 in this kernel: nothing to turn off.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => other?,
    }
    conn::new_socket()
}

async fn build_pod(
    p: &PodPlan,
    node: &NodeCtx,
    factory: &NetNsFactory<rtnetlink::sys::Socket>,
) -> Result<(), NetError> {
    // The pod's netlink socket is opened by the factory thread while it is
    // inside the new namespace anyway.
    let (ns, sock) = factory.create(&p.netns).await?;
    let pod_mac = link::mac_for_ip(p.addr.addr());
    link::add_veth(
        &node.conn,
        &p.host_veth,
        node.bridge_idx,
        "eth0",
        &ns,
        Some(pod_mac),
    )
    .await?;
    link::set_hairpin(&node.conn, &p.host_veth).await?;
    // No ARP between the node and its pods (see neigh.rs).
    neigh::set_permanent(
        &node.conn,
        node.bridge_idx,
        &node.bridge,
        p.addr.addr(),
        pod_mac,
    )
    .await?;

    let conn = Conn::with_socket(&ns, sock)?;
    link::set_up(&conn, "lo").await?;
    // Up before the address: the kernel only adds the connected route
    // (needed by the default route below) for addresses on up links.
    link::set_up(&conn, "eth0").await?;
    // Look eth0's index up instead of guessing: a new namespace may already
    // contain fallback tunnel devices (sit0, tunl0, ...) depending on the
    // modules loaded on the host, so it is not reliably 2.
    let eth0 = link::index(&conn, "eth0").await?;
    addr::add(&conn, eth0, "eth0", p.addr).await?;
    neigh::set_permanent(&conn, eth0, "eth0", p.gateway, node.bridge_mac).await?;
    route::add_default(&conn, p.gateway).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_order_is_pods_nodes_rest() {
        let mut v = vec![
            "netlab-a.dc".to_string(),
            "netlab-a.node.node-1".into(),
            "netlab-a.pod.default.x".into(),
        ];
        v.sort_by_key(|n| teardown_rank(n));
        assert_eq!(
            v,
            [
                "netlab-a.pod.default.x",
                "netlab-a.node.node-1",
                "netlab-a.dc"
            ]
        );
    }

    #[test]
    fn teardown_refuses_foreign_prefix() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let errs = rt.block_on(teardown(""));
        assert_eq!(errs.len(), 1);
        assert!(matches!(errs[0], NetError::Refused { .. }), "{:?}", errs[0]);
        let errs = rt.block_on(teardown("cni-"));
        assert!(matches!(errs[0], NetError::Refused { .. }), "{:?}", errs[0]);
    }
}
