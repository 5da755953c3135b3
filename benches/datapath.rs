//! The data path (root: `sudo cargo bench --bench datapath`): throughput
//! (iperf3, one TCP stream) and latency (a 1-byte TCP request/response
//! round trip on an open connection, like netperf's TCP_RR) of
//!
//! - pod → clusterIP → pod: a real netlab Service in a real lab (2 nodes;
//!   the client pod on node-1, the server pod on node-2, so the packets
//!   cross both nodes' bridges and routing and the dc LAN, and are DNATed
//!   by node-1's `ip netlab` table);
//! - pod → pod direct: the same two pods, to the server pod's IP;
//! - a bare veth pair between two fresh namespaces (the physical limit).
//!
//! The pods run busybox httpd (so that `up` has something to wait for);
//! the measuring tools run from the host in the pods' network namespaces.
//! Rounds alternate the paths; medians over NETLAB_BENCH_DP_ROUNDS rounds
//! (default 3) of NETLAB_BENCH_DP_SECS seconds (default 5) each.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{env_or, median, netlab, percentile, Results};
use netlab::net::NetNs;

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 5202;

/// Everything this bench made: the lab, the veth namespaces, the servers.
struct Guard {
    lab: String,
    veth_prefix: String,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(NETLAB)
            .args(["down", "--lab", &self.lab])
            .output();
        let (errs, _) = common::teardown(&self.veth_prefix);
        for e in errs {
            eprintln!("cleanup: {e}");
        }
    }
}

fn lab_yaml() -> String {
    let pod = |name: &str, node: &str, app: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  nodeName: {node}\n  containers:\n  - name: httpd\n    image: radial/busyboxplus:curl\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/tmp\"]\n    ports:\n    - containerPort: 80\n"
        )
    };
    format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  dns:\n    enabled: false\n---\n{}---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: perf\nspec:\n  selector:\n    app: perf-server\n  ports:\n  - name: iperf\n    port: {IPERF_PORT}\n    targetPort: {IPERF_PORT}\n  - name: rr\n    port: {RR_PORT}\n    targetPort: {RR_PORT}\n",
        pod("perf-server", "node-2", "perf-server"),
        pod("perf-client", "node-1", "perf-client"),
    )
}

fn ip(netns: &str, args: &str) {
    let out = Command::new("ip")
        .args(["-n", netns])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {netns} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A request/response server in `ns`: reads one byte, writes it back.
fn rr_server(ns: &NetNs) {
    let listener = ns
        .run(|| TcpListener::bind(("0.0.0.0", RR_PORT)).unwrap())
        .unwrap();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let mut b = [0u8; 1];
                while c.read_exact(&mut b).is_ok() {
                    if c.write_all(&b).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn iperf_server(ns: &NetNs) -> Child {
    ns.command("iperf3")
        .args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (apt-get install iperf3)")
}

/// Throughput in bit/s of one iperf3 stream from `ns` to `ip`.
fn iperf(ns: &NetNs, ip: Ipv4Addr, secs: u64) -> f64 {
    // The server may still be starting: retry a few times.
    for attempt in 0.. {
        let out = ns
            .command("iperf3")
            .args(["-c", &ip.to_string(), "-p", &IPERF_PORT.to_string()])
            .args(["-t", &secs.to_string(), "-J"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps;
        }
        assert!(
            attempt < 20,
            "iperf3 to {ip}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// Median and p99 of 1-byte round trips on one connection from `ns`.
fn rr(ns: &NetNs, ip: Ipv4Addr, count: usize) -> (Duration, Duration) {
    ns.run(move || {
        let addr = SocketAddr::from((ip, RR_PORT));
        let start = Instant::now();
        let mut c = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("connect {addr}: {e}, retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect {addr}: {e}"),
            }
        };
        c.set_nodelay(true).unwrap();
        let mut times = Vec::with_capacity(count);
        let mut b = [7u8; 1];
        for i in 0..count + 1000 {
            let t = Instant::now();
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap();
            if i >= 1000 {
                times.push(t.elapsed());
            }
        }
        (median(&times), percentile(&times, 99.0))
    })
    .unwrap()
}

fn main() {
    common::require_root("datapath");
    let load_at_start = common::load1();
    let rounds: usize = env_or("NETLAB_BENCH_DP_ROUNDS", 3);
    let secs: u64 = env_or("NETLAB_BENCH_DP_SECS", 5);
    let rr_count: usize = env_or("NETLAB_BENCH_DP_RR", 20_000);
    let tag = common::tag();
    let lab = format!("b{tag}-dp");
    let mut guard = Guard {
        lab: lab.clone(),
        veth_prefix: format!("netlab-b{tag}-vp."),
        children: Vec::new(),
    };

    // The lab: a Service in front of the server pod.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, lab_yaml()).unwrap();
    netlab(&["up", "--name", &lab, file.to_str().unwrap()]);
    let pods: serde_json::Value =
        serde_json::from_str(&netlab(&["--lab", &lab, "get", "pods", "-o", "json"])).unwrap();
    let pod_ip = |name: &str| -> Ipv4Addr {
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .and_then(|p| p["status"]["podIP"].as_str())
            .unwrap_or_else(|| panic!("no pod {name}"))
            .parse()
            .unwrap()
    };
    let server_ip = pod_ip("perf-server");
    let svc: serde_json::Value = serde_json::from_str(&netlab(&[
        "--lab", &lab, "get", "svc", "perf", "-o", "json",
    ]))
    .unwrap();
    let cluster_ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let server = NetNs::open(&netlab::paths::pod_netns(&lab, "default", "perf-server")).unwrap();
    let client = NetNs::open(&netlab::paths::pod_netns(&lab, "default", "perf-client")).unwrap();

    // The bare veth pair.
    let (a_name, b_name) = (
        format!("{}a", guard.veth_prefix),
        format!("{}b", guard.veth_prefix),
    );
    let a = NetNs::create(&a_name).unwrap();
    let b = NetNs::create(&b_name).unwrap();
    ip(
        &a_name,
        &format!("link add v0 type veth peer name v1 netns {b_name}"),
    );
    ip(&a_name, "addr add 10.99.0.1/30 dev v0");
    ip(&b_name, "addr add 10.99.0.2/30 dev v1");
    for (n, dev) in [
        (&a_name, "v0"),
        (&b_name, "v1"),
        (&a_name, "lo"),
        (&b_name, "lo"),
    ] {
        ip(n, &format!("link set {dev} up"));
    }
    let veth_ip: Ipv4Addr = "10.99.0.2".parse().unwrap();

    guard.children.push(iperf_server(&server));
    guard.children.push(iperf_server(&b));
    rr_server(&server);
    rr_server(&b);

    let paths: [(&str, &NetNs, Ipv4Addr); 3] = [
        ("veth", &a, veth_ip),
        ("direct", &client, server_ip),
        ("clusterip", &client, cluster_ip),
    ];
    println!(
        "data path (load {:.2}): clusterIP {cluster_ip} → {server_ip}",
        common::load1()
    );
    let mut tput: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut lat99: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for round in 0..rounds {
        for (i, (what, ns, ip)) in paths.iter().enumerate() {
            let bps = iperf(ns, *ip, secs);
            let (m, p99) = rr(ns, *ip, rr_count);
            println!(
                "round {round}: {what}: {:.2} Gbit/s, round trip median {:.1} µs, p99 {:.1} µs",
                bps / 1e9,
                m.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
            tput[i].push(bps);
            lat[i].push(m);
            lat99[i].push(p99);
        }
    }
    let mut results = Results::default();
    println!("| path | throughput | round trip median | p99 |");
    println!("|---|---:|---:|---:|");
    for (i, (what, _, _)) in paths.iter().enumerate() {
        let mut t = tput[i].clone();
        t.sort_by(f64::total_cmp);
        let bps = t[t.len() / 2];
        let (m, p99) = (median(&lat[i]), median(&lat99[i]));
        println!(
            "| {what} | {:.2} Gbit/s | {:.1} µs | {:.1} µs |",
            bps / 1e9,
            m.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        results.put(format!("datapath.{what}.bps"), bps);
        results.put(format!("datapath.{what}.rr"), m.as_secs_f64());
        results.put(format!("datapath.{what}.rr_p99"), p99.as_secs_f64());
    }
    results.put("datapath.secs", secs);
    results.put("datapath.rounds", rounds);
    results.put("datapath.load", load_at_start);
    results.save("datapath");
    drop(guard);
}
