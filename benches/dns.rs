//! The cluster DNS benchmark (root: `sudo cargo bench --bench dns`).
//!
//! In one run: a 1-node lab with a Service, then queries per second and
//! latency percentiles for the Service's name against
//! - netlab's DNS server, at the coredns pod's IP (and through the kube-dns
//!   clusterIP, i.e. with the service DNAT, for reference), and
//! - the baseline: dnsmasq (Debian's dnsmasq-base) serving the same name
//!   from the same place: the coredns pod's network namespace, on its IP
//!   (port 5353),
//!
//! all from the node's network namespace, with the same client: W threads,
//! each with one UDP socket and one query in flight (closed loop).
//!
//! NETLAB_DNS_SECONDS (default 3) per measurement, NETLAB_DNS_CLIENTS
//! (default 4) client threads.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use netlab::net::NetNs;

mod common;
use common::{env_or, netlab, Results};

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");

struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(NETLAB)
            .args(["down", "--lab", &self.0])
            .output();
    }
}

/// An A query for `name`, encoded.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

struct Result {
    qps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Closed-loop load from `clients` sockets opened in `ns`.
fn load(ns: &NetNs, server: SocketAddr, name: &str, clients: usize, secs: u64) -> Result {
    let socks: Vec<UdpSocket> = ns
        .run(|| {
            (0..clients)
                .map(|_| {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    s.connect(server).unwrap();
                    s
                })
                .collect()
        })
        .expect("entering the node namespace");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let name = name.to_string();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut id = (i as u16) << 12;
                let mut buf = [0u8; 1500];
                while Instant::now() < deadline {
                    id = id.wrapping_add(1);
                    let bytes = query(&name, id);
                    let t = Instant::now();
                    s.send(&bytes).unwrap();
                    match s.recv(&mut buf) {
                        Ok(n) => match Message::from_vec(&buf[..n]) {
                            Ok(r) if r.metadata.id == id && !r.answers.is_empty() => {
                                lat.push(t.elapsed())
                            }
                            _ => errors += 1,
                        },
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Result {
        qps: all.len() as f64 / secs as f64,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the DNS benchmark needs root: sudo cargo bench --bench dns");
        std::process::exit(1);
    }
    let secs: u64 = env_or("NETLAB_DNS_SECONDS", 3);
    let clients: usize = env_or("NETLAB_DNS_CLIENTS", 4);
    let lab = format!("b{}-dns", std::process::id() % 100000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(
        &file,
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bench\nspec:\n  selector:\n    app: bench\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    netlab(&["up", "--name", &lab, file.to_str().unwrap()]);
    let _down = Down(lab.clone());
    let svc: serde_json::Value = serde_json::from_str(&netlab(&[
        "--lab", &lab, "get", "svc", "bench", "-o", "json",
    ]))
    .unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let pods: serde_json::Value = serde_json::from_str(&netlab(&[
        "--lab",
        &lab,
        "get",
        "pods",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]))
    .unwrap();
    let dns_pod_ip = pods["items"][0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    let dns_pod = pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let name = "bench.default.svc.cluster.local.";
    let ns = NetNs::open(&netlab::paths::node_netns(&lab, "node-1")).expect("node namespace");

    // The baseline: dnsmasq in the same pod namespace, same name and answer.
    let pod_ns = NetNs::open(&netlab::paths::pod_netns(&lab, "kube-system", &dns_pod))
        .expect("pod namespace");
    let mut dnsmasq = pod_ns
        .command("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={dns_pod_ip}"),
            "--port=5353",
            "--cache-size=1000",
            &format!("--host-record=bench.default.svc.cluster.local,{ip}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    std::thread::sleep(Duration::from_millis(300));

    // Warm up both.
    load(
        &ns,
        (dns_pod_ip.parse::<std::net::Ipv4Addr>().unwrap(), 53).into(),
        name,
        1,
        1,
    );
    let baseline = format!("{dns_pod_ip}:5353");
    load(&ns, baseline.parse().unwrap(), name, 1, 1);

    let runs = [
        ("netlab DNS, at the pod IP", format!("{dns_pod_ip}:53")),
        (
            "netlab DNS, via kube-dns 10.0.0.10 (DNAT)",
            "10.0.0.10:53".to_string(),
        ),
        ("dnsmasq (baseline), at the pod IP", baseline.clone()),
    ];
    let results: Vec<(&str, Result)> = runs
        .iter()
        .map(|(what, addr)| (*what, load(&ns, addr.parse().unwrap(), name, clients, secs)))
        .collect();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();

    // How soon an answer follows an object change: from `netlab apply`
    // of a new Service returning to its name resolving.
    let mut follow = Vec::new();
    for i in 0..10 {
        let f = dir.path().join(format!("svc-{i}.yaml"));
        std::fs::write(
            &f,
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: chg-{i}\nspec:\n  ports:\n  - port: 80\n"),
        )
        .unwrap();
        netlab(&["--lab", &lab, "apply", "-f", f.to_str().unwrap()]);
        let t = Instant::now();
        let server: SocketAddr = format!("{dns_pod_ip}:53").parse().unwrap();
        let sock: UdpSocket = ns
            .run(|| {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s.connect(server).unwrap();
                s
            })
            .unwrap();
        let qname = format!("chg-{i}.default.svc.cluster.local.");
        let mut buf = [0u8; 1500];
        loop {
            sock.send(&query(&qname, i as u16)).unwrap();
            if let Ok(n) = sock.recv(&mut buf) {
                if Message::from_vec(&buf[..n]).is_ok_and(|r| !r.answers.is_empty()) {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{qname} never resolved"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        follow.push(t.elapsed());
    }
    follow.sort();

    let base = &results[2].1;
    println!("\nnetlab DNS benchmark: A {name}, {clients} clients, {secs} s each\n");
    println!("| server | queries/s | p50 | p99 | errors | qps vs dnsmasq | p99 vs dnsmasq |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (what, r) in &results {
        println!(
            "| {what} | {:.0} | {:.0} µs | {:.0} µs | {} | {:.2}× | {:.2}× |",
            r.qps,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.errors,
            r.qps / base.qps,
            r.p99.as_secs_f64() / base.p99.as_secs_f64()
        );
    }
    println!(
        "\nanswer follows a new Service (apply returned → name resolves), 10 services: median {:.1} ms, max {:.1} ms (target < 100 ms)",
        follow[5].as_secs_f64() * 1e3,
        follow[9].as_secs_f64() * 1e3
    );
    let mut r = Results::default();
    r.put("dns.clients", clients as f64);
    r.put("dns.seconds", secs as f64);
    r.put("dns.load", common::load1());
    for ((_, res), key) in results.iter().zip(["pod", "service", "dnsmasq"]) {
        r.put(format!("dns.{key}.qps"), res.qps);
        r.secs(format!("dns.{key}.p50"), res.p50);
        r.secs(format!("dns.{key}.p99"), res.p99);
        r.put(format!("dns.{key}.errors"), res.errors as f64);
    }
    r.secs("dns.follow.median", follow[5]);
    r.secs("dns.follow.max", follow[9]);
    r.save("dns");
}
