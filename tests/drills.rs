//! Failure drills with Kubernetes' own semantics, through the real kubectl
//! (the newest here and 1.27): cordon and uncordon, taints (NoSchedule,
//! NoExecute with and without `tolerationSeconds`), `nodeSelector`, and
//! `kubectl drain` (the Eviction subresource) while a client keeps asking
//! a Service: not one request may fail.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn json(lab: &Lab, k: &str, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(k, &full)).expect("kubectl -o json")
}

/// (name, node) of the live (not terminating) pods with label `sel`.
fn live(lab: &Lab, k: &str, sel: &str) -> Vec<(String, String)> {
    json(lab, k, &["get", "pods", "-l", sel])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn on_node(pods: &[(String, String)], node: &str) -> usize {
    pods.iter().filter(|(_, n)| n == node).count()
}

fn node_status(lab: &Lab, k: &str, node: &str) -> String {
    let out = lab.kubectl_ok(k, &["get", "node", node, "--no-headers"]);
    out.split_whitespace().nth(1).unwrap_or("").to_string()
}

#[test]
fn cordons_taints_and_selectors_steer_the_scheduler() {
    let lab = Lab::up(
        "drill-sched",
        &format!("{}{}", lab_doc(2), nginx_deployment("web", 2)),
    );
    for k in KUBECTLS {
        // Cordon: the node says so, and new pods go elsewhere.
        let out = lab.kubectl_ok(k, &["cordon", "node-1"]);
        assert!(out.contains("node/node-1 cordoned"), "{k}: {out}");
        assert_eq!(node_status(&lab, k, "node-1"), "Ready,SchedulingDisabled");
        let node = json(&lab, k, &["get", "node", "node-1"]);
        assert_eq!(
            node["spec"]["taints"][0]["key"], "node.kubernetes.io/unschedulable",
            "{k}: a cordon's taint"
        );
        let before = on_node(&live(&lab, k, "run=web"), "node-1");
        lab.kubectl_ok(k, &["scale", "deployment/web", "--replicas=5"]);
        wait_for("5 pods", Duration::from_secs(20), || {
            live(&lab, k, "run=web").len() == 5
        });
        assert_eq!(
            on_node(&live(&lab, k, "run=web"), "node-1"),
            before,
            "{k}: no new pod on a cordoned node"
        );
        let out = lab.kubectl_ok(k, &["uncordon", "node-1"]);
        assert!(out.contains("node/node-1 uncordoned"), "{k}: {out}");
        assert_eq!(node_status(&lab, k, "node-1"), "Ready");
        lab.kubectl_ok(k, &["scale", "deployment/web", "--replicas=2"]);
        wait_for("2 pods", Duration::from_secs(20), || {
            live(&lab, k, "run=web").len() == 2
        });
    }
    let k = KUBECTLS[0];
    // A NoSchedule taint and a nodeSelector: nowhere to go, in the
    // scheduler's words, until the taint is taken away.
    let out = lab.kubectl_ok(k, &["taint", "nodes", "node-2", "dedicated=gpu:NoSchedule"]);
    assert!(out.contains("node/node-2 tainted"), "{out}");
    let describe = lab.kubectl_ok(k, &["describe", "node", "node-2"]);
    assert!(describe.contains("dedicated=gpu:NoSchedule"), "{describe}");
    lab.kubectl_apply(
        k,
        "pinned.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: node-2\n  containers:\n  - name: c\n    image: nginx\n",
    );
    wait_for("FailedScheduling", Duration::from_secs(10), || {
        lab.kubectl_ok(
            k,
            &[
                "get",
                "events",
                "--field-selector",
                "reason=FailedScheduling",
            ],
        )
        .contains("pinned")
    });
    let events = lab.kubectl_ok(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling",
        ],
    );
    assert!(
        events.contains("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."),
        "{events}"
    );
    let pending = json(&lab, k, &["get", "pod", "pinned"]);
    assert_eq!(pending["status"]["phase"], "Pending");
    assert!(pending["spec"]["nodeName"].is_null());
    let out = lab.kubectl_ok(k, &["taint", "nodes", "node-2", "dedicated-"]);
    assert!(out.contains("node/node-2 untainted"), "{out}");
    wait_for("pinned on node-2", Duration::from_secs(20), || {
        live(&lab, k, "!run").contains(&("pinned".to_string(), "node-2".to_string()))
    });
    lab.kubectl_ok(k, &["delete", "pod", "pinned", "--grace-period=0"]);

    // NoExecute: the pods that do not tolerate it are evicted at once and
    // replaced elsewhere; one that tolerates it for 3 s goes after 3 s.
    lab.kubectl_apply(
        k,
        "patient.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: patient\n  labels: {drill: patient}\nspec:\n  nodeName: node-1\n  tolerations:\n  - {key: drill, operator: Exists, effect: NoExecute, tolerationSeconds: 3}\n  containers:\n  - name: c\n    image: nginx\n",
    );
    wait_for("patient running", Duration::from_secs(20), || {
        json(&lab, k, &["get", "pod", "patient"])["status"]["phase"] == "Running"
    });
    let out = lab.kubectl_ok(k, &["taint", "node", "node-1", "drill=now:NoExecute"]);
    assert!(out.contains("node/node-1 tainted"), "{out}");
    let tainted_at = std::time::Instant::now();
    wait_for("web off node-1", Duration::from_secs(20), || {
        let pods = live(&lab, k, "run=web");
        pods.len() == 2 && on_node(&pods, "node-1") == 0
    });
    assert_eq!(
        live(&lab, k, "drill=patient").len(),
        1,
        "the tolerating pod stays while its toleration lasts"
    );
    wait_for("patient evicted", Duration::from_secs(20), || {
        live(&lab, k, "drill=patient").is_empty()
    });
    let waited = tainted_at.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "evicted after {waited:?}, before its 3 s toleration ran out"
    );
    let events = lab.kubectl_ok(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=TaintManagerEviction",
        ],
    );
    assert!(
        events.contains("Marking for deletion Pod default/patient"),
        "{events}"
    );
    lab.kubectl_ok(k, &["taint", "node", "node-1", "drill-"]);
    // Nodes are the lab's: not created or deleted through the API.
    let out = lab.kubectl(k, &["delete", "node", "node-2"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Lab document"), "{}", stderr(&out));
    lab.down_clean();
}

/// A client asking the Service `count` times from `node`, each request
/// with a 2 s limit; for each, a line "N CODE SECONDS TIME" (code 000: no
/// answer).
fn steady_client(lab_name: String, node: &str, ip: String, count: usize) -> Vec<String> {
    let script = format!(
        "for i in $(seq {count}); do curl -sS -o /dev/null -m 2 -w \"$i %{{http_code}} %{{time_total}} $(date +%T.%N)\\n\" http://{ip}/ 2>&1 | tr -s \"\\n\" \" \"; echo; sleep 0.01; done"
    );
    let out = netlab(&[
        "--lab",
        &lab_name,
        "exec",
        &format!("node/{node}"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    stdout(&out).lines().map(String::from).collect()
}

#[test]
fn drain_moves_pods_while_a_client_sees_no_failure() {
    let lab = Lab::up(
        "drill-drain",
        &format!(
            "{}{}{}",
            lab_doc(2),
            nginx_deployment("my-nginx", 2),
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    run: my-nginx\n  ports:\n  - port: 80\n"
        ),
    );
    let ip = cluster_ip(&lab, "my-nginx");
    must_curl(&lab, "node/node-2", &format!("http://{ip}/"));
    // The newest kubectl drains node-1, then 1.27 drains node-2, each
    // under a steady client.
    for (k, node, other) in [
        (KUBECTLS[0], "node-1", "node-2"),
        (KUBECTLS[1], "node-2", "node-1"),
    ] {
        // One replica on each node (the scheduler sends a replacement to
        // the node with fewer pods): the other keeps serving.
        let pods = live(&lab, k, "run=my-nginx");
        if on_node(&pods, other) == 0 {
            lab.kubectl_ok(k, &["delete", "pod", &pods[0].0]);
            wait_for("a pod on each node", Duration::from_secs(30), || {
                let pods = live(&lab, k, "run=my-nginx");
                pods.len() == 2 && on_node(&pods, other) == 1
            });
            lab.kubectl_ok(
                k,
                &["rollout", "status", "deployment/my-nginx", "--timeout=30s"],
            );
        }
        let (name, addr) = (lab.name.clone(), ip.clone());
        let client = std::thread::spawn(move || steady_client(name, "node-2", addr, 300));
        std::thread::sleep(Duration::from_millis(500));
        let out = lab.kubectl(
            k,
            &[
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=60s",
            ],
        );
        assert!(
            out.status.success(),
            "{k} drain: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out) + &stderr(&out);
        assert!(text.contains("evicted"), "{k}: {text}");
        assert!(
            text.contains(&format!("node/{node} drained")),
            "{k}: {text}"
        );
        let codes = client.join().unwrap();
        assert_eq!(codes.len(), 300, "{k}: the client ran to the end");
        let failed: Vec<&String> = codes.iter().filter(|c| !c.contains(" 200 ")).collect();
        assert!(
            failed.is_empty(),
            "{k}: {} of 300 requests failed: {failed:?}",
            failed.len()
        );
        let pods = live(&lab, k, "run=my-nginx");
        assert_eq!(pods.len(), 2, "{k}: {pods:?}");
        assert_eq!(on_node(&pods, other), 2, "{k}: all on {other}: {pods:?}");
        assert_eq!(
            node_status(&lab, k, node),
            "Ready,SchedulingDisabled",
            "{k}: a drained node stays cordoned"
        );
        lab.kubectl_ok(k, &["uncordon", node]);
    }
    lab.down_clean();
}

/// The EndpointSlice conditions (ready, serving, terminating) of the pod
/// named `pod` in Service `svc`'s slices, if it is there.
fn slice_conditions(lab: &Lab, k: &str, svc: &str, pod: &str) -> Option<(bool, bool, bool)> {
    let sel = format!("kubernetes.io/service-name={svc}");
    let slices = json(lab, k, &["get", "endpointslices", "-l", &sel]);
    slices["items"]
        .as_array()?
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["targetRef"]["name"] == pod)
        .map(|e| {
            let c = &e["conditions"];
            (
                c["ready"].as_bool().unwrap_or(false),
                c["serving"].as_bool().unwrap_or(false),
                c["terminating"].as_bool().unwrap_or(false),
            )
        })
}

#[test]
fn pre_stop_hooks_run_before_the_stop_signal_within_the_grace_period() {
    let lab = Lab::up(
        "drill-prestop",
        &format!(
            "{}{}",
            lab_doc(2),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: witness\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
        ),
    );
    let k = KUBECTLS[0];
    wait_for("witness running", Duration::from_secs(20), || {
        json(&lab, k, &["get", "pod", "witness"])["status"]["phase"] == "Running"
    });
    let witness = json(&lab, k, &["get", "pod", "witness"])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    // An httpGet hook calls the witness (the kubelet dials `host`); a
    // sleep hook holds its pod in Terminating, still serving, for 3 s.
    lab.kubectl_apply(
        k,
        "leavers.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: caller
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: nginx
    lifecycle:
      preStop:
        httpGet: {{host: "{witness}", port: 80, path: /goodbye-from-caller}}
---
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  labels: {{app: sleeper}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: nginx
    ports:
    - containerPort: 80
    lifecycle:
      preStop:
        sleep: {{seconds: 3}}
---
apiVersion: v1
kind: Pod
metadata:
  name: short
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: nginx
    lifecycle:
      preStop:
        exec: {{command: ["sleep", "30"]}}
---
apiVersion: v1
kind: Service
metadata:
  name: sleeper
spec:
  selector: {{app: sleeper}}
  ports:
  - port: 80
"#
        ),
    );
    for p in ["caller", "sleeper", "short"] {
        wait_for(p, Duration::from_secs(20), || {
            json(&lab, k, &["get", "pod", p])["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
    }
    wait_for(
        "sleeper ready in its slice",
        Duration::from_secs(10),
        || slice_conditions(&lab, k, "sleeper", "sleeper") == Some((true, true, false)),
    );
    let sleeper_ip = cluster_ip(&lab, "sleeper");
    let t0 = std::time::Instant::now();
    lab.kubectl_ok(
        k,
        &[
            "delete",
            "pod",
            "caller",
            "sleeper",
            "short",
            "--wait=false",
        ],
    );
    // While its hook sleeps, the pod is terminating: serving, not ready.
    wait_for(
        "sleeper terminating in its slice",
        Duration::from_secs(3),
        || slice_conditions(&lab, k, "sleeper", "sleeper") == Some((false, true, true)),
    );
    // No endpoint of the Service is ready: kube-proxy falls back to the
    // serving terminating one, so the Service still answers.
    let body = must_curl(&lab, "node/node-1", &format!("http://{sleeper_ip}/"));
    assert!(body.contains("nginx"), "{body}");
    std::thread::sleep(Duration::from_millis(1000));
    let pods = lab.kubectl_ok(k, &["get", "pods", "--no-headers"]);
    assert!(
        pods.contains("sleeper"),
        "the sleep hook holds the pod: {pods}"
    );
    wait_for("sleeper gone", Duration::from_secs(15), || {
        !lab.kubectl_ok(k, &["get", "pods", "--no-headers"])
            .contains("sleeper")
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(2900),
        "sleeper went after {:?}, before its 3 s hook ended",
        t0.elapsed()
    );
    // Gone: no endpoint at all, so the Service refuses.
    let (code, _) = curl(&lab, "node/node-1", &format!("http://{sleeper_ip}/"));
    assert_eq!(
        code, 7,
        "curl of a Service without endpoints: connection refused"
    );
    // A hook longer than the grace period is cut short by it.
    wait_for("short gone", Duration::from_secs(10), || {
        !lab.kubectl_ok(k, &["get", "pods", "--no-headers"])
            .contains("short")
    });
    let logs = lab.kubectl_ok(k, &["logs", "witness"]);
    assert!(
        logs.contains("GET /goodbye-from-caller"),
        "the caller's preStop hook reached the witness: {logs}"
    );
    lab.down_clean();
}

/// Seconds since the epoch, as `date +%s.%N` prints them.
fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_stopped_node_goes_not_ready_its_pods_move_and_it_comes_back() {
    // Kubernetes' clock compressed: NotReady after 2 s, eviction 3 s later.
    let lab = Lab::up(
        "drill-power",
        &format!(
            "{}{}{}",
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  timing:\n    nodeMonitorGracePeriod: 2s\n    defaultTolerationSeconds: 3\n---\n",
            nginx_deployment("my-nginx", 2),
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    run: my-nginx\n  ports:\n  - port: 80\n"
        ),
    );
    let k = KUBECTLS[0];
    let pods = live(&lab, k, "run=my-nginx");
    assert_eq!(on_node(&pods, "node-1"), 1, "{pods:?}");
    // Every pod tolerates a silent node for the lab's 3 s (the
    // DefaultTolerationSeconds admission).
    let pod = json(&lab, k, &["get", "pod", &pods[0].0]);
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable")
            && tolerations.contains("\"tolerationSeconds\":3"),
        "{tolerations}"
    );
    let ip = cluster_ip(&lab, "my-nginx");
    // A client on node-2, one request every ~10 ms, each allowed 1 s.
    let script = format!(
        "for i in $(seq 400); do echo \"$(date +%s.%N) $(curl -s -o /dev/null -m 1 -w '%{{http_code}}' http://{ip}/)\"; sleep 0.01; done"
    );
    let name = lab.name.clone();
    let client = std::thread::spawn(move || {
        let out = netlab(&[
            "--lab",
            &name,
            "exec",
            "node/node-2",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        stdout(&out)
    });
    std::thread::sleep(Duration::from_millis(700));
    let stopped_at = epoch();
    let out = lab.ok(&["node", "stop", "node-1"]);
    assert!(out.contains("node/node-1 stopped"), "{out}");
    // Ready until the grace period is over, then NotReady, tainted.
    assert_eq!(node_status(&lab, k, "node-1"), "Ready");
    wait_for("node-1 NotReady", Duration::from_secs(5), || {
        node_status(&lab, k, "node-1") == "NotReady"
    });
    let noticed = epoch() - stopped_at;
    assert!(
        noticed >= 1.9,
        "NotReady after {noticed:.1} s, before the 2 s grace period"
    );
    let node = json(&lab, k, &["get", "node", "node-1"]);
    let taints = node["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "Unknown", "{ready}");
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{ready}");
    // After the toleration: evicted (Terminating while the node is
    // silent, as Kubernetes shows them) and replaced on node-2.
    wait_for("replaced on node-2", Duration::from_secs(10), || {
        let pods = live(&lab, k, "run=my-nginx");
        pods.len() == 2 && on_node(&pods, "node-2") == 2
    });
    let evicted = epoch() - stopped_at;
    assert!(
        evicted >= 4.5,
        "evicted after {evicted:.1} s, before 2 s + 3 s"
    );
    let all = lab.kubectl_ok(k, &["get", "pods", "-o", "wide", "--no-headers"]);
    assert!(
        all.lines()
            .any(|l| l.contains("Terminating") && l.contains("node-1")),
        "{all}"
    );
    let text = client.join().unwrap();
    // Failures only while node-1's endpoint was still a ready one: from
    // the stop to the grace period's end (and the rules' sync after it).
    let rows: Vec<(f64, String)> = text
        .lines()
        .filter_map(|l| {
            let (t, code) = l.split_once(' ')?;
            Some((t.parse().ok()?, code.to_string()))
        })
        .collect();
    assert!(rows.len() > 100, "the client ran: {text}");
    let failed: Vec<&(f64, String)> = rows.iter().filter(|(_, c)| c != "200").collect();
    for (t, code) in &failed {
        let after = t - stopped_at;
        assert!(
            (-0.1..3.0).contains(&after),
            "a request {after:.2} s after the stop failed ({code}): only the 2 s before node-1's endpoint turns not ready may fail\n{text}"
        );
    }
    let after_window = rows.iter().filter(|(t, _)| *t > stopped_at + 3.0).count();
    assert!(
        after_window > 20,
        "the client ran on after the window: {text}"
    );
    // Start: Ready again, untainted, the evicted pods finish going.
    let out = lab.ok(&["node", "start", "node-1"]);
    assert!(out.contains("node/node-1 started"), "{out}");
    assert_eq!(node_status(&lab, k, "node-1"), "Ready");
    let node = json(&lab, k, &["get", "node", "node-1"]);
    assert!(node["spec"]["taints"].is_null(), "{}", node["spec"]);
    wait_for("the evicted pods gone", Duration::from_secs(10), || {
        !lab.kubectl_ok(k, &["get", "pods", "-A", "--no-headers"])
            .contains("Terminating")
    });
    // A restart: the node's pods come back in their place, restarted.
    lab.kubectl_ok(k, &["delete", "pod", &live(&lab, k, "run=my-nginx")[0].0]);
    wait_for("a pod on node-1", Duration::from_secs(20), || {
        on_node(&live(&lab, k, "run=my-nginx"), "node-1") == 1
    });
    lab.kubectl_ok(
        k,
        &["rollout", "status", "deployment/my-nginx", "--timeout=30s"],
    );
    let out = lab.ok(&["node", "restart", "node-1"]);
    assert!(out.contains("stopped") && out.contains("started"), "{out}");
    wait_for("restarted and serving", Duration::from_secs(20), || {
        let pod = json(
            &lab,
            k,
            &[
                "get",
                "pods",
                "-l",
                "run=my-nginx",
                "--field-selector",
                "spec.nodeName=node-1",
            ],
        );
        pod["items"][0]["status"]["containerStatuses"][0]["restartCount"] == 1
            && curl(&lab, "node/node-2", &format!("http://{ip}/")).0 == 0
    });
    assert_eq!(
        lab.ok(&["node", "start", "node-1"]).trim(),
        "node/node-1 runs already"
    );
    let out = lab.run(&["node", "stop", "node-9"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("node-9"), "{}", stderr(&out));
    // Down with a node stopped leaves nothing behind.
    lab.ok(&["node", "stop", "node-2"]);
    lab.down_clean();
}

/// (packets lost in %, min, avg, max round trip in ms) of `count` pings
/// from `from` to `to` at `interval` seconds.
fn ping(lab: &Lab, from: &str, to: &str, count: u32, interval: &str) -> (f64, f64, f64, f64) {
    let out = lab.run(&[
        "exec",
        from,
        "--",
        "ping",
        "-n",
        "-q",
        "-W",
        "1",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        to,
    ]);
    let text = stdout(&out);
    let lost = text
        .split(',')
        .find(|p| p.contains("packet loss"))
        .and_then(|p| p.trim().split('%').next()?.parse().ok())
        .unwrap_or_else(|| panic!("ping's summary: {text}{}", stderr(&out)));
    // rtt min/avg/max/mdev = 50.1/55.2/60.3/2.1 ms (absent when all were lost)
    let rtt: Vec<f64> = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let at = |i: usize| rtt.get(i).copied().unwrap_or(f64::NAN);
    (lost, at(0), at(1), at(2))
}

/// Whether this kernel has the netem qdisc (built in, or a module it can load).
fn kernel_has_netem() -> bool {
    let ns = common::unique("netem-probe");
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap()
    };
    run(&["netns", "add", &ns]);
    let ok = run(&[
        "netns", "exec", &ns, "tc", "qdisc", "replace", "dev", "lo", "root", "netem", "delay",
        "1ms",
    ])
    .status
    .success();
    run(&["netns", "del", &ns]);
    ok
}

#[test]
fn link_down_cuts_a_node_and_netem_refuses_clearly_where_the_kernel_lacks_it() {
    let lab = Lab::up("drill-link", &lab_doc(2));
    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let node2 = nodes["items"][1]["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ping(&lab, "node/node-1", &node2, 3, "0.05").0, 0.0);
    // A node's links down: nothing reaches it; up: back.
    let out = lab.ok(&["link", "down", "node/node-2"]);
    assert!(out.contains("node/node-2: links down"), "{out}");
    assert_eq!(ping(&lab, "node/node-1", &node2, 3, "0.2").0, 100.0);
    lab.ok(&["link", "up", "node/node-2"]);
    wait_for("node-2 reachable again", Duration::from_secs(5), || {
        ping(&lab, "node/node-1", &node2, 1, "0.2").0 == 0.0
    });
    // Bad input changes nothing, and says what is wrong.
    for (args, says) in [
        (&["netem", "node/node-1", "--loss", "150%"][..], "--loss"),
        (&["netem", "node/node-9", "--delay", "1ms"][..], "node-9"),
        (
            &["netem", "pod/nope", "--delay", "1ms"][..],
            "\"nope\" not found",
        ),
        (&["netem", "nope", "--delay", "1ms"][..], "node/NODE"),
        (&["link", "down", "node/node-9"][..], "node-9"),
        (&["netem", "node/node-1", "--jitter", "1ms"][..], "--delay"),
        (&["netem", "node/node-1"][..], "--clear"),
        (&["link", "sideways", "node/node-1"][..], "down|up"),
    ] {
        let out = lab.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // Where the kernel has no netem (as this project's CI machines), the
    // refusal names the kernel option and the module.
    if !kernel_has_netem() {
        let out = lab.run(&["netem", "node/node-1", "--delay", "50ms"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM"),
            "{}",
            stderr(&out)
        );
    }
    let out = lab.run(&["get", "netem"]);
    assert!(
        stderr(&out).contains("No netem in force"),
        "{}",
        stderr(&out)
    );
    lab.ok(&["link", "down", "node/node-1"]);
    lab.down_clean();
}

/// Needs the netem qdisc, which the kernel of this project's CI machines
/// lacks (CONFIG_NET_SCH_NETEM is not set); run it with `--ignored` on a
/// kernel that has it (any Debian or Ubuntu kernel).
#[test]
#[ignore = "needs the kernel's netem qdisc (sch_netem), which the CI machines' kernel lacks"]
fn netem_delays_and_drops_link_down_cuts_and_down_removes_them() {
    assert!(
        kernel_has_netem(),
        "this kernel has no netem qdisc (sch_netem)"
    );
    let lab = Lab::up(
        "drill-netem",
        &format!(
            "{}{}",
            lab_doc(2),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: node-2\n  containers:\n  - name: c\n    image: nginx\n"
        ),
    );
    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let lan = |name: &str| -> String {
        nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .and_then(|n| {
                n["status"]["addresses"]
                    .as_array()?
                    .iter()
                    .find(|a| a["type"] == "InternalIP")?["address"]
                    .as_str()
                    .map(String::from)
            })
            .unwrap()
    };
    let node2 = lan("node-2");
    let (lost, _, avg, _) = ping(&lab, "node/node-1", &node2, 10, "0.05");
    assert_eq!(lost, 0.0);
    assert!(avg < 5.0, "a plain LAN: {avg} ms");

    // Delay ± jitter on node-1's packets: visible in every round trip.
    let out = lab.ok(&[
        "netem",
        "node/node-1",
        "--delay",
        "50ms",
        "--jitter",
        "10ms",
    ]);
    assert!(out.contains("netem delay 50ms 10ms"), "{out}");
    let (lost, min, avg, max) = ping(&lab, "node/node-1", &node2, 30, "0.05");
    assert_eq!(lost, 0.0);
    assert!(
        min >= 39.0 && max <= 65.0,
        "50 ms ± 10 ms: min {min} max {max}"
    );
    assert!(
        (43.0..=58.0).contains(&avg),
        "50 ms ± 10 ms on average: {avg}"
    );
    let listed = lab.ok(&["get", "netem"]);
    assert!(
        listed.contains("node/node-1") && listed.contains("delay 50ms 10ms"),
        "{listed}"
    );
    // Loss within statistical bounds (300 packets at 30%: σ ≈ 2.6 %).
    lab.ok(&["netem", "node/node-1", "--loss", "30%"]);
    let (lost, _, avg, _) = ping(&lab, "node/node-1", &node2, 300, "0.005");
    assert!(
        (18.0..=42.0).contains(&lost),
        "30% loss asked, {lost}% lost"
    );
    assert!(
        avg < 5.0,
        "replacing the netem took the delay away: {avg} ms"
    );
    // A pod's own interface, and rate and corruption as tc writes them.
    lab.ok(&["netem", "pod/web", "--rate", "10mbit", "--corrupt", "1%"]);
    let listed = lab.ok(&["get", "netem"]);
    assert!(
        listed.contains("pod/default/web") && listed.contains("rate 10Mbit corrupt 1%"),
        "{listed}"
    );
    // Bad input changes nothing.
    let out = lab.run(&["netem", "node/node-1", "--loss", "150%"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--loss"), "{}", stderr(&out));
    let out = lab.run(&["netem", "node/node-9", "--delay", "1ms"]);
    assert!(stderr(&out).contains("node-9"), "{}", stderr(&out));
    assert!(lab.ok(&["get", "netem"]).contains("loss 30%"));
    lab.ok(&["netem", "node/node-1", "--clear"]);
    lab.ok(&["netem", "pod/web", "--clear"]);
    let out = lab.run(&["get", "netem"]);
    assert!(
        stderr(&out).contains("No netem in force"),
        "{}",
        stderr(&out)
    );

    // A node's links down: nothing reaches it; up: back.
    lab.ok(&["link", "down", "node/node-2"]);
    let (lost, ..) = ping(&lab, "node/node-1", &node2, 3, "0.2");
    assert_eq!(lost, 100.0);
    lab.ok(&["link", "up", "node/node-2"]);
    wait_for("node-2 reachable again", Duration::from_secs(5), || {
        ping(&lab, "node/node-1", &node2, 1, "0.2").0 == 0.0
    });
    // Faults in force at `down` go with the lab's namespaces.
    lab.ok(&["netem", "node/node-2", "--delay", "5ms"]);
    lab.ok(&["link", "down", "node/node-1"]);
    lab.down_clean();
}

#[test]
fn a_partition_cuts_two_nodes_apart_and_heals() {
    let pod = |name: &str, node: &str| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: nginx\n")
    };
    let lab = Lab::up(
        "drill-partition",
        &format!(
            "{}{}{}{}{}",
            lab_doc(3),
            pod("web1", "node-1"),
            pod("web2", "node-2"),
            pod("web3", "node-3"),
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web2\nspec:\n  selector: {app: web2}\n  ports:\n  - port: 80\n"
        ),
    );
    let ips: std::collections::HashMap<String, String> = lab
        .pods()
        .into_iter()
        .map(|(name, ip, _)| (name, ip))
        .collect();
    let svc = cluster_ip(&lab, "web2");
    let reach = |from: &str, ip: &str| curl(&lab, from, &format!("http://{ip}/")).0;
    for (from, to) in [
        ("node-1", "web2"),
        ("node-2", "web1"),
        ("node-1", "web3"),
        ("node-3", "web2"),
    ] {
        assert_eq!(reach(&format!("node/{from}"), &ips[to]), 0, "{from} → {to}");
    }
    let out = lab.ok(&["partition", "node/node-1", "node/node-2"]);
    assert!(
        out.contains("node/node-1 and node/node-2 partitioned"),
        "{out}"
    );
    // Between the two: timeouts (curl's 28), both ways, by pod IP and
    // through a Service; the third node reaches both.
    wait_for("the cut in force", Duration::from_secs(5), || {
        reach("node/node-1", &ips["web2"]) == 28
    });
    assert_eq!(reach("node/node-2", &ips["web1"]), 28, "node-2 → web1");
    assert_eq!(reach("node/node-1", &svc), 28, "node-1 → Service web2");
    assert_eq!(reach("node/node-1", &ips["web3"]), 0, "node-1 → web3");
    assert_eq!(reach("node/node-3", &ips["web2"]), 0, "node-3 → web2");
    assert_eq!(reach("node/node-3", &ips["web1"]), 0, "node-3 → web1");
    let table = lab.node_table("node-1");
    assert!(
        table.contains("chain partition-in") && table.contains("drop"),
        "{table}"
    );
    // The drill's mark is the lab's: a user's patch of annotations keeps it.
    let node = lab.ok(&["get", "node", "node-1", "-o", "json"]);
    assert!(node.contains("netlab.dev/partitioned-from"), "{node}");
    let out = lab.run(&["partition", "node/node-1", "node/node-9"]);
    assert!(stderr(&out).contains("node-9"), "{}", stderr(&out));
    let out = lab.run(&["partition", "node/node-1", "node/node-1"]);
    assert!(stderr(&out).contains("two nodes"), "{}", stderr(&out));
    let out = lab.ok(&["partition", "node/node-2", "node/node-1", "--heal"]);
    assert!(out.contains("healed"), "{out}");
    wait_for("healed", Duration::from_secs(5), || {
        reach("node/node-1", &ips["web2"]) == 0
    });
    assert_eq!(reach("node/node-2", &ips["web1"]), 0);
    assert_eq!(reach("node/node-1", &svc), 0);
    assert!(!lab.node_table("node-1").contains("partition"));
    lab.ok(&["partition", "node/node-1", "node/node-3"]);
    lab.down_clean();
}
