use super::*;
use serde_json::{json, Value};

/// The nginx lab after the tutorial's `kubectl expose`: two nodes, two
/// nginx pods and CoreDNS, the Services my-nginx and kube-dns, one pod not
/// ready yet.
fn nginx() -> Graph {
    let node = |name: &str, i: u8| {
        json!({"metadata": {"name": name},
               "spec": {"podCIDR": format!("10.244.{}.0/24", i - 1)},
               "status": {"addresses": [
                   {"type": "InternalIP", "address": format!("172.18.0.{i}")},
                   {"type": "ExternalIP", "address": format!("203.0.113.{i}")},
                   {"type": "Hostname", "address": name}]}})
    };
    let pod = |ns: &str, name: &str, node: &str, ip: &str, ready: bool| {
        json!({"metadata": {"namespace": ns, "name": name},
               "spec": {"nodeName": node},
               "status": {"podIP": ip, "conditions": [
                   {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    };
    let ep = |ns: &str, name: &str, ip: &str, ready: bool| {
        json!({"addresses": [ip], "conditions": {"ready": ready},
               "targetRef": {"kind": "Pod", "namespace": ns, "name": name}})
    };
    let nodes = json!({"items": [node("node-2", 3), node("node-1", 2)]});
    let pods = json!({"items": [
        pod("default", "my-nginx-7f8d-rcgq5", "node-2", "10.244.2.2", true),
        pod("default", "my-nginx-7f8d-abcde", "node-1", "10.244.1.2", false),
        pod("kube-system", "coredns-74544-j62ls", "node-1", "10.244.1.3", true),
        pod("default", "pending", "", "", false),
    ]});
    let services = json!({"items": [
        {"metadata": {"namespace": "kube-system", "name": "kube-dns"},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                  "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}},
        {"metadata": {"namespace": "default", "name": "my-nginx"},
         "spec": {"type": "LoadBalancer", "clusterIP": "10.96.12.34",
                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.200"}]}}},
    ]});
    let slices = json!({"items": [
        {"metadata": {"namespace": "default", "name": "my-nginx-x1",
                      "labels": {"kubernetes.io/service-name": "my-nginx"}},
         "endpoints": [ep("default", "my-nginx-7f8d-rcgq5", "10.244.2.2", true),
                       ep("default", "my-nginx-7f8d-abcde", "10.244.1.2", false)]},
        {"metadata": {"namespace": "kube-system", "name": "kube-dns-x2",
                      "labels": {"kubernetes.io/service-name": "kube-dns"}},
         "endpoints": [ep("kube-system", "coredns-74544-j62ls", "10.244.1.3", true)]},
    ]});
    Graph::from_objects(
        "nginx",
        Some("203.0.113.254/24".into()),
        &nodes,
        &pods,
        &services,
        &slices,
    )
}

/// `got` equals the file `testdata/NAME`; with NETLAB_UPDATE_GOLDEN=1 the
/// file is written instead (then review the diff).
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/graph/testdata")
        .join(name);
    if std::env::var_os("NETLAB_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (NETLAB_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from its golden file");
}

#[test]
fn objects_become_nodes_pods_and_services_in_name_order() {
    let g = nginx();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-1", "node-2"]);
    let n1 = &g.nodes[0];
    assert_eq!(
        (
            n1.internal_ip.as_str(),
            n1.external_ip.as_str(),
            n1.pod_cidr.as_str()
        ),
        ("172.18.0.2", "203.0.113.2", "10.244.1.0/24")
    );
    // An unscheduled pod is on no node.
    let pods: Vec<&str> = n1.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, ["my-nginx-7f8d-abcde", "coredns-74544-j62ls"]);
    assert!(!n1.pods[0].ready && n1.pods[1].ready);
    let svc = &g.services[0];
    assert_eq!(
        (svc.namespace.as_str(), svc.name.as_str()),
        ("default", "my-nginx")
    );
    assert_eq!(svc.ports, ["80:30080/TCP"]);
    assert_eq!(svc.load_balancer_ips, ["203.0.113.200"]);
    assert_eq!(svc.endpoints.len(), 2);
    assert_eq!(g.services[1].ports, ["53/UDP", "53/TCP"]);
}

#[test]
fn nodes_are_in_the_order_people_count_them() {
    let items: Vec<Value> = ["node-10", "node-2", "node-1", "node-a"]
        .iter()
        .map(|n| json!({"metadata": {"name": n}}))
        .collect();
    let nodes = json!({ "items": items });
    let empty = json!({"items": []});
    let g = Graph::from_objects("x", None, &nodes, &empty, &empty, &empty);
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-1", "node-2", "node-10", "node-a"]);
}

#[test]
fn dot_is_stable() {
    golden("nginx.dot", &nginx().dot());
}

#[test]
fn mermaid_is_stable() {
    golden("nginx.mmd", &nginx().mermaid());
}

#[test]
fn json_has_every_part() {
    let v = serde_json::to_value(nginx()).unwrap();
    assert_eq!(v["externalHost"], "203.0.113.254/24");
    assert_eq!(v["nodes"][1]["pods"][0]["name"], "my-nginx-7f8d-rcgq5");
    assert_eq!(v["services"][0]["type"], "LoadBalancer");
    assert_eq!(
        v["services"][0]["endpoints"][1]["pod"],
        "default/my-nginx-7f8d-rcgq5"
    );
}

#[test]
fn svg_names_every_pod_and_service_and_escapes_text() {
    let mut g = nginx();
    g.lab = "a<b&c".into();
    let svg = g.svg();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(svg.contains("lab a&lt;b&amp;c") && !svg.contains("a<b"));
    for n in &g.nodes {
        for p in &n.pods {
            assert!(svg.contains(&p.name), "{} missing", p.name);
        }
    }
    for v in &g.services {
        assert!(svg.contains(&format!("svc {}/{}", v.namespace, v.name)));
    }
    // One edge per endpoint: two for my-nginx, one for kube-dns.
    assert_eq!(svg.matches("<path ").count(), 3);
    assert_eq!(svg.matches("unready-edge\"").count(), 1);
}

#[test]
fn a_big_lab_is_collapsed() {
    let mut g = nginx();
    let template = g.nodes[0].pods[1].clone();
    for i in 0..100 {
        let mut p = template.clone();
        p.name = format!("extra-{i:03}");
        g.nodes[0].pods.push(p);
    }
    for i in 0..100 {
        let mut v = g.services[1].clone();
        v.name = format!("svc-{i:03}");
        g.services.push(v);
    }
    // An endpoint on a pod that is not drawn gets no edge.
    g.services[2].endpoints.push(Endpoint {
        ip: "10.244.1.99".into(),
        pod: Some("default/extra-099".into()),
        ready: true,
    });
    let svg = g.svg();
    assert!(svg.contains(&format!("… {} more pods", 102 - POD_ROWS)));
    assert!(svg.contains(&format!("… {} more Services", 102 - svg::SERVICES_SHOWN)));
    let dot = g.dot();
    assert!(dot.contains(&format!("… {} more pods", 102 - POD_ROWS)));
    // Edges only to pods that are drawn: coredns is, and stays connected.
    assert!(dot.contains("\"svc/kube-system/kube-dns\" -> \"pod/kube-system/coredns-74544-j62ls\""));
    assert!(!dot.contains("extra-099\" ->") && !dot.contains("-> \"pod/default/extra-099\""));
    assert!(dot.contains("\"svc/kube-system/svc-000\""));
}
