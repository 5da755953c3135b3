//! End to end, as root: `hostNetwork: true` pods (issue 15). Such a pod
//! has no network namespace of its own: its containers join its node's,
//! its pod IP is the node's InternalIP, a Service reaches it there, its
//! resolv.conf follows the kubelet's hostNetwork rules, two of them never
//! share a port on one node, and removing one leaves its node alone.

mod common;

use common::*;
use std::time::Duration;

fn pod_json(lab: &Lab, name: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

fn internal_ip(lab: &Lab, node: &str) -> String {
    let n: serde_json::Value =
        serde_json::from_str(&lab.ok(&["get", "node", node, "-o", "json"])).unwrap();
    n["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .unwrap_or_else(|| panic!("{node} has an InternalIP: {n}"))["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ready(lab: &Lab, name: &str) -> bool {
    pod_json(lab, name)["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn node_netns_exists(lab: &Lab, node: &str) -> bool {
    std::path::Path::new(&format!("/run/netns/netlab-{}.node.{node}", lab.name)).exists()
}

/// `netlab exec pod/<pod> -- <cmd>` that must succeed; its stdout.
fn exec(lab: &Lab, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    lab.ok(&args)
}

/// nginx on node-1's network (with a readiness probe, which must reach it
/// at the node's address), a normal nginx beside it, a client on node-2, a
/// hostNetwork shell on node-2 that asks for the cluster DNS, and a
/// Service in front of the hostNetwork nginx.
const LAB: &str = r#"apiVersion: netlab.dev/v1alpha1
kind: Lab
spec:
  nodes: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: hn
  labels: {app: hn}
spec:
  hostNetwork: true
  nodeName: node-1
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
    readinessProbe:
      httpGet: {path: /, port: 80}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: normal
spec:
  nodeName: node-1
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: node-2
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hn-dns
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  nodeName: node-2
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Service
metadata:
  name: hn
spec:
  selector: {app: hn}
  ports:
  - port: 80
"#;

#[test]
fn host_network_pod_is_its_node_on_the_network() {
    let lab = Lab::up("hostnet", LAB);
    let node_ip = internal_ip(&lab, "node-1");

    // The node's address is the pod's, in `get -o wide` and in its status.
    let wide = lab.ok(&["get", "pods", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("hn "))
        .unwrap_or_else(|| panic!("{wide}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[5..7], [node_ip.as_str(), "node-1"], "{wide}");
    let status = &pod_json(&lab, "hn")["status"];
    assert_eq!(status["podIP"], node_ip.as_str(), "{status}");
    assert_eq!(status["hostIP"], node_ip.as_str(), "{status}");
    assert_eq!(status["podIPs"][0]["ip"], node_ip.as_str(), "{status}");

    // nginx listens on the node itself: from a pod on the other node.
    let body = must_curl(&lab, "client", &format!("http://{node_ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");

    // Inside, the node's interfaces (its bridge, its public link), its
    // address and its name; no pod veth.
    let dev = exec(&lab, "hn", &["cat", "/proc/net/dev"]);
    for iface in ["cni0", "eth0", "eth1"] {
        assert!(dev.contains(&format!("{iface}:")), "{iface} in {dev}");
    }
    let addrs = exec(&lab, "hn", &["cat", "/proc/net/fib_trie"]);
    assert!(addrs.contains(&node_ip), "{addrs}");
    let hostname = exec(&lab, "hn", &["cat", "/proc/sys/kernel/hostname"]);
    assert_eq!(hostname.trim(), "node-1");
    // A normal pod beside it still has only its own eth0.
    let dev = exec(&lab, "normal", &["cat", "/proc/net/dev"]);
    assert!(!dev.contains("cni0:"), "{dev}");

    // The readiness probe reaches it; the Service's endpoint is the node.
    wait_for("hn to be ready", Duration::from_secs(20), || {
        ready(&lab, "hn")
    });
    let ep: serde_json::Value =
        serde_json::from_str(&lab.ok(&["get", "endpoints", "hn", "-o", "json"])).unwrap();
    let addr = &ep["subsets"][0]["addresses"][0];
    assert_eq!(addr["ip"], node_ip.as_str(), "{ep}");
    assert_eq!(addr["targetRef"]["name"], "hn", "{ep}");
    assert_eq!(addr["nodeName"], "node-1", "{ep}");
    let ip = cluster_ip(&lab, "hn");
    for from in ["client", "normal"] {
        let body = must_curl(&lab, from, &format!("http://{ip}/"));
        assert!(body.contains("Welcome to nginx"), "from {from}: {body}");
    }

    // resolv.conf: ClusterFirst on the host network is the node's file;
    // ClusterFirstWithHostNet is the cluster DNS, as for normal pods.
    let resolv = exec(&lab, "hn", &["cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("10.0.0.10"), "{resolv}");
    let resolv = exec(&lab, "hn-dns", &["cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.0.0.10"), "{resolv}");
    assert!(resolv.contains("ndots:5"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );

    // Killed, restarted by the controller, serving on the node again.
    let pid = std::process::Command::new("runc")
        .args([
            "--root",
            &format!("/run/netlab/{}/runc", lab.name),
            "state",
            "default_hn_web",
        ])
        .output()
        .unwrap();
    let pid = serde_json::from_slice::<serde_json::Value>(&pid.stdout).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the restart", Duration::from_secs(20), || {
        pod_json(&lab, "hn")["status"]["containerStatuses"][0]["restartCount"] == 1
            && ready(&lab, "hn")
    });
    let body = must_curl(&lab, "client", &format!("http://{node_ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");

    // Deleting it leaves the node's namespace and the node's other pods.
    let normal_ip = pod_json(&lab, "normal")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ok(&["delete", "pod", "hn"]);
    assert!(lab.run(&["get", "pod", "hn"]).status.code() != Some(0));
    assert!(node_netns_exists(&lab, "node-1"));
    let body = must_curl(&lab, "client", &format!("http://{normal_ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");
    let (code, _) = curl(&lab, "client", &format!("http://{node_ip}/"));
    assert_ne!(code, 0, "nothing listens on the node's port 80 any more");
    // The node itself still reaches its pod, and is reached over the LAN.
    let body = must_curl(&lab, "node/node-1", &format!("http://{normal_ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");
    let body = must_curl(&lab, "node/node-2", &format!("http://{normal_ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");
    let dev = exec(&lab, "hn-dns", &["cat", "/proc/net/dev"]);
    assert!(dev.contains("cni0:"), "{dev}");
    lab.down_clean();
}

/// `replicas` hostNetwork nginx pods, all listening on port 80.
fn host_network_deployment(replicas: i32) -> String {
    format!(
        "{}{}",
        lab_doc(2),
        nginx_deployment("hn", replicas).replace(
            "    spec:\n      containers:\n",
            "    spec:\n      hostNetwork: true\n      terminationGracePeriodSeconds: 1\n      containers:\n"
        )
    )
}

#[test]
fn host_network_pods_with_one_port_never_share_a_node() {
    let yaml = host_network_deployment(3);
    assert!(yaml.contains("hostNetwork: true"));
    let lab = Lab::up("hostnet-ports", &yaml);
    let deployment_pods = || -> Vec<serde_json::Value> {
        lab.pods_json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["namespace"] == "default")
            .cloned()
            .collect()
    };
    let pods = deployment_pods();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let mut placed: Vec<(String, String)> = pods
        .iter()
        .filter_map(|p| {
            Some((
                p["spec"]["nodeName"].as_str()?.to_string(),
                p["status"]["podIP"].as_str()?.to_string(),
            ))
        })
        .collect();
    placed.sort();
    let nodes: Vec<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["node-1", "node-2"], "two placed, one per node");
    for (node, ip) in &placed {
        assert_eq!(ip, &internal_ip(&lab, node));
        // The API server's default, which the scheduler read.
        let other = if node == "node-1" { "node-2" } else { "node-1" };
        let body = must_curl(&lab, &format!("node/{other}"), &format!("http://{ip}/"));
        assert!(body.contains("Welcome to nginx"), "{body}");
    }
    let pending: Vec<&serde_json::Value> = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].is_null())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0]["spec"]["containers"][0]["ports"][0]["hostPort"], 80,
        "hostPort defaulted to containerPort: {}",
        pending[0]
    );
    let desc = lab.ok(&[
        "describe",
        "pod",
        pending[0]["metadata"]["name"].as_str().unwrap(),
    ]);
    assert!(
        desc.contains("didn't have free ports for the requested pod ports"),
        "{desc}"
    );
    // Scaled down to one: the nodes and the remaining pod are untouched.
    lab.ok(&["scale", "deployment/hn", "--replicas=1"]);
    wait_for("one pod left", Duration::from_secs(30), || {
        deployment_pods().len() == 1
    });
    assert!(node_netns_exists(&lab, "node-1") && node_netns_exists(&lab, "node-2"));
    let left = &deployment_pods()[0];
    let ip = left["status"]["podIP"].as_str().unwrap();
    let node = left["spec"]["nodeName"].as_str().unwrap();
    let other = if node == "node-1" { "node-2" } else { "node-1" };
    let body = must_curl(&lab, &format!("node/{other}"), &format!("http://{ip}/"));
    assert!(body.contains("Welcome to nginx"), "{body}");
    lab.down_clean();
}
