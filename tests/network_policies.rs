//! networking.k8s.io/v1 NetworkPolicy as a stored API resource, through
//! the real kubectl: a lab file's policy, `apply -f`, `get` (kubectl's
//! columns), `-o yaml` (kube-apiserver's defaults), `describe`, a refusal
//! in kube-apiserver's words, `delete`, `explain`; netlab's own `apply -f`,
//! `get` and `describe` of the same objects. One lab, no pods.

mod common;

use common::*;

const NEWEST: &str = KUBECTLS[0];
const OLDEST: &str = KUBECTLS[1];

const WEB: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [b, a]}]
  ingress:
  - ports: [{port: http}]
    from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {role: client}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
  egress:
  - ports: [{port: 53, protocol: UDP}]
";

/// Rows of a `get` table as (name, pod selector), ages left out; the header
/// must be kubectl's.
fn rows(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "POD-SELECTOR", "AGE"], "{table}");
    lines
        .map(|l| {
            // Columns are two or more spaces apart; a selector has single spaces.
            let cells: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            assert_eq!(cells.len(), 3, "{l:?} in\n{table}");
            (cells[0].to_string(), cells[1].to_string())
        })
        .collect()
}

fn pair(name: &str, selector: &str) -> (String, String) {
    (name.to_string(), selector.to_string())
}

#[test]
fn network_policies_are_served_as_kube_apiserver_serves_them() {
    let lab = Lab::up(
        "netpol",
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  dns: {enabled: false}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\nspec:\n  podSelector: {}\n",
    );
    assert_eq!(
        lab.kubectl_apply(NEWEST, "web.yaml", WEB).trim(),
        "networkpolicy.networking.k8s.io/web created"
    );

    let want = [
        pair("deny-all", "<none>"),
        pair("web", "app=web,tier in (a,b)"),
    ];
    for k in KUBECTLS {
        for args in [
            &["get", "networkpolicy"][..],
            &["get", "netpol", "-o", "wide"][..],
            &["get", "networkpolicies.networking.k8s.io"][..],
        ] {
            assert_eq!(rows(&lab.kubectl_ok(k, args)), want, "{k} {args:?}");
        }
    }
    assert_eq!(rows(&lab.ok(&["get", "netpol"])), want, "netlab get");

    // kube-apiserver's defaults: TCP where no protocol is given, and the
    // policy types the rules imply.
    let yaml = lab.kubectl_ok(NEWEST, &["get", "netpol", "web", "-o", "yaml"]);
    let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let spec = &v["spec"];
    assert_eq!(
        spec["policyTypes"],
        serde_json::json!(["Ingress", "Egress"]),
        "{yaml}"
    );
    assert_eq!(
        spec["ingress"][0]["ports"][0],
        serde_json::json!({"port": "http", "protocol": "TCP"})
    );
    assert_eq!(spec["egress"][0]["ports"][0]["protocol"], "UDP");
    assert_eq!(
        spec["ingress"][0]["from"][1]["ipBlock"],
        serde_json::json!({"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]})
    );
    let deny = lab.kubectl_ok(
        OLDEST,
        &["get", "netpol", "deny-all", "-o", "jsonpath={.spec}"],
    );
    let deny: serde_json::Value = serde_json::from_str(&deny).unwrap();
    assert_eq!(
        deny,
        serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"]})
    );

    // The schema is served: kubectl finds the kind's fields.
    let explained = lab.kubectl_ok(NEWEST, &["explain", "netpol.spec.ingress.ports"]);
    assert!(explained.contains("endPort"), "{explained}");

    // kubectl's describer reads what is stored; netlab's prints the same.
    let theirs = lab.kubectl_ok(NEWEST, &["describe", "networkpolicy", "web"]);
    for line in [
        "Namespace:    default",
        "  PodSelector:     app=web,tier in (a,b)",
        "  Allowing ingress traffic:",
        "    To Port: http/TCP",
        "      NamespaceSelector: team=a",
        "      PodSelector: role=client",
        "        CIDR: 10.0.0.0/8",
        "        Except: 10.1.0.0/16",
        "  Allowing egress traffic:",
        "    To Port: 53/UDP",
        "    To: <any> (traffic not restricted by destination)",
        "  Policy Types: Ingress, Egress",
    ] {
        assert!(theirs.lines().any(|l| l == line), "{line:?} in\n{theirs}");
    }
    let ours = lab.ok(&["describe", "netpol", "web"]);
    let but_created = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("Created on:"))
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(
        but_created(&ours),
        but_created(&theirs),
        "netlab:\n{ours}\nkubectl:\n{theirs}"
    );

    // Refused as kube-apiserver refuses it, and not stored.
    let bad = WEB
        .replace("name: web", "name: bad")
        .replace("{port: 53, protocol: UDP}", "{port: 53, endPort: 40}");
    let path = lab.dir.path().join("bad.yaml");
    std::fs::write(&path, &bad).unwrap();
    let out = lab.kubectl(NEWEST, &["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("The NetworkPolicy \"bad\" is invalid: spec.egress[0].ports[0].endPort: Invalid value: 53: must be greater than or equal to `port`"),
        "{}",
        stderr(&out)
    );
    let out = lab.run(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must be greater than or equal to `port`"),
        "{}",
        stderr(&out)
    );

    // netlab's own apply -f, then deletes.
    let mine = WEB.replace("name: web", "name: mine");
    let path = lab.dir.path().join("mine.yaml");
    std::fs::write(&path, &mine).unwrap();
    assert_eq!(
        lab.ok(&["apply", "-f", path.to_str().unwrap()]).trim(),
        "networkpolicy.networking.k8s.io/mine created"
    );
    assert_eq!(
        lab.kubectl_ok(NEWEST, &["delete", "netpol", "web", "mine"]).trim(),
        "networkpolicy.networking.k8s.io \"web\" deleted\nnetworkpolicy.networking.k8s.io \"mine\" deleted"
    );
    assert_eq!(
        rows(&lab.kubectl_ok(OLDEST, &["get", "netpol"])),
        [pair("deny-all", "<none>")]
    );

    // A file with its namespace and who may read in it: netlab's apply
    // takes every kind a lab file may hold: the namespace first, the
    // access objects in the file's order, the policy after them.
    let team = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: team}
spec: {podSelector: {}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: robot-view, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: robot, namespace: team}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: team}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
"#;
    let path = lab.dir.path().join("team.yaml");
    std::fs::write(&path, team).unwrap();
    assert_eq!(
        lab.ok(&["apply", "-f", path.to_str().unwrap()]).trim(),
        "namespace/team created\nrolebinding.rbac.authorization.k8s.io/robot-view created\nserviceaccount/robot created\nnetworkpolicy.networking.k8s.io/deny created"
    );
    assert_eq!(
        lab.kubectl_ok(
            NEWEST,
            &[
                "auth",
                "can-i",
                "list",
                "pods",
                "-n",
                "team",
                "--as",
                "system:serviceaccount:team:robot"
            ]
        )
        .trim(),
        "yes"
    );
    assert_eq!(
        rows(&lab.kubectl_ok(NEWEST, &["get", "netpol", "-n", "team"])),
        [pair("deny", "<none>")]
    );
    // ... and deletes it all, the namespace last.
    assert_eq!(
        lab.ok(&["delete", "-f", path.to_str().unwrap()]).trim(),
        "networkpolicy.networking.k8s.io \"deny\" deleted\nserviceaccount \"robot\" deleted\nrolebinding.rbac.authorization.k8s.io \"robot-view\" deleted\nnamespace \"team\" deleted"
    );
    lab.down_clean();
}
