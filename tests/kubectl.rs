//! The real kubectl against a lab's Kubernetes API: the tutorial's reads
//! with the newest and the oldest kubectl here, the kubeconfig context
//! `up` merges and `down` removes, and the API's refusal of strangers.

mod common;

use common::*;
use std::process::Command;

/// Table output with AGE cells blanked (two renderings a second apart).
fn without_ages(table: &str) -> String {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(|c| {
                    let c = c.trim();
                    let age = !c.is_empty()
                        && c.trim_end_matches(['s', 'm', 'h', 'd'])
                            .chars()
                            .all(|ch| ch.is_ascii_digit());
                    if age {
                        "AGE".to_string()
                    } else {
                        c.to_string()
                    }
                })
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tutorial_reads_print_what_netlab_get_prints() {
    let lab = Lab::up("kubectl-reads", &lab_file("nginx.yaml"));
    let ips: Vec<String> = lab.pods().into_iter().map(|p| p.1).collect();
    for k in KUBECTLS {
        for args in [
            &["get", "pods", "-l", "run=my-nginx", "-o", "wide"][..],
            &["get", "nodes", "-o", "wide"][..],
            &["get", "svc,deploy"][..],
            &["get", "pods", "-A"][..],
            &["get", "ep", "-n", "kube-system"][..],
        ] {
            let theirs = lab.kubectl_ok(k, args);
            let ours = lab.ok(args);
            assert_eq!(
                without_ages(&theirs),
                without_ages(&ours),
                "{k} {args:?}:\n{theirs}\nnetlab:\n{ours}"
            );
        }
        let yaml = lab.kubectl_ok(k, &["get", "pods", "-l", "run=my-nginx", "-o", "yaml"]);
        let mut seen: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("podIP: "))
            .collect();
        seen.sort();
        let mut want: Vec<&str> = ips
            .iter()
            .map(String::as_str)
            .filter(|ip| yaml.contains(*ip))
            .collect();
        want.sort();
        assert_eq!(seen.len(), 2, "{yaml}");
        assert_eq!(seen, want);
        let jp = lab.kubectl_ok(
            k,
            &[
                "get",
                "pods",
                "-l",
                "run=my-nginx",
                "-o",
                "jsonpath={.items[*].status.podIP}",
            ],
        );
        assert_eq!(jp.split_whitespace().count(), 2, "{jp}");
        let name = lab.kubectl_ok(k, &["get", "deploy", "my-nginx", "-o", "name"]);
        assert_eq!(name.trim(), "deployment.apps/my-nginx");
        let missing = lab.kubectl(k, &["get", "pod", "nope"]);
        assert!(!missing.status.success());
        assert_eq!(
            stderr(&missing).trim(),
            "Error from server (NotFound): pods \"nope\" not found"
        );
        let describe = lab.kubectl_ok(k, &["describe", "svc", "kubernetes"]);
        assert!(describe.contains("10.0.0.1"), "{describe}");
        let on_node = lab.kubectl_ok(
            k,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "spec.nodeName=node-2",
                "-o",
                "name",
            ],
        );
        assert!(
            !on_node.trim().is_empty() && on_node.lines().count() < 3,
            "{on_node}"
        );
    }
    lab.down_clean();
}

/// `up` merges a `netlab-<lab>` context into $KUBECONFIG and makes it
/// current, as kind does; `down` takes exactly it out again.
#[test]
fn up_merges_a_context_and_down_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let other = "apiVersion: v1\nkind: Config\nclusters:\n- name: keep\n  cluster:\n    server: https://127.0.0.1:1\ncontexts: []\nusers: []\ncurrent-context: keep\n";
    std::fs::write(&config, other).unwrap();
    let lab = Lab::prepare("kubectl-ctx", &lab_file("nginx.yaml"));
    let env = [("KUBECONFIG", config.to_str().unwrap())];
    let out = netlab_env(
        &["up", "--name", &lab.name, lab.file().to_str().unwrap()],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ctx = format!("netlab-{}", lab.name);
    assert!(
        stderr(&out).contains(&format!("kubectl context \"{ctx}\"")),
        "{}",
        stderr(&out)
    );
    let merged = std::fs::read_to_string(&config).unwrap();
    assert!(
        merged.contains(&format!("current-context: {ctx}")),
        "{merged}"
    );
    assert!(merged.contains("name: keep"));
    // kubectl uses it as it is: the current context is the lab.
    let pods = Command::new(KUBECTLS[0])
        .args(["get", "pods", "-o", "name"])
        .env("KUBECONFIG", &config)
        .output()
        .unwrap();
    assert!(pods.status.success(), "{}", stderr(&pods));
    assert_eq!(stdout(&pods).lines().count(), 2);
    let out = netlab_env(&["down", "--lab", &lab.name], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(!after.contains(&ctx), "{after}");
    assert!(after.contains("name: keep"));
    assert!(!dir.path().join("config.lock").exists());
}

/// Without the lab's client certificate the API answers 401 (but its
/// version and health, as kube-apiserver's anonymous access allows); it
/// listens on the host's loopback only.
#[test]
fn api_refuses_strangers() {
    let lab = Lab::up("kubectl-auth", &lab_file("nginx.yaml"));
    let addr = std::fs::read_to_string(format!("/run/netlab/{}/api.address", lab.name)).unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let url = |p: &str| format!("https://{}{p}", addr.trim());
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        stdout(&out)
    };
    let anon = curl(&[&url("/api/v1/pods")]);
    assert!(anon.ends_with("401"), "{anon}");
    assert!(anon.contains("\"reason\":\"Unauthorized\""), "{anon}");
    assert!(curl(&[&url("/version")]).ends_with("200"));
    assert!(curl(&[&url("/healthz")]).starts_with("ok"));
    // A certificate the lab's CA did not sign is no credential.
    let d = lab.dir.path();
    let (key, cert) = (d.join("k.pem"), d.join("c.pem"));
    lab.ok(&[
        "cert",
        "--subj",
        "/CN=kubernetes-admin/O=system:masters",
        "--key-type",
        "ecdsa",
        "--keyout",
        key.to_str().unwrap(),
        "--out",
        cert.to_str().unwrap(),
    ]);
    let forged = curl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        &url("/api/v1/pods"),
    ]);
    assert!(forged.ends_with("401"), "{forged}");
    lab.down_clean();
}

/// The tutorial's writes with the newest kubectl: apply (create, then a
/// change), expose, scale, delete; the pods and the Service really work.
#[test]
fn tutorial_writes_with_kubectl() {
    let lab = Lab::up("kubectl-writes", &lab_doc(2));
    let k = KUBECTLS[0];
    let run = lab.dir.path().join("run-my-nginx.yaml");
    std::fs::write(&run, lab_file("run-my-nginx.yaml")).unwrap();
    let out = lab.kubectl_ok(k, &["apply", "-f", run.to_str().unwrap()]);
    assert_eq!(out.trim(), "deployment.apps/my-nginx created");
    let again = lab.kubectl_ok(k, &["apply", "-f", run.to_str().unwrap()]);
    assert_eq!(again.trim(), "deployment.apps/my-nginx unchanged");
    // Writes are answered once stored; the pods follow, as in Kubernetes.
    let out = lab.kubectl_ok(k, &["rollout", "status", "deployment/my-nginx"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = lab.kubectl_ok(k, &["expose", "deployment/my-nginx"]);
    assert_eq!(out.trim(), "service/my-nginx exposed");
    let ip = cluster_ip(&lab, "my-nginx");
    let page = curl_eventually(&lab, "node/node-1", &format!("http://{ip}/"));
    assert!(page.contains("Welcome to nginx"), "{page}");
    let out = lab.kubectl_ok(k, &["scale", "deployment", "my-nginx", "--replicas=3"]);
    assert_eq!(out.trim(), "deployment.apps/my-nginx scaled");
    lab.kubectl_ok(k, &["rollout", "status", "deployment/my-nginx"]);
    assert_eq!(lab.pods().len(), 3);
    let dup = lab.kubectl(k, &["create", "-f", run.to_str().unwrap()]);
    assert!(
        stderr(&dup).contains("deployments.apps \"my-nginx\" already exists"),
        "{}",
        stderr(&dup)
    );
    // kubectl 1.32 sends these two as Kubernetes protobuf.
    let out = lab.kubectl_ok(
        k,
        &["create", "configmap", "cm", "--from-literal=default.conf=x"],
    );
    assert_eq!(out.trim(), "configmap/cm created");
    let out = lab.kubectl_ok(
        k,
        &["create", "secret", "generic", "s", "--from-literal=k=v"],
    );
    assert_eq!(out.trim(), "secret/s created");
    let got = lab.kubectl_ok(k, &["get", "secret", "s", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got.trim(), "dg==");
    let out = lab.kubectl_ok(k, &["delete", "deployments,svc", "my-nginx"]);
    assert!(
        out.contains("deployment.apps \"my-nginx\" deleted"),
        "{out}"
    );
    assert!(out.contains("service \"my-nginx\" deleted"), "{out}");
    wait_for("the pods to go", std::time::Duration::from_secs(10), || {
        lab.pods().is_empty()
    });
    // `kubectl create KIND` of 1.32+ sends every kind as protobuf.
    // Nothing is made in a namespace that does not exist (NamespaceLifecycle).
    let out = lab.kubectl(
        k,
        &["create", "deployment", "web", "-n", "web", "--image=nginx"],
    );
    assert!(
        stderr(&out).contains(r#"namespaces "web" not found"#),
        "{}",
        stderr(&out)
    );
    for (args, said) in [
        (&["create", "namespace", "web"][..], "namespace/web created"),
        (
            &[
                "create",
                "deployment",
                "web",
                "-n",
                "web",
                "--image=nginx",
                "--port=80",
            ],
            "deployment.apps/web created",
        ),
        (
            &[
                "create",
                "service",
                "clusterip",
                "web",
                "-n",
                "web",
                "--tcp=8080:80",
            ],
            "service/web created",
        ),
    ] {
        assert_eq!(lab.kubectl_ok(k, args).trim(), said);
    }
    lab.kubectl_ok(k, &["rollout", "status", "-n", "web", "deployment/web"]);
    let ip = lab.kubectl_ok(
        k,
        &[
            "get",
            "svc",
            "web",
            "-n",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let page = curl_eventually(&lab, "node/node-1", &format!("http://{}:8080/", ip.trim()));
    assert!(page.contains("Welcome to nginx"), "{page}");
    // Namespaces are objects: labelled, listed, and deleted with what is in them.
    let out = lab.kubectl_ok(k, &["label", "namespace", "web", "team=blue"]);
    assert_eq!(out.trim(), "namespace/web labeled");
    let out = lab.kubectl_ok(k, &["get", "namespace", "web", "--show-labels"]);
    assert!(
        out.contains("Active") && out.contains("kubernetes.io/metadata.name=web,team=blue"),
        "{out}"
    );
    let out = lab.kubectl(k, &["create", "namespace", "web"]);
    assert!(
        stderr(&out).contains(r#"namespaces "web" already exists"#),
        "{}",
        stderr(&out)
    );
    let out = lab.kubectl(k, &["delete", "namespace", "default"]);
    assert!(
        stderr(&out)
            .contains(r#"namespaces "default" is forbidden: this namespace may not be deleted"#),
        "{}",
        stderr(&out)
    );
    // kubectl waits until the namespace is gone, its pods stopped.
    let out = lab.kubectl_ok(k, &["delete", "namespace", "web", "--timeout=60s"]);
    assert_eq!(out.trim(), r#"namespace "web" deleted"#);
    let out = lab.kubectl(k, &["get", "namespace", "web"]);
    assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
    let left = lab.kubectl_ok(k, &["get", "all", "-n", "web", "-o", "name"]);
    assert_eq!(left.trim(), "", "{left}");
    lab.down_clean();
}

/// `kubectl get -w` sees objects come and go, whoever changes them (here
/// netlab's own verbs, in another process), with both kubectls.
#[test]
fn watch_follows_changes() {
    let lab = Lab::up("kubectl-watch", &lab_file("nginx.yaml"));
    let svc = lab.dir.path().join("svc.yaml");
    std::fs::write(&svc, MY_NGINX_SVC).unwrap();
    for k in KUBECTLS {
        lab.kubectl_ok(k, &["get", "svc"]); // the kubeconfig and discovery cache
        let config = lab.dir.path().join("kubeconfig");
        let mut child = Command::new(k)
            .arg("--kubeconfig")
            .arg(&config)
            .args(["get", "svc", "-w"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        lab.ok(&["apply", "-f", svc.to_str().unwrap()]);
        lab.ok(&["delete", "svc", "my-nginx"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let text = stdout(&out);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("my-nginx "))
            .collect();
        assert!(
            !lines.is_empty(),
            "{k}: the watch did not show my-nginx:\n{text}"
        );
        assert!(text.starts_with("NAME "), "{k}:\n{text}");
        assert!(
            text.lines()
                .filter(|l| l.starts_with("kubernetes "))
                .count()
                == 1,
            "{k}: an unchanged object was sent again:\n{text}"
        );
    }
    lab.down_clean();
}

/// Server-side apply keeps field ownership: after `kubectl scale` took
/// `.spec.replicas`, applying the old count again is a conflict kubectl
/// prints as kube-apiserver words it, `--force-conflicts` takes the field
/// back, and `--show-managed-fields` shows who owns what.
#[test]
fn server_side_apply_owns_fields_and_conflicts() {
    let lab = Lab::up("kubectl-ssa", &lab_doc(2));
    let k = KUBECTLS[0];
    let run = lab.dir.path().join("run-my-nginx.yaml");
    std::fs::write(&run, lab_file("run-my-nginx.yaml")).unwrap();
    let file = run.to_str().unwrap();
    let out = lab.kubectl_ok(k, &["apply", "--server-side", "-f", file]);
    assert_eq!(out.trim(), "deployment.apps/my-nginx serverside-applied");
    lab.kubectl_ok(k, &["scale", "deployment", "my-nginx", "--replicas=3"]);
    let out = lab.kubectl(k, &["apply", "--server-side", "-f", file]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl")
            && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(lab.pods().len(), 3, "the conflict changed nothing");
    let out = lab.kubectl_ok(
        k,
        &["apply", "--server-side", "--force-conflicts", "-f", file],
    );
    assert_eq!(out.trim(), "deployment.apps/my-nginx serverside-applied");
    let yaml = lab.kubectl_ok(
        k,
        &[
            "get",
            "deployment",
            "my-nginx",
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
    );
    for want in [
        "manager: kubectl",
        "operation: Apply",
        "f:replicas: {}",
        "fieldsType: FieldsV1",
    ] {
        assert!(yaml.contains(want), "{want:?} not in:\n{yaml}");
    }
    wait_for("two pods again", std::time::Duration::from_secs(20), || {
        lab.pods().len() == 2
    });
    lab.down_clean();
}

/// A write is answered once stored, as kube-apiserver answers, while the
/// lab's process is still busy with the last one (here: a pod whose server
/// takes 3 s to listen), and the process's work does not undo writes made
/// meanwhile. On the old path each write waited for the pods it made to
/// serve, and the next write waited behind it.
#[test]
fn writes_are_answered_before_the_lab_follows() {
    let lab = Lab::up("kubectl-async", &lab_doc(1));
    let k = KUBECTLS[0];
    let slow = lab.dir.path().join("slow.yaml");
    std::fs::write(
        &slow,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: slow\n  labels: {app: slow}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: radial/busyboxplus:curl\n    command: [\"sh\", \"-c\", \"sleep 3; mkdir -p /www && echo slow > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports:\n    - containerPort: 80\n",
    )
    .unwrap();
    let ready = |lab: &Lab| {
        lab.kubectl_ok(
            k,
            &[
                "get",
                "pod",
                "slow",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .trim()
            == "True"
    };
    let out = lab.kubectl_ok(k, &["apply", "-f", slow.to_str().unwrap()]);
    assert_eq!(out.trim(), "pod/slow created");
    assert!(!ready(&lab), "apply waited for the pod to serve");
    // While the process waits for the pod to serve: a write, answered.
    let out = lab.kubectl_ok(
        k,
        &["create", "configmap", "meanwhile", "--from-literal=a=b"],
    );
    assert_eq!(out.trim(), "configmap/meanwhile created");
    lab.kubectl_ok(k, &["label", "pod", "slow", "during=start"]);
    assert!(!ready(&lab), "the write waited for the pod to serve");
    let out = lab.kubectl_ok(
        k,
        &["wait", "--for=condition=Ready", "pod/slow", "--timeout=30s"],
    );
    assert!(out.contains("condition met"), "{out}");
    // What was written meanwhile survived the process's commit.
    let got = lab.kubectl_ok(
        k,
        &["get", "configmap", "meanwhile", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(got.trim(), "b");
    let got = lab.kubectl_ok(
        k,
        &[
            "get",
            "pod",
            "slow",
            "-o",
            "jsonpath={.metadata.labels.during}",
        ],
    );
    assert_eq!(got.trim(), "start");
    lab.down_clean();
}
