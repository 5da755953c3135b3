//! NetworkPolicy enforcement (root: `sudo cargo bench --bench netpol`), in
//! one lab of one node with four namespaces, each a `server` pod (`app:
//! server`) and a `client` pod (`role: client`). The server's port 80 is a
//! socket the bench listens on in the server pod's network namespace and
//! accepts at once: a server that forks per connection (busybox httpd,
//! backlog 9) cannot keep up with connects as fast as the kernel answers
//! them, and every SYN its full queue drops costs a 1 s retransmit.
//!
//! - connect latency, client → its server's pod IP, where the server is
//!   selected by 0 (`p0`), 100 (`p100`) and 1 000 (`p1000`) policies of its
//!   namespace (each allows port 80 from its own label; one of them from
//!   `role: client`), against the same 1 000 policies compiled as one
//!   linear chain of rules (`plin`: a sibling table, one rule per policy,
//!   the client's last, as a plugin that walks its policies in order
//!   would). Interleaved rounds, medians and p99
//!   (NETLAB_BENCH_NETPOL_ROUNDS, default 20, of 50 connects);
//! - time from `kubectl apply` of a deny-all policy (kubectl has returned:
//!   the API has stored it) to the client's connects being rejected, and
//!   from `kubectl delete` to their passing again; and from `kubectl label`
//!   of the client out of (into) an allowed peer set to its connects being
//!   rejected (passing). NETLAB_BENCH_NETPOL_CHANGES rounds (default 10).
//! - the policy twin's work at scale, pure (no kernel): what it recomputes
//!   on any change of pods, labels or policies (`reachability::isolated`,
//!   then each node's `policy::ruleset`, then the diff to the applied
//!   table), for 1 000 pods over 2 nodes in 10 namespaces under 0, 100 and
//!   1 000 policies, the change being one pod's label.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{env_or, median, percentile, Results};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use netlab::cluster::reachability;
use netlab::net::NetNs;
use netlab::proxy::Ruleset;

const KUBECTL: &str = "/usr/bin/kubectl";
const PER_ROUND: usize = 50;

fn lab_yaml(counts: &[(&str, usize)]) -> String {
    let mut y =
        String::from("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n---\n");
    for (ns, policies) in counts {
        y.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata:\n  name: server\n  namespace: {ns}\n  labels: {{app: server}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: sleep\n    image: radial/busyboxplus:curl\n    command: [\"sleep\", \"100000\"]\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\n  namespace: {ns}\n  labels: {{role: client}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: sleep\n    image: radial/busyboxplus:curl\n    command: [\"sleep\", \"100000\"]\n---\n"
        ));
        for i in 0..*policies {
            let from = if i + 1 == *policies {
                "role: client".to_string()
            } else {
                format!("client-{i}: \"yes\"")
            };
            y.push_str(&format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-{i}\n  namespace: {ns}\nspec:\n  podSelector:\n    matchLabels: {{app: server}}\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {{{from}}}\n    ports:\n    - port: 80\n---\n"
            ));
        }
    }
    y
}

/// The linear baseline: `n` policies as one rule each in a sibling
/// table's forward chain, for traffic to `server`; the client's rule last.
fn linear(n: usize, server: &str, client: &str) -> String {
    let mut t = String::from(
        "add table ip netlab-linear\nadd chain ip netlab-linear forward { type filter hook forward priority 1 ; }\n",
    );
    t.push_str("add rule ip netlab-linear forward ct state established,related accept\n");
    t.push_str(&format!(
        "add rule ip netlab-linear forward ip daddr != {server} accept\n"
    ));
    for i in 0..n - 1 {
        t.push_str(&format!(
            "add set ip netlab-linear peers-{i} {{ type ipv4_addr ; flags interval ; }}\n\
             add rule ip netlab-linear forward ip saddr @peers-{i} tcp dport 80 accept\n"
        ));
    }
    t.push_str(&format!(
        "add rule ip netlab-linear forward ip saddr {client} tcp dport 80 accept\n\
         add rule ip netlab-linear forward reject with icmp admin-prohibited\n"
    ));
    t
}

/// 1 000 pods (10 namespaces `n0`…, 100 pods each, `app: app-<i % 20>`,
/// `role: r-<i % 7>`, alternating over node-1 and node-2) and `policies`
/// policies spread over the namespaces: each selects one app and allows
/// port 80 from one role of namespaces labelled `team: t<n % 3>`.
fn scale_world(policies: usize) -> (Vec<Pod>, Vec<Namespace>, Vec<NetworkPolicy>) {
    let mut pods = Vec::new();
    for n in 0..10 {
        for i in 0..100 {
            pods.push(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("p{i}"), "namespace": format!("n{n}"),
                                 "labels": {"app": format!("app-{}", i % 20), "role": format!("r-{}", i % 7)}},
                    "spec": {"nodeName": format!("node-{}", 1 + i % 2), "containers": [
                        {"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
                    "status": {"podIP": format!("10.244.{}.{}", 1 + n * 2 + i % 2, 2 + i / 2), "phase": "Running"}
                }))
                .unwrap(),
            );
        }
    }
    let namespaces = (0..10)
        .map(|n| {
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("n{n}"),
                "labels": {"team": format!("t{}", n % 3), "kubernetes.io/metadata.name": format!("n{n}")}}}))
            .unwrap()
        })
        .collect();
    let policies = (0..policies)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("allow-{i}"), "namespace": format!("n{}", i % 10)},
                "spec": {"podSelector": {"matchLabels": {"app": format!("app-{}", i % 20)}},
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 3)}},
                                                "podSelector": {"matchLabels": {"role": format!("r-{}", i % 7)}}}],
                                      "ports": [{"port": 80}]}]}
            }))
            .unwrap()
        })
        .collect();
    (pods, namespaces, policies)
}

/// What the twin computes for a world: every node's table.
fn tables(pods: &[Pod], nss: &[Namespace], pols: &[NetworkPolicy]) -> BTreeMap<String, Ruleset> {
    reachability::node_tables(
        &pols.iter().collect::<Vec<_>>(),
        &pods.iter().collect::<Vec<_>>(),
        &nss.iter().collect::<Vec<_>>(),
    )
}

/// The twin's recompute after one pod's label change, at 1 000 pods.
fn recompute(r: &mut Results) {
    println!("the policy twin's recompute after one pod's label change, 1 000 pods on 2 nodes (median of 5):");
    for n in [0usize, 100, 1000] {
        let (mut pods, nss, pols) = scale_world(n);
        let mut before = tables(&pods, &nss, &pols);
        let mut times = Vec::new();
        let mut commands = 0;
        for round in 0..5 {
            // p3 of n0 changes role, back and forth.
            let role = if round % 2 == 0 { "r-5" } else { "r-3" };
            pods[3]
                .metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("role".into(), role.into());
            let t = Instant::now();
            let after = tables(&pods, &nss, &pols);
            commands = 0;
            for (node, new) in &after {
                if let Some(old) = before.get(node) {
                    commands += netlab::proxy::diff(old, new).commands();
                }
            }
            times.push(t.elapsed());
            before = after;
        }
        let m = median(&times);
        println!(
            "  {n} policies: {:.1} ms ({commands} netlink commands for the change)",
            m.as_secs_f64() * 1e3
        );
        r.secs(format!("netpol.recompute.p{n}"), m);
    }
}

/// Port 80 of `ns`, accepted (and dropped) by a thread of the bench for as
/// long as it runs.
fn serve(ns: &NetNs) {
    let l = ns
        .run(|| std::net::TcpListener::bind("0.0.0.0:80"))
        .expect("entering the server's namespace")
        .expect("listening on port 80 in the server pod");
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
}

/// One connect from `ns` to `addr` within `timeout`: Ok(time) or the error.
fn connect(
    ns: &NetNs,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Duration, std::io::ErrorKind> {
    ns.run(move || {
        let t = Instant::now();
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let d = t.elapsed();
                let _ = common::linger_zero(&s);
                Ok(d)
            }
            Err(e) => Err(e.kind()),
        }
    })
    .expect("entering the client's namespace")
}

/// How long after now until `ns`'s connects to `addr` pass (`pass`) or
/// fail: a connect every 0.2 ms or so, 5 s at most. A connect not
/// answered within 100 ms counts as failed: the kernel sends at most 6
/// ICMP errors in a row to one host, then one a second
/// (`net.ipv4.icmp_ratelimit`), so a rejected SYN may go unanswered.
fn until(ns: &NetNs, addr: SocketAddr, pass: bool) -> Duration {
    let t = Instant::now();
    loop {
        if connect(ns, addr, Duration::from_millis(100)).is_ok() == pass {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{addr}: never {}",
            if pass { "passed" } else { "rejected" }
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn main() {
    common::require_root("netpol");
    let rounds: usize = env_or("NETLAB_BENCH_NETPOL_ROUNDS", 20);
    let changes: usize = env_or("NETLAB_BENCH_NETPOL_CHANGES", 10);
    let mut r = Results::default();
    r.put("netpol.load", common::load1());
    recompute(&mut r);
    let lab = format!("bnp{}", common::tag());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lab.yaml");
    let configs = [("p0", 0), ("p100", 100), ("p1000", 1000), ("plin", 0)];
    std::fs::write(&file, lab_yaml(&configs)).unwrap();
    let _guard = common::DownOnDrop(lab.clone());
    let up = common::up_timed(&lab, &file, &[]);
    println!(
        "lab of 8 pods and 1 100 policies up in {:.2} s",
        up.as_secs_f64()
    );
    r.secs("netpol.up", up);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, common::netlab(&["kubeconfig", "--lab", &lab])).unwrap();
    let kubectl = |args: &[&str]| {
        common::run(
            Command::new(KUBECTL)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args),
        );
    };
    let ip = |ns: &str, pod: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&common::netlab(&[
            "--lab", &lab, "get", "pod", pod, "-n", ns, "-o", "json",
        ]))
        .unwrap();
        v["status"]["podIP"].as_str().expect("a pod IP").to_string()
    };
    let node = NetNs::open(&netlab::paths::node_netns(&lab, "node-1")).expect("the node");
    let mut targets = Vec::new();
    for (ns, _) in configs {
        let client = NetNs::open(&netlab::paths::pod_netns(&lab, ns, "client")).expect("client");
        let addr: SocketAddr = format!("{}:80", ip(ns, "server")).parse().unwrap();
        serve(&NetNs::open(&netlab::paths::pod_netns(&lab, ns, "server")).expect("server"));
        targets.push((ns, client, addr));
    }
    // The linear table for plin's server.
    let text = linear(1000, &targets[3].2.ip().to_string(), &ip("plin", "client"));
    let out = node
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("nft");
    assert!(out.status.success(), "loading the linear chain");
    for (ns, client, addr) in &targets {
        let _ = ns;
        until(client, *addr, true);
    }

    // 1. Connect latency, interleaved rounds.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for round in 0..=rounds {
        for (i, (_, client, addr)) in targets.iter().enumerate() {
            for _ in 0..PER_ROUND {
                let d = connect(client, *addr, Duration::from_secs(3)).expect("an allowed connect");
                if round > 0 {
                    times[i].push(d);
                }
            }
        }
    }
    println!("connect latency, client -> server (its pod IP), {rounds} interleaved rounds of {PER_ROUND}:");
    let base = median(&times[0]);
    for ((ns, _, _), t) in targets.iter().zip(&times) {
        let (m, p99) = (median(t), percentile(t, 99.0));
        let what = match *ns {
            "p0" => "0 policies",
            "p100" => "100 policies",
            "p1000" => "1 000 policies",
            _ => "1 000 policies as a linear chain",
        };
        println!(
            "  {what}: median {:.1} µs, p99 {:.1} µs ({:+.1} % vs 0)",
            m.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            (m.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0
        );
        r.secs(format!("netpol.latency.{ns}"), m);
        r.secs(format!("netpol.latency_p99.{ns}"), p99);
    }

    // 2. A policy applied and deleted; a label changed.
    let (_, client, addr) = &targets[0];
    let deny = dir.path().join("deny.yaml");
    std::fs::write(
        &deny,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\n  namespace: p0\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    let deny = deny.to_str().unwrap().to_string();
    let (mut applied, mut deleted) = (Vec::new(), Vec::new());
    // A second between changes: the ICMP errors of the rejections before
    // are allowed again (see `until`).
    let pause = || std::thread::sleep(Duration::from_secs(1));
    for _ in 0..changes {
        pause();
        kubectl(&["apply", "-f", &deny]);
        applied.push(until(client, *addr, false));
        pause();
        kubectl(&["delete", "-f", &deny]);
        deleted.push(until(client, *addr, true));
    }
    // p100's client leaves and rejoins the allowed peers (`role: client`).
    let (_, client, addr) = &targets[1];
    let (mut left, mut joined) = (Vec::new(), Vec::new());
    for _ in 0..changes {
        pause();
        kubectl(&["label", "pod", "client", "-n", "p100", "role-"]);
        left.push(until(client, *addr, false));
        pause();
        kubectl(&["label", "pod", "client", "-n", "p100", "role=client"]);
        joined.push(until(client, *addr, true));
    }
    println!("from kubectl's return to the verdict on the node ({changes} rounds):");
    for (key, what, t) in [
        ("apply", "apply of a deny-all policy -> rejected", &applied),
        ("delete", "delete of it -> passes", &deleted),
        ("unlabel", "label out of the peers -> rejected", &left),
        ("label", "label back -> passes", &joined),
    ] {
        println!(
            "  {what}: median {:.1} ms, max {:.1} ms",
            median(t).as_secs_f64() * 1e3,
            t.iter().max().unwrap().as_secs_f64() * 1e3
        );
        r.secs(format!("netpol.change.{key}"), median(t));
        r.secs(format!("netpol.change_max.{key}"), *t.iter().max().unwrap());
    }
    r.put("netpol.rounds", rounds as f64);
    r.put("netpol.changes", changes as f64);
    drop(_guard);
    r.save("netpol");
}
