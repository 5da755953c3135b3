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
//!   namespaces, /run/netlab/<lab>, mounts, cgroups;
//! - container start cost per pod (the lab process's "pods started" log
//!   line: the time from its first container start to its last, over the
//!   pods), in this lab and in a tenth of it (NETLAB_BENCH_SCALE_SMALL
//!   pods, 10 services a pod), each also on today's start path's baseline
//!   (`NETLAB_START_MOUNTS=host`: runc started from the host's mount
//!   namespace, which holds every pod's mounts), and against runc's floor:
//!   NETLAB_BENCH_SCALE_FLOOR bare `runc run -d` of a lab pod's own bundle
//!   (its config.json, a fresh overlay of the same image layers, a
//!   network namespace made beforehand and a cgroup each), as many at
//!   once as the lab starts, each from a fresh mount namespace holding
//!   only its rootfs and network namespace; the same for every other OCI
//!   runtime NETLAB_BENCH_SCALE_RUNTIMES names (`youki,crun`), if any;
//! - pod start → serving: NETLAB_BENCH_SCALE_PROBES pods created one at a
//!   time through the API in the big lab, each timed from the request
//!   until a TCP connect to its port 80 from node-1 succeeds.

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

/// How long a lab's process took to start its pods' containers, from its
/// log ("pods started": the first container start to the last, after the
/// pods' network), and how many pods.
fn start_phase(lab: &str) -> (usize, Duration) {
    let log = std::fs::read_to_string(netlab::controller::daemon::log_file(lab)).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("pods started"))
        .expect("the lab's log says when its pods started");
    let field = |name: &str| -> u64 {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        field("pods") as usize,
        Duration::from_millis(field("containers_ms")),
    )
}

/// A lab of `pods` pods and `services` services up and down again with
/// `env`: (up, per-pod container start, down).
fn up_and_down(
    pods: usize,
    services: usize,
    env: &[(&str, &str)],
) -> (Duration, Duration, Duration) {
    let lab = format!("b{}-start", common::tag());
    let guard = common::DownOnDrop(lab.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, lab_yaml(pods, services)).unwrap();
    let up = common::up_timed(&lab, &file, env);
    let (n, phase) = start_phase(&lab);
    let t = Instant::now();
    netlab(&["down", "--lab", &lab]);
    let down = t.elapsed();
    std::mem::forget(guard);
    (up, phase / n as u32, down)
}

/// runc's own floor per container (see the file's header), from the
/// bundle of one of `lab`'s pods: `k` containers, `parallel` at a time,
/// each `runc run -d` started from a fresh mount namespace holding only
/// its own rootfs and network namespace (`net::MountNs`, as netlab starts
/// them), so that neither the lab's mounts nor the other bundles' count.
fn runc_floor(runtime: &str, lab: &str, k: usize, parallel: usize) -> Duration {
    use futures::StreamExt;
    let pods_dir = netlab::paths::lab_dir(lab).join("pods");
    let bundle = std::fs::read_dir(&pods_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("httpd"))
        .find(|b| b.join("config.json").exists())
        .expect("a pod's bundle");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    // The image's layers, as the pod's rootfs overlay stacks them.
    let rootfs = bundle.join("rootfs").display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let lower: Vec<std::path::PathBuf> = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs.as_str()))
        .and_then(|l| l.split("lowerdir=").nth(1))
        .map(|s| {
            s.split(',')
                .next()
                .unwrap()
                .split(':')
                .rev()
                .map(Into::into)
                .collect()
        })
        .expect("the pod's rootfs overlay");
    let tag = common::tag();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let (mut bundles, mut netns) = (Vec::new(), Vec::new());
    for i in 0..k {
        let dir = work.path().join(format!("b{i}"));
        let root = netlab::runtime::rootfs::mount_overlay(
            &lower,
            &work.path().join(format!("w{i}")),
            &dir,
        )
        .unwrap();
        let ns = netlab::net::NetNs::create(&format!("netlab-floor{tag}-{i}")).unwrap();
        let mut c = config.clone();
        c["root"]["path"] = root.display().to_string().into();
        c["linux"]["cgroupsPath"] = format!("/netlab-floor-{tag}-{i}").into();
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = ns.path().display().to_string().into();
            }
        }
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        bundles.push((dir, root, ns.path().to_path_buf()));
        netns.push(ns.name().to_string());
    }
    let mounts = netlab::net::MountNs::private_copy(
        &[
            netlab::net::NETNS_RUN_DIR.into(),
            netlab::paths::run_dir(),
            netlab::paths::labs_dir(),
            work.path().to_path_buf(),
        ],
        &[netlab::paths::lab_dir(lab)],
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let failed: Vec<String> = rt.block_on(
        futures::stream::iter(bundles.iter().enumerate().map(|(i, (dir, root, ns))| {
            let mut cmd = tokio::process::Command::new(runtime);
            cmd.arg("--root")
                .arg(&state)
                .args(["run", "-d", "--bundle"])
                .arg(dir);
            cmd.arg(format!("floor-{tag}-{i}"));
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            let child = mounts.spawn_in_copy(&mut cmd, &[root.clone(), ns.clone()]);
            async move {
                match child.unwrap().wait().await.unwrap() {
                    s if s.success() => None,
                    s => Some(format!("floor-{i}: {s}")),
                }
            }
        }))
        .buffer_unordered(parallel)
        .filter_map(|r| async move { r })
        .collect(),
    );
    let took = start.elapsed();
    for i in 0..k {
        let _ = std::process::Command::new(runtime)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &format!("floor-{tag}-{i}")])
            .status();
    }
    for (_, root, _) in &bundles {
        netlab::runtime::rootfs::unmount(root).unwrap();
    }
    for n in netns {
        netlab::net::NetNs::delete(&n).unwrap();
    }
    assert!(failed.is_empty(), "{runtime}'s floor: {failed:?}");
    took / k as u32
}

/// Pod start → serving, `n` times: a pod created through the API, timed
/// until a TCP connect to its port 80 from node-1 succeeds; then deleted.
fn start_to_serving(
    rt: &tokio::runtime::Runtime,
    client: &netlab::cli::client::Client,
    lab: &str,
    n: usize,
) -> Vec<Duration> {
    let node =
        netlab::net::NetNs::open(&format!("{}node.node-1", netlab::paths::netns_prefix(lab)))
            .unwrap();
    let mut times = Vec::new();
    for k in 0..n {
        let name = format!("probe-{k}");
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "enableServiceLinks": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "httpd", "image": "radial/busyboxplus:curl",
                    "command": ["sh", "-c", "echo ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp"],
                    "ports": [{"containerPort": 80}]
                }]
            }
        });
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        let start = Instant::now();
        rt.block_on(client.request(
            http::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some("application/json"),
            "application/json",
            pod.to_string().into_bytes(),
        ))
        .unwrap_or_else(|e| panic!("create {name}: {}", e.message));
        let ip: std::net::IpAddr = loop {
            let p = rt
                .block_on(client.request(
                    http::Method::GET,
                    &path,
                    None,
                    "application/json",
                    Vec::new(),
                ))
                .unwrap_or_else(|e| panic!("get {name}: {}", e.message));
            if let Some(ip) = p["status"]["podIP"].as_str() {
                break ip.parse().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} got no IP"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        loop {
            if node
                .connect_tcp((ip, 80).into(), Duration::from_millis(200))
                .is_ok()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} never served"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let d = start.elapsed();
        println!(
            "{name}: serving {:.1} ms after its create",
            d.as_secs_f64() * 1e3
        );
        times.push(d);
        rt.block_on(client.request(
            http::Method::DELETE,
            &path,
            None,
            "application/json",
            Vec::new(),
        ))
        .unwrap_or_else(|e| panic!("delete {name}: {}", e.message));
    }
    times
}

fn main() {
    common::require_root("scale");
    let load_at_start = common::load1();
    let pods: usize = env_or("NETLAB_BENCH_SCALE_PODS", 1000);
    let services: usize = env_or("NETLAB_BENCH_SCALE_SERVICES", 10_000);
    let deletes: usize = env_or("NETLAB_BENCH_SCALE_DELETES", 10);
    let sample: usize = env_or("NETLAB_BENCH_SCALE_SAMPLE", 20);
    let small: usize = env_or("NETLAB_BENCH_SCALE_SMALL", pods / 10);
    let floor_count: usize = env_or("NETLAB_BENCH_SCALE_FLOOR", 200);
    let probes: usize = env_or("NETLAB_BENCH_SCALE_PROBES", 20);
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

    // Container start cost per pod in a tenth of the lab, on both paths.
    let host = [("NETLAB_START_MOUNTS", "host")];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (key, env) in [("start", &[][..]), ("start.host", &host[..])] {
        let (up, per_pod, down) = up_and_down(small, small * (services / pods), env);
        println!(
            "{small} pods ({key}): up {:.2} s, {:.2} ms a pod to start, down {:.2} s",
            up.as_secs_f64(),
            ms(per_pod),
            down.as_secs_f64()
        );
        results.secs(format!("scale.{key}.small.up"), up);
        results.secs(format!("scale.{key}.small.per_pod"), per_pod);
        results.secs(format!("scale.{key}.small.down"), down);
    }
    results.put("scale.small.pods", small);

    let up = common::up_timed(&lab, &file, &[]);
    let (n, phase) = start_phase(&lab);
    println!(
        "up: {:.1} s ({:.2} ms a pod to start)",
        up.as_secs_f64(),
        ms(phase / n as u32)
    );
    results.secs("scale.up", up);
    results.secs("scale.start.per_pod", phase / n as u32);

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

    // runc's floor, while the lab idles; and that of any other OCI runtime
    // named in NETLAB_BENCH_SCALE_RUNTIMES (e.g. `youki,crun`: a binary on
    // PATH or a path), on the same bundle, for comparison.
    let floor = runc_floor("runc", &lab, floor_count, 8);
    println!(
        "runc's floor: {:.2} ms a container ({floor_count} bare runc run -d, 8 at a time)",
        ms(floor)
    );
    results.secs("scale.floor.per_container", floor);
    results.put("scale.floor.count", floor_count);
    let others = std::env::var("NETLAB_BENCH_SCALE_RUNTIMES").unwrap_or_default();
    for runtime in others.split(',').filter(|r| !r.is_empty()) {
        let floor = runc_floor(runtime, &lab, floor_count, 8);
        let name = std::path::Path::new(runtime)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| runtime.to_string());
        println!(
            "{name}'s floor: {:.2} ms a container ({floor_count} bare {name} run -d, 8 at a time)",
            ms(floor)
        );
        results.secs(format!("scale.floor.{name}.per_container"), floor);
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = std::sync::Arc::new(
        rt.block_on(netlab::cli::client::Client::connect(&lab))
            .expect("a client of the lab's API"),
    );
    // One more pod in a lab of 1 000: start → serving.
    let serving = start_to_serving(&rt, &client, &lab, probes);
    if !serving.is_empty() {
        let (m, p99) = (median(&serving), percentile(&serving, 99.0));
        println!(
            "pod start → serving: median {:.1} ms, p99 {:.1} ms ({} pods)",
            ms(m),
            ms(p99),
            serving.len()
        );
        results.secs("scale.serving.median", m);
        results.secs("scale.serving.p99", p99);
        results.put("scale.serving.count", serving.len());
    }

    // Convergence after pod deletion.
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
    assert!(left.is_empty(), "left behind: {left:?}");

    // Today's start path at full size, for the same figures.
    let (up, per_pod, down) = up_and_down(pods, services, &host);
    println!(
        "{pods} pods (start.host): up {:.1} s, {:.2} ms a pod to start, down {:.2} s",
        up.as_secs_f64(),
        ms(per_pod),
        down.as_secs_f64()
    );
    results.secs("scale.start.host.up", up);
    results.secs("scale.start.host.per_pod", per_pod);
    results.secs("scale.start.host.down", down);
    results.put("scale.load", load_at_start);
    results.save("scale");
}
