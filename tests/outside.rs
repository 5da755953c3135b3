//! Outside the cluster, end to end (root): the tutorial's "暴露服务" section
//! replayed from the lab's external host (NodePort on every node's
//! ExternalIP, `edit` to LoadBalancer, `curl https://<EXTERNAL-IP> -k`), pod
//! and cluster IPs unreachable from outside, type transitions keeping the
//! clusterIP and releasing node ports and addresses, the client address
//! with `externalTrafficPolicy: Local` seen from the server's side, the
//! address pool, and host access added and removed.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const EXTERNAL: &str = "host/external";

fn labs_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("labs")
}

/// (exit code, stdout) of a curl from the external host.
fn from_outside(lab: &Lab, args: &[&str]) -> (i32, String) {
    let mut full = vec!["exec", EXTERNAL, "--", "curl", "-s", "-m", "3"];
    full.extend_from_slice(args);
    let out = lab.run(&full);
    (out.status.code().unwrap_or(-1), stdout(&out))
}

fn node_ports(lab: &Lab, svc: &str) -> Vec<(i64, Option<i64>)> {
    svc_json(lab, svc)["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_i64().unwrap(), p["nodePort"].as_i64()))
        .collect()
}

fn ingress(lab: &Lab, svc: &str) -> Option<String> {
    svc_json(lab, svc)["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(String::from)
}

fn wait_ingress(lab: &Lab, svc: &str) -> String {
    let mut ip = None;
    wait_for("a LoadBalancer address", Duration::from_secs(10), || {
        ip = ingress(lab, svc);
        ip.is_some()
    });
    ip.unwrap()
}

fn external_ips(lab: &Lab) -> Vec<String> {
    let nodes: serde_json::Value =
        serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["status"]["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["type"] == "ExternalIP")
                .unwrap()["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn tutorial_exposing_the_service() {
    let lab = Lab::up(
        "expose",
        &format!("{}{}", lab_doc(2), nginx_deployment("web", 1)),
    );
    lab.ok(&[
        "cert",
        "--subj",
        "/CN=my-nginx/O=my-nginx",
        "--secret",
        "nginxsecret",
    ]);
    let conf = labs_dir().join("default.conf");
    lab.ok(&[
        "create",
        "configmap",
        "nginxconfigmap",
        &format!("--from-file={}", conf.display()),
    ]);
    lab.ok(&[
        "create",
        "-f",
        labs_dir().join("nginx-secure-app.yaml").to_str().unwrap(),
    ]);
    let pod = lab
        .pods()
        .into_iter()
        .find(|p| p.0.starts_with("my-nginx-"))
        .unwrap();
    wait_for("my-nginx serving", Duration::from_secs(20), || {
        curl(&lab, "node/node-1", &format!("http://{}/", pod.1)).0 == 0
    });
    let cip = cluster_ip(&lab, "my-nginx");

    // kubectl get svc my-nginx -o yaml | grep nodePort -C 5
    let yaml = lab.ok(&["get", "svc", "my-nginx", "-o", "yaml"]);
    assert!(yaml.contains("nodePort: 3"), "{yaml}");
    let ports = node_ports(&lab, "my-nginx");
    let https = ports.iter().find(|p| p.0 == 443).unwrap().1.unwrap();
    // kubectl get nodes -o yaml | grep ExternalIP -C 1
    let nodes = lab.ok(&["get", "nodes", "-o", "yaml"]);
    assert!(nodes.contains("type: ExternalIP"), "{nodes}");
    let wide = lab.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("EXTERNAL-IP") && wide.contains("203.0.113.2"),
        "{wide}"
    );

    // curl https://<EXTERNAL-IP>:<NODE-PORT> -k, on every node.
    let ips = external_ips(&lab);
    assert_eq!(ips, ["203.0.113.2", "203.0.113.3"]);
    for ip in &ips {
        let (code, body) = from_outside(&lab, &["-k", &format!("https://{ip}:{https}")]);
        assert_eq!(code, 0, "NodePort on {ip} from outside");
        assert!(body.contains("<h1>Welcome to nginx!</h1>"), "{body}");
    }
    // As from the internet: pod IPs and cluster IPs are not reachable.
    for target in [format!("http://{}/", pod.1), format!("http://{cip}:8080/")] {
        let (code, _) = from_outside(&lab, &[&target]);
        assert_ne!(code, 0, "{target} answered from outside the cluster");
    }

    // kubectl edit svc my-nginx: NodePort → LoadBalancer.
    let out = netlab_env(
        &["--lab", &lab.name, "edit", "svc", "my-nginx"],
        &[("EDITOR", "sed -i s/NodePort/LoadBalancer/")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "service/my-nginx edited");
    let lb = wait_ingress(&lab, "my-nginx");
    assert!(lb.starts_with("203.0.113.2"), "{lb} from the pool");
    let row = lab.ok(&["get", "svc", "my-nginx", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..4],
        ["my-nginx", "LoadBalancer", cip.as_str(), lb.as_str()]
    );
    let http = ports.iter().find(|p| p.0 == 8080).unwrap().1.unwrap();
    assert_eq!(
        cols[4],
        format!("8080:{http}/TCP,443:{https}/TCP"),
        "node ports kept"
    );
    let described = lab.ok(&["describe", "service", "my-nginx"]);
    assert!(
        described.contains(&format!("LoadBalancer Ingress:     {lb}")),
        "{described}"
    );
    assert!(described.contains("nodeAssigned"), "{described}");
    // curl https://<EXTERNAL-IP> -k
    wait_for(
        "the load balancer answering",
        Duration::from_secs(10),
        || {
            from_outside(&lab, &["-k", &format!("https://{lb}")])
                .1
                .contains("<title>Welcome to nginx!</title>")
        },
    );
    assert!(from_outside(&lab, &[&format!("http://{lb}:8080/")])
        .1
        .contains("Welcome to nginx!"));

    // Back to ClusterIP with a patch: the clusterIP stays, node ports and
    // the address are released, nothing answers outside any more.
    assert_eq!(
        lab.ok(&[
            "patch",
            "svc",
            "my-nginx",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#
        ])
        .trim(),
        "service/my-nginx patched"
    );
    assert_eq!(cluster_ip(&lab, "my-nginx"), cip);
    assert!(node_ports(&lab, "my-nginx").iter().all(|p| p.1.is_none()));
    assert_eq!(ingress(&lab, "my-nginx"), None);
    wait_for("the address withdrawn", Duration::from_secs(10), || {
        ["node-1", "node-2"].iter().all(|n| {
            !lab.ok(&["exec", &format!("node/{n}"), "--", "ip", "-br", "addr"])
                .contains(&lb)
        })
    });
    assert_ne!(from_outside(&lab, &["-k", &format!("https://{lb}")]).0, 0);
    assert_ne!(
        from_outside(&lab, &["-k", &format!("https://{}:{https}", ips[0])]).0,
        0
    );
    assert!(must_curl(&lab, "node/node-1", &format!("http://{cip}:8080/")).contains("Welcome"));
    // And to NodePort: new node ports, same clusterIP.
    lab.ok(&[
        "patch",
        "svc",
        "my-nginx",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let again = node_ports(&lab, "my-nginx");
    let https = again.iter().find(|p| p.0 == 443).unwrap().1.unwrap();
    assert_eq!(cluster_ip(&lab, "my-nginx"), cip);
    assert_eq!(
        from_outside(&lab, &["-k", &format!("https://{}:{https}", ips[1])]).0,
        0
    );
    lab.down_clean();
}

/// The last access-log line's client address of pod `pod`.
fn last_client(lab: &Lab, pod: &str) -> String {
    let logs = lab.ok(&["logs", pod]);
    logs.lines()
        .rev()
        .find(|l| l.contains("GET /"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let yaml = format!(
        "{}{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  externalTrafficPolicy: Local\n  selector:\n    run: web\n  ports:\n  - port: 80\n",
        lab_doc(2),
        nginx_deployment("web", 1)
    );
    let lab = Lab::up("etplocal", &yaml);
    let (pod, _, node) = lab
        .pods()
        .into_iter()
        .find(|p| p.0.starts_with("web-"))
        .unwrap();
    let np = node_ports(&lab, "web")[0].1.unwrap();
    let (mine, other) = if node == "node-1" {
        ("203.0.113.2", "203.0.113.3")
    } else {
        ("203.0.113.3", "203.0.113.2")
    };
    let (code, _) = from_outside(&lab, &[&format!("http://{mine}:{np}/")]);
    assert_eq!(code, 0);
    assert_eq!(
        last_client(&lab, &pod),
        "203.0.113.254",
        "Local keeps the client's address"
    );
    // The node without a local endpoint does not forward (kube-proxy drops).
    assert_ne!(from_outside(&lab, &[&format!("http://{other}:{np}/")]).0, 0);

    // Cluster policy: any node forwards, masqueraded to a node's address.
    lab.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
    ]);
    assert_eq!(from_outside(&lab, &[&format!("http://{other}:{np}/")]).0, 0);
    let client = last_client(&lab, &pod);
    assert!(
        client.starts_with("172.18.0."),
        "masqueraded to the node: {client}"
    );

    // A Local LoadBalancer is announced by the node with the endpoint and
    // keeps the client's address too.
    lab.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local"}}"#,
    ]);
    let lb = wait_ingress(&lab, "web");
    wait_for("the announcement", Duration::from_secs(10), || {
        lab.ok(&["exec", &format!("node/{node}"), "--", "ip", "-br", "addr"])
            .contains(&format!("{lb}/32"))
    });
    wait_for(
        "the load balancer answering",
        Duration::from_secs(10),
        || from_outside(&lab, &[&format!("http://{lb}/")]).0 == 0,
    );
    assert_eq!(last_client(&lab, &pod), "203.0.113.254");
    lab.down_clean();
}

#[test]
fn load_balancer_pool_and_requested_addresses() {
    let yaml = format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  public:\n    loadBalancerPool: 203.0.113.240-203.0.113.240\n---\n{}",
        nginx_deployment("web", 1)
    );
    let lab = Lab::up("lbpool", &yaml);
    let svc = |name: &str, extra: &str| {
        let file = lab.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  selector:\n    run: web\n  ports:\n  - port: 80\n{extra}"),
        )
        .unwrap();
        lab.ok(&["apply", "-f", file.to_str().unwrap()]);
    };
    svc("first", "");
    assert_eq!(wait_ingress(&lab, "first"), "203.0.113.240");
    svc("second", "");
    svc("third", "  loadBalancerIP: 192.0.2.7\n");
    std::thread::sleep(Duration::from_millis(1200));
    for (name, why) in [
        ("second", "no available IPs"),
        ("third", "is not allowed in config"),
    ] {
        let row = lab.ok(&["get", "svc", name, "--no-headers"]);
        assert_eq!(row.split_whitespace().nth(3), Some("<pending>"), "{row}");
        let described = lab.ok(&["describe", "svc", name]);
        assert!(
            described.contains("AllocationFailed") && described.contains(why),
            "{described}"
        );
    }
    // Deleting the first frees its address for the second.
    lab.ok(&["delete", "svc", "first"]);
    assert_eq!(wait_ingress(&lab, "second"), "203.0.113.240");
    assert!(from_outside(&lab, &["http://203.0.113.240/"])
        .1
        .contains("Welcome to nginx!"));
    lab.down_clean();
}

#[test]
fn host_access_is_added_and_removed() {
    // Its own public range (TEST-NET-2), so parallel tests do not meet it.
    let yaml = format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  public:\n    cidr: 198.51.100.0/24\n    hostAccess: true\n---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n  selector:\n    run: web\n  ports:\n  - port: 80\n",
        nginx_deployment("web", 1)
    );
    let routes = || {
        String::from_utf8(
            std::process::Command::new("ip")
                .args(["route"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let (links_before, routes_before) = (host_links(), routes());
    assert!(
        !routes_before.contains("198.51.100."),
        "this host already routes 198.51.100.0/24: host access cannot be tested here"
    );
    let lab = Lab::up("hostaccess", &yaml);
    let added: Vec<String> = host_links().difference(&links_before).cloned().collect();
    assert_eq!(added.len(), 1, "one veth: {added:?}");
    assert!(added[0].starts_with("nl-"), "{added:?}");
    let new_routes: Vec<String> = routes()
        .lines()
        .filter(|l| !routes_before.contains(*l))
        .map(String::from)
        .collect();
    assert_eq!(new_routes.len(), 1, "only the public range: {new_routes:?}");
    assert!(
        new_routes[0].starts_with("198.51.100.0/24 dev nl-"),
        "{new_routes:?}"
    );
    // A shell on the host reaches the load balancer.
    let lb = wait_ingress(&lab, "web");
    assert_eq!(lb, "198.51.100.200");
    wait_for(
        "the load balancer from the host",
        Duration::from_secs(10),
        || {
            std::process::Command::new("curl")
                .args(["-s", "-m", "2", &format!("http://{lb}/")])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Welcome to nginx!"))
        },
    );
    // A second lab asking for the same range is refused and creates nothing.
    let other = Lab::prepare("hostaccess2", &yaml);
    let out = netlab(&["up", "--name", &other.name, other.file().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("overlaps the host's routes"),
        "{}",
        stderr(&out)
    );
    assert!(Traces::of(&other.name, &[]).is_clean());
    // down_clean checks the links; the route must be gone too.
    let out = lab.run(&["down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(host_links(), links_before);
    assert_eq!(routes(), routes_before);
}

#[test]
fn load_balancer_source_ranges_are_enforced() {
    let yaml = format!(
        "{}{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/25]\n  selector:\n    run: web\n  ports:\n  - port: 80\n",
        lab_doc(2),
        nginx_deployment("web", 1)
    );
    let lab = Lab::up("srcranges", &yaml);
    let lb = wait_ingress(&lab, "web");
    let np = node_ports(&lab, "web")[0].1.unwrap();
    // The external host (.254) is not in 203.0.113.0/25: dropped. Its
    // NodePorts are not filtered (kube-proxy filters the LoadBalancer IP).
    std::thread::sleep(Duration::from_millis(600));
    assert_ne!(
        from_outside(&lab, &["-m", "2", &format!("http://{lb}/")]).0,
        0
    );
    assert_eq!(
        from_outside(&lab, &[&format!("http://203.0.113.2:{np}/")]).0,
        0
    );
    let rules = lab.node_table("node-1");
    assert!(
        rules.contains("ip saddr 203.0.113.0/25 goto external-"),
        "{rules}"
    );
    // Allowing its half of the network lets it in, on the live service.
    lab.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"loadBalancerSourceRanges":["203.0.113.128/25"]}}"#,
    ]);
    wait_for(
        "the load balancer answering",
        Duration::from_secs(10),
        || {
            from_outside(&lab, &[&format!("http://{lb}/")])
                .1
                .contains("Welcome to nginx!")
        },
    );
    // Removing the ranges opens it to all.
    lab.ok(&[
        "patch",
        "svc",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/loadBalancerSourceRanges"}]"#,
    ]);
    assert!(!lab
        .node_table("node-1")
        .contains("loadBalancerSourceRanges"));
    assert_eq!(from_outside(&lab, &[&format!("http://{lb}/")]).0, 0);
    // A bad range is refused.
    let out = lab.run(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"loadBalancerSourceRanges":["nope"]}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("loadBalancerSourceRanges[0]"),
        "{}",
        stderr(&out)
    );
    lab.down_clean();
}
