//! The image benchmark (run as root: `sudo cargo bench --bench images`),
//! figures and their baselines measured in the same run:
//!
//! - container start from a cached image, as netlab does it (resolve the
//!   image in the store, its already-unpacked layers, an overlay rootfs, the
//!   OCI bundle, `runc run -d`), against the bare OCI runtime: `runc run -d`
//!   of the same, already prepared bundle;
//! - a pull of an unchanged tag (one HEAD to the local registry) and a cold
//!   pull into an empty store, from the local registry (scripts/setup.sh);
//! - disk used by N pods of one image (default 100): the shared unpacked
//!   layers plus every container's writable layer, against N private copies
//!   of the image (what a runtime without shared layers would write).
//!
//! Prints medians over NETLAB_BENCH_RUNS starts (default 20).

mod common;
use common::*;

use netlab::runtime::bundle::{self, ContainerSpec};
use netlab::runtime::{rootfs, Runc, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const IMAGE: &str = "radial/busyboxplus:curl";

fn main() {
    common::require_root("images");
    let runs: usize = env_or("NETLAB_BENCH_RUNS", 20);
    let pods: usize = env_or("NETLAB_BENCH_PODS", 100);
    let tag = common::tag();

    let (netlab_start, runc_start) = start_times(tag, runs);
    let (head_pull, cold_pull) = pulls();
    let (shared, private, upper) = disk(tag, pods);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nnetlab image benchmark ({runs} starts, medians)\n");
    println!("| what | netlab | baseline | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| container start, cached image | {:.1} ms | bare `runc run -d` {:.1} ms | {:.2}× (+{:.1} ms) |",
        ms(netlab_start),
        ms(runc_start),
        netlab_start.as_secs_f64() / runc_start.as_secs_f64(),
        ms(netlab_start) - ms(runc_start)
    );
    println!(
        "| pull, unchanged tag (local registry) | {:.1} ms | cold pull {:.1} ms | {:.3}× |",
        ms(head_pull),
        ms(cold_pull),
        head_pull.as_secs_f64() / cold_pull.as_secs_f64()
    );
    let mb = |k: u64| k as f64 / 1024.0;
    println!(
        "| disk, {pods} nginx pods | {:.1} MB (layers {:.1} MB once + writable layers {:.1} MB) | {pods} private copies {:.1} MB | {:.3}× |",
        mb(shared + upper),
        mb(shared),
        mb(upper),
        mb(private),
        (shared + upper) as f64 / private as f64
    );
}

/// Median start of a container as netlab starts one, and of `runc run -d`
/// of a prepared bundle, alternating so both see the same machine.
fn start_times(tag: u32, runs: usize) -> (Duration, Duration) {
    let netns_name = format!("netlab-benchimg{tag}");
    run(Command::new("ip").args(["netns", "add", &netns_name]));
    let netns = PathBuf::from("/run/netns").join(&netns_name);
    let work = PathBuf::from(format!("/run/netlab-benchimg{tag}"));
    std::fs::create_dir_all(&work).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runc = Runc::new(&work.join("runc"));
    let store = Store::new(&netlab::paths::data_dir());
    let container = k8s_openapi::api::core::v1::Container {
        name: "c".into(),
        image: Some(IMAGE.into()),
        command: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    };
    // Warm the layer cache once (a cached image is what is measured).
    store
        .unpacked_layers(&store.resolve(IMAGE).expect("run scripts/setup.sh first"))
        .unwrap();
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dir = work.join(format!("c{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let etc = dir.join("hosts");
        std::fs::write(&etc, "127.0.0.1 localhost\n").unwrap();
        let etc_files = vec![(etc, "/etc/hosts")];
        let id = format!("bench{tag}-{i}");
        let t = Instant::now();
        let image = store.resolve(IMAGE).unwrap();
        let layers = store.unpacked_layers(&image).unwrap();
        let root = rootfs::mount_overlay(&layers, &dir, &dir).unwrap();
        let cfg = image.runtime_config();
        let spec = bundle::runtime_spec(&ContainerSpec {
            hostname: "bench",
            container: &container,
            image: &cfg,
            rootfs: &root,
            netns: &netns,
            etc_files: &etc_files,
            cgroups_path: format!("/netlab-benchimg{tag}/{id}"),
            service_env: &[],
            mounts: &[],
        })
        .unwrap();
        spec.save(dir.join("config.json")).unwrap();
        rt.block_on(runc.run_detached(&id, &dir, &dir.join("log")))
            .unwrap();
        ours.push(t.elapsed());
        rt.block_on(runc.delete_force(&id)).unwrap();

        // The bare runtime, same bundle (rootfs mounted, config written).
        let id2 = format!("bare{tag}-{i}");
        let t = Instant::now();
        run(Command::new("runc")
            .arg("--root")
            .arg(work.join("runc"))
            .args(["run", "-d", "--bundle"])
            .arg(&dir)
            .arg(&id2)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()));
        bare.push(t.elapsed());
        rt.block_on(runc.delete_force(&id2)).unwrap();
        rootfs::unmount(&root).unwrap();
    }
    for c in ["cpu", "memory", "pids", "systemd", "unified"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}/netlab-benchimg{tag}"));
    }
    let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/netlab-benchimg{tag}"));
    let _ = std::fs::remove_dir_all(&work);
    run(Command::new("ip").args(["netns", "delete", &netns_name]));
    (median(&ours), median(&bare))
}

/// An unchanged tag pulled again (median of 5), and a cold pull into an empty store.
fn pulls() -> (Duration, Duration) {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let mirror = "docker.io=http://127.0.0.1:5000";
    let pull = |data: &Path| {
        let t = Instant::now();
        run(Command::new(NETLAB)
            .args(["pull", "--quiet", "--registry-mirror", mirror, IMAGE])
            .env("NETLAB_DATA_DIR", data));
        t.elapsed()
    };
    let cold = pull(tmp.path());
    let again = median(&(0..5).map(|_| pull(tmp.path())).collect::<Vec<_>>());
    (again, cold)
}

fn du_k(paths: &[PathBuf]) -> u64 {
    if paths.is_empty() {
        return 0;
    }
    let out = run(Command::new("du").arg("-skc").args(paths));
    out.lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// KiB: the nginx image's unpacked layers (once), N private copies of them,
/// and the writable layers of N running pods.
fn disk(tag: u32, pods: usize) -> (u64, u64, u64) {
    let store = Store::new(&netlab::paths::data_dir());
    let image = store.resolve("nginx").unwrap();
    let layers = store.unpacked_layers(&image).unwrap();
    let shared = du_k(&layers);
    let lab = format!("b{tag}-disk");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {pods}\n  selector:\n    matchLabels: {{run: web}}\n  template:\n    metadata:\n      labels: {{run: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports:\n        - containerPort: 80\n"
        ),
    )
    .unwrap();
    run(Command::new(NETLAB).args([
        "up",
        "--name",
        &lab,
        "--timeout",
        "300",
        file.to_str().unwrap(),
    ]));
    // Writable layers live on the lab's disk (runtime::disk).
    let pods_dir = netlab::paths::writable_dir(&lab);
    let uppers: Vec<PathBuf> = std::fs::read_dir(&pods_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("web/upper"))
        .filter(|p| p.exists())
        .collect();
    let upper = du_k(&uppers);
    let counted = uppers.len();
    run(Command::new(NETLAB).args(["down", "--lab", &lab]));
    assert_eq!(counted, pods, "every pod has a writable layer");
    (shared, shared * pods as u64, upper)
}
