//! Secrets, ConfigMaps, volumes and HTTPS, end to end (root): the
//! tutorial's "Service安全" section verbatim (a self-signed certificate made
//! by `netlab cert`, `create secret tls`, `create configmap`,
//! nginx-secure-app.yaml and curlpod.yaml from labs/, curl -k to a pod IP,
//! curl --cacert to the service name, the delete/create cycle), volumes in
//! detail (items, modes, read-only, emptyDir, updates), a pod waiting for a
//! missing Secret, and bad input that changes nothing.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("labs")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The name of the one live pod with label `selector`.
fn pod_with(lab: &Lab, selector: &str) -> String {
    let mut name = String::new();
    wait_for(
        &format!("a running pod with {selector}"),
        Duration::from_secs(30),
        || {
            let out = lab.ok(&["get", "pods", "-l", selector, "--no-headers"]);
            let running: Vec<&str> = out
                .lines()
                .filter(|l| l.contains("Running") && l.contains("1/1"))
                .collect();
            if let [one] = running.as_slice() {
                name = one.split_whitespace().next().unwrap().to_string();
                true
            } else {
                false
            }
        },
    );
    name
}

fn status_of(lab: &Lab, pod: &str) -> String {
    let out = lab.ok(&["get", "pods", pod, "--no-headers"]);
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// `kubectl get secrets` / `get configmaps` rows, whitespace-normalised.
fn rows(lab: &Lab, kind: &str) -> Vec<String> {
    lab.ok(&["get", kind])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn tutorial_https_section() {
    let yaml = format!("{}{}", lab_doc(2), nginx_deployment("my-nginx", 2));
    let lab = Lab::up("https", &yaml);
    lab.ok(&["expose", "deployment/my-nginx"]);
    let dir = lab.dir.path();
    let (key, crt) = (dir.join("nginx.key"), dir.join("nginx.crt"));

    // make keys KEY=/tmp/nginx.key CERT=/tmp/nginx.crt, without Go, Make or openssl.
    let out = netlab(&[
        "cert",
        "--subj",
        "/CN=my-nginx/O=my-nginx",
        "--keyout",
        key.to_str().unwrap(),
        "--out",
        crt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&key), 0o600, "the private key is private");
    let pem = std::fs::read_to_string(&crt).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    assert_eq!(
        lab.ok(&[
            "create",
            "secret",
            "tls",
            "nginxsecret",
            "--key",
            key.to_str().unwrap(),
            "--cert",
            crt.to_str().unwrap(),
        ])
        .trim(),
        "secret/nginxsecret created"
    );
    let secrets = rows(&lab, "secrets");
    assert_eq!(secrets[0], "NAME TYPE DATA AGE");
    assert!(
        secrets[1].starts_with("nginxsecret kubernetes.io/tls 2 "),
        "{secrets:?}"
    );

    let conf = labs_dir().join("default.conf");
    assert_eq!(
        lab.ok(&[
            "create",
            "configmap",
            "nginxconfigmap",
            &format!("--from-file={}", conf.display()),
        ])
        .trim(),
        "configmap/nginxconfigmap created"
    );
    let cms = rows(&lab, "configmaps");
    assert_eq!(cms[0], "NAME DATA AGE");
    // Beside the CA every namespace gets (Kubernetes 1.20+; the tutorial's
    // output is older).
    assert!(cms[1].starts_with("kube-root-ca.crt 1 "), "{cms:?}");
    assert!(cms[2].starts_with("nginxconfigmap 1 "), "{cms:?}");
    let describe = lab.ok(&["describe", "configmap", "nginxconfigmap"]);
    assert!(
        describe.contains("default.conf:\n----\nserver {"),
        "{describe}"
    );
    let describe = lab.ok(&["describe", "secret", "nginxsecret"]);
    assert!(describe.contains("Type:  kubernetes.io/tls"), "{describe}");
    assert!(describe.contains("tls.key:"), "{describe}");
    assert!(
        !describe.contains("PRIVATE KEY"),
        "describe shows sizes only"
    );

    // kubectl delete deployments,svc my-nginx; kubectl create -f ./nginx-secure-app.yaml
    let app = labs_dir().join("nginx-secure-app.yaml");
    let app = app.to_str().unwrap();
    for round in 0..2 {
        let deleted = lab.ok(&["delete", "deployments,svc", "my-nginx"]);
        assert!(
            deleted.contains("deployment.apps \"my-nginx\" deleted"),
            "{deleted}"
        );
        assert!(
            deleted.contains("service \"my-nginx\" deleted"),
            "{deleted}"
        );
        let created = lab.ok(&["create", "-f", app]);
        assert!(created.contains("service/my-nginx created"), "{created}");
        assert!(
            created.contains("deployment.apps/my-nginx created"),
            "{created}"
        );
        let pod = pod_with(&lab, "run=my-nginx");
        let ip = lab.pods().into_iter().find(|p| p.0 == pod).unwrap().1;

        // node $ curl -k https://<pod IP>
        for node in ["node/node-1", "node/node-2"] {
            let out = lab.run(&[
                "exec",
                node,
                "--",
                "curl",
                "-sk",
                "-m",
                "5",
                &format!("https://{ip}"),
            ]);
            assert!(
                stdout(&out).contains("<h1>Welcome to nginx!</h1>"),
                "round {round}, {node}: {}",
                stderr(&out)
            );
        }
        // Without -k the self-signed certificate is refused (curl: 60).
        let out = lab.run(&[
            "exec",
            "node/node-1",
            "--",
            "curl",
            "-s",
            "-m",
            "5",
            &format!("https://{ip}"),
        ]);
        assert_eq!(out.status.code(), Some(60), "round {round}");
        // HTTP through the service's 8080 → 80.
        let svc = cluster_ip(&lab, "my-nginx");
        assert!(
            must_curl(&lab, "node/node-1", &format!("http://{svc}:8080/"))
                .contains("Welcome to nginx!")
        );
        if round == 0 {
            // Secret and ConfigMap volumes are read-only, the key 0600.
            let out = lab.run(&["exec", &pod, "--", "sh", "-c", "echo x > /etc/nginx/ssl/x"]);
            assert!(!out.status.success(), "the secret volume is writable");
            assert!(stderr(&out).contains("Read-only"), "{}", stderr(&out));
            let modes = lab.ok(&[
                "exec",
                &pod,
                "--",
                "sh",
                "-c",
                "stat -L -c '%a %n' /etc/nginx/ssl/tls.key /etc/nginx/conf.d/default.conf",
            ]);
            assert_eq!(
                modes,
                "600 /etc/nginx/ssl/tls.key\n644 /etc/nginx/conf.d/default.conf\n"
            );
            let described = lab.ok(&["describe", "pod", &pod]);
            assert!(
                described.contains("/etc/nginx/ssl from secret-volume (ro)"),
                "{described}"
            );
            assert!(
                described.contains("SecretName:  nginxsecret"),
                "{described}"
            );
        }
    }

    // kubectl apply -f ./curlpod.yaml; curl https://my-nginx --cacert /etc/nginx/ssl/tls.crt
    let curlpod = labs_dir().join("curlpod.yaml");
    let applied = lab.ok(&["apply", "-f", curlpod.to_str().unwrap()]);
    assert_eq!(applied.trim(), "deployment.apps/curl-deployment created");
    let client = pod_with(&lab, "app=curlpod");
    let page = lab.ok(&[
        "exec",
        &client,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "https://my-nginx",
        "--cacert",
        "/etc/nginx/ssl/tls.crt",
    ]);
    assert!(page.contains("<title>Welcome to nginx!</title>"), "{page}");
    // The name must match the certificate: its IP is not in it.
    let svc = cluster_ip(&lab, "my-nginx");
    let out = lab.run(&[
        "exec",
        &client,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        &format!("https://{svc}"),
        "--cacert",
        "/etc/nginx/ssl/tls.crt",
    ]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "a clusterIP is not the certificate's name"
    );

    // Secrets stay private on the host and out of the logs.
    let run = PathBuf::from(format!("/run/netlab/{}", lab.name));
    assert_eq!(mode(&run.join("store.redb")), 0o600);
    let key_line = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let log = std::fs::read_to_string(run.join("controller.log")).unwrap_or_default();
    assert!(
        !log.contains(&key_line),
        "a secret reached the controller's log"
    );
    let mut key_files = 0;
    for pod in std::fs::read_dir(run.join("pods")).unwrap().flatten() {
        let vols = pod.path().join("volumes");
        if vols.exists() {
            assert_eq!(mode(&vols), 0o700, "{}", vols.display());
        }
        let key_file = vols.join("secret-volume/tls.key");
        if key_file.exists() {
            assert_eq!(mode(&key_file), 0o600);
            key_files += 1;
        }
    }
    assert_eq!(
        key_files, 2,
        "the nginx pod and the curl pod mount the secret"
    );
    lab.down_clean();
    assert!(!run.exists());
}

const VOLUMES: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  user: YWRtaW4=
stringData:
  password: s3cret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  greeting: hello
  app.properties: |
    color=blue
binaryData:
  blob: AAEC
---
apiVersion: v1
kind: Pod
metadata:
  name: box
spec:
  volumes:
  - name: creds
    secret:
      secretName: creds
      defaultMode: 0440
      items:
      - key: password
        path: db/password
  - name: config
    configMap:
      name: app-config
  - name: maybe
    secret:
      secretName: not-there
      optional: true
  - name: scratch
    emptyDir: {}
  containers:
  - name: writer
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "echo shared > /scratch/note; while true; do sleep 1; done"]
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: creds, mountPath: /creds}
    - {name: config, mountPath: /config}
    - {name: maybe, mountPath: /maybe}
  - name: reader
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "while true; do sleep 1; done"]
    volumeMounts:
    - {name: scratch, mountPath: /data, readOnly: true}
"#;

#[test]
fn volumes_items_modes_emptydir_and_updates() {
    let yaml = format!("{}{VOLUMES}", lab_doc(1));
    let lab = Lab::up("volumes", &yaml);
    let sh = |container: &str, script: &str| {
        lab.ok(&["exec", "box", "-c", container, "--", "sh", "-c", script])
    };
    assert_eq!(
        sh(
            "writer",
            "cat /creds/db/password; echo; stat -L -c %a /creds/db/password; ls /creds"
        ),
        "s3cret\n440\ndb\n"
    );
    assert_eq!(
        sh(
            "writer",
            "cat /config/greeting; echo; cat /config/app.properties; ls /config; ls /maybe | wc -l"
        ),
        "hello\ncolor=blue\napp.properties\nblob\ngreeting\n0\n"
    );
    assert_eq!(sh("writer", "od -An -tx1 /config/blob").trim(), "00 01 02");
    // The emptyDir is shared by the pod's containers; the reader's mount is read-only.
    wait_for("the writer's note", Duration::from_secs(10), || {
        sh("reader", "cat /data/note 2>/dev/null || true").trim() == "shared"
    });
    let out = lab.run(&[
        "exec",
        "box",
        "-c",
        "reader",
        "--",
        "sh",
        "-c",
        "echo x > /data/y",
    ]);
    assert!(!out.status.success());
    assert!(sh("writer", "echo more > /scratch/y && cat /scratch/y").contains("more"));

    // get -o yaml shows data base64-encoded, stringData merged into it.
    let y = lab.ok(&["get", "secret", "creds", "-o", "yaml"]);
    assert!(y.contains("password: czNjcmV0"), "{y}");
    assert!(!y.contains("stringData"), "{y}");
    assert!(rows(&lab, "configmaps")
        .iter()
        .any(|r| r.starts_with("app-config 3 ")));

    // An update reaches the running pod (the kubelet's atomic swap).
    let changed = VOLUMES
        .split("---\n")
        .nth(1)
        .unwrap()
        .replace("greeting: hello", "greeting: bonjour");
    let file = lab.dir.path().join("cm.yaml");
    std::fs::write(&file, changed).unwrap();
    assert_eq!(
        lab.ok(&["apply", "-f", file.to_str().unwrap()]).trim(),
        "configmap/app-config configured"
    );
    wait_for(
        "the updated configmap in the pod",
        Duration::from_secs(10),
        || sh("writer", "cat /config/greeting") == "bonjour",
    );
    // Deleting an object a running pod mounts leaves its files, as in Kubernetes.
    assert_eq!(
        lab.ok(&["delete", "configmap", "app-config"]).trim(),
        "configmap \"app-config\" deleted"
    );
    assert_eq!(sh("writer", "cat /config/greeting"), "bonjour");
    lab.down_clean();
}

#[test]
fn pod_waits_for_a_missing_secret() {
    let yaml = format!(
        "{}{}",
        lab_doc(1),
        std::fs::read_to_string(labs_dir().join("curlpod.yaml")).unwrap()
    );
    // `up` does not wait for a pod that waits for its volumes.
    let lab = Lab::up("waitsecret", &yaml);
    let pod = lab
        .pods()
        .into_iter()
        .find(|p| p.0.starts_with("curl-deployment"))
        .unwrap()
        .0;
    assert_eq!(status_of(&lab, &pod), "ContainerCreating");
    let described = lab.ok(&["describe", "pod", &pod]);
    assert!(
        described.contains(
            "FailedMount   MountVolume.SetUp failed for volume \"secret-volume\" : secret \"nginxsecret\" not found"
        ) || described.contains(
            "MountVolume.SetUp failed for volume \"secret-volume\" : secret \"nginxsecret\" not found"
        ),
        "{described}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(status_of(&lab, &pod), "ContainerCreating", "still waiting");
    assert_eq!(
        lab.ok(&[
            "create",
            "secret",
            "generic",
            "nginxsecret",
            "--from-literal=tls.crt=not-a-cert"
        ])
        .trim(),
        "secret/nginxsecret created"
    );
    wait_for(
        "the pod to start once its secret exists",
        Duration::from_secs(10),
        || status_of(&lab, &pod) == "Running",
    );
    assert_eq!(
        lab.ok(&["exec", &pod, "--", "cat", "/etc/nginx/ssl/tls.crt"]),
        "not-a-cert"
    );
    lab.down_clean();
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let lab = Lab::up(
        "badsecret",
        &format!("{}{}", lab_doc(1), nginx_deployment("web", 1)),
    );
    let dir = lab.dir.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let before = (
        lab.ok(&["get", "secrets"]),
        lab.ok(&["get", "pods", "--no-headers"]).lines().count(),
    );
    let refuse = |args: &[&str], want: &[&str]| {
        let out = lab.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        for w in want {
            assert!(err.contains(w), "{args:?}: want {w:?} in: {err}");
        }
    };
    let bad64 = write(
        "bad64.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\ndata:\n  k: \"!!not base64\"\n",
    );
    refuse(
        &["apply", "-f", &bad64],
        &["bad64.yaml:6", "not valid base64", "stringData"],
    );
    let tls = write(
        "tls.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: x\n",
    );
    refuse(
        &["apply", "-f", &tls],
        &["tls.yaml:1", "Secret/t", "data[tls.key]"],
    );
    let badkey = write(
        "key.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a/b: x\n",
    );
    refuse(
        &["apply", "-f", &badkey],
        &["key.yaml:1", "ConfigMap/c", "\"a/b\" is not valid"],
    );
    let vol = write(
        "vol.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  volumes:\n  - name: h\n    hostPath: {path: /etc}\n  containers:\n  - name: c\n    image: nginx\n    volumeMounts:\n    - {name: nope, mountPath: /x}\n",
    );
    refuse(
        &["apply", "-f", &vol],
        &[
            "vol.yaml:1",
            "hostPath is not supported",
            "no volume of that name",
        ],
    );
    // create secret tls: a missing file, a pair that does not belong together.
    let (k1, c1, k2, c2) = (
        dir.join("1.key"),
        dir.join("1.crt"),
        dir.join("2.key"),
        dir.join("2.crt"),
    );
    for (k, c, cn) in [(&k1, &c1, "/CN=one"), (&k2, &c2, "/CN=two")] {
        let out = netlab(&[
            "cert",
            "--subj",
            cn,
            "--key-type",
            "ecdsa",
            "--keyout",
            k.to_str().unwrap(),
            "--out",
            c.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    refuse(
        &[
            "create",
            "secret",
            "tls",
            "s",
            "--cert",
            c1.to_str().unwrap(),
            "--key",
            "/nonexistent.key",
        ],
        &["--key /nonexistent.key"],
    );
    refuse(
        &[
            "create",
            "secret",
            "tls",
            "s",
            "--cert",
            c1.to_str().unwrap(),
            "--key",
            k2.to_str().unwrap(),
        ],
        &["private key does not match public key"],
    );
    refuse(&["cert", "--subj", "O=x", "--secret", "s"], &["openssl"]);
    refuse(
        &["create", "configmap", "c", "--from-file=/nonexistent"],
        &["/nonexistent", "does not exist"],
    );
    refuse(
        &["create", "secret", "generic", "g", "--from-literal=novalue"],
        &["key=value"],
    );
    // The same name twice is refused by create.
    lab.ok(&["create", "secret", "generic", "dup", "--from-literal=a=b"]);
    refuse(
        &["create", "secret", "generic", "dup", "--from-literal=a=c"],
        &["already exists"],
    );
    lab.ok(&["delete", "secret", "dup"]);
    let after = (
        lab.ok(&["get", "secrets"]),
        lab.ok(&["get", "pods", "--no-headers"]).lines().count(),
    );
    assert_eq!(before, after, "refused input changed the lab");

    // `up` with a bad Secret creates nothing at all.
    let other = Lab::prepare(
        "badup",
        &format!("{}{}", lab_doc(1), std::fs::read_to_string(&bad64).unwrap()),
    );
    let out = netlab(&["up", "--name", &other.name, other.file().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not valid base64"),
        "{}",
        stderr(&out)
    );
    assert!(Traces::of(&other.name, &[]).is_clean());
    lab.down_clean();
}

const ENV: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  user: admin
  password: p$(X)w
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  COLOR: blue
  SIZE: "3"
---
apiVersion: v1
kind: Pod
metadata:
  name: envpod
  labels:
    app: envy
spec:
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "while true; do sleep 1; done"]
    envFrom:
    - configMapRef:
        name: settings
      prefix: APP_
    env:
    - name: DB_USER
      valueFrom:
        secretKeyRef: {name: creds, key: user}
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef: {name: creds, key: password}
    - name: MY_POD_IP
      valueFrom:
        fieldRef: {fieldPath: status.podIP}
    - name: MY_NODE
      valueFrom:
        fieldRef: {fieldPath: spec.nodeName}
    - name: MY_APP
      valueFrom:
        fieldRef: {fieldPath: "metadata.labels['app']"}
    - name: GREETING
      value: "hello $(DB_USER)"
---
apiVersion: v1
kind: Pod
metadata:
  name: later
spec:
  containers:
  - name: c
    image: radial/busyboxplus:curl
    command: ["sh", "-c", "while true; do sleep 1; done"]
    env:
    - name: TOKEN
      valueFrom:
        secretKeyRef: {name: token, key: value}
"#;

#[test]
fn env_from_secrets_configmaps_and_the_downward_api() {
    let lab = Lab::up("envfrom", &format!("{}{ENV}", lab_doc(1)));
    let env = lab.ok(&["exec", "envpod", "--", "printenv"]);
    let ip = lab.pods().into_iter().find(|p| p.0 == "envpod").unwrap().1;
    for want in [
        "APP_COLOR=blue".to_string(),
        "APP_SIZE=3".into(),
        "DB_USER=admin".into(),
        "DB_PASSWORD=p$(X)w".into(), // a secret's value is not expanded
        format!("MY_POD_IP={ip}"),
        "MY_NODE=node-1".into(),
        "MY_APP=envy".into(),
        "GREETING=hello admin".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    // A reference to a Secret that does not exist: CreateContainerConfigError,
    // until it exists.
    assert_eq!(status_of(&lab, "later"), "CreateContainerConfigError");
    let described = lab.ok(&["describe", "pod", "later"]);
    assert!(
        described.contains("Error: secret \"token\" not found"),
        "{described}"
    );
    lab.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=value=t0k3n",
    ]);
    wait_for(
        "the pod to start once its secret exists",
        Duration::from_secs(10),
        || status_of(&lab, "later") == "Running",
    );
    assert_eq!(
        lab.ok(&["exec", "later", "--", "printenv", "TOKEN"]),
        "t0k3n\n"
    );
    lab.down_clean();
}
