//! Issue 15's host-side findings, as a careless user meets them: a killed
//! `apply` must orphan nothing and never give one address to two live pods;
//! the lab's files are root's only; every valid Kubernetes name works.
//!
//! Runs as root (`sudo scripts/test.sh`); every lab has a unique name.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Live containers of a lab, as the runtime lists them: id → pid.
fn runc_containers(lab: &str) -> BTreeMap<String, i64> {
    let out = Command::new("runc")
        .args([
            "--root",
            &format!("/run/netlab/{lab}/runc"),
            "list",
            "--format",
            "json",
        ])
        .output()
        .expect("runc list");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "running")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["pid"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pod_namespaces(lab: &str) -> BTreeSet<String> {
    let prefix = format!("netlab-{lab}.pod.");
    std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The lab's pods agree with what runs: one namespace and one running
/// container per pod (the DNS pod has a namespace and no container), and no
/// address given twice. Returns the mismatch, if any.
fn consistent(lab: &Lab) -> Result<usize, String> {
    let pods = lab.pods_json();
    let items = pods["items"].as_array().unwrap();
    let all =
        serde_json::from_str::<serde_json::Value>(&lab.ok(&["get", "pods", "-A", "-o", "json"]))
            .unwrap();
    let all = all["items"].as_array().unwrap().clone();
    let mut ips = BTreeMap::new();
    for p in &all {
        let name = p["metadata"]["name"].as_str().unwrap();
        if let Some(ip) = p["status"]["podIP"].as_str() {
            if let Some(other) = ips.insert(ip.to_string(), name.to_string()) {
                return Err(format!("{ip} is given to {other} and {name}"));
            }
        }
        if p["status"]["phase"] != "Running" {
            return Err(format!("{name} is {}", p["status"]["phase"]));
        }
    }
    let containers = runc_containers(&lab.name);
    if containers.len() != items.len() {
        return Err(format!(
            "{} pods in default but {} running containers: {:?}",
            items.len(),
            containers.len(),
            containers.keys().collect::<Vec<_>>()
        ));
    }
    let netns = pod_namespaces(&lab.name);
    if netns.len() != all.len() {
        return Err(format!(
            "{} pods but {} pod namespaces",
            all.len(),
            netns.len()
        ));
    }
    Ok(items.len())
}

/// `kill -9` of `netlab apply` at several points of a 40-replica
/// Deployment's start: the controller finishes or removes what was begun,
/// nothing runs that no pod owns, and the next apply reuses no live address.
#[test]
fn kill_9_of_apply_orphans_nothing() {
    let lab = Lab::up(
        "kill9-apply",
        &format!("{}{}", lab_doc(2), who_deployment("seed", 1, "seed")),
    );
    let file = lab.dir.path().join("big.yaml");
    // Within what a 40-pod apply takes on a quiet machine (about a second
    // now that it is one request to the lab's process).
    for (round, after_ms) in [150u64, 300, 450].into_iter().enumerate() {
        std::fs::write(
            &file,
            who_deployment(&format!("big{round}"), 40, &format!("big{round}")),
        )
        .unwrap();
        let mut child = Command::new(NETLAB)
            .args(["--lab", &lab.name, "apply", "-f", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let still_running = child.try_wait().unwrap().is_none();
        if still_running {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            child.wait().unwrap();
        }
        assert!(
            still_running,
            "round {round}: apply of 40 pods ended within {after_ms} ms: nothing was killed partway"
        );
        // The controller settles the lab: every pod runs, once.
        let start = Instant::now();
        let mut last = Err(String::new());
        while start.elapsed() < Duration::from_secs(60) {
            last = consistent(&lab);
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let n = last.unwrap_or_else(|e| panic!("round {round}, killed after {after_ms} ms: {e}"));
        // An apply killed before its request arrived made nothing (on a
        // loaded machine the process may not get that far): what counts is
        // that every Deployment that exists runs all its replicas.
        let big = lab
            .ok(&["get", "deployments", "-o", "name"])
            .lines()
            .filter(|l| l.contains("/big"))
            .count();
        assert!(
            big >= round,
            "round {round}: earlier applies' Deployments are gone"
        );
        assert_eq!(
            n,
            1 + 40 * big,
            "round {round}: every replica of every apply runs"
        );
    }
    // One more apply after the kills: new pods, still no address twice.
    lab.ok(&["scale", "deployment/seed", "--replicas=5"]);
    consistent(&lab).unwrap();
    lab.down_clean();
}

/// Nothing of a lab is readable by other users: the state, the OCI bundles
/// (a Secret's value passed through env is in config.json), the logs.
#[test]
fn lab_files_are_root_only() {
    let yaml = r#"apiVersion: v1
kind: Secret
metadata:
  name: s
stringData:
  password: hunter2-very-secret
---
apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "echo started; exec httpd -f -p 80"]
    env:
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: s, key: password}
"#;
    let lab = Lab::up("modes", yaml);
    let dir = format!("/run/netlab/{}", lab.name);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{dir} is {mode:o}");
    // The lab directory is what keeps others out (the files that are
    // bind-mounted into containers, /etc/hosts and the like, must stay
    // readable by a container's non-root user, and are: a bind mount does
    // not pass through the directories above it). What holds object data is
    // root's alone all the same: the state, the OCI bundles, the logs.
    let mut audited = Vec::new();
    let mut stack = vec![Path::new(&dir).to_path_buf()];
    let dev = std::fs::metadata(&dir).unwrap().dev();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            if m.dev() != dev || m.file_type().is_symlink() {
                continue; // the containers' own filesystems
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if m.is_dir() && !["rootfs", "upper", "work"].contains(&name.as_str()) {
                stack.push(e.path());
            } else if m.is_file()
                && (name == "store.redb" || name == "config.json" || name.ends_with(".log"))
            {
                audited.push((e.path(), m.permissions().mode() & 0o777));
            }
        }
    }
    let names: Vec<String> = audited
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    for want in ["store.redb", "config.json", "c.log"] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "audited {want}: {names:?}"
        );
    }
    let open: Vec<String> = audited
        .iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(p, mode)| format!("{} {mode:o}", p.display()))
        .collect();
    assert!(open.is_empty(), "readable by others:\n{}", open.join("\n"));
    // And as another user, for real: the secret cannot be read.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "grep",
            "-r",
            "hunter2",
            &dir,
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hunter2"),
        "nobody read the secret: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // A command that is not there exits 127, one that cannot run 126, as
    // a shell (and kubectl) says.
    let missing = lab.run(&["exec", "p", "--", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));
    let not_exec = lab.run(&["exec", "p", "--", "/etc/hosts"]);
    assert_eq!(not_exec.status.code(), Some(126), "{}", stderr(&not_exec));
    let code = lab.run(&["exec", "p", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code.status.code(), Some(3));
    lab.down_clean();
}

/// A 253-character pod name (valid in Kubernetes) and a 63-character
/// namespace-wide container name: the pod runs, answers, and `down` finds it.
#[test]
fn longest_valid_names_work() {
    // A subdomain's labels have 63 characters at most: 63.63.63.61.
    let name = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
    assert_eq!(name.len(), 253);
    let container = "c".repeat(63);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: long}}
spec:
  containers:
  - name: {container}
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "echo ok > /index.html; exec httpd -f -p 80 -h /"]
    ports:
    - containerPort: 80
"#
    );
    let lab = Lab::up("longnames", &yaml);
    let pods = lab.pods();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].0, name);
    let (code, body) = curl(&lab, "node/node-1", &format!("http://{}/", pods[0].1));
    assert_eq!((code, body.trim()), (0, "ok"));
    // The kernel's hostname limit is 64: the kubelet cuts at 63.
    let host = lab.ok(&["exec", &name, "--", "hostname"]);
    assert_eq!(host.trim(), &name[..63]);
    // Scaling a Deployment with a long name works too, without a Pending pod.
    let dep = format!("{0}.{0}.{1}", "d".repeat(63), "e".repeat(50));
    let file = lab.dir.path().join("dep.yaml");
    std::fs::write(&file, who_deployment(&dep, 2, "longdep")).unwrap();
    lab.ok(&["apply", "-f", file.to_str().unwrap()]);
    lab.ok(&["scale", &format!("deployment/{dep}"), "--replicas=3"]);
    let running = lab.ok(&["get", "pods", "-l", "app=longdep"]);
    assert_eq!(running.matches("Running").count(), 3, "{running}");
    lab.down_clean();
}

/// A lab whose state is gone but whose traces remain is named as such, not
/// as "no lab named X is up (labs up: X)".
#[test]
fn half_a_lab_is_named_for_what_it_is() {
    let lab = Lab::up("halflab", &who_deployment("w", 1, "w"));
    std::fs::remove_file(format!("/run/netlab/{}/store.redb", lab.name)).unwrap();
    let out = lab.run(&["get", "pods"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no state") && err.contains("netlab down --lab"),
        "{err}"
    );
    let out = netlab(&["--lab", "no-such-lab-here", "get", "pods"]);
    assert!(
        stderr(&out).contains("no lab named no-such-lab-here is up"),
        "{}",
        stderr(&out)
    );
    lab.down_clean();
}

/// Processes running as the lab's process (`netlab controller run --lab L`).
fn lab_processes(lab: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            args.windows(4)
                .any(|w| w == [&b"controller"[..], b"run", b"--lab", lab.as_bytes()])
        })
        .collect()
}

/// Two `netlab up` of one lab at once: one brings it up, the other says it
/// is up and touches nothing of it. (Both used to fail, and the loser's
/// rollback removed the winner's lab.)
#[test]
fn two_ups_of_one_lab_one_wins() {
    for round in 0..2 {
        let lab = Lab::prepare(
            "twoups",
            &format!("{}{}", lab_doc(2), who_deployment("w", 2, "w")),
        );
        let up = || {
            Command::new(NETLAB)
                .args(["up", "--name", &lab.name, lab.file().to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (up(), up());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let winners = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert_eq!(
            winners,
            1,
            "round {round}: exactly one up wins:\nA: {}\nB: {}",
            stderr(&a),
            stderr(&b)
        );
        let loser = if a.status.success() { &b } else { &a };
        assert!(
            stderr(loser).contains(&format!("lab {} is already up", lab.name)),
            "round {round}: the loser says why: {}",
            stderr(loser)
        );
        // The winner's lab is whole: its pods run and serve.
        let pods = lab.pods();
        assert_eq!(pods.len(), 2, "round {round}: {pods:?}");
        for (_, ip, _) in &pods {
            let body = must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
            assert!(body.starts_with('w'), "round {round}: {body}");
        }
        assert_eq!(lab_processes(&lab.name).len(), 1, "one lab process");
        lab.down_clean();
    }
}

/// `netlab down` while clients apply and scale (a client that finds the
/// lab's process gone starts it again): one `down` removes everything,
/// whatever the clients were doing, and no process of the lab is left.
#[test]
fn down_racing_applies_removes_everything() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    for (round, after_ms) in [100u64, 400, 900].into_iter().enumerate() {
        let lab = Lab::up(
            "downrace",
            &format!("{}{}", lab_doc(2), who_deployment("seed", 2, "seed")),
        );
        let file = lab.dir.path().join("big.yaml");
        std::fs::write(&file, who_deployment("big", 20, "big")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|i| {
                let (stop, name, file) = (stop.clone(), lab.name.clone(), file.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let replicas = format!("--replicas={}", 1 + (n + i) % 4);
                        let _ = match i {
                            0 => netlab(&["--lab", &name, "apply", "-f", file.to_str().unwrap()]),
                            _ => netlab(&["--lab", &name, "scale", "deployment/seed", &replicas]),
                        };
                        n += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(after_ms));
        let pids = lab.container_pids();
        let out = lab.run(&["down"]);
        // The clients go on a little after `down`: nothing may come back.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        assert!(
            out.status.success(),
            "round {round} ({after_ms} ms): down failed: {}",
            stderr(&out)
        );
        let traces = Traces::of(&lab.name, &pids);
        assert!(
            traces.is_clean(),
            "round {round} ({after_ms} ms): leaked: {traces:#?}"
        );
        assert!(
            lab_processes(&lab.name).is_empty(),
            "round {round}: a process of the lab outlived down"
        );
        drop(lab);
    }
}
