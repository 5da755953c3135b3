//! Root tests of the network layer: they build real namespaces.
//!
//! Run with `sudo -E cargo test --test net_layer`. Every test uses its own
//! random `netlab-nltest<hex>.` prefix (so they run in parallel) and tears
//! its namespaces down in a drop guard, also when it fails.
//!
//! The timing benchmark is ignored by default:
//! `cargo test --release --test net_layer -- --ignored --nocapture bench`.

mod common;
use common::{require_root, rt};

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlab::net::{self, ifname, sysctl, DcPlan, NetError, NetNs, NetPlan, NodePlan, PodPlan};

/// A unique lab prefix whose namespaces are removed when dropped.
struct Lab {
    prefix: String,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        Lab {
            prefix: format!("netlab-nltest{:08x}.", rand::random::<u32>()),
        }
    }

    fn leftovers(&self) -> Vec<String> {
        NetNs::list(&self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        common::teardown_net(&self.prefix);
    }
}

fn n(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// Same addressing as scripts/baseline-ip.sh: dc 172.18.0.1/24, node i at
/// 172.18.0.(i+1) with pods in 10.244.i.0/24, pods spread round robin.
fn plan(prefix: &str, nodes: u8, pods: usize) -> NetPlan {
    let node_ns = |i: u8| format!("{prefix}node.node-{i}");
    let nodes_v = (1..=nodes)
        .map(|i| NodePlan {
            name: format!("node-{i}"),
            netns: node_ns(i),
            dc_port: ifname("n-", &node_ns(i)),
            lan_addr: n(&format!("172.18.0.{}/24", i + 1)),
            bridge: "cni0".into(),
            gateway: n(&format!("10.244.{i}.1/24")),
            routes: (1..=nodes)
                .filter(|&j| j != i)
                .map(|j| {
                    (
                        n(&format!("10.244.{j}.0/24")),
                        format!("172.18.0.{}", j + 1).parse().unwrap(),
                    )
                })
                .collect(),
        })
        .collect();
    let pods_v = (0..pods)
        .map(|k| {
            let i = (k % nodes as usize) as u8 + 1;
            let idx = k / nodes as usize;
            let netns = format!("{prefix}pod.default.pod-{k}");
            PodPlan {
                host_veth: ifname("veth", &netns),
                netns,
                node_netns: node_ns(i),
                bridge: "cni0".into(),
                addr: n(&format!("10.244.{i}.{}/24", idx + 2)),
                gateway: format!("10.244.{i}.1").parse().unwrap(),
            }
        })
        .collect();
    NetPlan {
        dc: DcPlan {
            netns: format!("{prefix}dc"),
            bridge: "lan0".into(),
            addr: n("172.18.0.1/24"),
            routes: Vec::new(),
        },
        nodes: nodes_v,
        pods: pods_v,
    }
}

/// Run a command inside `ns` (via NetNs::command) and return its stdout.
fn sh(ns: &NetNs, program: &str, args: &[&str]) -> String {
    let out = ns
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning {program} {args:?} in {}: {e}", ns.name()));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_has(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: expected to find {needle:?} in:\n{haystack}"
    );
}

/// Connect from `client` to `server_addr`, which `listener` serves, and
/// check that both ends see the client's real address (no NAT anywhere).
fn tcp_check(listener: &TcpListener, client: &NetNs, server_addr: SocketAddr, expect: Ipv4Addr) {
    let stream = client
        .run(|| TcpStream::connect_timeout(&server_addr, Duration::from_secs(3)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect from {} to {server_addr}: {e}", client.name()));
    let mut stream = stream;
    assert_eq!(
        stream.local_addr().unwrap().ip(),
        IpAddr::V4(expect),
        "client source in {}",
        client.name()
    );
    stream.write_all(b"ping").unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    assert_eq!(
        peer.ip(),
        IpAddr::V4(expect),
        "server at {server_addr} saw {peer} for a client in {}: source rewritten?",
        client.name()
    );
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

/// A listener inside `ns`, created on a thread that joined it.
fn listen_in(ns: &NetNs) -> (TcpListener, u16) {
    let l = ns
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .unwrap()
        .unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn host_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn two_nodes_two_pods_each_route_without_nat() {
    let lab = Lab::new();
    let plan = plan(&lab.prefix, 2, 4);
    rt().block_on(net::apply(&plan)).expect("apply");

    let open = |name: &str| NetNs::open(name).unwrap();
    let dc = open(&plan.dc.netns);
    let node1 = open(&plan.nodes[0].netns);
    let node2 = open(&plan.nodes[1].netns);
    // pods 0 and 2 on node-1 (10.244.1.2, .3), pods 1 and 3 on node-2.
    let pods: Vec<NetNs> = plan.pods.iter().map(|p| open(&p.netns)).collect();
    assert_eq!(plan.pods[0].addr, n("10.244.1.2/24"));
    assert_eq!(plan.pods[1].addr, n("10.244.2.2/24"));
    assert_eq!(plan.pods[2].addr, n("10.244.1.3/24"));

    // --- what each namespace looks like
    for ns in [&dc, &node1, &node2].into_iter().chain(&pods) {
        assert_has(
            &sh(ns, "ip", &["-o", "link", "show", "lo"]),
            ",UP,",
            &format!("lo in {}", ns.name()),
        );
    }
    let dc_ports = sh(&dc, "ip", &["-o", "link", "show", "master", "lan0"]);
    for node in &plan.nodes {
        assert_has(&dc_ports, &format!("{}@", node.dc_port), "dc port on lan0");
    }
    assert_eq!(
        dc_ports.matches("LOWER_UP").count(),
        2,
        "dc ports up:\n{dc_ports}"
    );
    assert_has(
        &sh(&dc, "ip", &["-o", "-4", "addr", "show", "lan0"]),
        "172.18.0.1/24",
        "dc addr",
    );

    for (ns, node) in [(&node1, &plan.nodes[0]), (&node2, &plan.nodes[1])] {
        let w = &node.name;
        assert_has(
            &sh(ns, "ip", &["-o", "-4", "addr", "show", "eth0"]),
            &node.lan_addr.to_string(),
            w,
        );
        assert_has(
            &sh(ns, "ip", &["-o", "-4", "addr", "show", "cni0"]),
            &node.gateway.to_string(),
            w,
        );
        let routes = sh(ns, "ip", &["route"]);
        let (dst, via) = node.routes[0];
        assert_has(&routes, &format!("{dst} via {via} dev eth0"), w);
        assert!(
            !routes.contains("default"),
            "{w} must not get a default route:\n{routes}"
        );
        let ports = sh(ns, "ip", &["-o", "link", "show", "master", "cni0"]);
        for p in plan.pods.iter().filter(|p| p.node_netns == node.netns) {
            assert_has(&ports, &format!("{}@", p.host_veth), w);
        }
        assert_eq!(
            ports.matches("LOWER_UP").count(),
            2,
            "{w} pod ports up:\n{ports}"
        );
        assert_eq!(sysctl::get(ns, "net.ipv4.ip_forward").unwrap(), "1", "{w}");
        assert_eq!(
            sh(ns, "cat", &["/proc/sys/net/ipv4/ip_forward"]).trim(),
            "1",
            "{w}"
        );
    }
    for (ns, p) in pods.iter().zip(&plan.pods) {
        let w = ns.name();
        assert_has(
            &sh(ns, "ip", &["-o", "-4", "addr", "show", "eth0"]),
            &p.addr.to_string(),
            w,
        );
        assert_has(
            &sh(ns, "ip", &["route"]),
            &format!("default via {} dev eth0", p.gateway),
            w,
        );
        assert_has(
            &sh(ns, "ip", &["-o", "link", "show", "eth0"]),
            "LOWER_UP",
            w,
        );
    }

    // --- the host was not touched
    let host = host_links();
    for name in plan
        .nodes
        .iter()
        .map(|n| &n.dc_port)
        .chain(plan.pods.iter().map(|p| &p.host_veth))
    {
        assert!(
            !host.contains(&format!(": {name}")),
            "{name} leaked into the host netns"
        );
    }

    // --- real TCP, real source addresses
    let (listener, port) = listen_in(&pods[0]);
    let pod_a: SocketAddr = (plan.pods[0].addr.addr(), port).into();
    tcp_check(&listener, &pods[1], pod_a, plan.pods[1].addr.addr()); // pod → pod, across nodes
    tcp_check(&listener, &pods[2], pod_a, plan.pods[2].addr.addr()); // pod → pod, same node
    tcp_check(&listener, &node2, pod_a, plan.nodes[1].lan_addr.addr()); // node → remote pod
    tcp_check(&listener, &node1, pod_a, plan.nodes[0].gateway.addr()); // node → local pod

    let (listener, port) = listen_in(&node2);
    let node2_addr: SocketAddr = (plan.nodes[1].lan_addr.addr(), port).into();
    tcp_check(&listener, &pods[0], node2_addr, plan.pods[0].addr.addr()); // pod → remote node

    // --- teardown removes everything, and again is a no-op
    drop((dc, node1, node2, pods, listener));
    let errs = rt().block_on(net::teardown(&lab.prefix));
    assert!(errs.is_empty(), "teardown errors: {errs:?}");
    assert_eq!(
        lab.leftovers(),
        Vec::<String>::new(),
        "namespaces left after teardown"
    );
    assert!(rt().block_on(net::teardown(&lab.prefix)).is_empty());
}

#[test]
fn add_pods_then_remove_pod_frees_the_veth_at_once() {
    let lab = Lab::new();
    let mut full = plan(&lab.prefix, 2, 3);
    let late = full.pods.pop().unwrap(); // pod-2 → node-1, 10.244.1.3
    let rt = rt();
    rt.block_on(net::apply(&full)).expect("apply");
    rt.block_on(net::add_pods(std::slice::from_ref(&late)))
        .expect("add_pods");

    let node1 = NetNs::open(&late.node_netns).unwrap();
    let pod1 = NetNs::open(&full.pods[1].netns).unwrap(); // on node-2
    let late_ns = NetNs::open(&late.netns).unwrap();
    let (listener, port) = listen_in(&late_ns);
    tcp_check(
        &listener,
        &pod1,
        (late.addr.addr(), port).into(),
        full.pods[1].addr.addr(),
    );
    drop(listener);

    // The node and the pod know each other's MAC without ARP: permanent
    // entries (the kernel's ARP table is shared by every namespace and
    // capped host-wide; see src/net/neigh.rs).
    let bridge = sh(&node1, "ip", &["-o", "link", "show", "cni0"]);
    let bridge_mac = bridge
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("cni0's MAC");
    assert_has(
        &sh(&late_ns, "ip", &["neigh", "show", "dev", "eth0"]),
        &format!("10.244.1.1 lladdr {bridge_mac} PERMANENT"),
        "pod's gateway entry",
    );
    let entry = "10.244.1.3 lladdr 0a:58:0a:f4:01:03 PERMANENT";
    assert_has(
        &sh(&node1, "ip", &["neigh", "show", "dev", "cni0"]),
        entry,
        "node's entry for the pod",
    );
    drop(late_ns);

    rt.block_on(net::remove_pod(&late.netns, Some(late.link())))
        .expect("remove_pod");
    let neighbours = sh(&node1, "ip", &["neigh", "show", "dev", "cni0"]);
    assert!(
        !neighbours.contains("10.244.1.3 "),
        "the node still has an entry for the removed pod:\n{neighbours}"
    );
    assert!(NetNs::open(&late.netns).is_err());
    // Gone right away, not whenever the kernel destroys the namespace.
    let ports = sh(&node1, "ip", &["-o", "link", "show"]);
    assert!(
        !ports.contains(&late.host_veth),
        "{} still in node:\n{ports}",
        late.host_veth
    );
    rt.block_on(net::remove_pod(&late.netns, Some(late.link())))
        .expect("remove_pod is idempotent");

    // Same pod again, immediately: no EEXIST on the node side.
    rt.block_on(net::add_pods(std::slice::from_ref(&late)))
        .expect("re-add");
    assert_has(
        &sh(&NetNs::open(&late.netns).unwrap(), "ip", &["route"]),
        "default via 10.244.1.1",
        "re-added pod",
    );

    // A failing add_pods rolls back the pods it created and leaves the rest.
    let mut bad = late.clone();
    bad.netns = format!("{}pod.default.bad", lab.prefix);
    bad.host_veth = ifname("veth", &bad.netns);
    bad.addr = n("10.244.1.99/24");
    let mut clash = bad.clone();
    clash.netns = late.netns.clone(); // exists already
    clash.host_veth = ifname("veth", "clash");
    clash.addr = n("10.244.1.98/24");
    let err = rt
        .block_on(net::add_pods(&[bad.clone(), clash]))
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(
        NetNs::open(&bad.netns).is_err(),
        "rolled back pod still there"
    );
    assert!(
        NetNs::open(&late.netns).is_ok(),
        "rollback removed a pod it did not create"
    );
    let ports = sh(&node1, "ip", &["-o", "link", "show"]);
    assert!(
        !ports.contains(&bad.host_veth),
        "rolled back veth still in node:\n{ports}"
    );
    drop(node1);
    drop(pod1);
    assert!(rt.block_on(net::teardown(&lab.prefix)).is_empty());
    assert!(lab.leftovers().is_empty());
}

#[test]
fn failed_apply_rolls_back_only_its_own_namespaces() {
    let lab = Lab::new();
    // Enough pods that some are still in flight when one fails.
    let plan = plan(&lab.prefix, 2, 60);
    // Somebody already holds pod-5's name.
    let taken = plan.pods[5].netns.clone();
    let squatter = NetNs::create(&taken).unwrap();
    let err = rt().block_on(net::apply(&plan)).unwrap_err();
    let msg = err.to_string();
    assert!(err.is_already_exists(), "{msg}");
    assert_eq!(
        msg,
        format!("creating netns {taken}: File exists (os error 17)")
    );
    // Right after apply returns: only the squatter is left, untouched.
    assert_eq!(lab.leftovers(), vec![taken.clone()]);
    assert_eq!(sh(&squatter, "ip", &["-o", "link"]).lines().count(), 1);
    drop(squatter);
    NetNs::delete(&taken).unwrap();
    assert!(lab.leftovers().is_empty());
}

#[test]
fn invalid_plans_touch_nothing() {
    let lab = Lab::new();
    let mut p = plan(&lab.prefix, 2, 2);
    p.pods[0].host_veth = "veth-name-too-long".into();
    let err = rt().block_on(net::apply(&p)).unwrap_err();
    assert!(matches!(err, NetError::InvalidPlan(_)), "{err}");
    assert!(lab.leftovers().is_empty());
    // Never delete what is not ours.
    assert!(matches!(
        NetNs::delete("default"),
        Err(NetError::Refused { .. })
    ));
    assert!(matches!(
        rt().block_on(net::remove_pod("cni-1", None)),
        Err(NetError::Refused { .. })
    ));
}

#[test]
fn netns_create_open_run_command_delete() {
    let lab = Lab::new();
    let name = format!("{}misc", lab.prefix);
    let ns = NetNs::create(&name).unwrap();
    assert_eq!(ns.path(), std::path::Path::new("/run/netns").join(&name));
    assert!(NetNs::create(&name).unwrap_err().is_already_exists());
    // `ip netns` sees it.
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert_has(
        &String::from_utf8_lossy(&out.stdout),
        &name,
        "ip netns list",
    );
    // A fresh namespace has only lo, and run/command really are inside it.
    let links = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    assert_eq!(links.lines().count(), 3, "{links}");
    assert_eq!(sh(&ns, "ip", &["-o", "link"]).lines().count(), 1);
    let ino = |p: &str| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    };
    let inside = ns.run(|| ino("/proc/thread-self/ns/net")).unwrap();
    assert_eq!(inside, ino(ns.path().to_str().unwrap()));
    assert_ne!(
        inside,
        ino("/proc/thread-self/ns/net"),
        "caller thread moved"
    );
    // The command keeps its own fd: still valid after the NetNs is dropped.
    let mut cmd = ns.command("true");
    drop(ns);
    assert!(cmd.status().unwrap().success());
    NetNs::delete(&name).unwrap();
    NetNs::delete(&name).unwrap(); // idempotent
    assert!(NetNs::open(&name).is_err());
    assert!(lab.leftovers().is_empty());
}

#[test]
fn ifname_is_short_and_stable() {
    // No root needed.
    let a = ifname("veth", "netlab-lab.pod.default.my-nginx-7c5ddbdf54-x2x5q");
    assert!(a.len() <= 15);
    assert_eq!(
        a,
        ifname("veth", "netlab-lab.pod.default.my-nginx-7c5ddbdf54-x2x5q")
    );
    assert_eq!(ifname("n-", "abc"), "n-ba7816bf"); // sha256("abc") = ba7816bf...
    assert!(ifname("1234567", "k").len() == 15);
}

/// 2 nodes + 100 pods: time apply and teardown.
#[test]
#[ignore]
fn bench_apply_100_pods() {
    let pods: usize = std::env::var("NETLAB_BENCH_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let lab = Lab::new();
    let plan = plan(&lab.prefix, 2, pods);
    let rt = rt();
    let t = Instant::now();
    rt.block_on(net::apply(&plan)).expect("apply");
    let apply = t.elapsed();
    // Spot check: last pod reaches first pod across nodes.
    let a = NetNs::open(&plan.pods[0].netns).unwrap();
    let b = NetNs::open(&plan.pods[pods - 1].netns).unwrap();
    let (l, port) = listen_in(&a);
    tcp_check(
        &l,
        &b,
        (plan.pods[0].addr.addr(), port).into(),
        plan.pods[pods - 1].addr.addr(),
    );
    drop((a, b, l));
    let t = Instant::now();
    let errs = rt.block_on(net::teardown(&lab.prefix));
    let down = t.elapsed();
    assert!(errs.is_empty(), "{errs:?}");
    assert!(lab.leftovers().is_empty());
    eprintln!(
        "BENCH 2 nodes + {pods} pods: apply {:.1} ms ({:.2} ms/pod), teardown {:.1} ms",
        apply.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3 / pods as f64,
        down.as_secs_f64() * 1e3
    );
}
