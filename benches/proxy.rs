//! The proxy benchmark (root): how long syncing a node's rules takes at
//! 1 000, 10 000 and 30 000 services (2 endpoints each) in one real
//! namespace — a full sync, and one endpoint change — through netlab's
//! Proxier as the controller runs it (nf_tables netlink batches, the state
//! file); and connect latency through a clusterIP at 1 service and at each
//! size, against a linear one-rule-per-service chain of the same size.
//!
//! `sudo cargo bench --bench proxy` (NETLAB_PROXY_SERVICES=1000,10000,30000
//! for the sizes, comma-separated).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netlab::net::{self, NetNs};
use netlab::proxy::{self, Endpoint, Node, Protocol, Proxier, Service, ServicePort};

/// A namespace prefix of this test, torn down on drop (also on failure).
struct Guard(String);

/// Namespaces of earlier runs that were killed before their Guard ran
/// (`netlab-pf<pid>x…` whose process is gone): removed at start.
fn remove_stale_runs() {
    let mut stale = std::collections::BTreeSet::new();
    for name in net::NetNs::list("netlab-pf") {
        let Some(pid) = name
            .strip_prefix("netlab-pf")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            stale.insert(name[..name.find('.').map_or(name.len(), |i| i + 1)].to_string());
        }
    }
    for prefix in stale {
        drop(Guard(prefix));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (errs, _) = common::teardown(&self.0);
        for e in errs {
            eprintln!("cleanup of {}: {e}", self.0);
        }
    }
}

fn services(n: u32) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let ip = |base: [u8; 2], i: u32| {
                Ipv4Addr::new(10, base[0] + (i >> 16) as u8, (i >> 8) as u8, i as u8)
            };
            Service {
                namespace: "default".into(),
                name: format!("svc-{i}"),
                cluster_ip: Some(ip([0, 0], i + 1)),
                external_ips: vec![],
                ports: vec![ServicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                    endpoints: vec![
                        Endpoint {
                            ip: ip([244, 0], 2 * i + 2),
                            port: 8080,
                            node: "node-1".into(),
                        },
                        Endpoint {
                            ip: ip([244, 0], 2 * i + 3),
                            port: 8080,
                            node: "node-2".into(),
                        },
                    ],
                }],
                affinity_timeout: None,
                external_traffic_local: false,
                source_ranges: vec![],
                load_balancer_ips: vec![],
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    common::require_root("proxy");
    let load_at_start = common::load1();
    let sizes: Vec<u32> = common::env_list("NETLAB_PROXY_SERVICES", &[1_000, 10_000, 30_000])
        .into_iter()
        .map(|n| n as u32)
        .collect();
    let mut results = common::Results::default();
    for (i, &count) in sizes.iter().enumerate() {
        run(count, i, &mut results);
    }
    latency(&sizes, &mut results);
    results.put("proxy.load", load_at_start);
    results.save("proxy");
}

/// Connect latency from a node to a clusterIP whose endpoint is a pod on
/// that node, at 1 and at each size in the verdict-map layout, and with the
/// largest size as a linear chain of one DNAT rule per service (what
/// kube-proxy's iptables mode amounts to), the target being the last.
///
/// Each configuration has a node and a pod of its own, all loaded at once,
/// and the connects are taken in interleaved rounds (a round of each
/// configuration in turn, 20 times): measured one after another, the
/// figures drifted with the machine by ±40 % between runs, more than the
/// differences being measured.
fn latency(sizes: &[u32], results: &mut common::Results) {
    use netlab::net::{DcPlan, NetPlan, NodePlan, PodPlan};
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 100;
    const WARM_UP: usize = 200;
    let prefix = format!("netlab-pf{}xl.", std::process::id());
    remove_stale_runs();
    let _guard = Guard(prefix.clone());

    let largest = sizes.iter().copied().max().unwrap_or(10_000);
    let mut counts = vec![1u32];
    counts.extend(sizes.iter().copied().filter(|&n| n > 1));
    // The configurations: the pod directly, verdict maps at each count,
    // the linear chain at the largest.
    enum Rules {
        None,
        Maps(u32),
        Linear(u32),
    }
    let mut configs = vec![("no service: the pod directly".to_string(), Rules::None)];
    for &n in &counts {
        configs.push((format!("verdict maps, {n} services"), Rules::Maps(n)));
    }
    configs.push((
        format!("linear chain, {largest} services"),
        Rules::Linear(largest),
    ));

    let node_ns = |i: usize| format!("{prefix}node.c{i}");
    let pod_ns = |i: usize| format!("{prefix}pod.default.c{i}");
    let pod_ip = |i: usize| Ipv4Addr::new(10, 244, i as u8 + 1, 2);
    let plan = NetPlan {
        dc: DcPlan {
            netns: format!("{prefix}dc"),
            bridge: "lan0".into(),
            addr: "172.18.0.1/24".parse().unwrap(),
            routes: Vec::new(),
        },
        nodes: (0..configs.len())
            .map(|i| NodePlan {
                name: format!("c{i}"),
                netns: node_ns(i),
                dc_port: net::ifname("n-", &node_ns(i)),
                lan_addr: format!("172.18.0.{}/24", i + 2).parse().unwrap(),
                bridge: "cni0".into(),
                gateway: format!("10.244.{}.1/24", i + 1).parse().unwrap(),
                // A route for the service range: locally made packets are
                // routed before the output hook DNATs them.
                routes: vec![(
                    "10.0.0.0/16".parse().unwrap(),
                    "172.18.0.1".parse().unwrap(),
                )],
            })
            .collect(),
        pods: (0..configs.len())
            .map(|i| PodPlan {
                netns: pod_ns(i),
                node_netns: node_ns(i),
                host_veth: net::ifname("veth", &pod_ns(i)),
                bridge: "cni0".into(),
                addr: format!("{}/24", pod_ip(i)).parse().unwrap(),
                gateway: format!("10.244.{}.1", i + 1).parse().unwrap(),
            })
            .collect(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(net::apply(&plan)).expect("network");
    // In each pod, a server that accepts and closes, forever (the threads
    // end with the process).
    for i in 0..configs.len() {
        let listener = NetNs::open(&pod_ns(i))
            .unwrap()
            .run(|| std::net::TcpListener::bind("0.0.0.0:8080").unwrap())
            .unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                drop(c);
            }
        });
    }
    // The services of count n, the last one's endpoint being pod i.
    let target = |n: u32, i: usize| {
        let mut svcs = services(n);
        let last = svcs.last_mut().unwrap();
        last.ports[0].endpoints = vec![Endpoint {
            ip: pod_ip(i),
            port: 8080,
            node: format!("c{i}"),
        }];
        (last.cluster_ip.unwrap(), svcs)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut targets = Vec::new();
    for (i, (_, rules)) in configs.iter().enumerate() {
        let ns = NetNs::open(&node_ns(i)).unwrap();
        let addr = match rules {
            Rules::None => std::net::SocketAddr::from((pod_ip(i), 8080)),
            Rules::Maps(n) => {
                let (ip, svcs) = target(*n, i);
                let node = Node {
                    name: format!("c{i}"),
                    node_ips: vec![plan.nodes[i].lan_addr.addr()],
                    cluster_cidr: "10.244.0.0/16".parse().unwrap(),
                    service_cidr: "10.0.0.0/16".parse().unwrap(),
                    host_ports: vec![],
                    partitioned: vec![],
                };
                rt.block_on(proxy::sync(
                    &node_ns(i),
                    &dir.path().join(format!("c{i}.json")),
                    &node,
                    &svcs,
                ))
                .expect("sync");
                std::net::SocketAddr::from((ip, 80))
            }
            Rules::Linear(n) => {
                let (ip, svcs) = target(*n, i);
                load_linear(&ns, &svcs);
                std::net::SocketAddr::from((ip, 80))
            }
        };
        // A new bridge port forwards only after a moment: wait until the
        // pod answers, through the rules.
        ns.run(move || {
            let start = Instant::now();
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{addr} never answered"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
        targets.push((ns, addr));
    }
    // Steady state: let the kernel finish freeing what the loads replaced
    // (deferred work after an RCU grace period).
    std::thread::sleep(Duration::from_secs(2));

    let connects = |ns: &NetNs, addr: std::net::SocketAddr, count: usize| -> Vec<Duration> {
        ns.run(move || {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                // A lost SYN (a full accept queue on a loaded machine) costs
                // a 1 s retransmit: count it as such rather than abort.
                let s = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("connect {addr}: {e}");
                        continue;
                    }
                };
                times.push(t.elapsed());
                // RST instead of FIN: no TIME_WAIT pile-up in conntrack.
                let _ = common::linger_zero(&s);
                drop(s);
            }
            times
        })
        .unwrap()
    };
    for (ns, addr) in &targets {
        connects(ns, *addr, WARM_UP);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for _ in 0..ROUNDS {
        for (i, (ns, addr)) in targets.iter().enumerate() {
            times[i].extend(connects(ns, *addr, PER_ROUND));
        }
    }
    let rows: Vec<(String, (Duration, Duration))> = configs
        .iter()
        .zip(&mut times)
        .map(|((what, _), t)| {
            t.sort();
            (what.clone(), (t[t.len() / 2], t[t.len() * 99 / 100]))
        })
        .collect();
    for ((_, rules), (_, m)) in configs.iter().zip(&rows) {
        match rules {
            Rules::None => results.put("proxy.latency.direct", m.0.as_secs_f64()),
            Rules::Maps(n) => {
                results.put(format!("proxy.latency.maps.{n}"), m.0.as_secs_f64());
                results.put(format!("proxy.latency_p99.maps.{n}"), m.1.as_secs_f64());
            }
            Rules::Linear(n) => {
                results.put(format!("proxy.latency.linear.{n}"), m.0.as_secs_f64());
                results.put(format!("proxy.latency_p99.linear.{n}"), m.1.as_secs_f64());
            }
        }
    }
    for (i, (_, rules)) in configs.iter().enumerate() {
        if let Rules::Maps(_) = rules {
            rt.block_on(proxy::remove(&node_ns(i))).unwrap();
        }
    }

    println!(
        "connect latency to a clusterIP (node -> local pod; {ROUNDS} interleaved rounds of {PER_ROUND} connects):"
    );
    let base = rows[1].1 .0;
    for (what, (median, p99)) in &rows {
        println!(
            "  {what}: median {:.1} µs, p99 {:.1} µs ({:+.1}% vs 1 service)",
            median.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            (median.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0
        );
    }
}

/// The linear baseline in `ns`: one DNAT rule per service, in order.
fn load_linear(ns: &NetNs, svcs: &[Service]) {
    let mut text = String::from(
        "add table ip linear\nadd chain ip linear out { type nat hook output priority -100 ; }\n",
    );
    for s in svcs {
        let ep = &s.ports[0].endpoints[0];
        text.push_str(&format!(
            "add rule ip linear out ip daddr {} tcp dport 80 dnat to {}:{}\n",
            s.cluster_ip.unwrap(),
            ep.ip,
            ep.port
        ));
    }
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// `nft -f` text with each set's `add element` lines merged into one
/// command per set (`add element ip netlab S { a, b, … }`), as a script
/// would write it: one netlink message per set, not per element.
fn grouped(text: &str) -> String {
    let mut out = String::new();
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("add element ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let (head, body) = rest.split_once(" { ").expect("add element T S { … }");
        let body = body.strip_suffix(" }").expect("… }").to_string();
        match sets.iter_mut().find(|(h, _)| h == head) {
            Some((_, v)) => v.push(body),
            None => sets.push((head.to_string(), vec![body])),
        }
    }
    for (head, elements) in sets {
        out.push_str(&format!(
            "add element {head} {{ {} }}\n",
            elements.join(", ")
        ));
    }
    out
}

fn run(count: u32, round: usize, results: &mut common::Results) {
    let prefix = format!("netlab-pf{}x{round}.", std::process::id());
    let _guard = Guard(prefix.clone());
    let netns = format!("{prefix}node.scale");
    NetNs::create(&netns).expect("creating the namespace");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("node.json");
    let node = Node {
        name: "node-1".into(),
        node_ips: vec!["172.18.0.2".parse().unwrap()],
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.0.0.0/16".parse().unwrap(),
        host_ports: vec![],
        partitioned: vec![],
    };
    let mut svcs = services(count);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut proxier = Proxier::load(&netns, &state).unwrap();
    let start = Instant::now();
    let full = rt.block_on(proxier.sync(&node, &svcs)).expect("full sync");
    let full_total = start.elapsed();
    assert!(full.full);
    println!(
        "full sync, {count} services: {:.1} ms (generate {:.1} ms, encode+kernel {:.1} ms, \
         transaction {:.1} ms, state file {:.1} ms), {} commands",
        ms(full_total),
        ms(full.generate_time),
        ms(full.apply_time),
        ms(full.diff_time),
        ms(full.persist_time),
        full.commands
    );

    // One endpoint changes, several times (the first call may pay for cold
    // caches). Timed: the whole call, as the controller makes it — compare
    // the services with what was applied, generate the changed one, diff,
    // send the batch, append to the state file.
    let mut change_times = Vec::new();
    // NETLAB_PROXY_CHANGES=N for more rounds (profiling).
    let rounds: u32 = std::env::var("NETLAB_PROXY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    for round in 0..rounds {
        let [_, _, hi, lo] = round.to_be_bytes();
        svcs[count as usize / 2].ports[0].endpoints[1].ip = Ipv4Addr::new(10, 245, hi, lo);
        let start = Instant::now();
        let stats = rt
            .block_on(proxier.sync(&node, &svcs))
            .expect("incremental sync");
        let total = start.elapsed();
        assert!(!stats.full);
        assert_eq!(stats.commands, 4, "{stats:?}");
        if round >= 15 {
            change_times.push(total);
            continue;
        }
        println!(
            "one endpoint changed: {:.2} ms (compare+generate {:.2} ms, diff {:.2} ms, \
             encode+kernel {:.2} ms, state file {:.2} ms), {} commands",
            ms(total),
            ms(stats.generate_time),
            ms(stats.diff_time),
            ms(stats.apply_time),
            ms(stats.persist_time),
            stats.commands
        );
        change_times.push(total);
    }

    // A later process: load the state file, diff, apply.
    svcs[count as usize / 3].ports[0].endpoints.pop();
    let start = Instant::now();
    let stats = rt
        .block_on(proxy::sync(&netns, &state, &node, &svcs))
        .expect("sync from the state file");
    println!(
        "one endpoint removed by a new process (load state + sync): {:.1} ms, {} commands",
        ms(start.elapsed()),
        stats.commands
    );
    assert!(!stats.full);

    // The kernel holds what we think it holds.
    let desired = proxy::ruleset(&node, &svcs);
    let listed = NetNs::open(&netns)
        .unwrap()
        .command("nft")
        .args([
            "list",
            "chain",
            "ip",
            "netlab",
            &desired.chains.last().unwrap().name,
        ])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    rt.block_on(proxier.remove()).expect("removing the table");
    assert!(!state.exists());

    // The baseline: the same table as `nft -f` text (`Ruleset::render`, with
    // each set's elements in one command), loaded into a fresh namespace. What
    // a user's script pays, and the least the `nftables` crate (JSON
    // through `nft -j -f -`, one process per change) would.
    let text = grouped(&proxy::ruleset(&node, &svcs).render());
    let text_file = dir.path().join("table.nft");
    std::fs::write(&text_file, &text).unwrap();
    let text_ns = format!("{prefix}node.text");
    NetNs::create(&text_ns).expect("creating the namespace");
    let start = Instant::now();
    let out = NetNs::open(&text_ns)
        .unwrap()
        .command("nft")
        .args(["-f", text_file.to_str().unwrap()])
        .output()
        .unwrap();
    let text_time = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results.secs(format!("proxy.nft_text.{count}"), text_time);
    println!(
        "the same table by `nft -f` ({} lines): {:.1} ms",
        text.lines().count(),
        ms(text_time)
    );

    // The `nftables` crate's path: the same table as JSON (nft's own
    // listing of it, in the order a loader needs: chains before the maps
    // whose elements jump to them, rules last), by `nft -j -f`.
    let listed = NetNs::open(&text_ns)
        .unwrap()
        .command("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let rank = |o: &serde_json::Value| match o.as_object().and_then(|o| o.keys().next()) {
        Some(k) if k == "metainfo" || k == "table" => 0,
        Some(k) if k == "chain" => 1,
        Some(k) if k == "set" || k == "map" => 2,
        _ => 3,
    };
    json["nftables"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(|o| rank(o));
    let json_file = dir.path().join("table.json");
    std::fs::write(&json_file, json.to_string()).unwrap();
    let json_ns = format!("{prefix}node.json");
    NetNs::create(&json_ns).expect("creating the namespace");
    let start = Instant::now();
    let out = NetNs::open(&json_ns)
        .unwrap()
        .command("nft")
        .args(["-j", "-f", json_file.to_str().unwrap()])
        .output()
        .unwrap();
    let json_time = start.elapsed();
    if out.status.success() {
        results.secs(format!("proxy.nft_json.{count}"), json_time);
        println!(
            "the same table by `nft -j -f` ({} KB of JSON): {:.1} ms",
            json.to_string().len() / 1024,
            ms(json_time)
        );
    } else {
        // nft 1.0.6 (Debian 12) lists maps with concatenated data (the
        // DNAT maps: `ipv4_addr . inet_service`) but refuses them as JSON
        // input: that path cannot load this layout at all there.
        let why = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("internal:0:0-0: ")
            .to_string();
        println!("the same table by `nft -j -f`: refused: {why}");
        results.put("proxy.nft_json_refused", why);
    }

    // One endpoint change through an `nft` process (what the `nftables`
    // crate runs per change): one element out of a map and back in, in
    // one batch, against the loaded table.
    let (head, element) = text
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("add element ")?;
            let (head, body) = rest.split_once(" { ")?;
            let first = body.strip_suffix(" }")?.split(", ").next()?;
            Some((head.to_string(), first.to_string()))
        })
        .expect("a map with elements");
    let change =
        format!("delete element {head} {{ {element} }}\nadd element {head} {{ {element} }}\n");
    let mut process_changes = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let mut child = NetNs::open(&text_ns)
            .unwrap()
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), change.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "nft -f of {change}");
        process_changes.push(start.elapsed());
    }
    process_changes.sort();
    let process_change = process_changes[process_changes.len() / 2];
    results.secs(format!("proxy.nft_change.{count}"), process_change);
    println!(
        "one endpoint change by an `nft -f` process: {:.2} ms median",
        ms(process_change)
    );

    change_times.sort();
    results.secs(format!("proxy.full_sync.{count}"), full_total);
    results.secs(format!("proxy.change_best.{count}"), change_times[0]);
    results.secs(
        format!("proxy.change.{count}"),
        change_times[change_times.len() / 2],
    );
    println!(
        "{count} services: full sync {:.1} ms, endpoint change best {:.2} ms, median {:.2} ms \
         (targets at 10 000: < 1000 ms, < 10 ms)\n",
        ms(full_total),
        ms(change_times[0]),
        ms(change_times[change_times.len() / 2])
    );
}
