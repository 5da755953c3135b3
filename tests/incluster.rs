//! Pods that talk to the lab's API, as pods talk to Kubernetes': the
//! ServiceAccount volume the kubelet mounts, its token through the
//! `kubernetes` Service, RBAC (nothing but discovery until a RoleBinding),
//! `kubectl create serviceaccount/token/rolebinding`, `kubectl auth
//! can-i`, a kubectl inside a pod, and the tokens the API refuses.

mod common;

use common::*;
use std::time::Duration;

const NEWEST: &str = "/usr/bin/kubectl";
/// kubectl 1.27: JSON bodies where the newest sends protobuf.
const OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn lab_yaml() -> String {
    let pods = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: quiet
automountServiceAccountToken: false
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: silent
spec:
  serviceAccountName: quiet
  terminationGracePeriodSeconds: 1
  containers:
  - name: silent
    image: radial/busyboxplus:curl
    command: ["sleep", "3600"]
"#;
    format!("{}{pods}", lab_doc(1))
}

/// `curl` from the pod with its own token; (HTTP code, body).
fn api_from_pod(lab: &Lab, pod: &str, path: &str) -> (String, String) {
    let line = format!(
        "curl -sS -w '\\n%{{http_code}}' --cacert {SA_DIR}/ca.crt -H \"Authorization: Bearer $(cat {SA_DIR}/token)\" https://kubernetes.default.svc{path}"
    );
    let out = lab.kubectl_ok(NEWEST, &["exec", pod, "--", "sh", "-c", &line]);
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.to_string(), body.to_string())
}

fn running(lab: &Lab, n: usize) {
    wait_for("the pods running", Duration::from_secs(60), || {
        lab.pods_json()["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count()
                == n
        })
    });
}

/// kubectl as the holder of `token` only (no certificate).
fn as_token(lab: &Lab, kubectl: &str, token: &str, args: &[&str]) -> std::process::Output {
    let server = lab.kubectl_ok(
        NEWEST,
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    let mut full = vec![
        "--kubeconfig=/dev/null".to_string(),
        format!("--server={server}"),
        "--insecure-skip-tls-verify".into(),
        format!("--token={token}"),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    std::process::Command::new(kubectl)
        .args(&full)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs")
}

/// kubectl's words for a 401 ("Unauthorized" since 1.28; 1.27 says "the
/// server has asked for the client to provide credentials").
fn refused(out: &std::process::Output) -> bool {
    !out.status.success() && stderr(out).contains("You must be logged in to the server")
}

#[test]
fn a_pod_reads_the_api_with_its_token_once_a_rolebinding_allows() {
    let lab = Lab::up("incluster", &lab_yaml());
    running(&lab, 2);

    // What the kubelet mounted: the namespace, the lab's CA, a token.
    let ns = lab.kubectl_ok(
        NEWEST,
        &[
            "exec",
            "client",
            "--",
            "cat",
            &format!("{SA_DIR}/namespace"),
        ],
    );
    assert_eq!(ns, "default");
    let ca = lab.kubectl_ok(
        NEWEST,
        &["exec", "client", "--", "cat", &format!("{SA_DIR}/ca.crt")],
    );
    let published = lab.kubectl_ok(
        NEWEST,
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    assert!(
        ca.contains("BEGIN CERTIFICATE") && ca.trim() == published.trim(),
        "{ca}"
    );
    let spec = lab.kubectl_ok(
        NEWEST,
        &[
            "get",
            "pod",
            "client",
            "-o",
            "jsonpath={.spec.serviceAccountName} {.spec.volumes[0].name}",
        ],
    );
    assert!(spec.starts_with("default kube-api-access-"), "{spec}");
    // automountServiceAccountToken: false on the account: nothing mounted.
    let out = lab.kubectl(NEWEST, &["exec", "silent", "--", "ls", SA_DIR]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(lab.kubectl_ok(NEWEST, &["get", "sa"]).contains("quiet"));

    // Discovery only, until a RoleBinding: 403 with kube-apiserver's words.
    let (code, _) = api_from_pod(&lab, "client", "/api");
    assert_eq!(code, "200");
    let (code, body) = api_from_pod(&lab, "client", "/api/v1/namespaces/default/pods");
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(r#"User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#),
        "{body}"
    );
    lab.kubectl_ok(
        OLDEST,
        &[
            "create",
            "rolebinding",
            "viewer",
            "--clusterrole=view",
            "--serviceaccount=default:default",
        ],
    );
    let (code, body) = api_from_pod(&lab, "client", "/api/v1/namespaces/default/pods");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"client\""), "{body}");
    let (code, _) = api_from_pod(&lab, "client", "/api/v1/namespaces/default/secrets");
    assert_eq!(code, "403", "view does not read secrets");

    // A kubectl inside the pod works in-cluster (kubectl cp is tar over exec).
    lab.kubectl_ok(
        NEWEST,
        &[
            "cp",
            "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
            "client:/tmp/kubectl",
        ],
    );
    let pods = lab.kubectl_ok(
        NEWEST,
        &["exec", "client", "--", "/tmp/kubectl", "get", "pods"],
    );
    assert!(pods.contains("client") && pods.contains("silent"), "{pods}");
    let can = lab.kubectl(
        NEWEST,
        &[
            "exec",
            "client",
            "--",
            "/tmp/kubectl",
            "auth",
            "can-i",
            "create",
            "pods",
        ],
    );
    assert_eq!(stdout(&can).trim(), "no");
    let list = lab.kubectl_ok(
        NEWEST,
        &[
            "exec",
            "client",
            "--",
            "/tmp/kubectl",
            "auth",
            "can-i",
            "--list",
        ],
    );
    assert!(list.contains("pods/log"), "{list}");

    // A pod's token stops working when its pod goes.
    let token = lab.kubectl_ok(
        NEWEST,
        &["exec", "client", "--", "cat", &format!("{SA_DIR}/token")],
    );
    assert_eq!(
        stdout(&as_token(
            &lab,
            NEWEST,
            &token,
            &["auth", "can-i", "list", "pods"]
        ))
        .trim(),
        "yes"
    );
    lab.kubectl_ok(NEWEST, &["delete", "pod", "silent", "--wait=true"]);
    lab.kubectl_ok(NEWEST, &["delete", "pod", "client", "--wait=true"]);
    let out = as_token(&lab, NEWEST, &token, &["get", "pods"]);
    assert!(refused(&out), "{}", stderr(&out));
    lab.down_clean();
}

#[test]
fn tokens_from_kubectl_create_token_and_the_ones_refused() {
    let lab = Lab::up("tokens", &lab_doc(1));
    let other = Lab::up("tokens-other", &lab_doc(1));
    for (k, sa) in [(OLDEST, "robot-old"), (NEWEST, "robot")] {
        lab.kubectl_ok(k, &["create", "serviceaccount", sa]);
        let token = lab
            .kubectl_ok(k, &["create", "token", sa])
            .trim()
            .to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        // Signed in, allowed nothing but discovery and can-i.
        let out = as_token(&lab, k, &token, &["get", "pods"]);
        assert!(stderr(&out).contains("Forbidden"), "{k}: {}", stderr(&out));
        let out = as_token(&lab, k, &token, &["auth", "can-i", "list", "pods"]);
        assert_eq!(
            (out.status.code(), stdout(&out).trim()),
            (Some(1), "no"),
            "{k}"
        );
        // A Role of its own, bound to it.
        lab.kubectl_ok(
            k,
            &[
                "create",
                "role",
                &format!("{sa}-reader"),
                "--verb=get,list",
                "--resource=pods",
            ],
        );
        lab.kubectl_ok(
            k,
            &[
                "create",
                "rolebinding",
                &format!("{sa}-reads"),
                &format!("--role={sa}-reader"),
                &format!("--serviceaccount=default:{sa}"),
            ],
        );
        let out = as_token(&lab, k, &token, &["auth", "can-i", "list", "pods"]);
        assert_eq!(stdout(&out).trim(), "yes", "{k}: {}", stderr(&out));
        // What an auth proxy in a pod asks: who the token is, and may they.
        let asked = |name: &str, doc: serde_json::Value, path: &str| {
            let file = lab.dir.path().join(format!("{sa}-{name}.json"));
            std::fs::write(&file, doc.to_string()).unwrap();
            let jsonpath = format!("jsonpath={path}");
            lab.kubectl_ok(
                k,
                &["create", "-f", file.to_str().unwrap(), "-o", &jsonpath],
            )
        };
        let who = asked(
            "tokenreview",
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}),
            "{.status.user.username}",
        );
        assert_eq!(
            who.trim(),
            format!("system:serviceaccount:default:{sa}"),
            "{k}"
        );
        let allowed = asked(
            "sar",
            serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": who.trim(), "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}}),
            "{.status.allowed}",
        );
        assert_eq!(allowed.trim(), "true", "{k}");
        assert!(as_token(&lab, k, &token, &["get", "pods"]).status.success());
        let out = as_token(
            &lab,
            k,
            &token,
            &["auth", "can-i", "list", "pods", "-n", "kube-system"],
        );
        assert_eq!(
            stdout(&out).trim(),
            "no",
            "a RoleBinding is for its namespace"
        );
        // Another lab does not take it.
        let out = as_token(&other, k, &token, &["get", "pods"]);
        assert!(refused(&out), "{k}: {}", stderr(&out));
        // Nor this one, once its ServiceAccount is gone.
        lab.kubectl_ok(k, &["delete", "serviceaccount", sa]);
        let out = as_token(&lab, k, &token, &["get", "pods"]);
        assert!(refused(&out), "{k}: {}", stderr(&out));
    }
    // The admin certificate is system:masters.
    assert_eq!(
        lab.kubectl_ok(NEWEST, &["auth", "can-i", "delete", "nodes"])
            .trim(),
        "yes"
    );
    // `--as`: the admin acts as a user RBAC knows nothing of, then is bound.
    let out = lab.kubectl(NEWEST, &["get", "pods", "--as=jane"]);
    assert!(
        stderr(&out).contains(
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{}",
        stderr(&out)
    );
    lab.kubectl_ok(
        NEWEST,
        &[
            "create",
            "rolebinding",
            "jane-views",
            "--clusterrole=view",
            "--user=jane",
        ],
    );
    for k in [OLDEST, NEWEST] {
        let can = |verb: &str| lab.kubectl(k, &["auth", "can-i", verb, "pods", "--as=jane"]);
        assert_eq!(stdout(&can("list")).trim(), "yes", "{k}");
        assert_eq!(stdout(&can("delete")).trim(), "no", "{k}");
        lab.kubectl_ok(k, &["get", "pods", "--as=jane"]);
        let out = lab.kubectl(
            k,
            &["get", "pods", "--as=system:serviceaccount:default:default"],
        );
        assert!(stderr(&out).contains("Forbidden"), "{k}: {}", stderr(&out));
    }
    // `kubectl auth whoami` (SelfSubjectReview), impersonating a uid too.
    let out = lab.kubectl_ok(NEWEST, &["auth", "whoami", "--as=jane", "--as-uid=1234"]);
    assert!(
        out.contains("Username") && out.contains("jane") && out.contains("1234"),
        "{out}"
    );
    // A long-lived token kept in a Secret (the token controller fills it
    // in); it ends with the Secret.
    lab.kubectl_ok(NEWEST, &["create", "serviceaccount", "keeper"]);
    lab.kubectl_apply(
        NEWEST,
        "keeper-token.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keeper-token\n  annotations:\n    kubernetes.io/service-account.name: keeper\ntype: kubernetes.io/service-account-token\n",
    );
    let mut token = String::new();
    wait_for("the token controller", Duration::from_secs(10), || {
        let out = lab.kubectl_ok(
            NEWEST,
            &[
                "get",
                "secret",
                "keeper-token",
                "-o",
                "jsonpath={.data.token}",
            ],
        );
        token = String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, out.trim())
                .unwrap_or_default(),
        )
        .unwrap();
        !token.is_empty()
    });
    let out = as_token(&lab, NEWEST, &token, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("whoami's JSON");
    assert_eq!(
        who["status"]["userInfo"]["username"], "system:serviceaccount:default:keeper",
        "{who}"
    );
    lab.kubectl_ok(NEWEST, &["delete", "secret", "keeper-token"]);
    let out = as_token(&lab, NEWEST, &token, &["auth", "whoami"]);
    assert!(refused(&out), "{}", stderr(&out));
    // `view` is an aggregate: a ClusterRole labelled for it extends it.
    let can_list_secrets = || {
        let out = lab.kubectl(NEWEST, &["auth", "can-i", "list", "secrets", "--as=jane"]);
        stdout(&out).trim().to_string()
    };
    assert_eq!(can_list_secrets(), "no");
    lab.kubectl_ok(
        NEWEST,
        &[
            "create",
            "clusterrole",
            "secret-lister",
            "--verb=list",
            "--resource=secrets",
        ],
    );
    lab.kubectl_ok(
        NEWEST,
        &[
            "label",
            "clusterrole",
            "secret-lister",
            "rbac.authorization.k8s.io/aggregate-to-view=true",
        ],
    );
    wait_for("view to take it in", Duration::from_secs(10), || {
        can_list_secrets() == "yes"
    });
    let out = lab.kubectl(NEWEST, &["create", "token", "nobody"]);
    assert!(
        stderr(&out).contains("serviceaccounts \"nobody\" not found"),
        "{}",
        stderr(&out)
    );
    let out = lab.kubectl(NEWEST, &["create", "token", "default", "--duration=1m"]);
    assert!(
        stderr(&out).contains("less than 10 minutes"),
        "{}",
        stderr(&out)
    );
    // A pod naming a ServiceAccount that does not exist: kube-apiserver's
    // admission refuses it (403); a Deployment's pods wait for it, and its
    // ReplicaSet says why.
    let out = lab.kubectl(
        NEWEST,
        &[
            "run",
            "lost",
            "--image=radial/busyboxplus:curl",
            r#"--overrides={"apiVersion":"v1","spec":{"serviceAccountName":"ghost"}}"#,
            "--",
            "sleep",
            "3600",
        ],
    );
    let ghost =
        r#"error looking up service account default/ghost: serviceaccount "ghost" not found"#;
    assert!(
        stderr(&out).contains(&format!(
            r#"Error from server (Forbidden): pods "lost" is forbidden: {ghost}"#
        )),
        "{}",
        stderr(&out)
    );
    // (`kubectl create deployment` sends protobuf, which netlab takes for
    // Secrets and ConfigMaps only: the manifest goes as JSON through apply.)
    let manifest = std::env::temp_dir().join(format!("{}-waits.yaml", lab.name));
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: waits\nspec:\n  selector:\n    matchLabels: {app: waits}\n  template:\n    metadata:\n      labels: {app: waits}\n    spec:\n      serviceAccountName: ghost\n      containers:\n      - {name: c, image: radial/busyboxplus:curl, command: [sleep, \"3600\"]}\n",
    )
    .unwrap();
    lab.kubectl_ok(NEWEST, &["apply", "-f", manifest.to_str().unwrap()]);
    let _ = std::fs::remove_file(&manifest);
    let waiting = || lab.kubectl_ok(NEWEST, &["get", "pods", "-l", "app=waits", "-o", "name"]);
    wait_for("FailedCreate", Duration::from_secs(20), || {
        let events = lab.kubectl_ok(NEWEST, &["get", "events"]);
        events.contains("FailedCreate") && events.contains(ghost)
    });
    assert_eq!(waiting(), "");
    // The ReplicaSet's ReplicaFailure condition, copied to its Deployment.
    let failure = || {
        lab.kubectl_ok(
            NEWEST,
            &[
                "get",
                "deployment",
                "waits",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="ReplicaFailure")].reason}"#,
            ],
        )
    };
    wait_for("ReplicaFailure", Duration::from_secs(10), || {
        failure().trim() == "FailedCreate"
    });
    let described = lab.kubectl_ok(NEWEST, &["describe", "deployment", "waits"]);
    assert!(
        described.lines().any(|l| l.split_whitespace().eq([
            "ReplicaFailure",
            "True",
            "FailedCreate"
        ])),
        "{described}"
    );
    lab.kubectl_ok(NEWEST, &["create", "serviceaccount", "ghost"]);
    wait_for(
        "its pod, once the account exists",
        Duration::from_secs(30),
        || !waiting().trim().is_empty(),
    );
    wait_for("ReplicaFailure gone", Duration::from_secs(10), || {
        failure().trim().is_empty()
    });
    // The bootstrap policy is there to read.
    let roles = lab.kubectl_ok(NEWEST, &["get", "clusterroles"]);
    for r in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(roles.contains(r), "{roles}");
    }
    other.down_clean();
    lab.down_clean();
}
