//! The controller benchmark (root: `sudo cargo bench --bench convergence`).
//!
//! 1. Endpoint convergence: a pod's container is killed (`kill -9`); the
//!    time until its endpoint has left the rules of every node (each node's
//!    proxy state is written only after `nft` applied the change), median
//!    and p99 over NETLAB_BENCH_KILLS kills (default 30). Target: < 100 ms
//!    median (Kubernetes typically takes seconds).
//! 2. Failed requests of a steady client on a node against the clusterIP
//!    while the pods are deleted one by one (graceful termination,
//!    replacement). Target: 0.
//! 3. `netlab trace node/node-1 web` as a process, command start → exit,
//!    median and p99 of NETLAB_BENCH_TRACES runs (default 20), beside
//!    `netlab get pods` (any verb's floor: the process, the API client).
//!    Target: < 300 ms.
//! 4. The lab's page (`netlab ui`) in headless Chromium: a pod deleted
//!    through the API (in process, kube-rs) → the page's picture shows its
//!    replacement (a MutationObserver in the page stamps the moment),
//!    against the API's own watch delivering the replacement to a client
//!    (kube-rs, in process): median and p99 of NETLAB_BENCH_PAGE_ROUNDS
//!    deletions (default 10). Target: < 1 s.

#[path = "../tests/common/browser.rs"]
mod browser;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the convergence benchmark needs root: sudo cargo bench --bench convergence");
        std::process::exit(1);
    }
    let kills: usize = std::env::var("NETLAB_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let lab = format!("b{}-conv", std::process::id() % 100000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports:\n        - containerPort: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    run(&["up", "--name", &lab, file.to_str().unwrap()]);
    let result = std::panic::catch_unwind(|| bench(&lab, kills));
    run(&["down", "--lab", &lab]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(NETLAB).args(args).output().expect("netlab");
    assert!(
        out.status.success(),
        "netlab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pods(lab: &str) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&run(&["--lab", lab, "get", "pods", "-o", "json"])).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["status"]["podIP"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Whether each node's applied rules hold `ip` as an endpoint of the
/// service `web`: the latest record of the service in the node's proxy
/// state file (JSON lines, later lines override earlier ones; written only
/// after the kernel took the batch).
fn in_rules(lab: &str, ip: &str) -> Vec<bool> {
    let needle = format!("\"ip\":\"{ip}\"");
    ["node-1", "node-2"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(format!("/run/netlab/{lab}/proxy/{n}.json"))
                .unwrap_or_default();
            text.lines()
                .rfind(|l| l.starts_with("{\"key\":[\"default\",\"web\"]"))
                .is_some_and(|l| l.contains(&needle))
        })
        .collect()
}

fn main_pid(lab: &str, pod: &str) -> i32 {
    let out = Command::new("runc")
        .args([
            "--root",
            &format!("/run/netlab/{lab}/runc"),
            "state",
            &format!("default_{pod}_web"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// Median and p99 of `n` runs of `netlab args` as a process.
fn time_runs(args: &[&str], n: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            run(args);
            t.elapsed()
        })
        .collect();
    times.sort();
    let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).min(times.len()) - 1];
    (times[times.len() / 2], p99)
}

fn bench(lab: &str, kills: usize) {
    let traces: usize = std::env::var("NETLAB_BENCH_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let trace = time_runs(&["--lab", lab, "trace", "node/node-1", "web"], traces);
    let floor = time_runs(&["--lab", lab, "get", "pods"], traces);
    let mut times = Vec::new();
    for k in 0..kills {
        let all = pods(lab);
        let (pod, ip) = &all[k % all.len()];
        // Wait until the pod is back in every node's rules from the last round.
        let t = Instant::now();
        while !in_rules(lab, ip).iter().all(|x| *x) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{pod} never rejoined"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = main_pid(lab, pod);
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        while in_rules(lab, ip).iter().any(|x| *x) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{pod}'s endpoint never left"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        times.push(start.elapsed());
        if std::env::var_os("NETLAB_BENCH_VERBOSE").is_some() {
            eprintln!("kill {k}: {pod} {ip}: {:?}", start.elapsed());
        }
        // The restart has no back-off only for a container's first death:
        // let each pod die once, then move on to fresh replacement pods.
        if k % all.len() == all.len() - 1 {
            for (p, _) in &all {
                run(&["--lab", lab, "delete", "pod", p]);
            }
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = times[times.len() / 2];
    let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).min(times.len()) - 1];
    println!("\nnetlab controller benchmark\n");
    println!("| what | median | p99 | target |");
    println!("|---|---:|---:|---:|");
    println!(
        "| endpoint convergence after kill -9 ({} kills, 2 nodes) | {:.1} ms | {:.1} ms | < 100 ms median |",
        times.len(),
        ms(median),
        ms(p99)
    );

    // Steady client while the pods are deleted one by one.
    let v: serde_json::Value =
        serde_json::from_str(&run(&["--lab", lab, "get", "svc", "web", "-o", "json"])).unwrap();
    let ip = v["spec"]["clusterIP"].as_str().unwrap().to_string();
    let client = Command::new(NETLAB)
        .args(["--lab", lab, "exec", "node/node-1", "--", "sh", "-c",
            &format!("ok=0; bad=0; for i in $(seq 1 300); do if curl -s -m 2 -o /dev/null http://{ip}/; then ok=$((ok+1)); else bad=$((bad+1)); fi; done; echo $ok $bad")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut deleted = 0;
    for (p, _) in pods(lab) {
        run(&["--lab", lab, "delete", "pod", &p]);
        deleted += 1;
    }
    let out = client.wait_with_output().unwrap();
    let counts: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    println!(
        "| failed requests while {deleted} pods were deleted one by one | {} of {} | | 0 |",
        counts.get(1).copied().unwrap_or(0),
        counts.iter().sum::<u32>()
    );
    println!(
        "| `netlab trace node/node-1 web`, command start → exit ({traces} runs) | {:.1} ms | {:.1} ms | < 300 ms median |",
        ms(trace.0),
        ms(trace.1)
    );
    println!(
        "| `netlab get pods`, the floor of a verb ({traces} runs) | {:.1} ms | {:.1} ms | |",
        ms(floor.0),
        ms(floor.1)
    );
    let mut results = common::Results::default();
    results.secs("convergence.trace.median", trace.0);
    results.secs("convergence.trace.p99", trace.1);
    results.secs("convergence.verb.median", floor.0);
    results.put("convergence.trace.count", traces);
    results.secs("convergence.kill.median", median);
    results.secs("convergence.kill.p99", p99);
    results.put("convergence.kill.count", times.len());
    results.put("convergence.failed", counts.get(1).copied().unwrap_or(0));
    results.put("convergence.requests", counts.iter().sum::<u32>());
    results.put("convergence.deleted", deleted);

    let rounds: usize = common::env_or("NETLAB_BENCH_PAGE_ROUNDS", 10);
    let (page, api) = page_updates(lab, rounds);
    let (page, api) = (page_stats(&page), page_stats(&api));
    println!(
        "| the page shows a deleted pod's replacement ({rounds} deletions) | {:.1} ms | {:.1} ms | < 1 s |",
        ms(page.0),
        ms(page.1)
    );
    println!(
        "| the API's watch delivers the replacement (same deletions) | {:.1} ms | {:.1} ms | |",
        ms(api.0),
        ms(api.1)
    );
    results.secs("convergence.page.median", page.0);
    results.secs("convergence.page.p99", page.1);
    results.secs("convergence.page.api.median", api.0);
    results.secs("convergence.page.api.p99", api.1);
    results.put("convergence.page.count", rounds);
    results.save("convergence");
}

/// Median and p99.
fn page_stats(v: &[Duration]) -> (Duration, Duration) {
    (common::median(v), common::percentile(v, 99.0))
}

/// Milliseconds since the epoch, as the page's `performance.timeOrigin +
/// performance.now()` counts them.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// The lab's page and the API's watch, each timed from a pod's DELETE to
/// the moment it shows the pod's replacement, `rounds` times.
fn page_updates(lab: &str, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, WatchEvent, WatchParams};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    let url = run(&["--lab", lab, "ui"]).trim().to_string();
    let mut b = browser::Browser::open(&url, 1400, 900);
    let in_picture =
        "[...document.querySelectorAll('#graph g[id^=\"pod-default-web-\"]')].map(g => g.id.slice(12))";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pods: Api<Pod> = rt.block_on(async {
        let kc = kube::config::Kubeconfig::from_yaml(&run(&["kubeconfig", "--lab", lab]))
            .expect("netlab kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        Api::namespaced(kube::Client::try_from(config).unwrap(), "default")
    });
    // The API's side: when a watch saw each pod first.
    let first_seen: Arc<Mutex<std::collections::HashMap<String, f64>>> = Arc::default();
    {
        let (pods, first_seen) = (pods.clone(), first_seen.clone());
        let rv = rt
            .block_on(pods.list_metadata(&Default::default()))
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        rt.spawn(async move {
            let mut events = pods
                .watch(&WatchParams::default(), &rv)
                .await
                .unwrap()
                .boxed();
            while let Some(Ok(e)) = events.next().await {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = e {
                    let name = p.metadata.name.unwrap_or_default();
                    first_seen
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(epoch_ms);
                }
            }
        });
    }
    let (mut page, mut api) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // A settled picture: 4 pods, none of them on the way out.
        let (ids, _) = b.wait_for(
            "4 web pods",
            Duration::from_secs(60),
            &format!("(ids => ids.length === 4 && JSON.stringify(ids))({in_picture})"),
        );
        let known: Vec<String> = serde_json::from_str(ids.as_str().unwrap()).unwrap();
        let victim = known[0].clone();
        let known_set: HashSet<&String> = known.iter().collect();
        b.eval(&format!(
            "window.__seen = null; window.__known = new Set({}); \
             new MutationObserver((_, o) => {{ if ({in_picture}.some(id => !window.__known.has(id))) \
             {{ window.__seen = performance.timeOrigin + performance.now(); o.disconnect(); }} }})\
             .observe(document.getElementById('graph'), {{ childList: true, subtree: true }}); true",
            serde_json::to_string(&known).unwrap()
        ));
        let t0 = epoch_ms();
        rt.block_on(pods.delete(&victim, &DeleteParams::default()))
            .unwrap();
        let (seen, _) = b.wait_for("the replacement", Duration::from_secs(10), "window.__seen");
        page.push(Duration::from_secs_f64(
            (seen.as_f64().unwrap() - t0).max(0.0) / 1e3,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        let at = loop {
            let found = first_seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n.starts_with("web-") && !known_set.contains(n))
                .filter(|(_, t)| **t >= t0)
                .map(|(_, t)| *t)
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
            if let Some(t) = found {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "the watch never saw the replacement"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        api.push(Duration::from_secs_f64((at - t0).max(0.0) / 1e3));
        // Gone from the picture before the next round.
        b.wait_for(
            "the deleted pod gone",
            Duration::from_secs(60),
            &format!("!{in_picture}.includes('{victim}')"),
        );
    }
    (page, api)
}
