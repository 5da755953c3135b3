//! End to end, as root: the per-lab controller keeps a lab converging after
//! `up` returns — restarts per restartPolicy with back-off, endpoints that
//! follow, and a controller that can die and be replaced without touching
//! the pods.

mod common;

use common::*;
use std::time::Duration;

fn pod_json(lab: &Lab, name: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

fn restarts(lab: &Lab, name: &str) -> i64 {
    pod_json(lab, name)["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap()
}

fn main_pid(lab: &Lab, pod: &str, container: &str) -> i32 {
    let out = std::process::Command::new("runc")
        .args([
            "--root",
            &format!("/run/netlab/{}/runc", lab.name),
            "state",
            &format!("default_{pod}_{container}"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// netlab reads runc's state files itself (the lab's loop lists the
/// containers twice a step): what it reads is what `runc list` says.
#[test]
fn the_container_list_is_runcs() {
    let lab = Lab::up("ctl-list", &lab_file("nginx.yaml"));
    let root = format!("/run/netlab/{}/runc", lab.name);
    let out = std::process::Command::new("runc")
        .args(["--root", &root, "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: Vec<(String, String, i64, String)> = listed
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["pid"].as_i64().unwrap(),
                c["bundle"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got: Vec<(String, String, i64, String)> = rt
        .block_on(netlab::runtime::Runc::new(std::path::Path::new(&root)).list())
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.status, c.pid as i64, c.bundle))
        .collect();
    assert!(want.len() >= 2, "{want:?}");
    assert_eq!(got, want);
    // One container's state, read in process as well, is `runc state`'s.
    let runc = netlab::runtime::Runc::new(std::path::Path::new(&root));
    for (id, status, pid, bundle) in &want {
        let out = std::process::Command::new("runc")
            .args(["--root", &root, "state", id])
            .output()
            .unwrap();
        let told: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(told["status"].as_str(), Some(status.as_str()));
        let c = rt.block_on(runc.state(id)).unwrap();
        assert_eq!(
            (&c.id, &c.status, c.pid as i64, &c.bundle),
            (id, status, *pid, bundle)
        );
    }
    assert!(rt.block_on(runc.state("no-such-container")).is_err());
    lab.down_clean();
}

#[test]
fn killed_nginx_is_restarted_and_serves_again() {
    let lab = Lab::up("ctl-restart", &lab_file("nginx.yaml"));
    lab.ok(&["controller", "status"]);
    lab.ok(&["expose", "deployment/my-nginx"]);
    let ip = cluster_ip(&lab, "my-nginx");
    let pod = lab.pods()[0].0.clone();
    let pid = main_pid(&lab, &pod, "my-nginx");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the restart", Duration::from_secs(10), || {
        restarts(&lab, &pod) == 1
    });
    let pods = lab.ok(&["get", "pods"]);
    let row = pods.lines().find(|l| l.starts_with(&pod)).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1/1", "Running", "1"], "{pods}");
    assert_ne!(
        main_pid(&lab, &pod, "my-nginx"),
        pid,
        "a new container process"
    );
    for _ in 0..10 {
        let body = must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
        assert!(body.contains("Welcome to nginx!"));
    }
    let describe = lab.ok(&["describe", "pod", &pod]);
    assert!(describe.contains("Restart Count:  1"), "{describe}");
    assert!(
        describe.contains("Started") && describe.contains("(x2 over"),
        "{describe}"
    );
    lab.down_clean();
}

#[test]
fn crash_loop_back_off_and_restart_policy_never() {
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "sleep 0.3; exit 1"]
---
apiVersion: v1
kind: Pod
metadata:
  name: once
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "sleep 0.3; exit 1"]
"#;
    let lab = Lab::up("ctl-crash", yaml);
    // Restarted at once the first time, then held back (10 s).
    wait_for("CrashLoopBackOff", Duration::from_secs(10), || {
        let pods = lab.ok(&["get", "pods", "crasher"]);
        pods.contains("CrashLoopBackOff")
    });
    assert_eq!(restarts(&lab, "crasher"), 1);
    let events = lab.ok(&["get", "events"]);
    assert!(
        events.contains("BackOff") && events.contains("pod/crasher"),
        "{events}"
    );
    // restartPolicy: Never: it stays down.
    wait_for(
        "the pod that never restarts to fail",
        Duration::from_secs(10),
        || pod_json(&lab, "once")["status"]["phase"] == "Failed",
    );
    assert_eq!(restarts(&lab, "once"), 0);
    lab.down_clean();
}

/// kill -9 of the controller disturbs no pod and no request; a new one
/// adopts the running containers without restarting them; down works
/// with the controller dead.
#[test]
fn controller_kill_9_under_load_and_adoption() {
    let lab = Lab::up("ctl-kill", &lab_file("nginx.yaml"));
    lab.ok(&["expose", "deployment/my-nginx"]);
    let ip = cluster_ip(&lab, "my-nginx");
    let pods = lab.pods();
    let pids: Vec<i32> = pods
        .iter()
        .map(|p| main_pid(&lab, &p.0, "my-nginx"))
        .collect();
    let controller: i32 = lab.ok(&["controller", "status"]).trim().parse().unwrap();

    // A steady client on node-2 while the controller is killed.
    let client = std::process::Command::new(NETLAB)
        .args(["--lab", &lab.name, "exec", "node/node-2", "--", "sh", "-c",
            &format!("ok=0; bad=0; for i in $(seq 1 60); do if curl -s -m 2 -o /dev/null http://{ip}/; then ok=$((ok+1)); else bad=$((bad+1)); fi; sleep 0.02; done; echo $ok $bad")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(controller),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = client.wait_with_output().unwrap();
    let counts: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, [60, 0], "requests failed while the controller died");

    assert!(!lab.run(&["controller", "status"]).status.success());
    lab.ok(&["controller", "start"]);
    std::thread::sleep(Duration::from_millis(800));
    for (p, pid) in pods.iter().zip(&pids) {
        assert_eq!(
            main_pid(&lab, &p.0, "my-nginx"),
            *pid,
            "pod {} was restarted",
            p.0
        );
        assert_eq!(restarts(&lab, &p.0), 0);
    }
    // nginx logged every request to its stdout while no process read it
    // (it holds its own reader of the pipe, so it never stopped), and the
    // new process reads on.
    let requests = || -> usize {
        pods.iter()
            .map(|p| {
                lab.ok(&["logs", &p.0])
                    .lines()
                    .filter(|l| l.contains("\"GET / HTTP/1.1\" 200") && l.contains("curl/"))
                    .count()
            })
            .sum()
    };
    assert_eq!(
        requests(),
        60,
        "access log lines written while the controller was dead"
    );
    lab.ok(&[
        "exec",
        "node/node-2",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        &format!("http://{ip}/"),
    ]);
    wait_for(
        "the request after adoption logged",
        Duration::from_secs(5),
        || requests() == 61,
    );
    // And down with the controller dead.
    let controller: i32 = lab.ok(&["controller", "status"]).trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(controller),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    lab.down_clean();
}

/// `controller stop` returns only when the stopped process let go of the
/// lab (its store, its lock): a `controller start` right after it works.
/// Before, the stopped process's threads still held the store open for a
/// moment after its lock was released, and the new one failed with
/// "Database already open".
#[test]
fn controller_stop_then_start_at_once() {
    let lab = Lab::up("ctl-restart", &lab_file("nginx.yaml"));
    lab.ok(&["expose", "deployment/my-nginx"]);
    let pods = lab.pods();
    for round in 0..3 {
        // Work under way when it stops: the service plane follows a write.
        lab.ok(&[
            "scale",
            "deployment/my-nginx",
            &format!("--replicas={}", 2 + round % 2),
        ]);
        lab.ok(&["controller", "stop"]);
        let start = lab.run(&["controller", "start"]);
        assert!(
            start.status.success(),
            "round {round}: start right after stop: {}",
            stderr(&start)
        );
        lab.ok(&["get", "pods"]);
    }
    lab.ok(&["scale", "deployment/my-nginx", "--replicas=2"]);
    wait_for("2 pods again", Duration::from_secs(20), || {
        lab.pods().len() >= pods.len()
    });
    lab.down_clean();
}

/// A readinessProbe decides READY and endpoint membership: a pod whose
/// probe fails leaves the Service, and comes back when it passes again.
#[test]
fn readiness_probe_flips_endpoints() {
    let pod = |name: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: ready}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /www/healthy /tmp/exec-ready && exec httpd -f -p 80 -h /www"]
    ports:
    - {{containerPort: 80, name: http}}
    readinessProbe:
      httpGet: {{path: /healthy, port: http}}
      periodSeconds: 1
      failureThreshold: 1
"#
        )
    };
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ready\nspec:\n  selector: {app: ready}\n  ports:\n  - port: 80\n";
    // r2 is probed with exec instead of httpGet, on a file httpd does not
    // serve: only the exec probe can notice that file go away.
    let r2 = pod("r2").replace(
        "      httpGet: {path: /healthy, port: http}\n",
        "      exec: {command: [\"cat\", \"/tmp/exec-ready\"]}\n",
    );
    let lab = Lab::up("ctl-ready", &format!("{}---\n{r2}---\n{svc}", pod("r1")));
    let ip = cluster_ip(&lab, "ready");
    let ep = |lab: &Lab| lab.ok(&["get", "ep", "ready"]);
    wait_for("both endpoints", Duration::from_secs(10), || {
        ep(&lab).matches(":80").count() == 2
    });
    // r1 turns unhealthy: it leaves the endpoints, READY 0/1, traffic goes to r2 only.
    lab.ok(&["exec", "r1", "--", "rm", "/www/healthy"]);
    wait_for("r1 to leave", Duration::from_secs(10), || {
        ep(&lab).matches(":80").count() == 1
    });
    let pods = lab.ok(&["get", "pods", "r1"]);
    assert!(pods.contains("0/1") && pods.contains("Running"), "{pods}");
    for _ in 0..10 {
        let body = must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
        assert_eq!(body.as_str(), "r2");
    }
    lab.ok(&["exec", "r1", "--", "touch", "/www/healthy"]);
    wait_for("r1 to come back", Duration::from_secs(10), || {
        ep(&lab).matches(":80").count() == 2
    });
    // The exec probe of r2 decides too: its file goes, httpd still serves
    // /healthy, and r2 leaves all the same.
    lab.ok(&["exec", "r2", "--", "rm", "/tmp/exec-ready"]);
    wait_for("r2 to leave", Duration::from_secs(10), || {
        ep(&lab).matches(":80").count() == 1
    });
    let pods = lab.ok(&["get", "pods", "r2"]);
    assert!(pods.contains("0/1") && pods.contains("Running"), "{pods}");
    for _ in 0..10 {
        let body = must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
        assert_eq!(body.as_str(), "r1");
    }
    let describe = lab.ok(&["describe", "svc", "ready"]);
    assert!(describe.contains("EndpointsChanged"), "{describe}");
    lab.down_clean();
}

/// Pods deleted one by one under a steady client: readiness and graceful
/// termination keep every request answered.
#[test]
fn no_failed_requests_while_pods_are_replaced() {
    let yaml = lab_file("nginx.yaml").replace("replicas: 2", "replicas: 3");
    let lab = Lab::up("ctl-rolling", &yaml);
    lab.ok(&["expose", "deployment/my-nginx"]);
    let ip = cluster_ip(&lab, "my-nginx");
    let client = std::process::Command::new(NETLAB)
        .args(["--lab", &lab.name, "exec", "node/node-1", "--", "sh", "-c",
            &format!("ok=0; bad=0; for i in $(seq 1 150); do if curl -s -m 2 -o /dev/null http://{ip}/; then ok=$((ok+1)); else bad=$((bad+1)); fi; sleep 0.01; done; echo $ok $bad")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for (name, _, _) in lab.pods() {
        lab.ok(&["delete", "pod", &name]);
    }
    let out = client.wait_with_output().unwrap();
    let counts: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, [150, 0], "requests failed while pods were replaced");
    assert_eq!(lab.pods().len(), 3);
    lab.down_clean();
}

/// `apply -f` on a running lab: replicas, labels, ports and image change;
/// the pods follow (a changed template replaces them) and the Service too.
#[test]
fn apply_changes_replicas_labels_ports_and_image() {
    let base = lab_file("run-my-nginx.yaml");
    let lab = Lab::up("ctl-apply", &base);
    lab.ok(&["expose", "deployment/my-nginx"]);
    let ip = cluster_ip(&lab, "my-nginx");
    let apply = |yaml: &str| {
        let f = lab.dir.path().join(format!("a{}.yaml", yaml.len()));
        std::fs::write(&f, yaml).unwrap();
        lab.ok(&["apply", "-f", f.to_str().unwrap()])
    };
    assert_eq!(apply(&base).trim(), "deployment.apps/my-nginx unchanged");
    assert_eq!(
        apply(&base.replace("replicas: 2", "replicas: 3")).trim(),
        "deployment.apps/my-nginx configured"
    );
    assert_eq!(lab.pods().len(), 3);

    let before: Vec<String> = lab.pods().into_iter().map(|p| p.0).collect();
    let relabeled = base
        .replace(
            "        run: my-nginx\n    spec:",
            "        run: my-nginx\n        tier: web\n    spec:",
        )
        .replace(
            "- containerPort: 80",
            "- containerPort: 80\n          name: http",
        );
    // A template change is a rolling update, as in Kubernetes: `apply`
    // returns at once and the pods roll over while it goes on.
    let rolled_out = || {
        wait_for("the rollout", std::time::Duration::from_secs(90), || {
            let d: serde_json::Value =
                serde_json::from_str(&lab.ok(&["get", "deploy", "my-nginx", "-o", "json"]))
                    .unwrap();
            let st = &d["status"];
            d["metadata"]["generation"] == st["observedGeneration"]
                && st["updatedReplicas"] == 2
                && st["replicas"] == 2
                && st["availableReplicas"] == 2
                && lab.pods().len() == 2
        })
    };
    apply(&relabeled);
    rolled_out();
    let after = lab.pods();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(&p.0)),
        "a changed template replaces the pods"
    );
    let labeled = lab.ok(&["get", "pods", "-l", "tier=web", "-o", "name"]);
    assert_eq!(labeled.lines().count(), 2, "{labeled}");

    // busybox httpd as PID 1 ignores SIGTERM (as in Kubernetes): keep its grace period short.
    let reimaged = relabeled
        .replace(
            "        image: nginx\n",
            "        image: radial/busyboxplus:curl\n        command: [\"sh\", \"-c\", \"mkdir -p /www && echo new-image > /www/index.html && exec httpd -f -p 80 -h /www\"]\n",
        )
        .replace("    spec:\n      containers:", "    spec:\n      terminationGracePeriodSeconds: 1\n      containers:");
    assert!(reimaged.contains("terminationGracePeriodSeconds: 1"));
    apply(&reimaged);
    rolled_out();
    let body = must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
    assert_eq!(body.as_str(), "new-image");
    let wide = lab.ok(&["get", "deploy", "-o", "wide"]);
    assert!(wide.contains("radial/busyboxplus:curl"), "{wide}");

    // create -f refuses what exists; delete -f removes what the file names.
    let f = lab.dir.path().join("base.yaml");
    std::fs::write(&f, &base).unwrap();
    let out = lab.run(&["create", "-f", f.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("already exists"),
        "{}",
        stderr(&out)
    );
    let out = lab.ok(&["delete", "-f", f.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps \"my-nginx\" deleted"),
        "{out}"
    );
    assert!(lab.pods().is_empty());
    assert!(lab
        .ok(&["create", "-f", f.to_str().unwrap()])
        .contains("deployment.apps/my-nginx created"));
    assert_eq!(lab.pods().len(), 2);
    lab.down_clean();
}

/// A deleted pod's grace period holds up nothing else: while a pod whose
/// process ignores SIGTERM (busybox httpd as PID 1) terminates for 8 s, it
/// shows `Terminating`, its endpoint is gone at once, and a new pod starts
/// and becomes ready. The lab's loop used to wait for the removal. And a
/// DELETE's `gracePeriodSeconds` is honoured.
#[test]
fn a_terminating_pod_holds_up_nothing() {
    let yaml = format!(
        "{}apiVersion: v1\nkind: Pod\nmetadata:\n  name: stubborn\n  labels: {{app: stubborn}}\nspec:\n  terminationGracePeriodSeconds: 8\n  containers:\n  - name: web\n    image: radial/busyboxplus:curl\n    command: [\"sh\", \"-c\", \"mkdir -p /www && exec httpd -f -p 80 -h /www\"]\n    ports:\n    - containerPort: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: stubborn\nspec:\n  selector: {{app: stubborn}}\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: slowpoke\nspec:\n  containers:\n  - name: web\n    image: radial/busyboxplus:curl\n    command: [\"sh\", \"-c\", \"mkdir -p /www && exec httpd -f -p 80 -h /www\"]\n",
        lab_doc(1)
    );
    let lab = Lab::up("terminating", &yaml);
    let k = KUBECTLS[0];
    let addresses = |lab: &Lab| {
        lab.kubectl_ok(
            k,
            &[
                "get",
                "endpoints",
                "stubborn",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ],
        )
        .trim()
        .to_string()
    };
    assert!(!addresses(&lab).is_empty());
    let out = lab.kubectl_ok(k, &["delete", "pod", "stubborn", "--wait=false"]);
    assert_eq!(out.trim(), "pod \"stubborn\" deleted");
    let got = lab.kubectl_ok(k, &["get", "pod", "stubborn", "--no-headers"]);
    assert!(got.contains("Terminating"), "{got}");
    wait_for("the endpoint to go", Duration::from_secs(4), || {
        addresses(&lab).is_empty()
    });
    lab.kubectl_apply(
        k,
        "fresh.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: fresh\nspec:\n  containers:\n  - name: c\n    image: radial/busyboxplus:curl\n    command: [sleep, \"3600\"]\n",
    );
    let out = lab.kubectl_ok(
        k,
        &["wait", "--for=condition=Ready", "pod/fresh", "--timeout=5s"],
    );
    assert!(out.contains("condition met"), "{out}");
    assert!(
        lab.kubectl(k, &["get", "pod", "stubborn"]).status.success(),
        "the new pod waited for the old one's grace period"
    );
    wait_for("the pod to be gone", Duration::from_secs(15), || {
        !lab.kubectl(k, &["get", "pod", "stubborn"]).status.success()
    });
    // A DELETE's grace period wins over the pod's own (30 s by default
    // here); the answer is the pod going away, as kube-apiserver's is.
    let out = lab.kubectl(
        k,
        &[
            "delete",
            "pod",
            "slowpoke",
            "--grace-period=1",
            "--wait=false",
            "-v=9",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // (kubectl's log quotes the body's quotes.)
    let log = stderr(&out).replace("\\\"", "\"");
    assert!(log.contains("\"deletionGracePeriodSeconds\":1"), "{log}");
    wait_for(
        "the pod to be gone within its 1 s",
        Duration::from_secs(8),
        || !lab.kubectl(k, &["get", "pod", "slowpoke"]).status.success(),
    );
    lab.down_clean();
}
