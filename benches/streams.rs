//! The pod streams of the lab's API (root: `sudo cargo bench --bench
//! streams`): a lab of one node and one busybox httpd pod serving a file of
//! NETLAB_BENCH_STREAMS_MIB MiB (default 64).
//!
//! - exec: `runc exec CONTAINER true` straight on the lab's runc root (the
//!   floor: what any exec costs) against `pods/exec` of the same command
//!   from an in-process kube-rs client (WebSocket, v5.channel.k8s.io),
//!   interleaved, p50 and p99 of NETLAB_BENCH_STREAMS_EXECS rounds (default
//!   100) after a warm-up.
//! - exec as kubectl runs it, per protocol: `kubectl exec POD -- true` with
//!   kubectl 1.27 (SPDY/3.1) and `/usr/bin/kubectl` (WebSocket), against
//!   `kubectl get pod POD` of the same binary (its start, kubeconfig and
//!   one GET: what exec does before its stream), medians of
//!   NETLAB_BENCH_STREAMS_PROCS rounds (default 20): exec − get is the
//!   stream's cost as kubectl sees it. Its floor is `runc exec` run as
//!   kubectl's exec meets it, after a kubectl process rather than right
//!   behind another exec (the "spaced" floor): joining the container's
//!   cgroup-v1 hierarchies waits for an RCU grace period, which a join
//!   right behind another skips.
//! - port-forward: curl of the file through `kubectl port-forward`
//!   (`/usr/bin/kubectl`) on the host's loopback, against curl from the
//!   pod's node straight to the pod's address; best of
//!   NETLAB_BENCH_STREAMS_PF_ROUNDS (default 5) each, interleaved.
//! - `down` in every path, then a check that nothing of the lab is left.

mod common;
#[path = "common/port_forward.rs"]
mod port_forward;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{env_or, median, percentile, Results};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const KUBECTL: &str = "/usr/bin/kubectl";
const KUBECTL_SPDY: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const POD: &str = "web";

fn lab_yaml(mib: usize) -> String {
    format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: httpd\n    image: radial/busyboxplus:curl\n    command: [\"sh\", \"-c\", \"mkdir -p /tmp/www && head -c {} /dev/zero > /tmp/www/big && exec httpd -f -p 80 -h /tmp/www\"]\n    ports:\n    - containerPort: 80\n",
        mib << 20
    )
}

fn main() {
    common::require_root("streams");
    let mib: usize = env_or("NETLAB_BENCH_STREAMS_MIB", 64);
    let execs: usize = env_or("NETLAB_BENCH_STREAMS_EXECS", 100);
    let procs: usize = env_or("NETLAB_BENCH_STREAMS_PROCS", 20);
    let pf_rounds: usize = env_or("NETLAB_BENCH_STREAMS_PF_ROUNDS", 5);
    let lab = format!("bstr{}", common::tag());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, lab_yaml(mib)).unwrap();
    let mut r = Results::default();
    r.put("streams.load", common::load1());
    let guard = common::DownOnDrop(lab.clone());
    common::netlab(&["up", "--name", &lab, file.to_str().unwrap()]);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, common::netlab(&["kubeconfig", "--lab", &lab])).unwrap();
    let pod: serde_json::Value = serde_json::from_str(&common::netlab(&[
        "--lab", &lab, "get", "pod", POD, "-o", "json",
    ]))
    .unwrap();
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .expect("a node")
        .to_string();
    let url = |host: &str| format!("http://{host}/big");
    // httpd writes the file first: wait until all of it is served.
    let deadline = Instant::now() + Duration::from_secs(60);
    while direct_speed(&lab, &node, &url(&pod_ip), mib).is_none() {
        assert!(Instant::now() < deadline, "the pod does not serve its file");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 1. exec: the floor against the API, in process.
    let runc_root = netlab::paths::runc_root(&lab);
    let id = netlab::paths::container_id("default", POD, "httpd");
    let floor = || {
        let t = Instant::now();
        let ok = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["exec", &id, "true"])
            .status()
            .expect("runc")
            .success();
        assert!(ok, "runc exec failed");
        t.elapsed()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let api_exec = || {
        rt.block_on(async {
            let t = Instant::now();
            let params = AttachParams::default().stdout(true).stderr(true);
            let mut p = pods.exec(POD, ["true"], &params).await.expect("exec");
            let status = p.take_status().unwrap().await;
            p.join().await.expect("the stream ends");
            assert!(
                status.is_none_or(|s| s.status.as_deref() == Some("Success")),
                "exec failed"
            );
            t.elapsed()
        })
    };
    for _ in 0..5 {
        floor();
        api_exec();
    }
    let (mut f, mut a) = (Vec::new(), Vec::new());
    for _ in 0..execs {
        f.push(floor());
        a.push(api_exec());
    }
    r.put("streams.execs", execs as f64);
    for (k, v) in [("streams.exec.runc", &f), ("streams.exec.api", &a)] {
        r.secs(format!("{k}.p50"), median(v));
        r.secs(format!("{k}.p99"), percentile(v, 99.0));
    }

    // 2. exec as kubectl runs it, per protocol.
    let kubectl = |bin: &str, args: &[&str]| {
        let t = Instant::now();
        let ok = Command::new(bin)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("kubectl")
            .success();
        assert!(ok, "{bin} {args:?} failed");
        t.elapsed()
    };
    r.put("streams.procs", procs as f64);
    let mut stream_cost = Vec::new();
    // The floor as kubectl's exec meets it: one `runc exec` after a
    // process's start, not right behind another exec. Joining the
    // container's cgroup-v1 hierarchies waits for an RCU grace period
    // (`rcu_sync_enter` in `cgroup_procs_write_start`) unless another
    // join came just before: back to back, `runc exec` skips that wait.
    let mut spaced = Vec::new();
    for (name, bin) in [("spdy", KUBECTL_SPDY), ("websocket", KUBECTL)] {
        kubectl(bin, &["get", "pod", POD]);
        kubectl(bin, &["exec", POD, "--", "true"]);
        let (mut get, mut exec) = (Vec::new(), Vec::new());
        for _ in 0..procs {
            get.push(kubectl(bin, &["get", "pod", POD]));
            spaced.push(floor());
            // As long idle as the floor had before it.
            kubectl(bin, &["get", "pod", POD]);
            exec.push(kubectl(bin, &["exec", POD, "--", "true"]));
        }
        r.secs(format!("streams.kubectl.{name}.get"), median(&get));
        r.secs(format!("streams.kubectl.{name}.exec"), median(&exec));
        stream_cost.push(median(&exec).saturating_sub(median(&get)));
    }
    r.secs("streams.exec.runc_spaced.p50", median(&spaced));
    r.secs("streams.exec.runc_spaced.p99", percentile(&spaced, 99.0));

    // 3. port-forward throughput against the direct path.
    let (mut pf, port) = port_forward::start(KUBECTL, &kubeconfig, POD, 80);
    let (mut through, mut direct) = (0f64, 0f64);
    for _ in 0..pf_rounds {
        through = through.max(local_speed(&url(&format!("127.0.0.1:{port}")), mib).unwrap_or(0.0));
        direct = direct.max(direct_speed(&lab, &node, &url(&pod_ip), mib).unwrap_or(0.0));
    }
    let _ = pf.kill();
    let _ = pf.wait();
    r.put("streams.mib", mib as f64);
    r.put("streams.pf.bytes_per_sec", through);
    r.put("streams.direct.bytes_per_sec", direct);

    let t = Instant::now();
    drop(guard);
    r.secs("streams.down", t.elapsed());
    r.put(
        "streams.leftovers",
        common::leftovers(&lab, &[]).len() as f64,
    );
    r.save("streams");
    println!(
        "exec p50: runc {:?} (spaced {:?}), API {:?}; kubectl exec−get: SPDY {:?}, WebSocket {:?}; port-forward {:.0} MB/s vs direct {:.0} MB/s",
        median(&f),
        median(&spaced),
        median(&a),
        stream_cost[0],
        stream_cost[1],
        through / 1e6,
        direct / 1e6
    );
}

/// curl's download speed (bytes/s) of the whole file, None if it failed.
fn parse_speed(out: std::process::Output, mib: usize) -> Option<f64> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let size: f64 = it.next()?.parse().ok()?;
    let speed: f64 = it.next()?.parse().ok()?;
    (out.status.success() && size as usize == mib << 20).then_some(speed)
}

const CURL_OUT: &str = "%{size_download} %{speed_download}";

fn local_speed(url: &str, mib: usize) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-s", "-m", "60", "-o", "/dev/null", "-w", CURL_OUT, url])
        .output()
        .ok()?;
    parse_speed(out, mib)
}

fn direct_speed(lab: &str, node: &str, url: &str, mib: usize) -> Option<f64> {
    let out = Command::new(NETLAB)
        .args(["--lab", lab, "exec", &format!("node/{node}"), "--"])
        .args([
            "curl",
            "-s",
            "-m",
            "60",
            "-o",
            "/dev/null",
            "-w",
            CURL_OUT,
            url,
        ])
        .output()
        .ok()?;
    parse_speed(out, mib)
}
