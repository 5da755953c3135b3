//! End to end, as root: Services as kube-proxy's nftables mode does them,
//! checked with real connections from nodes and pods (after Kubernetes'
//! own Service e2e tests).

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A pod that answers HTTP on :80 with its own name (busybox httpd, `-v`
/// logs each client address to stderr).
fn who_pod(name: &str, labels: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
{node}  terminationGracePeriodSeconds: 1
  containers:
  - name: who
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 80 -h /www"]
    ports:
    - containerPort: 80
      name: http
"#
    )
}

fn service(name: &str, selector: &str, extra_spec: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{{selector}}}\n{extra_spec}  ports:\n{ports}"
    )
}

fn node_port(lab: &Lab, name: &str) -> u64 {
    svc_json(lab, name)["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("a nodePort")
}

fn apply(lab: &Lab, yaml: &str) -> String {
    let file = lab.dir.path().join(format!("apply-{}.yaml", rand_suffix()));
    std::fs::write(&file, yaml).unwrap();
    lab.ok(&["apply", "-f", file.to_str().unwrap()])
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Which pods answer `url` from `from` over `n` requests.
fn answers(lab: &Lab, from: &str, url: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen.entry(must_curl(lab, from, url)).or_insert(0) += 1;
    }
    seen
}

/// The connection is refused at once: curl exit 7 in well under a second.
fn assert_refused(lab: &Lab, from: &str, url: &str) {
    let t = Instant::now();
    let (code, _) = curl(lab, from, url);
    assert_eq!(code, 7, "{url} from {from}: expected connection refused");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "refusal took {:?}",
        t.elapsed()
    );
}

#[test]
fn tutorial_create_a_service() {
    let yaml = lab_file("nginx.yaml");
    let lab = Lab::up("svc-tutorial", &yaml);
    assert_eq!(
        lab.ok(&["expose", "deployment/my-nginx"]).trim(),
        "service/my-nginx exposed"
    );

    let svc = lab.ok(&["get", "svc", "my-nginx"]);
    let rows: Vec<Vec<&str>> = svc
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(&rows[1][..2], ["my-nginx", "ClusterIP"]);
    assert!(rows[1][2].starts_with("10.0."), "{svc}");
    assert_eq!(&rows[1][3..5], ["<none>", "80/TCP"]);
    let ip = rows[1][2].to_string();

    let all = lab.ok(&["get", "svc"]);
    assert!(
        all.contains("kubernetes") && all.contains("10.0.0.1") && all.contains("443/TCP"),
        "{all}"
    );

    let pods = lab.pods();
    let ep = lab.ok(&["get", "ep", "my-nginx"]);
    for (_, pod_ip, _) in &pods {
        assert!(ep.contains(&format!("{pod_ip}:80")), "{ep}");
    }
    let describe = lab.ok(&["describe", "svc", "my-nginx"]);
    for field in [
        "Name:",
        "Namespace:",
        "Labels:",
        "Annotations:",
        "Selector:",
        "Type:",
        "IP:",
        "Port:",
        "TargetPort:",
        "Endpoints:",
        "Session Affinity:",
        "Events:",
    ] {
        assert!(
            describe.contains(field),
            "describe lacks {field}:\n{describe}"
        );
    }
    assert!(
        describe.contains("run=my-nginx") && describe.contains(&ip),
        "{describe}"
    );

    // From every node and every pod, the clusterIP reaches nginx.
    for from in ["node/node-1", "node/node-2"]
        .iter()
        .map(|s| s.to_string())
        .chain(pods.iter().map(|p| p.0.clone()))
    {
        assert!(
            must_curl(&lab, &from, &format!("http://{ip}:80/")).contains("Welcome to nginx!"),
            "from {from}"
        );
    }
    lab.down_clean();
}

#[test]
fn service_from_lab_file_and_apply_are_the_same() {
    let svc = service(
        "web",
        "app: web",
        "",
        "  - port: 8080\n    targetPort: http\n",
    );
    let lab = Lab::up(
        "svc-file",
        &format!("{}---\n{svc}", who_deployment("web", 2, "web")),
    );
    let ip = cluster_ip(&lab, "web");
    assert_eq!(
        answers(&lab, "node/node-1", &format!("http://{ip}:8080/"), 20).len(),
        2
    );
    // The same Service through apply: unchanged; a new one: created.
    assert_eq!(apply(&lab, &svc).trim(), "service/web unchanged");
    let other = service("web2", "app: web", "", "  - port: 80\n");
    assert_eq!(apply(&lab, &other).trim(), "service/web2 created");
    let ip2 = cluster_ip(&lab, "web2");
    assert_ne!(ip, ip2);
    assert_eq!(
        answers(&lab, "node/node-2", &format!("http://{ip2}/"), 20).len(),
        2
    );
    lab.down_clean();
}

/// Kubernetes e2e "should serve a basic endpoint from pods": pod1, then
/// pod1+pod2, then pod2, then none (refused).
#[test]
fn endpoints_follow_pods() {
    let svc = service("follow", "app: follow", "", "  - port: 80\n");
    let lab = Lab::up("svc-follow", &svc);
    let ip = cluster_ip(&lab, "follow");
    let url = format!("http://{ip}/");
    assert_refused(&lab, "node/node-1", &url);

    apply(&lab, &who_pod("pod1", "app: follow", Some("node-1")));
    assert_eq!(
        answers(&lab, "node/node-2", &url, 6)
            .keys()
            .collect::<Vec<_>>(),
        ["pod1"]
    );
    apply(&lab, &who_pod("pod2", "app: follow", Some("node-2")));
    let both = answers(&lab, "node/node-1", &url, 30);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(lab
        .ok(&["delete", "pod", "pod1"])
        .contains("pod \"pod1\" deleted"));
    assert_eq!(
        answers(&lab, "node/node-1", &url, 6)
            .keys()
            .collect::<Vec<_>>(),
        ["pod2"]
    );
    lab.ok(&["delete", "pod/pod2"]);
    assert_refused(&lab, "node/node-2", &url);
    assert!(lab.ok(&["get", "ep", "follow"]).contains("<none>"));
    lab.down_clean();
}

/// Multi-port services with named ports and named targetPorts.
#[test]
fn multi_port_named_target_ports() {
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: multi
  labels: {app: multi}
spec:
  containers:
  - name: a
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /a /b && echo port-a > /a/index.html && echo port-b > /b/index.html && httpd -p 8081 -h /a && exec httpd -f -p 8082 -h /b"]
    ports:
    - {containerPort: 8081, name: first}
    - {containerPort: 8082, name: second}
"#;
    let svc = service("multi", "app: multi", "", "  - {name: one, port: 81, targetPort: first}\n  - {name: two, port: 82, targetPort: second}\n");
    let lab = Lab::up("svc-multi", &format!("{pod}---\n{svc}"));
    let ip = cluster_ip(&lab, "multi");
    assert_eq!(
        must_curl(&lab, "node/node-1", &format!("http://{ip}:81/")),
        "port-a"
    );
    assert_eq!(
        must_curl(&lab, "node/node-2", &format!("http://{ip}:82/")),
        "port-b"
    );
    let ep = lab.ok(&["get", "ep", "multi"]);
    assert!(ep.contains(":8081") && ep.contains(":8082"), "{ep}");
    let describe = lab.ok(&["describe", "svc", "multi"]);
    assert!(
        describe.contains("one  81/TCP") && describe.contains("second/TCP"),
        "{describe}"
    );
    lab.down_clean();
}

/// Hairpin: a pod reaching its own Service lands on itself; traffic from
/// another pod keeps its source address (no SNAT).
#[test]
fn hairpin_and_client_source_ip() {
    let svc = service("self", "app: self", "", "  - port: 80\n");
    let lab = Lab::up(
        "svc-hairpin",
        &format!(
            "{}---\n{}---\n{svc}",
            who_pod("lonely", "app: self", Some("node-1")),
            who_pod("client", "app: client", Some("node-1"))
        ),
    );
    let ip = cluster_ip(&lab, "self");
    assert_eq!(
        must_curl(&lab, "lonely", &format!("http://{ip}/")),
        "lonely"
    );
    let client_ip = lab.pods().into_iter().find(|p| p.0 == "client").unwrap().1;
    assert_eq!(
        must_curl(&lab, "client", &format!("http://{ip}/")),
        "lonely"
    );
    let log = lab.ok(&["logs", "lonely"]);
    assert!(
        log.contains(&client_ip),
        "the server saw no request from {client_ip}:\n{log}"
    );
    lab.down_clean();
}

/// NodePort: allocation, explicit ports, collisions, range, reachability on
/// every node's address from the lab network, release on type change.
#[test]
fn node_ports() {
    let svc = service("np", "app: np", "  type: NodePort\n", "  - port: 80\n");
    let lab = Lab::up(
        "svc-nodeport",
        &format!("{}---\n{svc}", who_deployment("np", 2, "np")),
    );
    let port = node_port(&lab, "np");
    assert!((30000..=32767).contains(&port), "{port}");
    let ports = lab.ok(&["get", "svc", "np"]);
    assert!(ports.contains(&format!("80:{port}/TCP")), "{ports}");
    // Every node's address, from the other node and from the node itself.
    for (from, addr) in [
        ("node/node-1", "172.18.0.3"),
        ("node/node-2", "172.18.0.2"),
        ("node/node-1", "172.18.0.2"),
    ] {
        assert_eq!(
            answers(&lab, from, &format!("http://{addr}:{port}/"), 20).len(),
            2,
            "{from} -> {addr}"
        );
    }
    // Explicit nodePort, collision, out of range: clear errors, nothing changed.
    let explicit = service(
        "np2",
        "app: np",
        "  type: NodePort\n",
        "  - port: 80\n    nodePort: 31999\n",
    );
    apply(&lab, &explicit);
    assert_eq!(node_port(&lab, "np2"), 31999);
    let clash = service(
        "np3",
        "app: np",
        "  type: NodePort\n",
        "  - port: 80\n    nodePort: 31999\n",
    );
    let file = lab.dir.path().join("clash.yaml");
    std::fs::write(&file, &clash).unwrap();
    let out = lab.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("already allocated"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&file, clash.replace("31999", "80")).unwrap();
    let out = lab.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("30000-32767"),
        "{}",
        stderr(&out)
    );
    assert!(!lab.ok(&["get", "svc"]).contains("np3"));
    // Back to ClusterIP: the port is released and stops answering.
    apply(
        &lab,
        &explicit
            .replace("  type: NodePort\n", "")
            .replace("    nodePort: 31999\n", ""),
    );
    assert!(svc_json(&lab, "np2")["spec"]["ports"][0]["nodePort"].is_null());
    let (code, _) = curl(&lab, "node/node-1", "http://172.18.0.3:31999/");
    assert_ne!(code, 0);
    apply(&lab, &clash.replace("np3", "np4"));
    assert_eq!(
        node_port(&lab, "np4"),
        31999,
        "the released port can be taken again"
    );
    lab.down_clean();
}

/// externalTrafficPolicy: Local: only the node's own endpoints, client address kept.
#[test]
fn node_port_external_traffic_policy_local() {
    let svc = service(
        "local",
        "app: local",
        "  type: NodePort\n  externalTrafficPolicy: Local\n",
        "  - port: 80\n",
    );
    let lab = Lab::up(
        "svc-local",
        &format!(
            "{}---\n{}---\n{svc}",
            who_pod("on-one", "app: local", Some("node-1")),
            who_pod("on-two", "app: local", Some("node-2"))
        ),
    );
    let port = node_port(&lab, "local");
    // node-2 asks node-1's address: only node-1's pod answers, and sees node-2's address.
    let seen = answers(
        &lab,
        "node/node-2",
        &format!("http://172.18.0.2:{port}/"),
        12,
    );
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["on-one"], "{seen:?}");
    let log = lab.ok(&["logs", "on-one"]);
    assert!(
        log.contains("172.18.0.3"),
        "client address not kept:\n{log}"
    );
    lab.down_clean();
}

/// Session affinity ClientIP: one client sticks to one endpoint; switching
/// it off on the live service spreads again.
#[test]
fn session_affinity_on_and_off() {
    let sticky = service("sticky", "app: sticky", "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60\n", "  - port: 80\n");
    let lab = Lab::up(
        "svc-affinity",
        &format!("{}---\n{sticky}", who_deployment("sticky", 2, "sticky")),
    );
    let ip = cluster_ip(&lab, "sticky");
    let url = format!("http://{ip}/");
    assert_eq!(
        answers(&lab, "node/node-1", &url, 20).len(),
        1,
        "affinity: one endpoint"
    );
    let describe = lab.ok(&["describe", "svc", "sticky"]);
    assert!(describe.contains("ClientIP"), "{describe}");
    let off = sticky.replace("  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60\n", "");
    assert_eq!(apply(&lab, &off).trim(), "service/sticky configured");
    assert_eq!(
        cluster_ip(&lab, "sticky"),
        ip,
        "clusterIP kept across updates"
    );
    assert_eq!(
        answers(&lab, "node/node-1", &url, 30).len(),
        2,
        "spread again"
    );
    lab.down_clean();
}

/// Deleting one service stops its IP answering and leaves others working;
/// a recreated service works; ports and type change on a live service; 200
/// requests spread roughly evenly.
#[test]
fn services_up_and_down_and_load_spread() {
    let a = service("svc-a", "app: ab", "", "  - port: 80\n");
    let b = service("svc-b", "app: ab", "", "  - port: 80\n");
    let lab = Lab::up(
        "svc-updown",
        &format!("{}---\n{a}---\n{b}", who_deployment("ab", 2, "ab")),
    );
    let (ip_a, ip_b) = (cluster_ip(&lab, "svc-a"), cluster_ip(&lab, "svc-b"));

    let spread = answers(&lab, "node/node-2", &format!("http://{ip_a}/"), 200);
    assert_eq!(spread.len(), 2, "{spread:?}");
    for (pod, n) in &spread {
        assert!(
            (50..=150).contains(n),
            "uneven spread: {pod} got {n} of 200: {spread:?}"
        );
    }

    assert!(lab
        .ok(&["delete", "svc", "svc-a"])
        .contains("service \"svc-a\" deleted"));
    let (code, _) = curl(&lab, "node/node-1", &format!("http://{ip_a}/"));
    assert_ne!(code, 0, "deleted service still answers");
    assert_eq!(
        // 20 tries: both endpoints answer but with a chance of 2^-19.
        answers(&lab, "node/node-1", &format!("http://{ip_b}/"), 20).len(),
        2
    );

    apply(&lab, &a);
    let ip_a2 = cluster_ip(&lab, "svc-a");
    assert_eq!(
        answers(&lab, "node/node-1", &format!("http://{ip_a2}/"), 20).len(),
        2
    );

    // Port change and ClusterIP -> NodePort -> ClusterIP on the live service.
    apply(
        &lab,
        &b.replace("  - port: 80\n", "  - port: 8080\n    targetPort: 80\n"),
    );
    assert_eq!(cluster_ip(&lab, "svc-b"), ip_b);
    must_curl(&lab, "node/node-1", &format!("http://{ip_b}:8080/"));
    let (code, _) = curl(&lab, "node/node-1", &format!("http://{ip_b}:80/"));
    assert_ne!(code, 0, "old port still answers");
    apply(&lab, &b.replace("spec:\n", "spec:\n  type: NodePort\n"));
    let port = node_port(&lab, "svc-b");
    must_curl(&lab, "node/node-2", &format!("http://172.18.0.2:{port}/"));
    assert_eq!(
        cluster_ip(&lab, "svc-b"),
        ip_b,
        "type change keeps the clusterIP"
    );
    lab.down_clean();
}

/// `netlab delete deployments,svc NAME` (the tutorial's syntax) and
/// `scale`, with the service following.
#[test]
fn delete_kinds_and_scale() {
    let yaml = lab_file("nginx.yaml");
    let lab = Lab::up("svc-scale", &yaml);
    lab.ok(&[
        "expose",
        "deployment",
        "my-nginx",
        "--port",
        "8080",
        "--target-port",
        "80",
    ]);
    let ip = cluster_ip(&lab, "my-nginx");
    assert_eq!(
        lab.ok(&["scale", "deployment", "my-nginx", "--replicas=0"])
            .trim(),
        "deployment.apps/my-nginx scaled"
    );
    assert_refused(&lab, "node/node-1", &format!("http://{ip}:8080/"));
    lab.ok(&["scale", "deployment/my-nginx", "--replicas=5"]);
    assert_eq!(lab.pods().len(), 5);
    must_curl(&lab, "node/node-1", &format!("http://{ip}:8080/"));
    let out = lab.ok(&["delete", "deployments,svc", "my-nginx"]);
    assert!(
        out.contains("deployment.apps \"my-nginx\" deleted")
            && out.contains("service \"my-nginx\" deleted"),
        "{out}"
    );
    let missing = lab.run(&["delete", "svc", "my-nginx"]);
    assert!(!missing.status.success() && stderr(&missing).contains("not found"));
    assert!(lab.pods().is_empty());
    lab.down_clean();
}

/// The tutorial's "环境变量" lesson: pods created before the Service lack its
/// variables; after scaling to 0 and back, the new pods have them.
#[test]
fn service_environment_variables_follow_creation_order() {
    let yaml = lab_file("nginx.yaml");
    let lab = Lab::up("svc-env", &yaml);
    let first = lab.pods()[0].0.clone();
    let env = lab.ok(&["exec", &first, "--", "printenv"]);
    for line in [
        "KUBERNETES_SERVICE_HOST=10.0.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_SERVICE_PORT_HTTPS=443",
        "KUBERNETES_PORT=tcp://10.0.0.1:443",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert!(
        !env.contains("MY_NGINX_"),
        "service variables before the service exists:\n{env}"
    );

    lab.ok(&["expose", "deployment/my-nginx"]);
    let ip = cluster_ip(&lab, "my-nginx");
    lab.ok(&["scale", "deployment", "my-nginx", "--replicas=0"]);
    lab.ok(&["scale", "deployment", "my-nginx", "--replicas=2"]);
    let pods = lab.pods();
    assert_eq!(pods.len(), 2);
    assert!(!pods.iter().any(|p| p.0 == first), "new pods after scaling");
    let env = lab.ok(&["exec", &pods[0].0, "--", "printenv"]);
    for line in [
        format!("MY_NGINX_SERVICE_HOST={ip}"),
        "MY_NGINX_SERVICE_PORT=80".into(),
        format!("MY_NGINX_PORT_80_TCP_ADDR={ip}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    // A deleted pod of the Deployment is replaced, with a new name.
    let victim = pods[0].0.clone();
    lab.ok(&["delete", "pod", &victim]);
    let after = lab.pods();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.iter().any(|p| p.0 == victim));
    must_curl(&lab, "node/node-1", &format!("http://{ip}/"));
    lab.down_clean();
}

/// A nodePort out of range, applied with kubectl: refused as
/// kube-apiserver refuses it, the object named once, the field in the
/// cause (the message used to say `Service "bad" is invalid` twice).
#[test]
fn a_node_port_out_of_range_is_refused_saying_it_once() {
    let lab = Lab::up("npbad", &lab_doc(1));
    let file = lab.dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  type: NodePort\n  selector:\n    a: b\n  ports:\n  - port: 80\n    nodePort: 99999\n",
    )
    .unwrap();
    for kubectl in KUBECTLS {
        let out = lab.kubectl(kubectl, &["apply", "-f", file.to_str().unwrap()]);
        assert!(!out.status.success(), "{kubectl}");
        assert_eq!(
            stderr(&out).trim(),
            "The Service \"bad\" is invalid: spec.ports[0].nodePort: Invalid value: 99999: provided port is not in the valid range. The range of valid ports is 30000-32767",
            "{kubectl}"
        );
    }
    lab.down_clean();
}
