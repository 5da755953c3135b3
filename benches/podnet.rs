//! Pod network bring-up and teardown, side by side (root:
//! `sudo cargo bench --bench podnet`).
//!
//! For each size (NETLAB_BENCH_PODNET_SIZES, default 100,500,1000) the same
//! topology — a dc namespace with a LAN bridge, 2 node namespaces (veth to
//! the LAN, bridge cni0, a /22 of pods each), N pod namespaces each joined
//! to its node's cni0 by a veth — is built and removed four ways:
//!
//! - netlab: `net::apply` of the plan `up` makes (`controller::up::net_plan`
//!   of a 2-node lab with `podCIDRMaskSize: 22`), and `net::teardown`;
//! - the CNI bridge plugin with host-local IPAM (Debian's
//!   containernetworking-plugins), driven as a container runtime drives it:
//!   create the pod's netns, exec `/usr/lib/cni/bridge` in the node's
//!   namespace with CNI_COMMAND=ADD and the network config on stdin; DEL,
//!   then delete the netns (NETLAB_BENCH_CNI_JOBS plugins at a time,
//!   default 2 = the cores here; dc and nodes made by `ip`);
//! - `scripts/baseline-ip.sh`: one `ip` command per step;
//! - the kernel floor: the same namespaces, veths and bridge ports created
//!   by a single `ip -batch` process (plus one `ip -n NS -batch` per node
//!   and the dc to make the bridges and enslave the ports). It does NOT
//!   configure the pods' side: no lo/eth0 up, no address, no route, no
//!   hairpin (`ip -batch` lines cannot run in another namespace, and one
//!   process per pod would not be a floor). Teardown: one `ip -batch` of
//!   `netns del` lines.
//!
//! netlab and the floor: median of NETLAB_BENCH_RUNS (default 3); CNI and
//! the ip script: NETLAB_BENCH_SLOW_RUNS (default 1). Between measurements
//! the bench waits until the kernel has freed the deleted namespaces (it
//! does so asynchronously after `netns del` returns), so one measurement's
//! cleanup does not slow the next.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{env_list, env_or, median, Results};
use netlab::cluster::{ClusterState, HostInfo};
use netlab::controller::up::net_plan;
use netlab::net::{self, NetNs, NetPlan};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const MASK: u8 = 22;
const CNI_BRIDGE: &str = "/usr/lib/cni/bridge";

/// Removes every namespace of a prefix, and the CNI IPAM directory, on drop.
struct Guard {
    prefix: String,
    dir: Option<std::path::PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        teardown_netlab(&self.prefix);
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn teardown_netlab(prefix: &str) -> Duration {
    let (errs, d) = common::teardown(prefix);
    assert!(errs.is_empty(), "teardown of {prefix}: {errs:?}");
    d
}

fn main() {
    common::require_root("podnet");
    let load_at_start = common::load1();
    let sizes = env_list("NETLAB_BENCH_PODNET_SIZES", &[100, 500, 1000]);
    let runs: usize = env_or("NETLAB_BENCH_RUNS", 3);
    let slow_runs: usize = env_or("NETLAB_BENCH_SLOW_RUNS", 1);
    let jobs: usize = env_or("NETLAB_BENCH_CNI_JOBS", 2);
    let methods: Vec<String> = std::env::var("NETLAB_BENCH_PODNET_METHODS")
        .unwrap_or_else(|_| "netlab,floor,ip,cni".into())
        .split(',')
        .map(str::to_string)
        .collect();
    assert!(
        std::path::Path::new(CNI_BRIDGE).exists() || !methods.iter().any(|m| m == "cni"),
        "{CNI_BRIDGE} is missing: apt-get install containernetworking-plugins"
    );
    let lab = format!("b{}-pn", common::tag());
    let prefix = netlab::paths::netns_prefix(&lab);
    let ipam_dir = std::path::PathBuf::from(format!("/run/netlab-bench-cni-{}", common::tag()));
    let _guard = Guard {
        prefix: prefix.clone(),
        dir: Some(ipam_dir.clone()),
    };
    let mut results = Results::default();
    let base = common::live_netns();
    let settle = || common::wait_netns_freed(base, Duration::from_secs(60));

    println!(
        "pod network bring-up / teardown, 2 nodes (load {:.2})",
        common::load1()
    );
    println!("| pods | method | up | down | up per pod |");
    println!("|---:|---|---:|---:|---:|");
    for &n in &sizes {
        let plan = plan(&lab, n);
        assert_eq!(plan.pods.len(), n);
        for m in &methods {
            let reps = if m == "netlab" || m == "floor" {
                runs
            } else {
                slow_runs
            };
            let (mut ups, mut downs) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                settle();
                let up = match m.as_str() {
                    "netlab" => up_netlab(&plan),
                    "floor" => up_floor(&plan),
                    "ip" => run(Command::new("bash")
                        .arg(format!("{REPO}/scripts/baseline-ip.sh"))
                        .args([&lab, &n.to_string(), &MASK.to_string()])),
                    "cni" => up_cni(&lab, &plan, &ipam_dir, jobs),
                    other => panic!("unknown method {other}"),
                };
                assert_eq!(
                    NetNs::list(&prefix).len(),
                    n + 3,
                    "{m}: not every namespace was made"
                );
                settle();
                let down = match m.as_str() {
                    "netlab" => teardown_netlab(&prefix),
                    "floor" => down_floor(&prefix),
                    "ip" => run(Command::new("bash")
                        .arg(format!("{REPO}/scripts/baseline-ip.sh"))
                        .args(["--down", &lab])),
                    "cni" => down_cni(&lab, &plan, &ipam_dir, jobs),
                    _ => unreachable!(),
                };
                assert!(NetNs::list(&prefix).is_empty(), "{m}: namespaces left");
                ups.push(up);
                downs.push(down);
            }
            let (up, down) = (median(&ups), median(&downs));
            println!(
                "| {n} | {m} | {:.3} s | {:.3} s | {:.2} ms |",
                up.as_secs_f64(),
                down.as_secs_f64(),
                up.as_secs_f64() * 1e3 / n as f64
            );
            results.secs(format!("podnet.{m}.up.{n}"), up);
            results.secs(format!("podnet.{m}.down.{n}"), down);
        }
    }
    results.put("podnet.cni_jobs", jobs);
    results.put("podnet.load", load_at_start);
    results.save("podnet");
}

/// The network plan `netlab up` makes for a 2-node lab of `n` pods.
fn plan(lab: &str, n: usize) -> NetPlan {
    let yaml = format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  podCIDRMaskSize: {MASK}\n  dns:\n    enabled: false\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      run: web\n  replicas: {n}\n  template:\n    metadata:\n      labels:\n        run: web\n    spec:\n      containers:\n      - name: web\n        image: nginx\n"
    );
    let spec = netlab::lab::load_str(
        std::path::Path::new("bench.yaml"),
        &yaml,
        &netlab::lab::Overrides {
            name: Some(lab.to_string()),
        },
    )
    .unwrap();
    let state = ClusterState::plan(
        &spec,
        &HostInfo::default(),
        chrono::Utc::now(),
        &mut rand::rng(),
    )
    .unwrap();
    net_plan(&state)
}

fn run(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn up_netlab(plan: &NetPlan) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(net::apply(plan)).expect("net apply");
    t.elapsed()
}

/// `ip -batch` with `input` on stdin, optionally in a namespace (`-n`).
fn ip_batch(netns: Option<&str>, input: &str) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The floor: namespaces, veths (both ends placed at creation) and bridge
/// ports, by one `ip -batch` plus one `ip -n NS -batch` for the dc and each
/// node. Same names as netlab's plan; no pod-side configuration.
fn up_floor(plan: &NetPlan) -> Duration {
    let t = Instant::now();
    let mut root = String::new();
    root.push_str(&format!("netns add {}\n", plan.dc.netns));
    for node in &plan.nodes {
        root.push_str(&format!("netns add {}\n", node.netns));
    }
    for p in &plan.pods {
        root.push_str(&format!("netns add {}\n", p.netns));
    }
    for node in &plan.nodes {
        root.push_str(&format!(
            "link add {} netns {} type veth peer name eth0 netns {}\n",
            node.dc_port, plan.dc.netns, node.netns
        ));
    }
    for p in &plan.pods {
        root.push_str(&format!(
            "link add {} netns {} type veth peer name eth0 netns {}\n",
            p.host_veth, p.node_netns, p.netns
        ));
    }
    ip_batch(None, &root);
    let mut dc = format!(
        "link add {0} type bridge\nlink set {0} up\naddress add {1} dev {0}\n",
        plan.dc.bridge, plan.dc.addr
    );
    for node in &plan.nodes {
        dc.push_str(&format!(
            "link set {} master {} up\n",
            node.dc_port, plan.dc.bridge
        ));
    }
    ip_batch(Some(&plan.dc.netns), &dc);
    for node in &plan.nodes {
        let mut b = format!(
            "link add {0} type bridge\nlink set {0} up\naddress add {1} dev {0}\nlink set eth0 up\naddress add {2} dev eth0\n",
            node.bridge, node.gateway, node.lan_addr
        );
        for p in plan.pods.iter().filter(|p| p.node_netns == node.netns) {
            b.push_str(&format!(
                "link set {} master {} up\n",
                p.host_veth, node.bridge
            ));
        }
        ip_batch(Some(&node.netns), &b);
    }
    t.elapsed()
}

fn down_floor(prefix: &str) -> Duration {
    let t = Instant::now();
    let mut names = NetNs::list(prefix);
    // Pods, then nodes, then the dc (as net::teardown).
    names.sort_by_key(|n| {
        if n.contains(".pod.") {
            0
        } else if n.contains(".node.") {
            1
        } else {
            2
        }
    });
    let batch: String = names.iter().map(|n| format!("netns del {n}\n")).collect();
    ip_batch(None, &batch);
    t.elapsed()
}

/// The node's network config for the bridge plugin: its cni0, its pod
/// subnet from the plan, host-local IPAM with a default route.
fn cni_config(lab: &str, node: &net::NodePlan, ipam_dir: &std::path::Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("{lab}-{}", node.name),
        "type": "bridge",
        "bridge": node.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": node.gateway.trunc().to_string(), "gateway": node.gateway.addr().to_string()}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": ipam_dir.join(&node.name),
        }
    })
    .to_string()
}

/// `f(i)` for i in 0..n on `jobs` threads.
fn parallel(n: usize, jobs: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i);
            });
        }
    });
}

fn cni_exec(
    lab: &str,
    plan: &NetPlan,
    ipam_dir: &std::path::Path,
    pod: &net::PodPlan,
    command: &str,
) {
    let node = plan
        .nodes
        .iter()
        .find(|n| n.netns == pod.node_netns)
        .unwrap();
    let ns = NetNs::open(&node.netns).unwrap();
    let mut child = ns
        .command(CNI_BRIDGE)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.netns)
        .env("CNI_NETNS", format!("/run/netns/{}", pod.netns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cni bridge");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cni_config(lab, node, ipam_dir).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bridge {command} {}: {}{}",
        pod.netns,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn up_cni(lab: &str, plan: &NetPlan, ipam_dir: &std::path::Path, jobs: usize) -> Duration {
    let _ = std::fs::remove_dir_all(ipam_dir);
    let t = Instant::now();
    // dc and nodes as the ip script makes them (a handful of commands).
    run(Command::new("bash")
        .arg(format!("{REPO}/scripts/baseline-ip.sh"))
        .args([lab, "0", &MASK.to_string()]));
    parallel(plan.pods.len(), jobs, |i| {
        let p = &plan.pods[i];
        NetNs::create(&p.netns).expect("pod netns");
        cni_exec(lab, plan, ipam_dir, p, "ADD");
    });
    t.elapsed()
}

fn down_cni(lab: &str, plan: &NetPlan, ipam_dir: &std::path::Path, jobs: usize) -> Duration {
    let t = Instant::now();
    parallel(plan.pods.len(), jobs, |i| {
        let p = &plan.pods[i];
        cni_exec(lab, plan, ipam_dir, p, "DEL");
        NetNs::delete(&p.netns).expect("pod netns");
    });
    run(Command::new("bash")
        .arg(format!("{REPO}/scripts/baseline-ip.sh"))
        .args(["--down", lab]));
    t.elapsed()
}
