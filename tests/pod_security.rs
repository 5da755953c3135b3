//! Pods obey their securityContext and resources, end to end (root): each
//! field is checked from inside the container (`id`, /proc/self/status,
//! a write to a read-only root, ping without NET_RAW) or from the host (the
//! container's cgroup files), against a pod without any of them in the same
//! lab, so that no check can pass because the feature does nothing. Also:
//! runAsNonRoot refusing a root image, log rotation at 10 MiB, and fields
//! netlab does not implement refused before anything is created.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BUSYBOX: &str = "radial/busyboxplus:curl";

/// containerd's default capability set as /proc/self/status shows it.
const DEFAULT_CAPS: u64 = 0xa80425fb;
const NET_RAW: u64 = 1 << 13;
const NET_ADMIN: u64 = 1 << 12;
/// Every capability this process (and so netlab) holds: what a
/// privileged container gets, as containerd gives it.
fn host_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    u64::from_str_radix(&status_field(&status, "CapBnd"), 16).unwrap()
}

fn pod(name: &str, pod_security: &str, container_extra: &str, volumes: &str) -> String {
    pod_running(name, "sleep 3600", pod_security, container_extra, volumes)
}

fn pod_running(
    name: &str,
    script: &str,
    pod_security: &str,
    container_extra: &str,
    volumes: &str,
) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{pod_security}  containers:
  - name: c
    image: {BUSYBOX}
    command: ["sh", "-c", "{script}"]
{container_extra}{volumes}"#
    )
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
        .trim()
        .to_string()
}

fn caps(lab: &Lab, pod: &str) -> u64 {
    let status = lab.ok(&["exec", pod, "--", "cat", "/proc/self/status"]);
    u64::from_str_radix(&status_field(&status, "CapEff"), 16).unwrap()
}

fn proc_status(lab: &Lab, pod: &str, field: &str) -> String {
    status_field(
        &lab.ok(&["exec", pod, "--", "cat", "/proc/self/status"]),
        field,
    )
}

/// Exit code and output of a command in a pod.
fn sh(lab: &Lab, pod: &str, script: &str) -> (i32, String) {
    let out = lab.run(&["exec", pod, "--", "sh", "-c", script]);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

fn wait_running(lab: &Lab, pods: &[&str]) {
    wait_for("pods running", Duration::from_secs(60), || {
        let out = lab.ok(&["get", "pods", "--no-headers"]);
        pods.iter().all(|p| {
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(p) && l.contains("Running"))
        })
    });
}

#[test]
fn security_context_fields_from_inside_the_container() {
    let restricted = "    securityContext:\n      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: true\n    volumeMounts:\n    - name: scratch\n      mountPath: /scratch\n    - name: conf\n      mountPath: /conf\n";
    let yaml = [
        lab_doc(1),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n  a.conf: hello\n"
            .into(),
        pod("plain", "", "", ""),
        pod(
            "ids",
            "  securityContext:\n    runAsUser: 1000\n    runAsGroup: 3000\n    fsGroup: 2000\n    supplementalGroups: [4000]\n    runAsNonRoot: true\n",
            restricted,
            "  volumes:\n  - name: scratch\n    emptyDir: {}\n  - name: conf\n    configMap:\n      name: conf\n      defaultMode: 0400\n",
        ),
        pod(
            "caps",
            "",
            "    securityContext:\n      capabilities:\n        drop: [NET_RAW]\n        add: [NET_ADMIN]\n",
            "",
        ),
        pod(
            "none",
            "",
            "    securityContext:\n      capabilities:\n        drop: [ALL]\n",
            "",
        ),
        pod(
            "priv",
            "",
            "    securityContext:\n      privileged: true\n",
            "",
        ),
        pod(
            "confined",
            "  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n",
            "",
            "",
        ),
    ]
    .concat();
    let lab = Lab::up("podsec", &yaml);
    wait_running(&lab, &["plain", "ids", "caps", "none", "priv", "confined"]);

    // The control: what a pod gets without a securityContext.
    let (code, id) = sh(&lab, "plain", "id -u; id -g");
    assert_eq!(
        (code, id.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["0", "0"])
    );
    assert_eq!(caps(&lab, "plain"), DEFAULT_CAPS);
    assert_eq!(proc_status(&lab, "plain", "NoNewPrivs"), "0");
    assert_eq!(proc_status(&lab, "plain", "Seccomp"), "0");
    let (code, out) = sh(&lab, "plain", "ping -c 1 -W 2 127.0.0.1");
    assert_eq!(code, 0, "ping with NET_RAW: {out}");
    let (code, out) = sh(&lab, "plain", "touch /written && echo ok");
    assert_eq!(code, 0, "{out}");

    // runAsUser, runAsGroup, supplementalGroups and fsGroup.
    let (code, out) = sh(&lab, "ids", "id -u; id -g; id -G");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "3000"], "{out}");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["2000", "3000", "4000"], "{out}");
    // allowPrivilegeEscalation: false sets no_new_privs.
    assert_eq!(proc_status(&lab, "ids", "NoNewPrivs"), "1");
    // readOnlyRootFilesystem, while volumes stay writable.
    let (code, out) = sh(&lab, "ids", "touch /written");
    assert_ne!(code, 0, "touch / must fail on a read-only root");
    assert!(out.contains("Read-only file system"), "{out}");
    // fsGroup owns the volumes: what the container writes in an emptyDir,
    // and the configMap's files (made group-readable).
    let (code, out) = sh(
        &lab,
        "ids",
        "touch /scratch/f && stat -c %g /scratch/f && stat -Lc '%g %a' /conf/a.conf && cat /conf/a.conf",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["2000", "2000 440", "hello"],
        "{out}"
    );

    // capabilities: drop NET_RAW (no ping), add NET_ADMIN.
    assert_eq!(caps(&lab, "caps"), (DEFAULT_CAPS & !NET_RAW) | NET_ADMIN);
    let (code, out) = sh(&lab, "caps", "ping -c 1 -W 2 127.0.0.1");
    assert_ne!(code, 0, "ping without NET_RAW must fail: {out}");
    assert_eq!(caps(&lab, "none"), 0);

    // privileged: every capability, unconfined, the host's devices.
    assert_eq!(caps(&lab, "priv"), host_caps());
    assert_eq!(proc_status(&lab, "priv", "Seccomp"), "0");
    let host_dev = host_only_device();
    let (code, out) = sh(&lab, "priv", &format!("test -e {host_dev} && echo yes"));
    assert_eq!(
        (code, out.trim()),
        (0, "yes"),
        "{host_dev} in a privileged pod"
    );
    let (code, _) = sh(&lab, "plain", &format!("test -e {host_dev}"));
    assert_ne!(code, 0, "{host_dev} must not be in an unprivileged pod");

    // seccompProfile RuntimeDefault: the process runs under a filter.
    assert_eq!(proc_status(&lab, "confined", "Seccomp"), "2");

    lab.down_clean();
}

/// A device node of the host that runc never creates in a container.
fn host_only_device() -> String {
    let usual = [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !usual.contains(&n.as_str()) && !n.starts_with("tty"))
        .map(|n| format!("/dev/{n}"))
        .expect("the host has some device node besides the usual ones")
}

#[test]
fn run_as_non_root_refuses_a_root_image() {
    let yaml = [
        lab_doc(1),
        pod(
            "rooted",
            "  securityContext:\n    runAsNonRoot: true\n",
            "",
            "",
        ),
        pod("fine", "", "", ""),
    ]
    .concat();
    let lab = Lab::up("nonroot", &yaml);
    wait_running(&lab, &["fine"]);
    let want = "container has runAsNonRoot and image will run as root";
    wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(30),
        || {
            let pods = lab.pods_json();
            let rooted = pods["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["metadata"]["name"] == "rooted")
                .unwrap()
                .clone();
            let waiting = &rooted["status"]["containerStatuses"][0]["state"]["waiting"];
            waiting["reason"] == "CreateContainerConfigError"
                && waiting["message"].as_str().unwrap_or("").contains(want)
        },
    );
    let events = lab.ok(&["get", "events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("pod/rooted") && l.contains(&format!("Error: {want}"))),
        "{events}"
    );
    // Never started: no container of it in the runtime.
    let list = std::process::Command::new("runc")
        .args(["--root", &format!("/run/netlab/{}/runc", lab.name), "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(!list.contains("default_rooted_c"), "{list}");
    assert!(list.contains("default_fine_c"), "{list}");
    lab.down_clean();
}

fn cgroup_file(lab: &Lab, controller: &str, pod: &str, file: &str) -> String {
    let path = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(format!("netlab-{}", lab.name))
        .join(format!("default_{pod}_c"))
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn resources_land_in_the_container_cgroup() {
    let limited = "    resources:\n      limits:\n        memory: 64Mi\n        cpu: 500m\n      requests:\n        cpu: 250m\n";
    let yaml = [
        lab_doc(1),
        pod("limited", "", limited, ""),
        pod("free", "", "", ""),
    ]
    .concat();
    let lab = Lab::up("resources", &yaml);
    wait_running(&lab, &["limited", "free"]);
    assert_eq!(
        cgroup_file(&lab, "memory", "limited", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&lab, "cpu", "limited", "cpu.cfs_quota_us"),
        "50000"
    );
    assert_eq!(
        cgroup_file(&lab, "cpu", "limited", "cpu.cfs_period_us"),
        "100000"
    );
    assert_eq!(cgroup_file(&lab, "cpu", "limited", "cpu.shares"), "256");
    assert_eq!(cgroup_file(&lab, "pids", "limited", "pids.max"), "4096");
    // Without resources: no memory limit, no quota, the minimum shares,
    // and still the lab's pids ceiling.
    let unlimited = cgroup_file(&lab, "memory", "free", "memory.limit_in_bytes");
    assert!(unlimited.parse::<u64>().unwrap() > 1 << 50, "{unlimited}");
    assert_eq!(cgroup_file(&lab, "cpu", "free", "cpu.cfs_quota_us"), "-1");
    assert_eq!(cgroup_file(&lab, "cpu", "free", "cpu.shares"), "2");
    assert_eq!(cgroup_file(&lab, "pids", "free", "pids.max"), "4096");
    // The QoS class follows from the resources.
    let qos: Vec<String> = lab.pods_json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p["metadata"]["name"].as_str().unwrap(),
                p["status"]["qosClass"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(qos.contains(&"limited=Burstable".to_string()), "{qos:?}");
    assert!(qos.contains(&"free=BestEffort".to_string()), "{qos:?}");
    lab.down_clean();
}

fn pod_dir(lab: &Lab, pod: &str) -> PathBuf {
    PathBuf::from(format!("/run/netlab/{}/pods/default_{pod}", lab.name))
}

#[test]
fn container_logs_rotate_at_10_mib() {
    // 120 000 lines of 101 bytes: 12.1 MB, then END.
    let writer = "yes $(printf %0100d 0) | head -n 120000; echo END; sleep 3600";
    let yaml = [lab_doc(1), pod_running("chatty", writer, "", "", "")].concat();
    let lab = Lab::up("logrotate", &yaml);
    wait_running(&lab, &["chatty"]);
    let dir = pod_dir(&lab, "chatty");
    let live = dir.join("c.log");
    let rotated = |n: usize| dir.join(format!("c.log.{n}"));
    wait_for("the log rotated", Duration::from_secs(40), || {
        rotated(1).exists() && std::fs::metadata(&live).is_ok_and(|m| m.len() <= 10 << 20)
    });
    let mut total = 0;
    for p in std::iter::once(live.clone()).chain((1..10).map(rotated)) {
        if let Ok(m) = std::fs::metadata(&p) {
            assert!(m.len() <= 10 << 20, "{} is {} bytes", p.display(), m.len());
            total += m.len();
        }
    }
    assert!(!rotated(5).exists(), "at most 5 files per container");
    assert!(total > 10 << 20, "the rotated bytes are kept: {total}");
    // `netlab logs` reads across the rotation.
    let last = lab.ok(&["logs", "chatty", "--tail", "1"]);
    assert_eq!(last.trim(), "END");
    let all = lab.ok(&["logs", "chatty"]);
    assert!(all.len() > 10 << 20, "logs shows {} bytes", all.len());
    lab.down_clean();
}

#[test]
fn unsupported_fields_are_refused_before_anything_is_created() {
    let yaml = [
        lab_doc(1),
        pod(
            "local",
            "  securityContext:\n    seccompProfile:\n      type: Localhost\n      localhostProfile: x.json\n",
            "    resources:\n      limits:\n        ephemeral-storage: 1Gi\n    securityContext:\n      capabilities:\n        drop: [CAP_NET_RAW]\n",
            "",
        ),
    ]
    .concat();
    let lab = Lab::prepare("refused", &yaml);
    let out = netlab(&["up", "--name", &lab.name, lab.file().to_str().unwrap()]);
    assert!(!out.status.success(), "up must fail");
    let err = stderr(&out);
    for want in [
        "spec.securityContext.seccompProfile.type Localhost is not supported by netlab",
        "spec.containers[0].resources.limits.ephemeral-storage is not supported by netlab",
        "spec.containers[0].securityContext.capabilities.drop[0] \"CAP_NET_RAW\" is not a capability",
        "lab.yaml:",
        "Pod/local",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let traces = Traces::of(&lab.name, &[]);
    assert!(traces.is_clean(), "a refused lab left {traces:#?}");
}
