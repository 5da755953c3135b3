//! Scale (root: `sudo cargo bench --bench scale`): a lab of 1 000 pods and
//! 10 000 services (NETLAB_BENCH_SCALE_PODS, NETLAB_BENCH_SCALE_SERVICES)
//! on 2 nodes comes up, serves, converges, and tears down leaving nothing.
//!
//! - pods: busybox httpd (`radial/busyboxplus:curl`), PODS/2 Deployments of
//!   2 replicas; services: service i selects Deployment i mod PODS/2, so
//!   every service has 2 endpoints and every pod backs SERVICES/(PODS/2)
//!   services (20 at the defaults); the cluster DNS is on; the pods have
//!   `enableServiceLinks: false`, as they need in Kubernetes too at this
//!   scale: 10 000 services make 70 000 service variables, about 3 MB of
//!   environment, more than execve takes (E2BIG);
//! - `netlab up` time (every pod running and accepting on port 80);
//! - serving: curl from node-1 to a sample of clusterIPs and of pod IPs;
//! - the lab's controller process: VmRSS right after `up` and 15 s later
//!   (settled: the allocator hands freed memory back over seconds), and
//!   VmHWM (peak);
//! - endpoint convergence after pod deletion: a DELETE of
//!   NETLAB_BENCH_SCALE_DELETES pods one at a time (default 10), sent by a
//!   client already connected (as a controller or a watching kubectl is;
//!   a `netlab delete pod` process adds its own start, about 0.1 s); the
//!   time from sending it until both nodes' proxiers have applied every
//!   service the pod backed without it (read from the proxy state files,
//!   written only after the kernel took the batch);
//! - `netlab down` time, then a check that nothing of the lab is left:
//!   namespaces, /run/netlab/<lab>, mounts, cgroups.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{env_or, median, netlab, percentile, Results};
#[path = "common/scale_lab.rs"]
mod scale_lab;
use scale_lab::lab_yaml;

/// (VmRSS, VmHWM) in bytes of a process.
fn memory(pid: &str) -> (u64, u64) {
    common::memory(pid)
}

/// Follows a proxy state file (JSON lines, appended per change, sometimes
/// rewritten whole) and tells which services' latest records lack an IP.
struct StateTail {
    path: String,
    inode: u64,
    offset: u64,
    /// service name → its latest record holds the endpoint
    latest: HashMap<String, bool>,
}

impl StateTail {
    fn start(path: String) -> StateTail {
        let m = std::fs::metadata(&path).unwrap();
        StateTail {
            path,
            inode: m.ino(),
            offset: m.len(),
            latest: HashMap::new(),
        }
    }

    fn poll(&mut self, needle: &str) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        let m = f.metadata().unwrap();
        if m.ino() != self.inode || m.len() < self.offset {
            // Rewritten whole: it describes everything.
            self.inode = m.ino();
            self.offset = 0;
        }
        if m.len() == self.offset {
            return;
        }
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut buf = String::new();
        f.read_to_string(&mut buf).unwrap();
        // Only whole lines.
        let Some(end) = buf.rfind('\n') else { return };
        for line in buf[..end].lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(name) = v["key"][1].as_str() {
                self.latest.insert(name.to_string(), line.contains(needle));
            }
        }
        self.offset += end as u64 + 1;
    }

    fn converged(&self, services: &[String]) -> bool {
        services
            .iter()
            .all(|s| self.latest.get(s).is_some_and(|has| !has))
    }
}

fn main() {
    common::require_root("scale");
    let load_at_start = common::load1();
    let pods: usize = env_or("NETLAB_BENCH_SCALE_PODS", 1000);
    let services: usize = env_or("NETLAB_BENCH_SCALE_SERVICES", 10_000);
    let deletes: usize = env_or("NETLAB_BENCH_SCALE_DELETES", 10);
    let sample: usize = env_or("NETLAB_BENCH_SCALE_SAMPLE", 20);
    assert!(
        pods >= 2 && pods.is_multiple_of(2),
        "NETLAB_BENCH_SCALE_PODS: an even number"
    );
    let lab = format!("b{}-scale", common::tag());
    let guard = common::DownOnDrop(lab.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, lab_yaml(pods, services)).unwrap();
    let mut results = Results::default();
    results.put("scale.pods", pods);
    results.put("scale.services", services);
    println!(
        "scale: {pods} pods, {services} services, 2 nodes (load {:.2})",
        common::load1()
    );

    let t = Instant::now();
    netlab(&[
        "up",
        "--name",
        &lab,
        "--timeout",
        "900",
        file.to_str().unwrap(),
    ]);
    let up = t.elapsed();
    println!("up: {:.1} s", up.as_secs_f64());
    results.secs("scale.up", up);

    let pid = std::fs::read_to_string(netlab::controller::daemon::pid_file(&lab))
        .unwrap()
        .trim()
        .to_string();
    let (rss, hwm) = memory(&pid);
    println!(
        "controller after up: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    results.put("scale.controller.rss_up", rss);
    // Settled: what the allocator frees it hands back over seconds
    // (jemalloc's decay), so the process's lasting size is read after it.
    std::thread::sleep(std::time::Duration::from_secs(15));
    let (rss, _) = memory(&pid);
    println!(
        "controller 15 s after up: VmRSS {:.1} MiB",
        rss as f64 / 1048576.0
    );
    results.put("scale.controller.rss_settled", rss);

    // Serving: a sample of clusterIPs and pod IPs, from node-1.
    let pod_list: serde_json::Value =
        serde_json::from_str(&netlab(&["--lab", &lab, "get", "pods", "-o", "json"])).unwrap();
    let items = pod_list["items"].as_array().unwrap();
    let running = items
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    results.put("scale.running", running);
    let svc_list: serde_json::Value =
        serde_json::from_str(&netlab(&["--lab", &lab, "get", "svc", "-o", "json"])).unwrap();
    let svcs = svc_list["items"].as_array().unwrap();
    let step = |n: usize| (n / sample).max(1);
    let svc_ips: Vec<String> = svcs
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("svc-"))
        })
        .step_by(step(services))
        .take(sample)
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    let app_pods: Vec<&serde_json::Value> = items
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"].is_string())
        .collect();
    let pod_ips: Vec<String> = app_pods
        .iter()
        .step_by(step(pods))
        .take(sample)
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    let curl_all = |ips: &[String]| -> usize {
        let script = format!(
            "n=0; for ip in {}; do [ \"$(curl -s -m 3 http://$ip/)\" = ok ] && n=$((n+1)); done; echo $n",
            ips.join(" ")
        );
        netlab(&[
            "--lab",
            &lab,
            "exec",
            "node/node-1",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .trim()
        .parse()
        .unwrap_or(0)
    };
    let (svc_ok, pod_ok) = (curl_all(&svc_ips), curl_all(&pod_ips));
    println!(
        "serving: {svc_ok}/{} clusterIPs, {pod_ok}/{} pod IPs answered; {running}/{} pods running",
        svc_ips.len(),
        pod_ips.len(),
        items.len()
    );
    results.put("scale.served_services", svc_ok);
    results.put("scale.sampled_services", svc_ips.len());
    results.put("scale.served_pods", pod_ok);
    results.put("scale.sampled_pods", pod_ips.len());

    // Convergence after pod deletion.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = std::sync::Arc::new(
        rt.block_on(netlab::cli::client::Client::connect(&lab))
            .expect("a client of the lab's API"),
    );
    let mut times = Vec::new();
    let deployments = pods / 2;
    for k in 0..deletes {
        let list: serde_json::Value =
            serde_json::from_str(&netlab(&["--lab", &lab, "get", "pods", "-o", "json"])).unwrap();
        let victims: Vec<&serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"].is_string())
            .filter(|p| p["status"]["phase"] == "Running")
            .collect();
        let victim = victims[(k * 97) % victims.len()];
        let name = victim["metadata"]["name"].as_str().unwrap().to_string();
        let ip = victim["status"]["podIP"].as_str().unwrap().to_string();
        let app = victim["metadata"]["labels"]["app"].as_str().unwrap();
        let d: usize = app.trim_start_matches("app-").parse().unwrap();
        let backed: Vec<String> = (0..services)
            .filter(|s| s % deployments == d)
            .map(|s| format!("svc-{s}"))
            .collect();
        let needle = format!("\"ip\":\"{ip}\"");
        let mut tails: Vec<StateTail> = ["node-1", "node-2"]
            .iter()
            .map(|n| {
                StateTail::start(format!(
                    "{}/proxy/{n}.json",
                    netlab::paths::lab_dir(&lab).display()
                ))
            })
            .collect();
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        let c = client.clone();
        let start = Instant::now();
        let delete = rt.spawn(async move {
            c.request(
                http::Method::DELETE,
                &path,
                None,
                "application/json",
                Vec::new(),
            )
            .await
        });
        loop {
            for t in &mut tails {
                t.poll(&needle);
            }
            if tails.iter().all(|t| t.converged(&backed)) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name}'s endpoint never left the rules"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let d = start.elapsed();
        if let Err(e) = rt.block_on(delete).unwrap() {
            panic!("delete pod {name}: {}", e.message);
        }
        println!(
            "delete {name} ({ip}, backs {} services): converged in {:.1} ms",
            backed.len(),
            d.as_secs_f64() * 1e3
        );
        times.push(d);
        // Let the replacement start before the next one.
        let t = Instant::now();
        loop {
            let list: serde_json::Value =
                serde_json::from_str(&netlab(&["--lab", &lab, "get", "pods", "-o", "json"]))
                    .unwrap();
            let up = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count();
            if up >= running || t.elapsed() > Duration::from_secs(30) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if !times.is_empty() {
        let (m, p99) = (median(&times), percentile(&times, 99.0));
        println!(
            "endpoint convergence after pod deletion: median {:.1} ms, p99 {:.1} ms ({} deletions)",
            m.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            times.len()
        );
        results.secs("scale.converge.median", m);
        results.secs("scale.converge.p99", p99);
        results.put("scale.converge.count", times.len());
        results.put("scale.converge.backed", services / deployments);
    }
    let (rss, hwm) = memory(&pid);
    println!(
        "controller: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    results.put("scale.controller.rss", rss);
    results.put("scale.controller.hwm", hwm);

    let t = Instant::now();
    netlab(&["down", "--lab", &lab]);
    let down = t.elapsed();
    std::mem::forget(guard);
    println!("down: {:.1} s", down.as_secs_f64());
    results.secs("scale.down", down);

    // Nothing left.
    let mut left = Vec::new();
    let prefix = netlab::paths::netns_prefix(&lab);
    left.extend(netlab::net::NetNs::list(&prefix));
    let lab_dir = netlab::paths::lab_dir(&lab);
    if lab_dir.exists() {
        left.push(lab_dir.display().to_string());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&prefix) || l.contains(&format!("{}/", lab_dir.display())))
            .map(str::to_string),
    );
    let cgroup = netlab::paths::cgroup_parent(&lab);
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = entry.path().join(&cgroup);
        if p.exists() {
            left.push(p.display().to_string());
        }
    }
    if std::path::Path::new("/sys/fs/cgroup")
        .join(&cgroup)
        .exists()
    {
        left.push(format!("/sys/fs/cgroup/{cgroup}"));
    }
    let left: Vec<String> = left
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    println!(
        "left behind after down: {}",
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    );
    results.put("scale.leftovers", left.len());
    results.put("scale.load", load_at_start);
    results.save("scale");
    assert!(left.is_empty(), "left behind: {left:?}");
}
