//! End to end, as root: `netlab up` builds a flat pod network with real nginx
//! pods on several nodes, the kubectl-style verbs see it, `down` removes it.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WELCOME: &str = "Welcome to nginx!";

fn curl(lab: &Lab, from: &str, ip: &str) -> String {
    let out = lab.run(&[
        "exec",
        from,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        &format!("http://{ip}/"),
    ]);
    assert!(
        out.status.success(),
        "curl {ip} from {from} failed ({:?}): {}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn tutorial_nginx_lab_end_to_end() {
    let yaml = lab_file("nginx.yaml");
    let lab = Lab::up("nginx", &yaml);

    // get pods -l run=my-nginx -o wide: kubectl's columns, Running, spread.
    let wide = lab.ok(&["get", "pods", "-l", "run=my-nginx", "-o", "wide"]);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{wide}");
    for r in &rows {
        assert!(r[0].starts_with("my-nginx-"), "{wide}");
        let parts: Vec<&str> = r[0].rsplitn(3, '-').collect();
        assert_eq!(parts[0].len(), 5, "pod name suffix: {wide}");
        assert_eq!((r[1], r[2], r[3]), ("1/1", "Running", "0"), "{wide}");
        assert!(r[5].starts_with("10.244."), "{wide}");
    }
    assert_ne!(rows[0][5], rows[1][5], "distinct pod IPs");
    assert_ne!(
        rows[0][6], rows[1][6],
        "pods spread over both nodes: {wide}"
    );

    // -o yaml | grep podIP, as in the tutorial; -o json parses.
    let yaml_out = lab.ok(&["get", "pods", "-l", "run=my-nginx", "-o", "yaml"]);
    assert_eq!(
        yaml_out.matches("    podIP: 10.244.").count(),
        2,
        "{yaml_out}"
    );
    assert!(yaml_out.contains("hostIP: 172.18.0."));
    assert!(yaml_out.contains("nodeName: node-"));
    let pods = lab.pods();
    assert_eq!(pods.len(), 2);

    // nodes and deployments.
    let nodes = lab.ok(&["get", "nodes", "-o", "wide"]);
    assert!(nodes.starts_with("NAME"), "{nodes}");
    for col in [
        "STATUS",
        "ROLES",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ] {
        assert!(nodes.lines().next().unwrap().contains(col), "{nodes}");
    }
    assert!(nodes.contains("node-1") && nodes.contains("node-2") && nodes.contains("Ready"));
    assert!(
        nodes.contains("172.18.0.2") && nodes.contains("runc://"),
        "{nodes}"
    );
    let deps = lab.ok(&["get", "deployments"]);
    let d: Vec<Vec<&str>> = deps
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(d[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(&d[1][..4], ["my-nginx", "2/2", "2", "2"]);

    // "ssh to a node and curl the pod IPs": every node reaches every pod.
    for node in ["node-1", "node-2"] {
        for (_, ip, _) in &pods {
            assert!(curl(&lab, &format!("node/{node}"), ip).contains(WELCOME));
        }
    }
    // Every pod reaches every other pod.
    for (from, _, _) in &pods {
        for (_, ip, _) in &pods {
            assert!(curl(&lab, from, ip).contains(WELCOME));
        }
    }

    // No NAT: each server's access log shows the real client addresses.
    let (a, a_ip, _) = &pods[0];
    let (b, b_ip, _) = &pods[1];
    let log_a = lab.ok(&["logs", a]);
    let log_b = lab.ok(&["logs", b]);
    assert!(
        log_a.contains(&format!("{b_ip} - ")),
        "pod {a} saw no request from {b_ip}:\n{log_a}"
    );
    assert!(
        log_b.contains(&format!("{a_ip} - ")),
        "pod {b} saw no request from {a_ip}:\n{log_b}"
    );
    // A node reaches its own pods from its bridge address (10.244.N.1) and
    // other nodes' pods from its LAN address: both are real, unNATed sources.
    let a_node = &pods[0].2;
    let (own_gw, other_lan) = if a_node == "node-1" {
        ("10.244.1.1", "172.18.0.3")
    } else {
        ("10.244.2.1", "172.18.0.2")
    };
    for src in [own_gw, other_lan] {
        assert!(
            log_a.contains(&format!("{src} - ")),
            "no request from {src}:\n{log_a}"
        );
    }
    assert!(log_a.contains("\"GET / HTTP/1.1\" 200"), "{log_a}");

    // The container's identity and environment.
    assert_eq!(lab.ok(&["exec", a, "--", "hostname"]).trim(), a);
    let env = lab.ok(&["exec", a, "--", "printenv"]);
    assert!(env.contains(&format!("HOSTNAME={a}")), "{env}");
    assert!(env.contains("PATH="), "{env}");

    lab.down_clean();
}

#[test]
fn same_container_port_twice_on_one_node() {
    let lab = Lab::up(
        "oneport",
        &format!("{}{}", lab_doc(1), nginx_deployment("web", 2)),
    );
    let pods = lab.pods();
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0].2, pods[1].2, "both on the only node");
    for (_, ip, _) in &pods {
        assert!(curl(&lab, "node/node-1", ip).contains(WELCOME));
    }
    lab.down_clean();
}

#[test]
fn tutorial_file_verbatim_with_defaults() {
    let yaml = lab_file("run-my-nginx.yaml");
    let lab = Lab::up("verbatim", &yaml);
    let nodes = lab.ok(&["get", "nodes"]);
    assert_eq!(nodes.lines().count(), 3, "two nodes by default:\n{nodes}");
    assert_eq!(lab.pods().len(), 2);
    lab.down_clean();
}

#[test]
fn two_labs_side_by_side_with_the_same_cidrs() {
    let yaml = nginx_deployment("my-nginx", 2);
    let a = Lab::up("side-a", &yaml);
    let b = Lab::up("side-b", &yaml);
    let pa = a.pods();
    let pb = b.pods();
    // Same addresses in both labs: they are isolated from each other.
    let mut ips_a: Vec<&String> = pa.iter().map(|p| &p.1).collect();
    let mut ips_b: Vec<&String> = pb.iter().map(|p| &p.1).collect();
    ips_a.sort();
    ips_b.sort();
    assert_eq!(ips_a, ips_b);
    // Without --lab, netlab refuses to guess.
    let out = netlab(&["get", "pods"]);
    assert!(
        !out.status.success(),
        "get without --lab while several labs are up"
    );
    assert!(stderr(&out).contains("labs are up"), "{}", stderr(&out));
    a.down_clean();
    for (_, ip, _) in &pb {
        assert!(
            curl(&b, "node/node-1", ip).contains(WELCOME),
            "lab b survives lab a's down"
        );
    }
    b.down_clean();
}

#[test]
fn kill_9_during_up_then_down_leaves_nothing() {
    let lab = Lab::prepare("kill9", &nginx_deployment("web", 12));
    let mut child = Command::new(NETLAB)
        .args(["up", "--name", &lab.name, lab.file().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the lab has begun to exist, then kill netlab mid-way: the
    // namespace must have appeared and `up` must still be running, or this
    // test would only prove that `down` of nothing is clean.
    let dc = format!("/run/netns/netlab-{}.dc", lab.name);
    let start = Instant::now();
    while !std::path::Path::new(&dc).exists() && start.elapsed() < Duration::from_secs(10) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "up ended before it created anything"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(std::path::Path::new(&dc).exists(), "up never created {dc}");
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        child.try_wait().unwrap().is_none(),
        "up of 12 pods finished within 30 ms of its first namespace: nothing was killed mid-way"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let pids = lab.container_pids();
    let out = lab.run(&["down"]);
    assert!(out.status.success(), "down after kill -9: {}", stderr(&out));
    let traces = Traces::of(&lab.name, &pids);
    assert!(
        traces.is_clean(),
        "leaked after kill -9 + down: {traces:#?}"
    );
}

/// Bad lab files: a clear error naming the file, line or object, and nothing created.
#[test]
fn bad_lab_files_change_nothing() {
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("malformed", "apiVersion: apps/v1\nkind: Deployment\nmetadata: [oops\n".into(), &["lab.yaml:", "invalid YAML"]),
        ("unknown-kind", "apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n".into(), &["lab.yaml:1", "Frobnicator/x", "unknown kind"]),
        ("bad-cidr", format!("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDR: 10.244.0.0/40\n---\n{}", nginx_deployment("w", 1)), &["lab.yaml:1", "podCIDR", "not an IPv4 CIDR"]),
        ("negative", nginx_deployment("w", -2), &["Deployment/w", "replicas", "negative"]),
        ("duplicate", format!("{}---\n{}", nginx_deployment("w", 1), nginx_deployment("w", 1)), &["Deployment/w", "defined twice"]),
        ("no-image", nginx_deployment("w", 1).replace("image: nginx", "image: nosuch/image:1"), &["Deployment/w", "docker.io/nosuch/image:1", "ErrImagePull", "nothing was created"]),
    ];
    for (name, yaml, expected) in cases {
        let lab = Lab::prepare(name, &yaml);
        let links = host_links();
        let out = netlab(&["up", "--name", &lab.name, lab.file().to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: up succeeded");
        for e in expected {
            assert!(err.contains(e), "{name}: error lacks {e:?}:\n{err}");
        }
        let traces = Traces::of(&lab.name, &[]);
        assert!(traces.is_clean(), "{name}: created {traces:#?}");
        assert_eq!(links, host_links());
    }
}

#[test]
fn without_root_a_clear_error() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            NETLAB,
            "get",
            "pods",
        ])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("needs root"), "{}", stderr(&out));
}

/// `command`, `args`, `env`, `workingDir` of a bare Pod, as the kubelet runs them.
#[test]
fn pod_spec_is_honoured() {
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: shell
  labels:
    app: shell
spec:
  containers:
  - name: sh
    image: radial/busyboxplus:curl
    command: ["sh", "-c"]
    args: ["echo hello-from-$GREETING in $(pwd); exec sleep 3600"]
    workingDir: /tmp
    env:
    - name: GREETING
      value: netlab
    - name: COMBINED
      value: "$(GREETING)-rocks"
"#;
    let lab = Lab::up("podspec", yaml);
    assert_eq!(
        lab.ok(&["exec", "shell", "--", "printenv", "GREETING"])
            .trim(),
        "netlab"
    );
    assert_eq!(
        lab.ok(&["exec", "shell", "--", "printenv", "COMBINED"])
            .trim(),
        "netlab-rocks"
    );
    assert_eq!(lab.ok(&["exec", "shell", "--", "pwd"]).trim(), "/tmp");
    // Its own PID namespace: the command is PID 1.
    assert_eq!(
        lab.ok(&["exec", "shell", "--", "cat", "/proc/1/cmdline"])
            .replace('\0', " ")
            .trim(),
        "sleep 3600"
    );
    let logs = lab.ok(&["logs", "pod/shell"]);
    assert!(logs.contains("hello-from-netlab in /tmp"), "{logs}");
    let pods = lab.ok(&["get", "pods", "-l", "app=shell"]);
    assert!(pods.contains("1/1") && pods.contains("Running"), "{pods}");
    // A selector that matches nothing prints no table.
    assert_eq!(lab.ok(&["get", "pods", "-l", "app=none"]), "");
    lab.down_clean();
}

/// A pod that never serves: `up` fails naming the pod and its output, and
/// removes everything it had made.
#[test]
fn failing_container_fails_up_and_cleans_up() {
    let yaml = nginx_deployment("broken", 1).replace(
        "        ports:",
        "        command: [\"sh\", \"-c\", \"echo config is broken >&2; exit 3\"]\n        ports:",
    );
    let lab = Lab::prepare("broken", &yaml);
    let out = netlab(&[
        "up",
        "--timeout",
        "10",
        "--name",
        &lab.name,
        lab.file().to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("pod/broken-"), "{err}");
    assert!(err.contains("config is broken"), "{err}");
    let traces = Traces::of(&lab.name, &[]);
    assert!(traces.is_clean(), "{traces:#?}");
}

/// A lab from several files: the topology in one, the workload in another.
#[test]
fn several_lab_files() {
    let lab = Lab::prepare("files", &nginx_deployment("web", 3));
    let topo = lab.dir.path().join("topology.yaml");
    std::fs::write(
        &topo,
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: [alpha, beta, gamma]\n",
    )
    .unwrap();
    let out = netlab(&[
        "up",
        "--name",
        &lab.name,
        topo.to_str().unwrap(),
        lab.file().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nodes: Vec<String> = lab.pods().into_iter().map(|p| p.2).collect();
    for n in ["alpha", "beta", "gamma"] {
        assert!(nodes.iter().any(|x| x == n), "one pod per node: {nodes:?}");
    }
    lab.down_clean();
}

/// `netlab down NAME` and `netlab down FILE`, as users of kind and
/// containerlab type them; a file that does not exist is a clear error.
#[test]
fn down_takes_a_lab_name_or_its_file() {
    // `netlab down TARGET` takes lab `lab` down, leaving nothing.
    let down = |target: &str, lab: &Lab| {
        let pids = lab.container_pids();
        let out = netlab(&["down", target]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("lab {} is down", lab.name)),
            "{}",
            stderr(&out)
        );
        let traces = Traces::of(&lab.name, &pids);
        assert!(traces.is_clean(), "{traces:#?}");
    };
    let lab = Lab::up("downname", &lab_doc(1));
    down(&lab.name, &lab);

    // By its file: the Lab document names the lab.
    let lab = Lab::prepare("downfile", "");
    std::fs::write(
        lab.file(),
        format!(
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nmetadata:\n  name: {}\nspec:\n  nodes: 1\n",
            lab.name
        ),
    )
    .unwrap();
    let file = lab.file().to_str().unwrap().to_string();
    let out = netlab(&["up", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    down(&file, &lab);

    let out = netlab(&["down", "/nonexistent/lab.yaml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
