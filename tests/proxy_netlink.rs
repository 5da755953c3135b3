//! The netlink path builds exactly the table nft would: the same ruleset
//! loaded as nft text (`nft -f`) into one namespace and through netlab's
//! netlink batches into another must list identically, since
//! `nft list table ip netlab` is what trainers and users read. Also: a
//! refused batch names the offending command and service and changes
//! nothing. Root only: `sudo -E cargo test --test proxy_netlink`.

mod common;
use common::require_root;

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use netlab::net::NetNs;
use netlab::proxy::rule::{Rule, Stmt, Verdict};
use netlab::proxy::ruleset::{Chain, Op, Transaction};
use netlab::proxy::{self, Endpoint, Node, Protocol, Proxier, Service, ServicePort};

/// Namespaces of one test, deleted on drop.
struct Guard(String);

impl Guard {
    fn new() -> Guard {
        require_root();
        static N: AtomicUsize = AtomicUsize::new(0);
        Guard(format!(
            "netlab-nl{}x{}.",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ))
    }

    fn ns(&self, name: &str) -> NetNs {
        NetNs::create(&format!("{}{name}", self.0)).expect("creating a namespace")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        common::teardown_net(&self.0);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn nft(ns: &NetNs, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = ns
        .command("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ep(ip: &str, node: &str) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: 8080,
        node: node.into(),
    }
}

fn svc(name: &str, ip: &str, proto: Protocol, port: u16, eps: Vec<Endpoint>) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some(ip.parse().unwrap()),
        external_ips: vec![],
        ports: vec![ServicePort {
            name: "p".into(),
            protocol: proto,
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

/// One service of every shape rules.rs knows.
fn every_kind_of_service() -> Vec<Service> {
    use Protocol::{Sctp, Tcp, Udp};
    let two = || vec![ep("10.244.1.2", "node-1"), ep("10.244.2.2", "node-2")];
    let mut web = svc("web", "10.0.0.10", Tcp, 80, two());
    web.ports[0].node_port = Some(30080);
    web.external_ips = vec!["203.0.113.7".parse().unwrap()];
    let mut empty = svc("empty", "10.0.0.11", Tcp, 80, vec![]);
    empty.ports[0].node_port = Some(30081);
    empty.external_ips = vec!["203.0.113.8".parse().unwrap()];
    let mut local = svc("local", "10.0.0.12", Tcp, 80, two());
    local.ports[0].node_port = Some(30082);
    local.external_traffic_local = true;
    local.external_ips = vec!["203.0.113.9".parse().unwrap()];
    let mut far = svc(
        "far",
        "10.0.0.13",
        Tcp,
        80,
        vec![ep("10.244.2.3", "node-2")],
    );
    far.ports[0].node_port = Some(30083);
    far.external_traffic_local = true;
    let mut sticky = svc("sticky", "10.0.0.14", Tcp, 80, two());
    sticky.affinity_timeout = Some(10800);
    sticky.ports[0].node_port = Some(30084);
    let dns = svc("dns", "10.0.0.15", Udp, 53, two());
    let sctp = svc("sctp", "10.0.0.16", Sctp, 9999, two());
    let mut three = svc("three", "10.0.0.17", Tcp, 443, two());
    three.ports[0].endpoints.push(ep("10.244.1.9", "node-1"));
    // A LoadBalancer with loadBalancerSourceRanges (a firewall chain).
    let mut lb = svc("lb", "10.0.0.18", Tcp, 443, two());
    lb.ports[0].node_port = Some(30085);
    lb.external_ips = vec!["203.0.113.200".parse().unwrap()];
    lb.load_balancer_ips = lb.external_ips.clone();
    lb.source_ranges = vec![
        "203.0.113.0/25".parse().unwrap(),
        "198.51.100.7/32".parse().unwrap(),
    ];
    vec![web, empty, local, far, sticky, dns, sctp, three, lb]
}

fn node() -> Node {
    Node {
        name: "node-1".into(),
        node_ips: vec!["172.18.0.2".parse().unwrap()],
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        // Not byte-aligned: exercises the masked prefix match.
        service_cidr: "10.0.0.0/20".parse().unwrap(),
        host_ports: vec![],
        partitioned: vec![],
    }
}

#[test]
fn netlink_and_nft_text_build_the_same_table() {
    let g = Guard::new();
    let (by_nft, by_netlink) = (g.ns("text"), g.ns("netlink"));
    let node = node();
    let mut services = every_kind_of_service();
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut proxier = Proxier::load(by_netlink.name(), &dir.path().join("s.json")).unwrap();

    // The text namespace gets the table the proxier applied, whole the
    // first time, then the diff as nft text, so that both kernels see the
    // same commands in the same order (a listing shows chains in the order
    // they were added). (The proxier's table, not `proxy::ruleset`: the
    // proxier keeps each port's slot of `service-endpoints` when others
    // come and go, a fresh ruleset numbers them from 0.)
    let mut applied: Option<proxy::Ruleset> = None;
    let mut compare = |services: &[Service]| {
        assert!(proxy::ruleset(&node, services).warnings.is_empty());
        rt.block_on(proxier.sync(&node, services)).unwrap();
        let table = proxier.applied().expect("the proxier knows its table");
        let text = match &applied {
            None => table.create_transaction().text(),
            Some(old) => proxy::diff(old, &table).text(),
        };
        nft(&by_nft, &["-f", "-"], Some(&text));
        let want = nft(&by_nft, &["list", "table", "ip", "netlab"], None);
        let got = nft(&by_netlink, &["list", "table", "ip", "netlab"], None);
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(
                g,
                w,
                "line {} differs; netlink:\n{got}\nnft:\n{want}",
                i + 1
            );
        }
        assert_eq!(got, want);
        applied = Some(table);
    };
    compare(&services);
    // After incremental changes too: endpoints, affinity, type.
    services[0].ports[0].endpoints.pop();
    services[1].ports[0]
        .endpoints
        .push(ep("10.244.1.5", "node-1"));
    services[4].affinity_timeout = Some(60);
    services[5].ports[0].node_port = Some(30053);
    services.remove(6);
    compare(&services);
    // Endpoints gone and back, a service added into a freed slot.
    services[2].ports[0].endpoints.clear();
    services[3].ports[0]
        .endpoints
        .push(ep("10.244.1.7", "node-1"));
    services.push(svc(
        "late",
        "10.0.0.18",
        Protocol::Tcp,
        8443,
        vec![ep("10.244.1.2", "node-1")],
    ));
    compare(&services);
    services[2].ports[0].endpoints = vec![ep("10.244.2.4", "node-2")];
    compare(&services);
}

#[test]
fn a_refused_batch_names_the_command_and_changes_nothing() {
    let g = Guard::new();
    let ns = g.ns("node");
    let rt = rt();
    let chain = Chain {
        name: "service-0123abcd-default/web/tcp/80".into(),
        hook: None,
        rules: vec![],
    };
    let rule = Rule::new(vec![Stmt::Verdict(Verdict::Goto("no-such-chain".into()))]);
    let tx = Transaction::from_ops(vec![
        Op::AddTable,
        Op::AddChain(&chain),
        Op::AddRule(&chain.name, &rule),
    ]);
    let err = rt.block_on(proxy::netlink::apply(&ns, &tx)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(ns.name()), "{msg}");
    assert!(
        msg.contains(
            "command 3: add rule ip netlab service-0123abcd-default/web/tcp/80 goto no-such-chain"
        ),
        "{msg}"
    );
    assert!(msg.contains("service default/web"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    // Nothing of the failed transaction was applied.
    assert_eq!(nft(&ns, &["list", "tables"], None), "");
}

/// The network policies' table (`proxy::policy`): interval sets of
/// address ranges, port ranges, accept and admin-prohibited rejects, built
/// the same by netlink as by nft, whole and as a diff.
#[test]
fn the_policy_table_is_what_nft_builds() {
    use netlab::proxy::policy::{self, Allow, Direction, Isolated, Ports};
    let g = Guard::new();
    let (by_nft, by_netlink) = (g.ns("ptext"), g.ns("pnetlink"));
    let rt = rt();
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let pods = |peers: Vec<(&str, &str)>| {
        vec![
            Isolated {
                ip: ip("10.244.1.5"),
                pod: "x/a".into(),
                ingress: Some(Direction {
                    policies: vec!["x/p".into()],
                    allows: vec![
                        Allow {
                            by: "x/p ingress[0]".into(),
                            peers: Some(peers.iter().map(|(a, b)| (ip(a), ip(b))).collect()),
                            ports: Some(vec![
                                Ports {
                                    proto: Protocol::Tcp,
                                    first: 80,
                                    last: 80,
                                },
                                Ports {
                                    proto: Protocol::Udp,
                                    first: 8000,
                                    last: 8080,
                                },
                                // Matched by protocol number and port
                                // offset: no SCTP module needed.
                                Ports {
                                    proto: Protocol::Sctp,
                                    first: 3868,
                                    last: 3868,
                                },
                            ]),
                        },
                        Allow {
                            by: "x/p ingress[1]".into(),
                            peers: None,
                            ports: Some(vec![Ports {
                                proto: Protocol::Tcp,
                                first: 443,
                                last: 443,
                            }]),
                        },
                    ],
                }),
                egress: None,
            },
            Isolated {
                ip: ip("10.244.1.6"),
                pod: "x/b".into(),
                ingress: None,
                egress: Some(Direction {
                    policies: vec!["x/q".into()],
                    allows: vec![Allow {
                        by: "x/q egress[0]".into(),
                        peers: Some(vec![
                            (ip("0.0.0.0"), ip("10.255.255.255")),
                            (ip("12.0.0.0"), ip("255.255.255.255")),
                        ]),
                        ports: None,
                    }],
                }),
            },
        ]
    };
    let first = policy::ruleset(&pods(vec![("10.244.2.0", "10.244.2.255")]));
    let second = policy::ruleset(&pods(vec![
        ("10.244.2.0", "10.244.2.255"),
        ("10.244.3.7", "10.244.3.7"),
    ]));
    let steps = [
        first.create_transaction().in_table(policy::TABLE),
        proxy::diff(&first, &second).in_table(policy::TABLE),
    ];
    for tx in &steps {
        nft(&by_nft, &["-f", "-"], Some(&tx.text()));
        rt.block_on(proxy::netlink::apply(&by_netlink, tx)).unwrap();
        let want = nft(&by_nft, &["list", "table", "ip", policy::TABLE], None);
        let got = nft(&by_netlink, &["list", "table", "ip", policy::TABLE], None);
        assert_eq!(got, want, "netlink:\n{got}\nnft:\n{want}");
        assert!(got.contains("reject with icmp admin-prohibited"), "{got}");
        assert!(
            got.contains("udp dport 8000-8080 accept") || got.contains("th dport 8000-8080"),
            "{got}"
        );
    }
    let got = nft(&by_netlink, &["list", "table", "ip", policy::TABLE], None);
    assert!(got.contains("10.244.3.7"), "{got}");
    assert!(got.contains("12.0.0.0-255.255.255.255"), "{got}");
}
