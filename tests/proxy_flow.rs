//! Packet-flow tests of the proxy on a real 2-node lab. Root only.
//!
//! Builds dc + 2 nodes + 6 pods with the network layer, runs tiny TCP and
//! UDP servers inside the pod namespaces (each answers
//! "<its own ip> saw <peer ip>"), syncs the proxy on both nodes, then
//! checks a table of flows: (source namespace, destination, protocol) →
//! which endpoints answered / refused at once / dropped, and whether the
//! server saw the client's own address.
//!
//! Run with `sudo -E cargo test --test proxy_flow`. Every lab has its own
//! `netlab-pf<pid>x<n>.` prefix (tests run in parallel) and is torn down by
//! a drop guard, also when a test fails. All traffic stays inside the lab's
//! namespaces.

mod common;
use common::{require_root, rt};

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlab::net::{self, ifname, DcPlan, NetNs, NetPlan, NodePlan, PodPlan};
use netlab::proxy::{self, Endpoint, Node, Protocol, Service, ServicePort, SyncStats};

/// The port every test server listens on (TCP and UDP).
const SERVER_PORT: u16 = 8080;
/// How long a connection attempt may take before it counts as dropped.
const DROP_TIMEOUT: Duration = Duration::from_millis(1500);
/// A refusal must come faster than this (a timeout is not a refusal).
const REFUSE_WITHIN: Duration = Duration::from_secs(1);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

// ---------------------------------------------------------------- the lab

/// dc 172.18.0.1; node-i at 172.18.0.(i+1) with pods 10.244.i.0/24;
/// pods `p<i>a`, `p<i>b` (servers) and `p<i>c` (client) at .2, .3, .4.
struct Lab {
    prefix: String,
    plan: NetPlan,
    state_dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Lab {
    fn up(rt: &tokio::runtime::Runtime) -> Lab {
        require_root();
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "netlab-pf{}x{}.",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst) + 1
        );
        let plan = plan(&prefix);
        // The guard exists before anything is created, so a failure from
        // here on still tears everything down.
        let mut lab = Lab {
            prefix,
            plan,
            state_dir: tempfile::tempdir().unwrap(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        rt.block_on(net::apply(&lab.plan))
            .expect("building the lab network");
        for node in &lab.plan.nodes {
            // What the network layer does not do (yet): a node needs a route
            // for the service CIDR, or the node's own connections to a
            // cluster IP fail in routing (ENETUNREACH) before nat-output can
            // DNAT them, and a pod's packet to a cluster IP without
            // endpoints dies in routing (EHOSTUNREACH) instead of reaching
            // filter-forward's reject. Real nodes have a default route.
            let out = lab
                .ns(&node.netns)
                .command("ip")
                .args([
                    "route",
                    "add",
                    "10.0.0.0/16",
                    "via",
                    "172.18.0.1",
                    "dev",
                    "eth0",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "adding the service route in {}: {}",
                node.netns,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for pod in lab.plan.pods.clone() {
            if !pod.netns.ends_with('c') {
                lab.serve(&pod);
            }
        }
        lab
    }

    fn ns(&self, name: &str) -> NetNs {
        NetNs::open(name).unwrap_or_else(|e| panic!("opening {name}: {e}"))
    }

    fn dc(&self) -> NetNs {
        self.ns(&self.plan.dc.netns)
    }

    /// node-1 or node-2
    fn node(&self, i: usize) -> NetNs {
        self.ns(&self.plan.nodes[i - 1].netns)
    }

    fn pod(&self, name: &str) -> NetNs {
        self.ns(&format!("{}pod.default.{name}", self.prefix))
    }

    fn state_file(&self, node: usize) -> PathBuf {
        self.state_dir.path().join(format!("node-{node}.json"))
    }

    /// TCP and UDP servers on port 8080 in the pod's namespace. The sockets
    /// are created by a thread inside the namespace and stay there; the
    /// serving threads live until the lab is dropped.
    fn serve(&mut self, pod: &PodPlan) {
        let me = pod.addr.addr();
        let stop = self.stop.clone();
        let threads = self
            .ns(&pod.netns)
            .run(move || {
                let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).unwrap();
                let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).unwrap();
                tcp.set_nonblocking(true).unwrap();
                udp.set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let stop2 = stop.clone();
                let t = std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match tcp.accept() {
                            Ok((mut s, peer)) => {
                                s.set_nonblocking(false).unwrap();
                                let _ = write!(s, "{me} saw {}", peer.ip());
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("accept in {me}: {e}"),
                        }
                    }
                });
                let u = std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while !stop2.load(Ordering::Relaxed) {
                        if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                            let _ = udp.send_to(format!("{me} saw {}", peer.ip()).as_bytes(), peer);
                        }
                    }
                });
                vec![t, u]
            })
            .unwrap();
        self.servers.extend(threads);
    }

    fn node_model(&self, i: usize) -> Node {
        Node {
            name: format!("node-{i}"),
            node_ips: vec![self.plan.nodes[i - 1].lan_addr.addr()],
            cluster_cidr: net("10.244.0.0/16"),
            service_cidr: net("10.0.0.0/16"),
            host_ports: vec![],
            partitioned: vec![],
        }
    }

    /// Sync both nodes through the state files, as separate netlab
    /// processes would.
    fn sync(&self, rt: &tokio::runtime::Runtime, services: &[Service]) -> Vec<SyncStats> {
        (1..=2)
            .map(|i| {
                let desired = proxy::ruleset(&self.node_model(i), services);
                assert!(desired.warnings.is_empty(), "{:?}", desired.warnings);
                rt.block_on(proxy::sync(
                    &self.plan.nodes[i - 1].netns,
                    &self.state_file(i),
                    &self.node_model(i),
                    services,
                ))
                .unwrap_or_else(|e| panic!("syncing node-{i}: {e}"))
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.servers.drain(..) {
            let _ = t.join();
        }
        common::teardown_net(&self.prefix);
    }
}

fn plan(prefix: &str) -> NetPlan {
    let node_ns = |i: u8| format!("{prefix}node.node-{i}");
    let nodes = (1..=2u8)
        .map(|i| NodePlan {
            name: format!("node-{i}"),
            netns: node_ns(i),
            dc_port: ifname("n-", &node_ns(i)),
            lan_addr: net(&format!("172.18.0.{}/24", i + 1)),
            bridge: "cni0".into(),
            gateway: net(&format!("10.244.{i}.1/24")),
            routes: vec![(
                net(&format!("10.244.{}.0/24", 3 - i)),
                ip(&format!("172.18.0.{}", 4 - i)),
            )],
        })
        .collect();
    let pods = (1..=2u8)
        .flat_map(|i| {
            ["a", "b", "c"].into_iter().enumerate().map(move |(j, x)| {
                let netns = format!("{prefix}pod.default.p{i}{x}");
                PodPlan {
                    host_veth: ifname("veth", &netns),
                    netns,
                    node_netns: node_ns(i),
                    bridge: "cni0".into(),
                    addr: net(&format!("10.244.{i}.{}/24", j + 2)),
                    gateway: ip(&format!("10.244.{i}.1")),
                }
            })
        })
        .collect();
    NetPlan {
        dc: DcPlan {
            netns: format!("{prefix}dc"),
            bridge: "lan0".into(),
            addr: net("172.18.0.1/24"),
            routes: Vec::new(),
        },
        nodes,
        pods,
    }
}

// ---------------------------------------------------------------- services

fn ep(pod: &str, node: &str) -> Endpoint {
    Endpoint {
        ip: ip(pod),
        port: SERVER_PORT,
        node: node.into(),
    }
}

fn service(
    name: &str,
    cluster_ip: &str,
    protocol: Protocol,
    port: u16,
    eps: Vec<Endpoint>,
) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some(ip(cluster_ip)),
        external_ips: vec![],
        ports: vec![ServicePort {
            name: String::new(),
            protocol,
            port,
            node_port: None,
            endpoints: eps,
        }],
        affinity_timeout: None,
        external_traffic_local: false,
        source_ranges: vec![],
        load_balancer_ips: vec![],
    }
}

const P1A: &str = "10.244.1.2";
const P1B: &str = "10.244.1.3";
const P2A: &str = "10.244.2.2";
const P2B: &str = "10.244.2.3";

fn services() -> Vec<Service> {
    use Protocol::{Tcp, Udp};
    let mut web = service(
        "web",
        "10.0.0.10",
        Tcp,
        80,
        vec![ep(P1A, "node-1"), ep(P2A, "node-2")],
    );
    web.ports[0].node_port = Some(30080);
    let mut empty = service("empty", "10.0.0.11", Tcp, 80, vec![]);
    empty.ports[0].node_port = Some(30081);
    let mut local = service(
        "local",
        "10.0.0.12",
        Tcp,
        80,
        vec![ep(P1B, "node-1"), ep(P2B, "node-2")],
    );
    local.ports[0].node_port = Some(30082);
    local.external_traffic_local = true;
    let mut lonely = service("lonely", "10.0.0.13", Tcp, 80, vec![ep(P1B, "node-1")]);
    lonely.ports[0].node_port = Some(30083);
    lonely.external_traffic_local = true;
    let mut sticky = service(
        "sticky",
        "10.0.0.14",
        Tcp,
        80,
        vec![ep(P1A, "node-1"), ep(P2A, "node-2")],
    );
    sticky.affinity_timeout = Some(60);
    let dns = service(
        "dns",
        "10.0.0.15",
        Udp,
        53,
        vec![ep(P1A, "node-1"), ep(P2A, "node-2")],
    );
    let self_ = service("self", "10.0.0.16", Tcp, 80, vec![ep(P1A, "node-1")]);
    let dns_empty = service("dns-empty", "10.0.0.17", Udp, 53, vec![]);
    vec![web, empty, local, lonely, sticky, dns, self_, dns_empty]
}

// ---------------------------------------------------------------- probes

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// `server` answered and saw the client as `saw`; the client's own
    /// address was `local`.
    Answer {
        server: Ipv4Addr,
        saw: Ipv4Addr,
        local: Ipv4Addr,
    },
    Refused(Duration),
    Timeout,
    Error(String),
}

fn parse_answer(text: &str, local: Ipv4Addr) -> Outcome {
    let parsed = text
        .split_once(" saw ")
        .and_then(|(a, b)| Some((a.parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((server, saw)) => Outcome::Answer { server, saw, local },
        None => Outcome::Error(format!("unexpected answer {text:?}")),
    }
}

fn local_v4(addr: std::io::Result<std::net::SocketAddr>) -> Ipv4Addr {
    match addr.map(|a| a.ip()) {
        Ok(std::net::IpAddr::V4(v4)) => v4,
        other => panic!("local address {other:?}"),
    }
}

/// `count` fresh connections (or UDP sockets) from inside `from`.
fn probe(from: &NetNs, proto: Protocol, dst: SocketAddrV4, count: usize) -> Vec<Outcome> {
    from.run(|| (0..count).map(|_| probe_once(proto, dst)).collect())
        .unwrap()
}

fn probe_once(proto: Protocol, dst: SocketAddrV4) -> Outcome {
    let start = Instant::now();
    match proto {
        Protocol::Tcp => match TcpStream::connect_timeout(&dst.into(), DROP_TIMEOUT) {
            Ok(mut s) => {
                let local = local_v4(s.local_addr());
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut text = String::new();
                match s.read_to_string(&mut text) {
                    Ok(_) => parse_answer(&text, local),
                    Err(e) => Outcome::Error(format!("reading: {e}")),
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused(start.elapsed()),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Outcome::Timeout
            }
            Err(e) => Outcome::Error(format!("connecting: {e}")),
        },
        Protocol::Udp => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            if let Err(e) = s.connect(dst).and_then(|()| s.send(b"ping")) {
                return Outcome::Error(format!("sending: {e}"));
            }
            s.set_read_timeout(Some(DROP_TIMEOUT)).unwrap();
            let local = local_v4(s.local_addr());
            let mut buf = [0u8; 64];
            match s.recv(&mut buf) {
                Ok(n) => parse_answer(&String::from_utf8_lossy(&buf[..n]), local),
                // The ICMP port unreachable of a reject, on a connected socket.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    Outcome::Refused(start.elapsed())
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    Outcome::Timeout
                }
                Err(e) => Outcome::Error(format!("receiving: {e}")),
            }
        }
        Protocol::Sctp => unimplemented!("no SCTP probes"),
    }
}

// ---------------------------------------------------------------- the table

/// What the server saw as the client's address.
#[derive(Debug, Clone, Copy)]
enum Saw {
    /// The client's own address: no SNAT.
    Client,
    /// Something else: masqueraded.
    NotClient,
    /// Not checked (a node's own connection may be masqueraded to the very
    /// address it used anyway).
    Any,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Every attempt answered by one of these, each of them at least once.
    Answers(Vec<Ipv4Addr>, Saw),
    /// Every attempt answered, all by the same one of these.
    Sticky(Vec<Ipv4Addr>, Saw),
    /// Every attempt refused, quickly.
    Refused,
    /// Every attempt timed out.
    Dropped,
}

struct Flow {
    name: &'static str,
    from: NetNs,
    proto: Protocol,
    dst: SocketAddrV4,
    count: usize,
    expect: Expect,
}

fn flow(name: &'static str, from: NetNs, dst: &str, count: usize, expect: Expect) -> Flow {
    Flow {
        name,
        from,
        proto: Protocol::Tcp,
        dst: dst.parse().unwrap(),
        count,
        expect,
    }
}

fn udp(mut f: Flow) -> Flow {
    f.proto = Protocol::Udp;
    f
}

fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    list.iter().map(|s| ip(s)).collect()
}

/// Why `outcomes` do not meet `expect`, or None.
fn check(expect: &Expect, outcomes: &[Outcome]) -> Option<String> {
    let saw_ok = |saw: Saw, o: &Outcome| match (saw, o) {
        (Saw::Any, _) => true,
        (Saw::Client, Outcome::Answer { saw, local, .. }) => saw == local,
        (Saw::NotClient, Outcome::Answer { saw, local, .. }) => saw != local,
        _ => false,
    };
    let servers: BTreeSet<Ipv4Addr> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Answer { server, .. } => Some(*server),
            _ => None,
        })
        .collect();
    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| match (expect, o) {
            (
                Expect::Answers(from, saw) | Expect::Sticky(from, saw),
                Outcome::Answer { server, .. },
            ) => !from.contains(server) || !saw_ok(*saw, o),
            (Expect::Refused, Outcome::Refused(t)) => *t >= REFUSE_WITHIN,
            (Expect::Dropped, Outcome::Timeout) => false,
            _ => true,
        })
        .collect();
    if !bad.is_empty() {
        return Some(format!(
            "{} of {} attempts wrong, e.g. {:?}",
            bad.len(),
            outcomes.len(),
            &bad[..bad.len().min(3)]
        ));
    }
    match expect {
        Expect::Answers(from, _) if servers.len() != from.len() => Some(format!(
            "expected answers from all of {from:?}, got only {servers:?}"
        )),
        Expect::Sticky(..) if servers.len() != 1 => {
            Some(format!("expected one endpoint only, got {servers:?}"))
        }
        _ => None,
    }
}

/// Run the flows concurrently (each its own connections, one after
/// another) and fail with every mismatch at once.
fn run_flows(flows: Vec<Flow>) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = flows
            .iter()
            .map(|f| {
                s.spawn(move || {
                    let outcomes = probe(&f.from, f.proto, f.dst, f.count);
                    check(&f.expect, &outcomes).map(|why| {
                        format!(
                            "{}: {} {:?} {} → expected {:?}: {why}",
                            f.name,
                            f.from.name(),
                            f.proto,
                            f.dst,
                            f.expect
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} flow(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn services_work_like_kube_proxy() {
    let rt = rt();
    let lab = Lab::up(&rt);
    let mut svcs = services();
    let stats = lab.sync(&rt, &svcs);
    assert!(stats.iter().all(|s| s.full), "{stats:?}");

    use Saw::{Any, Client, NotClient};
    let web = ips(&[P1A, P2A]);
    let flows = vec![
        flow(
            "pod → cluster IP",
            lab.pod("p1c"),
            "10.0.0.10:80",
            50,
            Expect::Answers(web.clone(), Client),
        ),
        flow(
            "pod on the other node → cluster IP",
            lab.pod("p2c"),
            "10.0.0.10:80",
            30,
            Expect::Answers(web.clone(), Client),
        ),
        flow(
            "node → cluster IP",
            lab.node(1),
            "10.0.0.10:80",
            30,
            Expect::Answers(web.clone(), Any),
        ),
        flow(
            "pod → cluster IP without endpoints",
            lab.pod("p1c"),
            "10.0.0.11:80",
            3,
            Expect::Refused,
        ),
        flow(
            "node → cluster IP without endpoints",
            lab.node(2),
            "10.0.0.11:80",
            3,
            Expect::Refused,
        ),
        flow(
            "pod → cluster IP, port not in the service",
            lab.pod("p1c"),
            "10.0.0.10:81",
            3,
            Expect::Refused,
        ),
        flow(
            "pod → unallocated cluster IP",
            lab.pod("p2c"),
            "10.0.0.99:80",
            1,
            Expect::Dropped,
        ),
        flow(
            "dc → NodePort on node-1",
            lab.dc(),
            "172.18.0.2:30080",
            30,
            Expect::Answers(web.clone(), NotClient),
        ),
        flow(
            "dc → NodePort on node-2",
            lab.dc(),
            "172.18.0.3:30080",
            30,
            Expect::Answers(web.clone(), NotClient),
        ),
        flow(
            "node-2 → NodePort on node-1",
            lab.node(2),
            "172.18.0.2:30080",
            30,
            Expect::Answers(web.clone(), NotClient),
        ),
        flow(
            "pod → NodePort of its own node",
            lab.pod("p1c"),
            "172.18.0.2:30080",
            30,
            Expect::Answers(web.clone(), Any),
        ),
        flow(
            "dc → NodePort without endpoints",
            lab.dc(),
            "172.18.0.2:30081",
            3,
            Expect::Refused,
        ),
        flow(
            "dc → Local NodePort on node-1",
            lab.dc(),
            "172.18.0.2:30082",
            20,
            Expect::Answers(ips(&[P1B]), Client),
        ),
        flow(
            "dc → Local NodePort on node-2",
            lab.dc(),
            "172.18.0.3:30082",
            20,
            Expect::Answers(ips(&[P2B]), Client),
        ),
        flow(
            "node-2 → Local NodePort on node-1",
            lab.node(2),
            "172.18.0.2:30082",
            10,
            Expect::Answers(ips(&[P1B]), Client),
        ),
        flow(
            "dc → Local NodePort, no endpoint on that node",
            lab.dc(),
            "172.18.0.3:30083",
            1,
            Expect::Dropped,
        ),
        flow(
            "dc → Local NodePort, endpoint on that node",
            lab.dc(),
            "172.18.0.2:30083",
            5,
            Expect::Answers(ips(&[P1B]), Client),
        ),
        flow(
            "pod → cluster IP of a Local service: all endpoints",
            lab.pod("p2c"),
            "10.0.0.12:80",
            40,
            Expect::Answers(ips(&[P1B, P2B]), Client),
        ),
        flow(
            "ClientIP affinity",
            lab.pod("p2c"),
            "10.0.0.14:80",
            20,
            Expect::Sticky(web.clone(), Client),
        ),
        flow(
            "ClientIP affinity, another client",
            lab.pod("p1c"),
            "10.0.0.14:80",
            20,
            Expect::Sticky(web.clone(), Client),
        ),
        udp(flow(
            "UDP service",
            lab.pod("p1c"),
            "10.0.0.15:53",
            40,
            Expect::Answers(web.clone(), Client),
        )),
        udp(flow(
            "UDP service from a node",
            lab.node(2),
            "10.0.0.15:53",
            30,
            Expect::Answers(web.clone(), Any),
        )),
        udp(flow(
            "UDP service without endpoints",
            lab.pod("p2c"),
            "10.0.0.17:53",
            3,
            Expect::Refused,
        )),
        // The network layer turns hairpin mode on for every pod's bridge
        // port (net::link::set_hairpin); without it this flow fails.
        flow(
            "hairpin: pod → its own service → itself",
            lab.pod("p1a"),
            "10.0.0.16:80",
            5,
            Expect::Answers(ips(&[P1A]), NotClient),
        ),
    ];
    run_flows(flows);

    // --- an endpoint goes away: one small transaction per node
    svcs[0].ports[0].endpoints.retain(|e| e.ip != ip(P2A));
    let stats = lab.sync(&rt, &svcs);
    for s in &stats {
        assert!(!s.full, "{s:?}");
        assert!(s.commands <= 10, "{s:?}");
    }
    run_flows(vec![
        flow(
            "endpoint removed: pod → cluster IP",
            lab.pod("p1c"),
            "10.0.0.10:80",
            30,
            Expect::Answers(ips(&[P1A]), Client),
        ),
        flow(
            "endpoint removed: dc → NodePort on node-2",
            lab.dc(),
            "172.18.0.3:30080",
            20,
            Expect::Answers(ips(&[P1A]), NotClient),
        ),
    ]);

    // --- the service is deleted
    svcs.remove(0);
    lab.sync(&rt, &svcs);
    run_flows(vec![
        flow(
            "service deleted: cluster IP no longer answers",
            lab.pod("p1c"),
            "10.0.0.10:80",
            1,
            Expect::Dropped,
        ),
        // Nothing listens on the node's port 30080 itself: the node's own RST.
        flow(
            "service deleted: NodePort no longer answers",
            lab.dc(),
            "172.18.0.2:30080",
            2,
            Expect::Refused,
        ),
        flow(
            "other services unaffected",
            lab.pod("p2c"),
            "10.0.0.12:80",
            10,
            Expect::Answers(ips(&[P1B, P2B]), Client),
        ),
    ]);
}

#[test]
fn a_table_removed_behind_our_back_is_rewritten() {
    let rt = rt();
    let lab = Lab::up(&rt);
    let svcs = services();
    lab.sync(&rt, &svcs);
    for node in &lab.plan.nodes {
        rt.block_on(proxy::remove(&node.netns)).unwrap();
        // Removing twice is fine.
        rt.block_on(proxy::remove(&node.netns)).unwrap();
    }
    run_flows(vec![flow(
        "table removed: cluster IP no longer answers",
        lab.pod("p1c"),
        "10.0.0.10:80",
        1,
        Expect::Dropped,
    )]);

    // The state files still describe the old table: the diff against it
    // fails (nothing to flush), and the proxier rewrites the whole table.
    let mut svcs2 = svcs.clone();
    svcs2[0].ports[0].endpoints.pop();
    let stats = lab.sync(&rt, &svcs2);
    assert!(stats.iter().all(|s| s.full), "{stats:?}");
    run_flows(vec![flow(
        "table rewritten",
        lab.pod("p1c"),
        "10.0.0.10:80",
        10,
        Expect::Answers(ips(&[P1A]), Saw::Client),
    )]);

    // Syncing the same services again changes nothing at all.
    let stats = lab.sync(&rt, &svcs2);
    assert!(
        stats.iter().all(|s| !s.full && s.commands == 0),
        "{stats:?}"
    );

    // A lost state file: the table is replaced whole, not added to.
    std::fs::remove_file(lab.state_file(1)).unwrap();
    let stats = lab.sync(&rt, &svcs2);
    assert!(stats[0].full && !stats[1].full, "{stats:?}");
    let listed = lab
        .node(1)
        .command("nft")
        .args(["list", "chains", "ip"])
        .output()
        .unwrap();
    let chains = String::from_utf8_lossy(&listed.stdout)
        .matches("\tchain ")
        .count();
    let expected = proxy::ruleset(&lab.node_model(1), &svcs2).chains.len();
    assert_eq!(
        chains,
        expected,
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    run_flows(vec![flow(
        "after a lost state file",
        lab.pod("p2c"),
        "10.0.0.10:80",
        10,
        Expect::Answers(ips(&[P1A]), Saw::Client),
    )]);
}
