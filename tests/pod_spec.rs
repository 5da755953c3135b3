//! End to end, as root: pods obey their spec (issue 15). Liveness and
//! startup probes kill and restart a container as the kubelet does (with
//! its events in `describe`); fields netlab cannot honour (`hostPID`,
//! `hostIPC`, a hostNetwork pod's hostPort other than its containerPort)
//! and Services with special `externalIPs` are refused at `up` with the
//! file, line and object, and nothing is created. `hostPort`s answer on their node's addresses, and
//! the scheduler keeps two pods wanting one hostPort on different nodes.

mod common;

use common::*;
use std::time::Duration;

fn pod_json(lab: &Lab, name: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

fn restarts(lab: &Lab, name: &str) -> i64 {
    pod_json(lab, name)["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

/// An nginx pod with extra container lines (probes) and pod spec lines.
fn nginx_pod(name: &str, container_extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: nginx
    ports:
    - {{containerPort: 80, name: http}}
{container_extra}"#
    )
}

#[test]
fn failing_liveness_probe_restarts_the_container_with_events() {
    // nginx answers 404 for /healthz: the probe fails from the start.
    let yaml = nginx_pod(
        "live",
        "    livenessProbe:\n      httpGet: {path: /healthz, port: http}\n      periodSeconds: 1\n      failureThreshold: 2\n",
    );
    // A container that ignores its stop signal (sleep as PID 1 has no
    // handler for SIGTERM): killed by SIGKILL after the grace period, so
    // its exit code is 137, as the runtime reports it.
    let stubborn = r#"---
apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleeper
    image: radial/busyboxplus:curl
    command: [sleep, "3600"]
    livenessProbe:
      exec: {command: [cat, /healthy]}
      periodSeconds: 1
      failureThreshold: 1
"#;
    let lab = Lab::up("spec-liveness", &format!("{yaml}{stubborn}"));
    // The first restart is at once, the second after the 10 s back-off.
    wait_for("two restarts", Duration::from_secs(60), || {
        restarts(&lab, "live") >= 2
    });
    let pod = pod_json(&lab, "live");
    let cs = &pod["status"]["containerStatuses"][0];
    let terminated = &cs["lastState"]["terminated"];
    assert!(terminated.is_object(), "lastState.terminated: {cs}");
    // nginx ends on its stop signal (SIGQUIT): its own code where the kernel
    // tells it, else 131; never "unknown" (-1).
    let code = terminated["exitCode"].as_i64().unwrap();
    assert!(code == 0 || code == 131, "nginx's exit code: {cs}");
    let reason = if code == 0 { "Completed" } else { "Error" };
    assert_eq!(terminated["reason"], reason, "{cs}");
    wait_for(
        "a restart of the stubborn pod",
        Duration::from_secs(30),
        || restarts(&lab, "stubborn") >= 1,
    );
    let pod = pod_json(&lab, "stubborn");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs}");
    let describe = lab.ok(&["describe", "pod", "live"]);
    assert!(describe.contains("Unhealthy"), "{describe}");
    assert!(
        describe.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{describe}"
    );
    assert!(describe.contains("Killing"), "{describe}");
    assert!(
        describe.contains("Container web failed liveness probe, will be restarted"),
        "{describe}"
    );
    lab.down_clean();
}

#[test]
fn liveness_probe_that_passes_leaves_the_container_alone() {
    let yaml = nginx_pod(
        "fine",
        "    livenessProbe:\n      tcpSocket: {port: 80}\n      periodSeconds: 1\n      failureThreshold: 1\n",
    );
    let lab = Lab::up("spec-liveness-ok", &yaml);
    // Long enough for several probes with a threshold of one failure.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(restarts(&lab, "fine"), 0);
    let describe = lab.ok(&["describe", "pod", "fine"]);
    assert!(!describe.contains("Unhealthy"), "{describe}");
    lab.down_clean();
}

#[test]
fn startup_probe_that_never_succeeds_restarts_and_gates_readiness() {
    // Nothing listens on 8080: startup never passes; the readiness probe
    // (which would pass) must not make the pod ready meanwhile.
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: boot\nspec:\n  selector: {{app: boot}}\n  ports:\n  - port: 80\n",
        nginx_pod(
            "boot",
            "    startupProbe:\n      tcpSocket: {port: 8080}\n      periodSeconds: 1\n      failureThreshold: 3\n    readinessProbe:\n      httpGet: {path: /, port: http}\n      periodSeconds: 1\n",
        )
    );
    let lab = Lab::up("spec-startup", &yaml);
    wait_for("a restart", Duration::from_secs(40), || {
        restarts(&lab, "boot") >= 1
    });
    let pod = pod_json(&lab, "boot");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], false, "{cs}");
    assert_eq!(cs["started"], false, "{cs}");
    let pods = lab.ok(&["get", "pods", "boot"]);
    assert!(pods.contains("0/1"), "{pods}");
    let ep = lab.ok(&["get", "ep", "boot"]);
    assert!(!ep.contains(":80"), "not ready, not an endpoint: {ep}");
    let describe = lab.ok(&["describe", "pod", "boot"]);
    assert!(
        describe.contains("Startup probe failed: dial tcp"),
        "{describe}"
    );
    assert!(
        describe.contains("Container web failed startup probe, will be restarted"),
        "{describe}"
    );
    assert!(!describe.contains("Readiness probe failed"), "{describe}");
    lab.down_clean();
}

#[test]
fn startup_probe_that_passes_lets_readiness_decide() {
    let yaml = nginx_pod(
        "booted",
        "    startupProbe:\n      httpGet: {path: /, port: http}\n      periodSeconds: 1\n    readinessProbe:\n      httpGet: {path: /missing, port: http}\n      periodSeconds: 1\n      failureThreshold: 1\n",
    );
    let lab = Lab::up("spec-startup-ok", &yaml);
    wait_for("started", Duration::from_secs(20), || {
        pod_json(&lab, "booted")["status"]["containerStatuses"][0]["started"] == true
    });
    wait_for("the readiness event", Duration::from_secs(20), || {
        lab.ok(&["describe", "pod", "booted"])
            .contains("Readiness probe failed: HTTP probe failed with statuscode: 404")
    });
    assert_eq!(restarts(&lab, "booted"), 0, "readiness never restarts");
    let pods = lab.ok(&["get", "pods", "booted"]);
    assert!(pods.contains("0/1"), "{pods}");
    lab.down_clean();
}

/// `netlab up` of `yaml` must fail, name the file and line and the object,
/// say `want`, and leave nothing behind.
fn refused(name: &str, yaml: &str, object: &str, want: &[&str]) {
    let lab = Lab::prepare(name, yaml);
    let file = lab.file();
    let out = netlab(&["up", "--name", &lab.name, file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "up must fail: {}", stdout(&out));
    assert!(
        err.contains(&format!("{}:", file.display())),
        "names the file: {err}"
    );
    assert!(err.contains(object), "names {object}: {err}");
    for w in want {
        assert!(err.contains(w), "says {w:?}: {err}");
    }
    let traces = Traces::of(&lab.name, &[]);
    assert!(traces.is_clean(), "a refused lab created {traces:#?}");
}

#[test]
fn host_pid_and_host_ipc_are_refused() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: peek\nspec:\n  hostPID: true\n  hostIPC: true\n  containers:\n  - name: c\n    image: nginx\n";
    refused(
        "spec-hostpid",
        yaml,
        "Pod/peek",
        &[
            "spec.hostPID: true is not supported",
            "spec.hostIPC: true is not supported",
            "host machine",
        ],
    );
    let dep = nginx_deployment("dep", 1).replace("    spec:\n", "    spec:\n      hostPID: true\n");
    assert!(dep.contains("hostPID"));
    refused(
        "spec-hostpid-dep",
        &dep,
        "Deployment/dep",
        &["spec.template.spec.hostPID: true is not supported"],
    );
}

#[test]
fn host_network_with_another_host_port_is_refused() {
    // hostNetwork itself is built (tests/host_network.rs); a hostPort that
    // is not its containerPort cannot be, as the API server says.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hn\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: nginx\n    ports: [{containerPort: 80, hostPort: 8080}]\n";
    refused(
        "spec-hostnet",
        yaml,
        "Pod/hn",
        &["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` (80) when `hostNetwork` is true"],
    );
}

/// `n` nginx replicas publishing container port 80 on hostPort 8080.
fn host_port_deployment(replicas: i32) -> String {
    format!(
        "{}{}",
        lab_doc(2),
        nginx_deployment("hp", replicas).replace(
            "        - containerPort: 80\n",
            "        - containerPort: 80\n          hostPort: 8080\n"
        )
    )
}

/// The node and pod IP of each pod, by the node's column in `-o wide`.
fn node_addrs(lab: &Lab, node: &str) -> (String, String) {
    let nodes: serde_json::Value =
        serde_json::from_str(&lab.ok(&["get", "node", node, "-o", "json"])).unwrap();
    let addr = |t: &str| {
        nodes["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == t)
            .unwrap_or_else(|| panic!("{node} has an {t}: {nodes}"))["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (addr("InternalIP"), addr("ExternalIP"))
}

#[test]
fn host_port_answers_on_the_node_addresses() {
    let yaml = host_port_deployment(1);
    assert!(yaml.contains("hostPort: 8080"));
    let lab = Lab::up("spec-hostport", &yaml);
    let pods = pods_json_items(&lab);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let node = pods[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    let other = if node == "node-1" { "node-2" } else { "node-1" };
    let (internal, external) = node_addrs(&lab, &node);
    let url = format!("http://{internal}:8080/");
    // From the other node over the dc LAN, from the node itself (output).
    assert!(must_curl(&lab, &format!("node/{other}"), &url).contains("Welcome to nginx"));
    assert!(must_curl(&lab, &format!("node/{node}"), &url).contains("Welcome to nginx"));
    // From the lab's external host, on the node's ExternalIP.
    let ext = format!("http://{external}:8080/");
    assert!(must_curl(&lab, "host/external", &ext).contains("Welcome to nginx"));
    // Not on the other node, nor on another port.
    let (o_internal, _) = node_addrs(&lab, other);
    let (code, _) = curl(
        &lab,
        &format!("node/{node}"),
        &format!("http://{o_internal}:8080/"),
    );
    assert_ne!(code, 0, "the other node does not publish 8080");
    let (code, _) = curl(
        &lab,
        &format!("node/{other}"),
        &format!("http://{internal}:8081/"),
    );
    assert_ne!(code, 0, "only the hostPort is published");
    lab.down_clean();
}

fn pods_json_items(lab: &Lab) -> Vec<serde_json::Value> {
    lab.pods_json()["items"]
        .as_array()
        .unwrap()
        .clone()
        .into_iter()
        .filter(|p| p["metadata"]["namespace"] == "default")
        .collect()
}

#[test]
fn host_port_conflict_leaves_the_third_pod_pending() {
    let lab = Lab::up("spec-hostport-3", &host_port_deployment(3));
    let pods = pods_json_items(&lab);
    assert_eq!(pods.len(), 3, "{pods:?}");
    let mut nodes: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node-1", "node-2"],
        "two placed, on different nodes"
    );
    let pending: Vec<&serde_json::Value> = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].is_null())
        .collect();
    assert_eq!(pending.len(), 1);
    let p = pending[0];
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    assert!(p["status"]["podIP"].is_null(), "{p}");
    let name = p["metadata"]["name"].as_str().unwrap();
    let desc = lab.ok(&["describe", "pod", name]);
    assert!(desc.contains("FailedScheduling"), "{desc}");
    assert!(
        desc.contains("didn't have free ports for the requested pod ports"),
        "{desc}"
    );
    // Both placed replicas answer on their own node.
    for n in ["node-1", "node-2"] {
        let (internal, _) = node_addrs(&lab, n);
        let other = if n == "node-1" { "node-2" } else { "node-1" };
        let body = must_curl(
            &lab,
            &format!("node/{other}"),
            &format!("http://{internal}:8080/"),
        );
        assert!(body.contains("Welcome to nginx"), "{body}");
    }
    lab.down_clean();
}

#[test]
fn special_external_ips_are_refused() {
    let svc = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  selector: {{app: x}}\n  externalIPs: [\"{ip}\"]\n  ports:\n  - port: 80\n"
        )
    };
    let table = [
        ("127.0.0.1", "may not be in the loopback range"),
        ("169.254.1.1", "may not be in the link-local range"),
        ("10.244.1.9", "may not be in the lab's pod range"),
        ("10.0.5.5", "may not be in the lab's service range"),
    ];
    for (ip, want) in table {
        refused(
            "spec-extip",
            &svc(ip),
            "Service \"ext\" is invalid",
            &[
                &format!("spec.externalIPs[0]: Invalid value: \"{ip}\""),
                want,
            ],
        );
    }
}

/// A pod no node could take is placed once its hostPort frees, with no verb
/// typed: the controller retries unschedulable pods at every resync, as
/// kube-scheduler does.
#[test]
fn unschedulable_pod_is_placed_when_its_port_frees() {
    let pods = r#"apiVersion: v1
kind: Pod
metadata:
  name: first
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "httpd -p 80 -h /; sleep 4"]
    ports:
    - {containerPort: 80, hostPort: 8080}
---
apiVersion: v1
kind: Pod
metadata:
  name: second
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - {containerPort: 80, hostPort: 8080}
"#;
    let lab = Lab::up("spec-hostport-retry", &format!("{}{pods}", lab_doc(1)));
    let node_of = |name: &str| -> serde_json::Value {
        let p: serde_json::Value =
            serde_json::from_str(&lab.ok(&["get", "pod", name, "-o", "json"])).unwrap();
        p["spec"]["nodeName"].clone()
    };
    assert_eq!(node_of("first"), "node-1");
    assert!(node_of("second").is_null(), "second waits for the port");
    // first ends after 4 s; nobody types anything.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let out = lab.ok(&["get", "pod", "second"]);
        if out.contains("Running") && out.contains("1/1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        node_of("second"),
        "node-1",
        "{}",
        lab.ok(&["describe", "pod", "second"])
    );
    let (internal, _) = node_addrs(&lab, "node-1");
    let body = must_curl(&lab, "node/node-1", &format!("http://{internal}:8080/"));
    assert!(body.contains("Welcome to nginx"), "{body}");
    lab.down_clean();
}
