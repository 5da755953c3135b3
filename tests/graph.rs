//! `netlab graph`: the picture of a real lab names its nodes, every pod and
//! Service, and joins each Service to the pods behind it.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn graph_draws_every_pod_and_service_of_a_lab() {
    let yaml = format!(
        "{}---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    run: web\n  ports:\n  - port: 80\n",
        lab_doc(2),
        nginx_deployment("web", 2)
    );
    let lab = Lab::up("graph", &yaml);
    let g: Value = serde_json::from_str(&lab.ok(&["graph", "-o", "json"])).expect("JSON");
    let nodes = g["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{g:#}");
    assert!(
        g["externalHost"]
            .as_str()
            .is_some_and(|h| h.ends_with(".254/24")),
        "{g:#}"
    );
    let all: Value =
        serde_json::from_str(&lab.ok(&["get", "pods", "-A", "-o", "json"])).expect("JSON");
    let pods: Vec<(String, String)> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            let m = &p["metadata"];
            (
                m["namespace"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(pods.len() >= 3, "{all:#}");
    let drawn: Vec<(String, String)> = nodes
        .iter()
        .flat_map(|n| n["pods"].as_array().unwrap().iter())
        .map(|p| {
            (
                p["namespace"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for p in &pods {
        assert!(drawn.contains(p), "pod {p:?} is not in the graph: {g:#}");
    }
    let web = g["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .expect("Service web");
    assert_eq!(web["type"], "NodePort");
    let behind: Vec<&str> = web["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pod"].as_str())
        .collect();
    let web_pods: Vec<String> = pods
        .iter()
        .filter(|(ns, n)| ns == "default" && n.starts_with("web-"))
        .map(|(ns, n)| format!("{ns}/{n}"))
        .collect();
    assert_eq!(web_pods.len(), 2);
    for p in &web_pods {
        assert!(behind.contains(&p.as_str()), "{p} not behind web: {web:#}");
    }

    // The SVG is well-formed and names every pod and Service.
    let svg = lab.ok(&["graph"]);
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
    for (_, name) in &pods {
        assert!(svg.contains(name.as_str()), "{name} missing from the SVG");
    }
    assert!(svg.contains("svc default/web") && svg.contains("svc kube-system/kube-dns"));

    // dot and mermaid: one edge per endpoint of web.
    let dot = lab.ok(&["graph", "-o", "dot"]);
    assert_eq!(dot.matches("\"svc/default/web\" -> ").count(), 2, "{dot}");
    let mermaid = lab.ok(&["graph", "-o", "mermaid"]);
    assert!(mermaid.starts_with("flowchart LR"));
    assert_eq!(
        mermaid.matches("svc_default_web --> ").count(),
        2,
        "{mermaid}"
    );

    let bad = lab.run(&["graph", "-o", "png"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("svg, dot, mermaid or json"));
    lab.down_clean();
}
