//! The foundation benchmark (run as root: `sudo cargo bench --bench foundation`).
//!
//! In one run, on this machine:
//! - `netlab up` / `down` of labs/nginx.yaml, and of a 2-node lab of N nginx
//!   pods (default 100; images already in the store);
//! - the same N-pod network (dc, 2 nodes, N pods) built by netlab's network
//!   layer alone, against the baseline: scripts/baseline-ip.sh, a shell
//!   script of `ip` commands building the same topology.
//!
//! Prints medians over NETLAB_BENCH_RUNS runs (default 3) and the ratios.

mod common;
use common::*;

use netlab::cluster::{ClusterState, HostInfo};
use netlab::controller::up::net_plan;
use std::process::Command;
use std::time::{Duration, Instant};

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn main() {
    common::require_root("foundation");
    // `cargo bench` passes --bench; a filter argument is not used here.
    let runs: usize = env_or("NETLAB_BENCH_RUNS", 3);
    let pods: usize = env_or("NETLAB_BENCH_PODS", 100);
    let tag = common::tag();

    let nginx = std::fs::read_to_string(format!("{REPO}/labs/nginx.yaml")).unwrap();
    let (nginx_up, nginx_down) = lab_cycle(&format!("b{tag}-nginx"), &nginx, runs);
    let many = many_pods(pods);
    let (many_up, many_down) = lab_cycle(&format!("b{tag}-many"), &many, runs);
    let (net_up, net_down) = network_only(&format!("b{tag}-net"), &many, runs);
    let (ip_up, ip_down) = baseline(&format!("b{tag}-ip"), pods, runs);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nnetlab foundation benchmark ({runs} runs, medians; {pods} pods on 2 nodes)\n");
    println!("| what | time | per pod | vs ip baseline |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, d: Duration, n: usize, base: Option<Duration>| {
        println!(
            "| {what} | {:.1} ms | {} | {} |",
            ms(d),
            if n > 0 {
                format!("{:.2} ms", ms(d) / n as f64)
            } else {
                "".into()
            },
            base.map(|b| format!("{:.2}×", d.as_secs_f64() / b.as_secs_f64()))
                .unwrap_or_default()
        )
    };
    row(
        "netlab up labs/nginx.yaml (2 pods, ready)",
        nginx_up,
        2,
        None,
    );
    row("netlab down labs/nginx.yaml", nginx_down, 2, None);
    row(
        &format!("netlab up, {pods} nginx pods (ready)"),
        many_up,
        pods,
        None,
    );
    row(
        &format!("netlab down, {pods} nginx pods"),
        many_down,
        pods,
        None,
    );
    row(
        &format!("network only: netlab, {pods} pods"),
        net_up,
        pods,
        Some(ip_up),
    );
    row(
        &format!("network only: ip script, {pods} pods (baseline)"),
        ip_up,
        pods,
        Some(ip_up),
    );
    row(
        &format!("network teardown: netlab, {pods} pods"),
        net_down,
        pods,
        Some(ip_down),
    );
    row(
        &format!("network teardown: ip script, {pods} pods (baseline)"),
        ip_down,
        pods,
        Some(ip_down),
    );
    println!(
        "\ntargets: nginx lab ready < 1 s ({}), network bring-up well under the ip script's per-pod cost ({:.2}× here)",
        if nginx_up < Duration::from_secs(1) { "met" } else { "MISSED" },
        net_up.as_secs_f64() / ip_up.as_secs_f64()
    );
}

fn many_pods(n: usize) -> String {
    format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      run: web\n  replicas: {n}\n  template:\n    metadata:\n      labels:\n        run: web\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports:\n        - containerPort: 80\n"
    )
}

/// Median `netlab up` and `netlab down` times of a lab file.
fn lab_cycle(name: &str, yaml: &str, runs: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ups.push(timed(
            Command::new(NETLAB).args(["up", "--name", name]).arg(&file),
        ));
        downs.push(timed(Command::new(NETLAB).args(["down", "--lab", name])));
    }
    (median(&ups), median(&downs))
}

/// netlab's network layer alone, on the same plan `up` would use.
fn network_only(name: &str, yaml: &str, runs: usize) -> (Duration, Duration) {
    let spec = netlab::lab::load_str(
        std::path::Path::new("bench.yaml"),
        yaml,
        &netlab::lab::Overrides {
            name: Some(name.to_string()),
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
    let plan = net_plan(&state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = netlab::paths::netns_prefix(name);
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        rt.block_on(netlab::net::apply(&plan)).expect("net apply");
        ups.push(t.elapsed());
        let t = Instant::now();
        let errors = rt.block_on(netlab::net::teardown(&prefix));
        downs.push(t.elapsed());
        assert!(errors.is_empty(), "{errors:?}");
    }
    (median(&ups), median(&downs))
}

fn baseline(name: &str, pods: usize, runs: usize) -> (Duration, Duration) {
    let script = format!("{REPO}/scripts/baseline-ip.sh");
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ups.push(timed(
            Command::new("bash")
                .arg(&script)
                .arg(name)
                .arg(pods.to_string()),
        ));
        downs.push(timed(
            Command::new("bash").arg(&script).arg("--down").arg(name),
        ));
    }
    (median(&ups), median(&downs))
}
