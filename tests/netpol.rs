//! NetworkPolicy enforced, proven the way Kubernetes' own e2e tests do it
//! (`test/e2e/network/netpol`): three namespaces `x`, `y`, `z`, three pods
//! `a`, `b`, `c` in each serving TCP and UDP on 80 and 81, and for each
//! policy case the whole reachability matrix probed from every pod to every
//! pod, port and protocol, compared with the expected one (printed as a
//! table when they differ). Policies go in with the real kubectl, as a user
//! applies them; probes go through `netlab exec`: curl for TCP, perl for
//! UDP (a datagram out, the server's answer back).
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
/// Every port a pod serves, by protocol.
const PORTS: [(u16, &str); 4] = [(80, "tcp"), (81, "tcp"), (80, "udp"), (81, "udp")];

/// A pod's UDP server (perl from the image): on 80 and 81, each datagram
/// answered with the pod's name (`$ARGV[0]`), by one process per port.
/// (socat's `UDP-RECVFROM,fork` forks a child per datagram, and under a
/// burst a child can wait forever for a datagram its sibling took, while
/// the parent waits for the child: the port goes deaf.)
const UDP_SERVER: &str = r#"for my $p (80, 81) { next if fork; my $s = IO::Socket::INET->new(LocalPort => $p, Proto => "udp") or die "udp $p: $!"; while (defined(my $peer = $s->recv(my $d, 512))) { $s->send("$ARGV[0]\n", 0, $peer) } exit }"#;

/// A pod's UDP probes, all at once from one process: each argument
/// `ns/pod,port,ip` gets a datagram, and a line `ns/pod port udp 0` when
/// that pod answered with its name within a second (1: an ICMP error, such
/// as a rejection, a wrong answer, or silence).
const UDP_PROBE: &str = r#"use IO::Socket::INET; use IO::Select;
my $sel = IO::Select->new; my %want;
for (@ARGV) { my ($to, $port, $ip) = split /,/; my $s = IO::Socket::INET->new(PeerAddr => "$ip:$port", Proto => "udp") or next; $s->send("probe"); $want{fileno $s} = "$to $port"; $sel->add($s) }
while ($sel->count) { my @r = $sel->can_read(1) or last; for my $s (@r) { my ($to) = split / /, $want{fileno $s}; my $got; my $ok = defined($s->recv($got, 512)) && $got eq "$to\n"; print "$want{fileno $s} udp ", ($ok ? 0 : 1), "\n"; $sel->remove($s) } }
print "$want{fileno $_} udp 1\n" for $sel->handles;"#;

/// The lab: each pod serves its name over HTTP (busybox httpd) and UDP
/// (`UDP_SERVER`).
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
    command:
    - sh
    - -c
    - |
      mkdir -p /www && echo {ns}/{pod} > /www/index.html
      perl -MIO::Socket::INET -e '{UDP_SERVER}' {ns}/{pod} &
      httpd -p 81 -h /www
      exec httpd -f -p 80 -h /www
    ports:
    - {{containerPort: 80, name: serve-80-tcp}}
    - {{containerPort: 81, name: serve-81-tcp}}
    - {{containerPort: 80, name: serve-80-udp, protocol: UDP}}
    - {{containerPort: 81, name: serve-81-udp, protocol: UDP}}
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

/// Expected (or probed) reachability: (from, to, port, protocol) → the
/// server answered.
#[derive(Clone, PartialEq, Eq)]
struct Matrix(BTreeMap<(String, String, u16, &'static str), bool>);

impl Matrix {
    /// Everything `all`, but a pod always reaches itself.
    fn all(all: bool) -> Matrix {
        let mut m = BTreeMap::new();
        for from in pods() {
            for to in pods() {
                for (port, proto) in PORTS {
                    m.insert((from.clone(), to.clone(), port, proto), all || from == to);
                }
            }
        }
        Matrix(m)
    }

    /// Set every (from, to, port, protocol) the predicate picks, but not a
    /// pod to itself.
    fn set(mut self, pick: impl Fn(&str, &str, u16, &str) -> bool, value: bool) -> Matrix {
        for ((from, to, port, proto), v) in self.0.iter_mut() {
            if from != to && pick(from, to, *port, proto) {
                *v = value;
            }
        }
        self
    }

    fn table(&self) -> String {
        let mut s = String::new();
        for (port, proto) in PORTS {
            write!(s, "{proto} {port}\tto:").unwrap();
            for to in pods() {
                write!(s, " {to}").unwrap();
            }
            s.push('\n');
            for from in pods() {
                write!(s, "{from}\t   ").unwrap();
                for to in pods() {
                    let v = self.0[&(from.clone(), to.clone(), port, proto)];
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

    /// Every pod probes every pod, port and protocol, all at once (the 9
    /// sources side by side, each probing its 36 targets in parallel).
    fn probe(&self) -> Matrix {
        let mut script = String::new();
        let mut udp = Vec::new();
        for to in pods() {
            let ip = &self.ips[&to];
            for (port, proto) in PORTS {
                if proto == "udp" {
                    udp.push(format!("{to},{port},{ip}"));
                    continue;
                }
                // curl's exit code: 0 connected (and got an answer), 7
                // refused or rejected, 28 timed out.
                write!(
                    script,
                    "(curl -s -o /dev/null --connect-timeout 2 -m 3 http://{ip}:{port}/; echo \"{to} {port} tcp $?\") & "
                )
                .unwrap();
            }
        }
        write!(script, "perl -e '{UDP_PROBE}' {}; wait", udp.join(" ")).unwrap();
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
                if let [to, port, proto, code] = f[..] {
                    let proto = if proto == "tcp" { "tcp" } else { "udp" };
                    m.insert(
                        (from.clone(), to.to_string(), port.parse().unwrap(), proto),
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
                            "  {} -> {} {}/{}: want {v}, got {:?}",
                            k.0,
                            k.1,
                            k.2,
                            k.3,
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
        &open.clone().set(|_, to, _, _| ns_of(to) == "x", false),
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
    // node that judges it) and from one on the other node; the probe
    // hears the rejection at once.
    let xa = w.ips["x/a"].clone();
    let subnet = |ip: &str| ip.rsplit_once('.').unwrap().0.to_string();
    for same_node in [true, false] {
        let from = pods()
            .into_iter()
            .find(|p| p != "x/a" && (subnet(&w.ips[p]) == subnet(&xa)) == same_node)
            .expect("a pod on each node");
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
            text.matches("NetworkPolicy rejects it: x/a ingress denied: isolated by x/deny")
                .count()
                == 1
                && text.contains("pod x/a is isolated for ingress by x/deny")
                && text.contains(&format!("no policy selects pod {from} for egress"))
                && text.contains(
                    "result: unreachable: rejected by NetworkPolicy (x/a ingress denied: isolated by x/deny)"
                ),
            "trace from {from}:\n{text}{}",
            common::stderr(&out)
        );
    }

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
        &open.clone().set(
            |from, to, _, _| ns_of(to) == "x" && ns_of(from) != "x",
            false,
        ),
    );
    // An allow-all rule (`ingress: [{}]`) on top: every peer, every port.
    w.apply(
        "allow-all",
        &policy("x", "allow-all", "  podSelector: {}\n  ingress:\n  - {}\n"),
    );
    w.expect("allow-all ingress over default deny", &open);
    w.clear();
    w.expect("policies deleted", &open);

    // Allow x/a from namespace y (by label), port 80 only: TCP, the
    // protocol a port without one defaults to.
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
        &open.clone().set(|_, to, _, _| to == "x/a", false).set(
            |from, to, port, proto| {
                to == "x/a" && ns_of(from) == "y" && port == 80 && proto == "tcp"
            },
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
    let isolated_a = open.clone().set(|_, to, _, _| to == "x/a", false);
    w.expect(
        "one peer with both selectors",
        &isolated_a
            .clone()
            .set(|from, to, _, _| to == "x/a" && from == "y/b", true),
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
            |from, to, _, _| to == "x/a" && (ns_of(from) == "y" || from == "x/b"),
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
            .set(|from, to, _, _| to == "x/a" && from == "y/b", false),
    );
    w.clear();

    // x/a's ingress by port: a named port, a port range (both TCP, the
    // protocol a port without one defaults to: UDP stays denied), then UDP
    // by number and by a UDP port's name. Of x/a's four, what each allows:
    type Allowed = &'static [(u16, &'static str)];
    let cases: [(&str, &str, Allowed); 3] = [
        ("named port", "    - port: serve-81-tcp\n", &[(81, "tcp")]),
        (
            "endPort range",
            "    - port: 79\n      endPort: 80\n",
            &[(80, "tcp")],
        ),
        (
            "UDP ports",
            "    - {port: 81, protocol: UDP}\n    - {port: serve-80-udp, protocol: UDP}\n",
            &[(80, "udp"), (81, "udp")],
        ),
    ];
    for (case, ports, allowed) in cases {
        w.apply(
            "ports",
            &policy(
                "x",
                "ports",
                &format!(
                    "  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - ports:\n{ports}"
                ),
            ),
        );
        w.expect(
            case,
            &open.clone().set(
                |_, to, port, proto| to == "x/a" && !allowed.contains(&(port, proto)),
                false,
            ),
        );
    }
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
            .set(|from, to, _, _| to == "x/a" && from == "z/c", true),
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
    let no_egress = open.clone().set(|from, _, _, _| ns_of(from) == "y", false);
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
    // A trace of the DNS query says so, though UDP has no handshake (a
    // few tries: the probes above spent y/a's ICMP budget, 6 in a row,
    // then one a second).
    let trace_dns = || {
        let out = w
            .lab
            .run(&["trace", "-n", "y", "pod/a", "10.0.0.10:53", "--udp"]);
        format!("{}{}", stdout(&out), common::stderr(&out))
    };
    let mut text = trace_dns();
    for _ in 0..4 {
        if text.contains("result: unreachable") {
            break;
        }
        std::thread::sleep(Duration::from_millis(1100));
        text = trace_dns();
    }
    assert!(
        text.contains(
            "result: unreachable: rejected by NetworkPolicy (y/a egress denied: isolated by y/deny-egress)"
        ),
        "{text}"
    );
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
    // An allow-all egress rule (`egress: [{}]`): everything out again.
    w.apply(
        "allow-all",
        &policy(
            "y",
            "allow-all",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - {}\n",
        ),
    );
    w.expect("allow-all egress over default deny", &open);
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
