//! NetworkPolicy enforced, proven the way Kubernetes' own e2e tests do it
//! (`test/e2e/network/netpol`): three namespaces `x`, `y`, `z`, three pods
//! `a`, `b`, `c` in each serving TCP 80 and 81, and for each policy case
//! the whole reachability matrix probed from every pod to every pod and
//! port, compared with the expected one (printed as a table when they
//! differ). Policies go in with the real kubectl, as a user applies them;
//! probes are curl through `netlab exec`.
//!
//! Root only: `sudo -E cargo test --test netpol`.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use common::{stdout, Lab};

const KUBECTL: &str = "/usr/bin/kubectl";
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];

fn lab_yaml() -> String {
    let mut y = common::lab_doc(2);
    for ns in NAMESPACES {
        write!(
            y,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}\n---\n"
        )
        .unwrap();
        for pod in PODS {
            write!(
                y,
                r#"apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  namespace: {ns}
  labels:
    pod: {pod}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: serve
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "mkdir -p /www && echo {ns}/{pod} > /www/index.html && httpd -p 81 -h /www && exec httpd -f -p 80 -h /www"]
    ports:
    - {{containerPort: 80, name: serve-80-tcp}}
    - {{containerPort: 81, name: serve-81-tcp}}
    readinessProbe:
      tcpSocket: {{port: 80}}
      periodSeconds: 1
      failureThreshold: 1
---
"#
            )
            .unwrap();
        }
    }
    y
}

/// `x/a`, …: every pod, in order.
fn pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Expected (or probed) reachability: (from, to, port) → connects.
#[derive(Clone, PartialEq, Eq)]
struct Matrix(BTreeMap<(String, String, u16), bool>);

impl Matrix {
    /// Everything `all`, but a pod always reaches itself.
    fn all(all: bool) -> Matrix {
        let mut m = BTreeMap::new();
        for from in pods() {
            for to in pods() {
                for port in PORTS {
                    m.insert((from.clone(), to.clone(), port), all || from == to);
                }
            }
        }
        Matrix(m)
    }

    /// Set every (from, to, port) the predicate picks, but not a pod to
    /// itself.
    fn set(mut self, pick: impl Fn(&str, &str, u16) -> bool, value: bool) -> Matrix {
        for ((from, to, port), v) in self.0.iter_mut() {
            if from != to && pick(from, to, *port) {
                *v = value;
            }
        }
        self
    }

    fn table(&self) -> String {
        let mut s = String::new();
        for port in PORTS {
            write!(s, "port {port}\tto:").unwrap();
            for to in pods() {
                write!(s, " {to}").unwrap();
            }
            s.push('\n');
            for from in pods() {
                write!(s, "{from}\t   ").unwrap();
                for to in pods() {
                    let v = self.0[&(from.clone(), to.clone(), port)];
                    write!(s, "  {}  ", if v { "." } else { "X" }).unwrap();
                }
                s.push('\n');
            }
        }
        s
    }
}

struct World {
    lab: Lab,
    /// Pod (`x/a`) → its address.
    ips: BTreeMap<String, String>,
}

impl World {
    fn up() -> World {
        common::require_local_registry();
        let lab = Lab::up("netpol", &lab_yaml());
        let mut ips = BTreeMap::new();
        for ns in NAMESPACES {
            let out = lab.ok(&["get", "pods", "-n", ns, "-o", "json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            for p in v["items"].as_array().unwrap() {
                ips.insert(
                    format!("{ns}/{}", p["metadata"]["name"].as_str().unwrap()),
                    p["status"]["podIP"].as_str().unwrap().to_string(),
                );
            }
        }
        assert_eq!(ips.len(), 9, "{ips:?}");
        World { lab, ips }
    }

    /// Every pod probes every pod and port (the 9 sources side by side).
    fn probe(&self) -> Matrix {
        let mut script = String::new();
        for to in pods() {
            for port in PORTS {
                // curl's exit code: 0 connected (and got an answer), 7
                // refused or rejected, 28 timed out.
                write!(
                    script,
                    "curl -s -o /dev/null --connect-timeout 2 -m 3 http://{}:{port}/; echo \"{to} {port} $?\"; ",
                    self.ips[&to]
                )
                .unwrap();
            }
        }
        let results: Vec<(String, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = pods()
                .into_iter()
                .map(|from| {
                    let script = script.clone();
                    s.spawn(move || {
                        let (ns, pod) = from.split_once('/').unwrap();
                        let out = self
                            .lab
                            .run(&["exec", "-n", ns, pod, "--", "sh", "-c", &script]);
                        (from, stdout(&out))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut m = BTreeMap::new();
        for (from, out) in results {
            for line in out.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let [to, port, code] = f[..] {
                    m.insert(
                        (from.clone(), to.to_string(), port.parse().unwrap()),
                        code == "0",
                    );
                }
            }
        }
        Matrix(m)
    }

    /// Probes until the matrix is `want` (policies take effect a sync
    /// after kubectl returns); fails with both tables after 15 s.
    fn expect(&self, case: &str, want: &Matrix) {
        let start = Instant::now();
        loop {
            let got = self.probe();
            if &got == want {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let mut diff = String::new();
                for (k, v) in &want.0 {
                    if got.0.get(k) != Some(v) {
                        writeln!(
                            diff,
                            "  {} -> {} :{}: want {v}, got {:?}",
                            k.0,
                            k.1,
                            k.2,
                            got.0.get(k)
                        )
                        .unwrap();
                    }
                }
                let mut tables = String::new();
                for node in ["node-1", "node-2"] {
                    let out = self.lab.list_table(node, "netlab-policy");
                    writeln!(tables, "{node}:\n{}{}", stdout(&out), common::stderr(&out)).unwrap();
                }
                panic!(
                    "case {case}: reachability differs (. connects, X does not)\nwanted:\n{}\ngot:\n{}\ndifferences:\n{diff}\nthe nodes' policy tables:\n{tables}",
                    want.table(),
                    got.table()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn apply(&self, name: &str, manifest: &str) {
        self.lab
            .kubectl_apply(KUBECTL, &format!("{name}.yaml"), manifest);
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.lab.kubectl_ok(KUBECTL, args)
    }

    /// Deletes every policy of every namespace: the next case starts open.
    fn clear(&self) {
        for ns in NAMESPACES {
            self.kubectl(&["delete", "networkpolicy", "--all", "-n", ns]);
        }
    }
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: \"{ns}\"\nspec:\n{spec}"
    )
}

fn ns_of(p: &str) -> &str {
    p.split_once('/').unwrap().0
}

#[test]
fn the_upstream_truth_tables() {
    let w = World::up();
    let open = Matrix::all(true);
    w.expect("no policy", &open);

    // Default deny ingress in x.
    w.apply(
        "deny",
        &policy("x", "deny", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
    );
    w.expect(
        "default deny ingress in x",
        &open.clone().set(|_, to, _| ns_of(to) == "x", false),
    );
    // The table on each node holds the policy's pods, and says why.
    let table = stdout(&w.lab.list_table("node-1", "netlab-policy"));
    assert!(
        table.contains("reject with icmp admin-prohibited"),
        "{table}"
    );
    assert!(table.contains("isolated by x/deny"), "{table}");
    // The kubelet's probes come from the node: allowed whatever the
    // policies (Kubernetes requires it). x/a stays Ready.
    std::thread::sleep(Duration::from_secs(3));
    let ready = w.kubectl(&[
        "get",
        "pod",
        "a",
        "-n",
        "x",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready.trim(), "True", "x/a's readiness probe was denied");
    // `netlab trace` names the policy, from a pod on x/a's node (the
    // node that judges it).
    let xa = w.ips["x/a"].clone();
    let subnet = |ip: &str| ip.rsplit_once('.').unwrap().0.to_string();
    let from = pods()
        .into_iter()
        .find(|p| p != "x/a" && subnet(&w.ips[p]) == subnet(&xa))
        .expect("another pod on x/a's node");
    let (ns, pod) = from.split_once('/').unwrap();
    let out = w.lab.run(&[
        "trace",
        "-n",
        ns,
        &format!("pod/{pod}"),
        &format!("{xa}:80"),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("NetworkPolicy rejects it: x/a ingress denied: isolated by x/deny")
            && text.contains("pod x/a is isolated for ingress by x/deny")
            && text.contains(&format!("no policy selects pod {from} for egress")),
        "trace from {from}:\n{text}{}",
        common::stderr(&out)
    );

    // Allow from the same namespace, on top.
    w.apply(
        "same-ns",
        &policy(
            "x",
            "same-ns",
            "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n",
        ),
    );
    w.expect(
        "allow from the same namespace",
        &open
            .clone()
            .set(|from, to, _| ns_of(to) == "x" && ns_of(from) != "x", false),
    );
    w.clear();
    w.expect("policies deleted", &open);

    // Allow x/a from namespace y (by label), port 80 only.
    w.apply(
        "from-y",
        &policy(
            "x",
            "from-y",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels: {ns: \"y\"}\n    ports:\n    - port: 80\n",
        ),
    );
    w.expect(
        "allow x/a from namespace y on 80",
        &open.clone().set(|_, to, _| to == "x/a", false).set(
            |from, to, port| to == "x/a" && ns_of(from) == "y" && port == 80,
            true,
        ),
    );
    w.clear();

    // podSelector and namespaceSelector in one peer: pods b of y.
    w.apply(
        "one-peer",
        &policy(
            "x",
            "one-peer",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels: {ns: \"y\"}\n      podSelector:\n        matchLabels: {pod: b}\n",
        ),
    );
    let isolated_a = open.clone().set(|_, to, _| to == "x/a", false);
    w.expect(
        "one peer with both selectors",
        &isolated_a
            .clone()
            .set(|from, to, _| to == "x/a" && from == "y/b", true),
    );
    // ... and as two peers: every pod of y, and pods b of x.
    w.apply(
        "one-peer",
        &policy(
            "x",
            "one-peer",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels: {ns: \"y\"}\n    - podSelector:\n        matchLabels: {pod: b}\n",
        ),
    );
    w.expect(
        "two peers",
        &isolated_a.clone().set(
            |from, to, _| to == "x/a" && (ns_of(from) == "y" || from == "x/b"),
            true,
        ),
    );
    w.clear();

    // ipBlock with except: the pod network but y/b.
    let yb = w.ips["y/b"].clone();
    w.apply(
        "block",
        &policy(
            "x",
            "block",
            &format!("  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.244.0.0/16\n        except: [{yb}/32]\n"),
        ),
    );
    w.expect(
        "ipBlock with except",
        &open
            .clone()
            .set(|from, to, _| to == "x/a" && from == "y/b", false),
    );
    w.clear();

    // A named port, and a port range.
    w.apply(
        "named",
        &policy(
            "x",
            "named",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - ports:\n    - port: serve-81-tcp\n",
        ),
    );
    w.expect(
        "named port",
        &open
            .clone()
            .set(|_, to, port| to == "x/a" && port == 80, false),
    );
    w.apply(
        "named",
        &policy(
            "x",
            "named",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - ports:\n    - port: 79\n      endPort: 80\n",
        ),
    );
    w.expect(
        "endPort range",
        &open
            .clone()
            .set(|_, to, port| to == "x/a" && port == 81, false),
    );
    w.clear();

    // A label change moves a pod into and out of a policy's peers.
    w.apply(
        "blue",
        &policy(
            "x",
            "blue",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n      podSelector:\n        matchLabels: {team: blue}\n",
        ),
    );
    w.expect("nobody is blue", &isolated_a);
    w.kubectl(&["label", "pod", "c", "-n", "z", "team=blue"]);
    w.expect(
        "z/c turned blue",
        &isolated_a
            .clone()
            .set(|from, to, _| to == "x/a" && from == "z/c", true),
    );
    w.kubectl(&["label", "pod", "c", "-n", "z", "team-"]);
    w.expect("z/c is blue no more", &isolated_a);
    // ... and the selected pod out of the policy.
    w.kubectl(&["label", "pod", "a", "-n", "x", "pod=other", "--overwrite"]);
    w.expect("x/a no longer selected", &open);
    w.kubectl(&["label", "pod", "a", "-n", "x", "pod=a", "--overwrite"]);
    w.clear();

    // Default deny egress in y; then DNS allowed explicitly.
    w.apply(
        "deny-egress",
        &policy(
            "y",
            "deny-egress",
            "  podSelector: {}\n  policyTypes: [Egress]\n",
        ),
    );
    let no_egress = open.clone().set(|from, _, _| ns_of(from) == "y", false);
    w.expect("default deny egress in y", &no_egress);
    let lookup = |ns: &str| {
        w.lab
            .run(&[
                "exec",
                "-n",
                ns,
                "a",
                "--",
                "nslookup",
                "kubernetes.default.svc.cluster.local",
            ])
            .status
            .success()
    };
    assert!(!lookup("y"), "DNS works from y under default deny egress");
    assert!(lookup("x"));
    w.apply(
        "dns",
        &policy(
            "y",
            "dns",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: kube-system\n    ports:\n    - {port: 53, protocol: UDP}\n    - {port: 53, protocol: TCP}\n",
        ),
    );
    common::wait_for("DNS from y once allowed", Duration::from_secs(10), || {
        lookup("y")
    });
    w.expect("DNS allowed, nothing else", &no_egress);
    w.clear();
    w.expect("all open again", &open);
    // No policy left: no table left.
    let out = w.lab.list_table("node-1", "netlab-policy");
    assert!(
        !out.status.success(),
        "the policy table outlived the policies"
    );
    w.lab.down_clean();
}
