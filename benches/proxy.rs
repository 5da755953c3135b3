//! The proxy benchmark (root): how long syncing a node's rules takes at 10,
//! 1 000 and 10 000 services (2 endpoints each) in one real namespace — a
//! full sync, and one endpoint change — through `nft` as netlab runs it.
//!
//! `sudo cargo bench --bench proxy` (NETLAB_PROXY_SERVICES=N for one size).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netlab::net::{self, NetNs};
use netlab::proxy::{self, Endpoint, Node, Protocol, Proxier, Service, ServicePort};

fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the proxy benchmark needs root: sudo cargo bench --bench proxy");
        std::process::exit(1);
    }
}

/// A namespace prefix of this test, torn down on drop (also on failure).
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let errs = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(net::teardown(&prefix))
        })
        .join()
        .unwrap();
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
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    require_root();
    let sizes: Vec<u32> = match std::env::var("NETLAB_PROXY_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![10, 1_000, 10_000],
    };
    for (i, count) in sizes.into_iter().enumerate() {
        run(count, i);
    }
}

fn run(count: u32, round: usize) {
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
    };
    let mut svcs = services(count);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let start = Instant::now();
    let desired = proxy::ruleset(&node, &svcs);
    let generate = start.elapsed();
    let mut proxier = Proxier::load(&netns, &state).unwrap();
    let start = Instant::now();
    let full = rt.block_on(proxier.sync(desired)).expect("full sync");
    let full_total = start.elapsed();
    assert!(full.full);
    println!(
        "full sync, {count} services: generate {:.1} ms, sync {:.1} ms \
         (render {:.1} ms, nft {:.1} ms, state file {:.1} ms), {} commands",
        ms(generate),
        ms(full_total),
        ms(full.diff_time),
        ms(full.nft_time),
        ms(full.persist_time),
        full.commands
    );

    // One endpoint changes, several times (the first nft call may pay for
    // cold caches).
    let mut change_times = Vec::new();
    for round in 0..5u8 {
        svcs[count as usize / 2].ports[0].endpoints[1].ip = Ipv4Addr::new(10, 245, 0, round);
        let start = Instant::now();
        let desired = proxy::ruleset(&node, &svcs);
        let generate = start.elapsed();
        let start = Instant::now();
        let stats = rt
            .block_on(proxier.sync(desired))
            .expect("incremental sync");
        let total = start.elapsed();
        assert!(!stats.full);
        assert_eq!(stats.commands, 9, "{stats:?}");
        println!(
            "one endpoint changed: generate {:.1} ms, sync {:.1} ms (diff {:.1} ms, nft {:.1} ms, \
             state file {:.1} ms), {} commands",
            ms(generate),
            ms(total),
            ms(stats.diff_time),
            ms(stats.nft_time),
            ms(stats.persist_time),
            stats.commands
        );
        change_times.push(stats.diff_time + stats.nft_time);
    }

    // A later process: load the state file, diff, apply.
    svcs[count as usize / 3].ports[0].endpoints.pop();
    let desired = proxy::ruleset(&node, &svcs);
    let start = Instant::now();
    let stats = rt
        .block_on(proxy::sync(&netns, &state, &desired))
        .expect("sync from the state file");
    println!(
        "one endpoint removed by a new process (load state + sync): {:.1} ms, {} commands",
        ms(start.elapsed()),
        stats.commands
    );
    assert!(!stats.full);

    // The kernel holds what we think it holds.
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

    let best = change_times.iter().min().unwrap();
    println!("{count} services: full sync {:.1} ms, best endpoint change {:.1} ms (targets at 10 000: < 1000 ms, < 10 ms)\n", ms(full_total), ms(*best));
}
