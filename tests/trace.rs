//! `netlab trace`: a real probe from a pod, explained. Each case checks the
//! JSON steps name the right Service, endpoint pod, node and reason, and
//! that tracing leaves every node's table as it was.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;

fn trace(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["trace", "-o", "json"];
    all.extend(args);
    let out = lab.run(&all);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "netlab trace {args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn tables(lab: &Lab) -> Vec<String> {
    ["node-1", "node-2"]
        .iter()
        .map(|n| lab.node_table(n))
        .collect()
}

const CLIENT: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: node-1
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels:
    app: solo
spec:
  nodeName: node-2
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /www && echo solo > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: solo-local
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector:
    app: solo
  ports:
  - port: 80
    nodePort: 30081
"#;

#[test]
fn trace_names_service_endpoint_pod_node_and_failure_reasons() {
    let yaml = format!(
        "{}---\n{}---\n{CLIENT}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    run: web\n  ports:\n  - name: http\n    port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: webnp\nspec:\n  type: NodePort\n  selector:\n    run: web\n  ports:\n  - port: 80\n    nodePort: 30080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  selector:\n    run: nobody\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: weblb\nspec:\n  type: LoadBalancer\n  selector:\n    run: web\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: sticky\nspec:\n  selector:\n    run: web\n  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 600\n  ports:\n  - port: 80\n",
        lab_doc(2),
        nginx_deployment("web", 2)
    );
    let lab = Lab::up("trace", &yaml);
    let pods: Vec<(String, String, String)> = lab.pods();
    let web: HashSet<String> = pods
        .iter()
        .filter(|(name, _, _)| name.starts_with("web-"))
        .map(|(name, _, _)| format!("default/{name}"))
        .collect();
    assert_eq!(web.len(), 2, "{pods:?}");
    let before = tables(&lab);

    // Success, 20 times: both endpoints are seen, each named with its node.
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let t = trace(&lab, &["pod/client", "web"]);
        assert_eq!(t["result"], "connected", "{t:#}");
        assert_eq!(t["service"], "default/web", "{t:#}");
        assert_eq!(t["service_port"], "http", "{t:#}");
        assert_eq!(t["chosen_by"], "random", "{t:#}");
        let pod = t["endpoint_pod"]
            .as_str()
            .expect("an endpoint pod")
            .to_string();
        assert!(web.contains(&pod), "{t:#}");
        let node = t["endpoint_node"].as_str().unwrap();
        let want = pods
            .iter()
            .find(|(name, _, _)| format!("default/{name}") == pod)
            .map(|(_, _, node)| node.clone())
            .unwrap();
        assert_eq!(node, want, "{t:#}");
        assert!(t["steps"][0]["text"]
            .as_str()
            .unwrap()
            .contains("A web.default.svc.cluster.local"));
        // The connection's conntrack entry: replies from the endpoint.
        assert!(t["conntrack_id"].is_u64(), "{t:#}");
        let ct = t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == "conntrack")
            .unwrap_or_else(|| panic!("no conntrack step: {t:#}"));
        let endpoint = t["endpoint"].as_str().unwrap();
        assert!(
            ct["text"]
                .as_str()
                .unwrap()
                .contains(&format!("replies come from {endpoint}")),
            "{t:#}"
        );
        seen.insert(pod);
    }
    assert_eq!(seen, web, "20 traces should meet both endpoints");

    // Session affinity, no pin yet: the trace draws its endpoint at
    // random, and takes back the pin its connection made (the tables are
    // compared below).
    let first = trace(&lab, &["pod/client", "sticky"]);
    assert_eq!(first["result"], "connected", "{first:#}");
    assert_eq!(first["chosen_by"], "random", "{first:#}");
    assert!(
        first["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "dnat"
                && s["text"]
                    .as_str()
                    .unwrap()
                    .contains("chosen at random (10.")),
        "{first:#}"
    );

    // From a node (its own stack: the output hook), and two traces at
    // once, each seeing only its own packets.
    let t = trace(&lab, &["node/node-1", "web"]);
    assert_eq!(t["result"], "connected", "{t:#}");
    assert_eq!(t["service"], "default/web", "{t:#}");
    assert!(web.contains(t["endpoint_pod"].as_str().unwrap()), "{t:#}");
    let both: Vec<Value> = std::thread::scope(|s| {
        let a = s.spawn(|| trace(&lab, &["pod/client", "web"]));
        let b = s.spawn(|| trace(&lab, &["pod/client", "empty"]));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(both[0]["result"], "connected", "{:#}", both[0]);
    assert_eq!(both[0]["service"], "default/web", "{:#}", both[0]);
    assert_eq!(both[1]["result"], "refused", "{:#}", both[1]);
    assert_eq!(both[1]["service"], "default/empty", "{:#}", both[1]);

    // From outside the cluster to a NodePort: the external entry, the
    // DNAT and the masquerade, on the node that took the packet.
    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let external = nodes["items"][0]["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "ExternalIP")
        .map(|a| a["address"].as_str().unwrap().to_string())
        .expect("node-1 has an ExternalIP");
    let t = trace(&lab, &["host/external", &format!("{external}:30080")]);
    assert_eq!(t["result"], "connected", "{t:#}");
    assert_eq!(t["service"], "default/webnp", "{t:#}");
    assert!(web.contains(t["endpoint_pod"].as_str().unwrap()), "{t:#}");
    let kinds: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"masquerade"), "{t:#}");
    assert!(
        t["steps"][1]["text"]
            .as_str()
            .unwrap()
            .contains("chain external-"),
        "{t:#}"
    );

    // From outside: a pod IP is no destination, and names are the
    // cluster DNS's, which the outside cannot ask.
    let (_, pod_ip, _) = pods.iter().find(|(n, _, _)| n.starts_with("web-")).unwrap();
    let t = trace(&lab, &["host/external", &format!("{pod_ip}:80")]);
    assert_eq!(t["result"], "unreachable", "{t:#}");
    assert!(
        t["reason"].as_str().unwrap().contains(
            "is a pod's IP: pods are reached from outside the cluster only through a Service"
        ),
        "{t:#}"
    );
    let out = lab.run(&["trace", "host/external", "web"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot ask the cluster DNS"),
        "{}",
        stderr(&out)
    );

    // From outside to a LoadBalancer IP: the external entry and an
    // endpoint of its Service.
    let lb: Value = serde_json::from_str(&lab.ok(&["get", "svc", "weblb", "-o", "json"])).unwrap();
    let lb_ip = lb["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("a LoadBalancer IP")
        .to_string();
    let t = trace(&lab, &["host/external", &format!("{lb_ip}:80")]);
    assert_eq!(t["result"], "connected", "{t:#}");
    assert_eq!(t["service"], "default/weblb", "{t:#}");
    assert!(web.contains(t["endpoint_pod"].as_str().unwrap()), "{t:#}");

    // UDP, to the cluster DNS's clusterIP: sent, through Service
    // kube-system/kube-dns port dns, to the coredns pod.
    let t = trace(&lab, &["pod/client", "10.0.0.10:53", "--udp"]);
    assert_eq!(t["result"], "sent", "{t:#}");
    assert_eq!(t["service"], "kube-system/kube-dns", "{t:#}");
    assert!(
        t["endpoint_pod"]
            .as_str()
            .is_some_and(|p| p.starts_with("kube-system/coredns-")),
        "{t:#}"
    );
    // UDP to a port nobody listens on: the ICMP port unreachable that
    // comes back makes it refused.
    let (_, web_ip, _) = pods.iter().find(|(n, _, _)| n.starts_with("web-")).unwrap();
    let t = trace(&lab, &["pod/client", &format!("{web_ip}:5353"), "--udp"]);
    assert_eq!(t["result"], "refused", "{t:#}");

    // Hairpin: a web pod reaching its own Service meets itself now and
    // then; then the masquerade is explained as hairpin.
    let (me, _, _) = pods.iter().find(|(n, _, _)| n.starts_with("web-")).unwrap();
    let mut hairpin = None;
    for _ in 0..40 {
        let t = trace(&lab, &[&format!("pod/{me}"), "web"]);
        assert_eq!(t["result"], "connected", "{t:#}");
        if t["endpoint_pod"] == format!("default/{me}") {
            hairpin = Some(t);
            break;
        }
    }
    let t = hairpin.expect("40 traces of a 2-endpoint Service never met the client itself");
    let masq = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "masquerade")
        .unwrap_or_else(|| panic!("no masquerade step: {t:#}"));
    assert!(
        masq["text"]
            .as_str()
            .unwrap()
            .contains("hairpin: the pod reached itself"),
        "{t:#}"
    );

    // externalTrafficPolicy: Local: node-1 runs no endpoint and drops the
    // packet; node-2 serves it without masquerade.
    let external_ip = |i: usize| {
        nodes["items"][i]["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "ExternalIP")
            .map(|a| a["address"].as_str().unwrap().to_string())
            .unwrap()
    };
    let t = trace(
        &lab,
        &["host/external", &format!("{}:30081", external_ip(0))],
    );
    assert_ne!(t["result"], "connected", "{t:#}");
    assert_eq!(
        t["reason"],
        "Service default/solo-local has externalTrafficPolicy: Local and node-1 runs none of its endpoints: dropped (no-local-endpoint set), so that the client's address is kept",
        "{t:#}"
    );
    let t = trace(
        &lab,
        &["host/external", &format!("{}:30081", external_ip(1))],
    );
    assert_eq!(t["result"], "connected", "{t:#}");
    assert_eq!(t["endpoint_pod"], "default/solo", "{t:#}");
    assert!(
        !t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "masquerade"),
        "{t:#}"
    );

    // No ready endpoints.
    let t = trace(&lab, &["pod/client", "empty"]);
    assert_eq!(t["result"], "refused", "{t:#}");
    assert_eq!(
        t["reason"],
        "Service default/empty has no ready endpoints (rejected by the no-endpoint-services set)",
        "{t:#}"
    );
    // A port the Service does not have.
    let t = trace(&lab, &["pod/client", "web:8080"]);
    assert_eq!(t["result"], "refused", "{t:#}");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .starts_with("Service default/web has no port 8080"),
        "{t:#}"
    );
    // A name that does not exist, with the search path tried.
    let t = trace(&lab, &["pod/client", "nosuch"]);
    assert_eq!(t["result"], "nxdomain", "{t:#}");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("tried nosuch.default.svc.cluster.local, nosuch.svc.cluster.local"),
        "{t:#}"
    );
    // Straight to a pod IP, on a port nothing listens on.
    let ip = pods
        .iter()
        .find(|(name, _, _)| name.starts_with("web-"))
        .map(|(_, ip, _)| ip.clone())
        .unwrap();
    let t = trace(&lab, &["pod/client", &format!("{ip}:81")]);
    assert_eq!(t["result"], "refused", "{t:#}");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("did not accept the connection on port 81"),
        "{t:#}"
    );

    // Nothing of the traces is left in the nodes' tables.
    assert_eq!(tables(&lab), before);

    // A client pinned by a real connection: traces say it is pinned, and
    // go where it is pinned.
    must_curl(&lab, "pod/client", "http://sticky/");
    let pinned: Vec<Value> = (0..3)
        .map(|_| trace(&lab, &["pod/client", "sticky"]))
        .collect();
    for t in &pinned {
        assert_eq!(t["chosen_by"], "session affinity", "{t:#}");
        assert_eq!(t["endpoint_pod"], pinned[0]["endpoint_pod"], "{t:#}");
        let dnat = t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == "dnat")
            .unwrap();
        assert!(
            dnat["text"]
                .as_str()
                .unwrap()
                .contains("within the last 600 s, and Service default/sticky pins clients"),
            "{t:#}"
        );
    }
    // Bad input: a clear error, nothing done.
    let out = lab.run(&["trace", "pod/nobody", "web"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pod default/nobody not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.down_clean();
}
