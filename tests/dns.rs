//! The cluster DNS, end to end (root): the tutorial's DNS section verbatim,
//! every record kind of the Kubernetes DNS specification queried with real
//! resolvers (busybox nslookup, glibc getent, dig) from pods and nodes,
//! answers following object changes, TCP fallback, bad queries, resolv.conf
//! per dnsPolicy, and names outside the cluster.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// `dig` from a node's network namespace against kube-dns; returns stdout.
fn dig(lab: &Lab, args: &[&str]) -> String {
    let mut full = vec![
        "exec",
        "node/node-1",
        "--",
        "dig",
        "@10.0.0.10",
        "+time=2",
        "+tries=1",
    ];
    full.extend_from_slice(args);
    stdout(&lab.run(&full))
}

/// The answers of `dig +short`, sorted.
fn short(lab: &Lab, args: &[&str]) -> Vec<String> {
    let mut full = vec!["+short"];
    full.extend_from_slice(args);
    let mut v: Vec<String> = dig(lab, &full)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// dig's `status:` (NOERROR, NXDOMAIN, REFUSED, …) and answer count.
fn status(lab: &Lab, args: &[&str]) -> (String, usize) {
    let out = dig(lab, args);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string();
    let answers = out
        .split("ANSWER: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (status, answers)
}

#[test]
fn tutorial_dns_section() {
    let yaml = format!(
        "{}{}---\n{MY_NGINX_SVC}",
        lab_doc(2),
        nginx_deployment("my-nginx", 2)
    );
    let lab = Lab::up("dns-tutorial", &yaml);
    let out = lab.ok(&["get", "services", "kube-dns", "--namespace=kube-system"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().take(5).collect::<Vec<_>>(),
        [
            "kube-dns",
            "ClusterIP",
            "10.0.0.10",
            "<none>",
            "53/UDP,53/TCP"
        ]
    );
    // The server runs in the lab, as a pod of kube-system.
    let pods = lab.ok(&["get", "pods", "-n", "kube-system"]);
    assert!(
        pods.lines()
            .any(|l| l.starts_with("coredns-") && l.contains("1/1") && l.contains("Running")),
        "{pods}"
    );
    let ip = cluster_ip(&lab, "my-nginx");

    // `kubectl run curl --image=radial/busyboxplus:curl -i --tty`, then
    // `nslookup my-nginx` in it (stdin here is not a terminal, as in CI:
    // it ends at once, and the command waits for that, so that none of
    // its output comes before the session is attached).
    let out = lab.run(&[
        "run",
        "curl",
        "--image=radial/busyboxplus:curl",
        "-i",
        "--tty",
        "--rm",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "read x; nslookup my-nginx",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("Server:") && text.contains("10.0.0.10"),
        "{text}"
    );
    assert!(text.contains(&format!("Address: {ip}")), "{text}");
    assert!(text.contains("pod \"curl\" deleted"), "{text}");
    assert!(!lab.ok(&["get", "pods"]).contains("curl"));

    // gethostbyname() in a glibc pod, through the search path.
    let (nginx, _, _) = lab.pods()[0].clone();
    let out = lab.ok(&["exec", &nginx, "--", "getent", "hosts", "my-nginx"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [ip.as_str(), "my-nginx.default.svc.cluster.local"]
    );
    let resolv = lab.ok(&["exec", &nginx, "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
    );
    // And the service by its DNS name, over the service proxy.
    let body = must_curl(&lab, &nginx, "http://my-nginx/");
    assert!(body.contains("Welcome to nginx"), "{body}");

    // `netlab run` without -i: a detached pod labelled run=NAME.
    assert_eq!(
        lab.ok(&["run", "web", "--image=nginx", "--port=80"]).trim(),
        "pod/web created"
    );
    let out = lab.ok(&["get", "pods", "-l", "run=web"]);
    assert!(out.contains("web") && out.contains("Running"), "{out}");
    let out = lab.run(&["run", "x", "--image=nginx", "--rm"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("add -i"), "{}", stderr(&out));
    // The exit code of an attached command is netlab's.
    let out = lab.run(&[
        "run",
        "fail",
        "--image=radial/busyboxplus:curl",
        "-i",
        "--rm",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "read x; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    lab.down_clean();
}

#[test]
fn records_of_the_dns_specification() {
    let headless = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels:
    app: web
spec:
  hostname: web-0
  subdomain: web
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: radial/busyboxplus:curl
    command: ["httpd", "-f", "-p", "80"]
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: search
spec:
  type: ExternalName
  externalName: search.example.org
---
apiVersion: v1
kind: Service
metadata:
  name: multi
spec:
  selector:
    run: my-nginx
  ports:
  - name: http
    port: 80
  - name: dns-ish
    port: 53
    protocol: UDP
"#;
    let yaml = format!(
        "{}{}---\n{MY_NGINX_SVC}---\n{headless}",
        lab_doc(2),
        nginx_deployment("my-nginx", 1)
    );
    let lab = Lab::up("dns-records", &yaml);
    let ip = cluster_ip(&lab, "my-nginx");
    let web0 = lab
        .pods()
        .into_iter()
        .find(|p| p.0 == "web-0")
        .expect("web-0")
        .1;

    // A, case-insensitively, and over TCP.
    assert_eq!(
        short(&lab, &["my-nginx.default.svc.cluster.local"]),
        vec![ip.clone()]
    );
    assert_eq!(
        short(&lab, &["MY-NGINX.Default.svc.cluster.local"]),
        vec![ip.clone()]
    );
    assert_eq!(
        short(&lab, &["+tcp", "my-nginx.default.svc.cluster.local"]),
        vec![ip.clone()]
    );
    // SRV for named ports, of each protocol.
    assert_eq!(
        short(
            &lab,
            &["SRV", "_http._tcp.my-nginx.default.svc.cluster.local"]
        ),
        ["0 100 80 my-nginx.default.svc.cluster.local."]
    );
    assert_eq!(
        short(
            &lab,
            &["SRV", "_dns-ish._udp.multi.default.svc.cluster.local"]
        ),
        ["0 100 53 multi.default.svc.cluster.local."]
    );
    // PTR for the cluster IP.
    assert_eq!(
        short(&lab, &["-x", &ip]),
        ["my-nginx.default.svc.cluster.local."]
    );
    // Headless: the endpoint, its hostname, SRV to it, PTR back.
    assert_eq!(
        short(&lab, &["web.default.svc.cluster.local"]),
        vec![web0.clone()]
    );
    assert_eq!(
        short(&lab, &["web-0.web.default.svc.cluster.local"]),
        vec![web0.clone()]
    );
    assert_eq!(
        short(&lab, &["SRV", "_http._tcp.web.default.svc.cluster.local"]),
        ["0 100 80 web-0.web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(&lab, &["-x", &web0]),
        ["web-0.web.default.svc.cluster.local."]
    );
    // ExternalName: a CNAME (and kubectl's columns for it).
    let out = lab.ok(&["get", "svc", "search"]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().take(4).eq([
                "search",
                "ExternalName",
                "<none>",
                "search.example.org"
            ])),
        "{out}"
    );
    let out = dig(&lab, &["search.default.svc.cluster.local", "CNAME"]);
    assert!(out.contains("CNAME\tsearch.example.org."), "{out}");
    // Pod records.
    let dashed = web0.replace('.', "-");
    assert_eq!(
        short(&lab, &[&format!("{dashed}.default.pod.cluster.local")]),
        vec![web0.clone()]
    );
    // The schema version.
    assert_eq!(
        short(&lab, &["TXT", "dns-version.cluster.local"]),
        ["\"1.1.0\""]
    );
    // NXDOMAIN vs NODATA, both with the SOA.
    assert_eq!(
        status(&lab, &["nope.default.svc.cluster.local"]),
        ("NXDOMAIN".into(), 0)
    );
    assert_eq!(
        status(&lab, &["AAAA", "my-nginx.default.svc.cluster.local"]),
        ("NOERROR".into(), 0)
    );
    assert_eq!(
        status(&lab, &["default.svc.cluster.local"]),
        ("NOERROR".into(), 0)
    );
    assert!(dig(&lab, &["nope.default.svc.cluster.local"]).contains("SOA"));
    // Outside the cluster domain, without upstreams: refused at once.
    let t = Instant::now();
    assert_eq!(status(&lab, &["example.org"]).0, "REFUSED");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );

    // Partial names through a pod's search path (glibc's resolver, ndots:5).
    let nginx = lab
        .pods()
        .into_iter()
        .find(|p| p.0.starts_with("my-nginx"))
        .expect("an nginx pod")
        .0;
    let out = lab.ok(&["exec", &nginx, "--", "getent", "hosts", "my-nginx.default"]);
    assert!(out.contains(&ip), "{out}");
    lab.down_clean();
}

#[test]
fn answers_follow_changes() {
    let svc = r#"apiVersion: v1
kind: Service
metadata:
  name: pool
spec:
  clusterIP: None
  selector:
    app: pool
  ports:
  - name: http
    port: 80
"#;
    let yaml = format!(
        "{}{}---\n{svc}",
        lab_doc(2),
        who_deployment("pool", 1, "pool")
    );
    let lab = Lab::up("dns-changes", &yaml);
    let name = "pool.default.svc.cluster.local";
    let ips = short(&lab, &[name]);
    assert_eq!(ips.len(), 1);
    // An endpoint without a hostname: its PTR names it by its dashed
    // address, as its SRV record does (CoreDNS answers the same).
    let dashed = format!("{}.{name}.", ips[0].replace('.', "-"));
    assert_eq!(short(&lab, &["-x", &ips[0]]), std::slice::from_ref(&dashed));
    assert_eq!(
        short(&lab, &["SRV", &format!("_http._tcp.{name}")]),
        [format!("0 100 80 {dashed}")]
    );

    // Scale up: all ready endpoints appear (once the command returns, the
    // pods serve; the answer follows within the watch interval).
    lab.ok(&["scale", "deployment", "pool", "--replicas=12"]);
    let t = Instant::now();
    wait_for("12 A records", Duration::from_secs(2), || {
        short(&lab, &[name]).len() == 12
    });
    eprintln!(
        "12 endpoints answered {:?} after scale returned",
        t.elapsed()
    );
    // 12 SRV records and their addresses overflow 512 bytes: truncated
    // over UDP, complete over TCP (dig retries there itself).
    let out = dig(
        &lab,
        &["+noedns", "+ignore", "SRV", &format!("_http._tcp.{name}")],
    );
    assert!(out.contains(" tc "), "expected the TC flag: {out}");
    assert_eq!(
        short(&lab, &["+noedns", "SRV", &format!("_http._tcp.{name}")]).len(),
        12
    );

    // Scale to zero: no ready endpoint, NXDOMAIN.
    lab.ok(&["scale", "deployment", "pool", "--replicas=0"]);
    wait_for("NXDOMAIN", Duration::from_secs(2), || {
        status(&lab, &[name]).0 == "NXDOMAIN"
    });

    // Delete and recreate a ClusterIP service: its name goes, then returns
    // with the new address.
    lab.ok(&["expose", "deployment", "pool", "--name=front", "--port=80"]);
    let front = "front.default.svc.cluster.local";
    let ip1 = cluster_ip(&lab, "front");
    wait_for("front", Duration::from_secs(1), || {
        short(&lab, &[front]) == vec![ip1.clone()]
    });
    lab.ok(&["delete", "service", "front"]);
    let t = Instant::now();
    wait_for("front gone", Duration::from_secs(1), || {
        status(&lab, &[front]).0 == "NXDOMAIN"
    });
    eprintln!(
        "deleted service answered NXDOMAIN {:?} after delete returned",
        t.elapsed()
    );
    lab.ok(&["expose", "deployment", "pool", "--name=front", "--port=80"]);
    let ip2 = cluster_ip(&lab, "front");
    wait_for("front again", Duration::from_secs(1), || {
        short(&lab, &[front]) == vec![ip2.clone()]
    });
    lab.down_clean();
}

#[test]
fn bad_queries_do_not_crash_the_server() {
    let lab = Lab::up("dns-bad", &lab_doc(1));
    let junk = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in [b"", b"\x00", b"\xff" * 11, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", b"A" * 4000, bytes(range(256)) * 20]:
    s.sendto(p, ("10.0.0.10", 53))
t = socket.create_connection(("10.0.0.10", 53), timeout=2)
t.sendall(b"\xff\xff" + b"B" * 100)
t.close()
t = socket.create_connection(("10.0.0.10", 53), timeout=2)
t.sendall(b"\x00\x05abc")
t.close()
"#;
    lab.ok(&["exec", "node/node-1", "--", "python3", "-c", junk]);
    assert_eq!(
        short(&lab, &["kubernetes.default.svc.cluster.local"]),
        ["10.0.0.1"]
    );
    assert_eq!(
        short(&lab, &["+tcp", "kubernetes.default.svc.cluster.local"]),
        ["10.0.0.1"]
    );
    lab.down_clean();
}

#[test]
fn dns_policies_and_upstreams() {
    // A stand-in upstream resolver on the host's loopback.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut upstream = std::process::Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            &format!("--port={port}"),
            "--address=/example.test/192.0.2.7",
        ])
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    std::thread::sleep(Duration::from_millis(300));
    let pods = r#"apiVersion: v1
kind: Pod
metadata:
  name: none
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: ["192.0.2.53"]
    searches: ["corp.example"]
    options:
    - name: ndots
      value: "2"
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: default
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
"#;
    let yaml = format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  dns:\n    upstreams: [\"127.0.0.1:{port}\"]\n---\n{pods}"
    );
    let lab = Lab::up("dns-policies", &yaml);
    assert_eq!(
        lab.ok(&["exec", "none", "--", "cat", "/etc/resolv.conf"]),
        "search corp.example\nnameserver 192.0.2.53\noptions ndots:2\n"
    );
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let pod_file = lab.ok(&["exec", "default", "--", "cat", "/etc/resolv.conf"]);
    for line in host.lines().filter(|l| l.starts_with("nameserver")) {
        assert!(pod_file.contains(line), "{pod_file} lacks {line}");
    }
    // Names outside the cluster go to the Lab's upstream.
    assert_eq!(short(&lab, &["www.example.test"]), ["192.0.2.7"]);
    assert_eq!(
        short(&lab, &["kubernetes.default.svc.cluster.local"]),
        ["10.0.0.1"]
    );
    lab.down_clean();
    let _ = upstream.kill();
    let _ = upstream.wait();
}

#[test]
fn a_lab_without_dns() {
    let yaml = "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  dns:\n    enabled: false\n";
    let lab = Lab::up("dns-off", yaml);
    let out = lab.run(&["get", "svc", "kube-dns", "-n", "kube-system"]);
    assert!(!out.status.success());
    assert!(!lab.ok(&["get", "pods", "-A"]).contains("coredns"));
    lab.down_clean();
}
