//! EndpointSlices through the lab's API with the real kubectl (they follow
//! scale and readiness; `kubectl describe svc` 1.31+ reads its Endpoints
//! line from them), and the `kubernetes` Service leading pods on every
//! node to the lab's API.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const NEWEST: &str = KUBECTLS[0];

/// The slices of a Service, by kubectl.
fn slices(lab: &Lab, svc: &str) -> Vec<Value> {
    let out = lab.kubectl_ok(
        NEWEST,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).expect("a list as JSON");
    v["items"].as_array().expect("items").clone()
}

/// (address, ready, serving, terminating) of every endpoint of a Service.
fn endpoints(lab: &Lab, svc: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out = Vec::new();
    for s in slices(lab, svc) {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let c = &e["conditions"];
            out.push((
                e["addresses"][0].as_str().unwrap().to_string(),
                c["ready"].as_bool().unwrap(),
                c["serving"].as_bool().unwrap(),
                c["terminating"].as_bool().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn ready_ips(lab: &Lab, svc: &str) -> Vec<String> {
    endpoints(lab, svc)
        .into_iter()
        .filter(|e| e.1)
        .map(|e| e.0)
        .collect()
}

/// The table's lines with the AGE column dropped.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(String::from).collect();
            cells[..cells.len() - 1].to_vec()
        })
        .collect()
}

#[test]
fn slices_follow_scale_and_describe_reads_them() {
    let lab = Lab::up(
        "slices-scale",
        &format!("{}---\n{MY_NGINX_SVC}", lab_file("nginx.yaml")),
    );
    let pod_ips = |lab: &Lab| -> Vec<String> {
        let mut ips: Vec<String> = lab.pods().into_iter().map(|p| p.1).collect();
        ips.sort();
        ips
    };
    wait_for("2 ready endpoints", Duration::from_secs(20), || {
        ready_ips(&lab, "my-nginx").len() == 2
    });
    assert_eq!(ready_ips(&lab, "my-nginx"), pod_ips(&lab));
    let first = slices(&lab, "my-nginx");
    assert_eq!(first.len(), 1);
    let s = &first[0];
    let name = s["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("my-nginx-") && name.len() == 14, "{name}");
    assert_eq!(
        s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(s["metadata"]["ownerReferences"][0]["name"], "my-nginx");
    assert_eq!(s["ports"][0]["name"], "http");
    assert_eq!(s["ports"][0]["port"], 80);
    assert!(s["endpoints"][0]["nodeName"]
        .as_str()
        .unwrap()
        .starts_with("node-"));
    assert_eq!(s["endpoints"][0]["targetRef"]["kind"], "Pod");

    // The table kubectl prints, and netlab prints the same.
    for k in KUBECTLS {
        let table = lab.kubectl_ok(k, &["get", "endpointslices"]);
        let rows = rows(&table);
        assert_eq!(
            rows[0],
            ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"],
            "{k}"
        );
        assert!(
            rows.contains(&vec![
                "kubernetes".into(),
                "IPv4".into(),
                "6443".into(),
                "172.18.0.1".into()
            ]),
            "{k}:\n{table}"
        );
        let ips = pod_ips(&lab).join(",");
        assert!(
            rows.contains(&vec![name.clone(), "IPv4".into(), "80".into(), ips]),
            "{k}:\n{table}"
        );
        assert_eq!(rows, self::rows(&lab.ok(&["get", "endpointslices"])), "{k}");
    }

    // describe svc: 1.32 from the slices, 1.27 from the Endpoints; the same line.
    let line = |k: &str| {
        let d = lab.kubectl_ok(k, &["describe", "svc", "my-nginx"]);
        d.lines()
            .find(|l| l.starts_with("Endpoints:"))
            .unwrap_or_else(|| panic!("{k}: no Endpoints line:\n{d}"))
            .to_string()
    };
    let want: Vec<String> = pod_ips(&lab).iter().map(|ip| format!("{ip}:80")).collect();
    for k in KUBECTLS {
        let got = line(k);
        for w in &want {
            assert!(got.contains(w.as_str()), "{k}: {got}");
        }
    }

    // Scale up and down: the slice follows, under its name.
    lab.kubectl_ok(NEWEST, &["scale", "deployment", "my-nginx", "--replicas=4"]);
    wait_for("4 ready endpoints", Duration::from_secs(30), || {
        ready_ips(&lab, "my-nginx").len() == 4
    });
    assert_eq!(ready_ips(&lab, "my-nginx"), pod_ips(&lab));
    lab.kubectl_ok(NEWEST, &["scale", "deployment", "my-nginx", "--replicas=1"]);
    wait_for("1 endpoint", Duration::from_secs(30), || {
        endpoints(&lab, "my-nginx").len() == 1
    });
    assert_eq!(ready_ips(&lab, "my-nginx"), pod_ips(&lab));
    let now = slices(&lab, "my-nginx");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["metadata"]["name"], name.as_str());
    let got = line(NEWEST);
    assert_eq!(got.matches(":80").count(), 1, "{got}");

    // The Service goes: its slices go with it.
    lab.kubectl_ok(NEWEST, &["delete", "svc", "my-nginx"]);
    wait_for("no slices", Duration::from_secs(10), || {
        slices(&lab, "my-nginx").is_empty()
    });
    lab.down_clean();
}

#[test]
fn readiness_is_a_slice_condition() {
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /www && touch /tmp/ready && exec httpd -f -p 80 -h /www"]
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
"#;
    let lab = Lab::up("slices-ready", yaml);
    let ip = lab.pods()[0].1.clone();
    wait_for("the pod ready", Duration::from_secs(20), || {
        endpoints(&lab, "web") == [(ip.clone(), true, true, false)]
    });
    lab.ok(&["exec", "web", "--", "rm", "/tmp/ready"]);
    wait_for("the pod not ready", Duration::from_secs(20), || {
        endpoints(&lab, "web") == [(ip.clone(), false, false, false)]
    });
    lab.ok(&["exec", "web", "--", "touch", "/tmp/ready"]);
    wait_for("the pod ready again", Duration::from_secs(20), || {
        endpoints(&lab, "web") == [(ip.clone(), true, true, false)]
    });
    lab.down_clean();
}

#[test]
fn pods_on_every_node_reach_the_api_through_the_kubernetes_service() {
    let pod = |node: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: client-{node}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "while true; do sleep 1; done"]
    volumeMounts:
    - {{name: ca, mountPath: /ca}}
  volumes:
  - name: ca
    configMap: {{name: kube-root-ca}}
"#
        )
    };
    let lab = Lab::up("slices-api", &lab_doc(2));
    // The lab's CA, as a ConfigMap the pods mount (kube-root-ca.crt's
    // job in a real cluster; ServiceAccount tokens are another issue's).
    let ca = std::fs::read_to_string(format!("/run/netlab/{}/pki/ca.crt", lab.name)).unwrap();
    let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let objects = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-root-ca\ndata:\n  ca.crt: |\n{indented}---\n{}---\n{}",
        pod("node-1"),
        pod("node-2")
    );
    let file = lab.dir.path().join("clients.yaml");
    std::fs::write(&file, objects).unwrap();
    lab.ok(&["apply", "-f", file.to_str().unwrap()]);

    let ep = lab.kubectl_ok(NEWEST, &["get", "endpoints", "kubernetes"]);
    assert!(ep.contains("172.18.0.1:6443"), "{ep}");
    let curl = |pod: &str, args: &[&str]| {
        let mut full = vec!["exec", pod, "--", "curl", "-s", "-m", "5"];
        full.extend_from_slice(args);
        lab.run(&full)
    };
    for node in ["node-1", "node-2"] {
        let pod = format!("client-{node}");
        wait_for(&format!("{pod} running"), Duration::from_secs(20), || {
            lab.ok(&["get", "pod", &pod]).contains("Running")
        });
        let out = curl(
            &pod,
            &[
                "--cacert",
                "/ca/ca.crt",
                "https://kubernetes.default.svc/version",
            ],
        );
        let version: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{pod}: {e}: {} {}", stdout(&out), stderr(&out)));
        assert!(
            version["gitVersion"].as_str().unwrap().starts_with('v'),
            "{version}"
        );
        // No credentials: 401, as kube-apiserver answers.
        let out = curl(
            &pod,
            &[
                "--cacert",
                "/ca/ca.crt",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "https://kubernetes.default.svc/api/v1/pods",
            ],
        );
        assert_eq!(stdout(&out), "401", "{pod}: {}", stderr(&out));
        // The full name is in the certificate too.
        let out = curl(
            &pod,
            &[
                "--cacert",
                "/ca/ca.crt",
                "https://kubernetes.default.svc.cluster.local/healthz",
            ],
        );
        assert_eq!(stdout(&out), "ok", "{pod}: {}", stderr(&out));
    }
    // A node reaches it through the clusterIP as well.
    let out = lab.run(&[
        "exec",
        "node/node-2",
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "-k",
        "https://10.0.0.1/version",
    ]);
    assert!(stdout(&out).contains("gitVersion"), "{}", stderr(&out));
    lab.down_clean();
}
