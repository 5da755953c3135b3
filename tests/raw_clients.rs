//! A third real client of the lab's API, the raw protocol: Debian's
//! `python3-kubernetes` and plain curl with the certificates of `netlab
//! kubeconfig`. And bad requests: each gets kube-apiserver's status code
//! and Status reason, and changes nothing in the lab.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's python (the module is Debian's package, not a pip install in
/// whatever `python3` comes first on PATH).
const PYTHON: &str = "/usr/bin/python3";

/// A Deployment of two nginx pods labelled `run=<name>`, from the local
/// image store (no registry needed).
fn lab_yaml(name: &str) -> String {
    nginx_deployment(name, 2).replace(
        "        image: nginx\n",
        "        image: nginx\n        imagePullPolicy: IfNotPresent\n",
    )
}

/// The lab's address and the admin's credentials, taken out of the
/// standalone kubeconfig `netlab kubeconfig` prints, as a script would.
struct Creds {
    dir: tempfile::TempDir,
    server: String,
}

impl Creds {
    fn of(lab: &Lab) -> Creds {
        let kc: Value = serde_yaml_ng::from_str(&lab.ok(&["kubeconfig"])).expect("kubeconfig");
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("base64 data in the kubeconfig"))
                .expect("valid base64")
        };
        let cluster = &kc["clusters"][0]["cluster"];
        let user = &kc["users"][0]["user"];
        let dir = tempfile::tempdir().unwrap();
        for (file, v) in [
            ("ca.crt", &cluster["certificate-authority-data"]),
            ("admin.crt", &user["client-certificate-data"]),
            ("admin.key", &user["client-key-data"]),
        ] {
            std::fs::write(dir.path().join(file), b64(v)).unwrap();
        }
        Creds {
            server: cluster["server"].as_str().expect("server").to_string(),
            dir,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Who a request is sent as.
#[derive(Clone, Copy)]
enum As<'a> {
    Admin,
    /// No client certificate at all.
    Nobody,
    /// A certificate and key of someone else's (cert, key).
    Cert(&'a Path, &'a Path),
}

/// One request with curl: (HTTP status, the body as JSON), or why there
/// is no answer (curl failed, or the answer is not JSON).
fn request(
    c: &Creds,
    who: As,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Value), String> {
    let dir = tempfile::tempdir().unwrap();
    let (body_in, body_out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&body_in, body).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "30", "-X", method, "--cacert"])
        .arg(c.file("ca.crt"))
        .arg("-o")
        .arg(&body_out)
        .args(["-w", "%{http_code}", "-H", "Accept: application/json"]);
    match who {
        As::Admin => {
            cmd.arg("--cert")
                .arg(c.file("admin.crt"))
                .arg("--key")
                .arg(c.file("admin.key"));
        }
        As::Cert(cert, key) => {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        As::Nobody => {}
    }
    if !body.is_empty() {
        cmd.arg("-H")
            .arg(format!("Content-Type: {content_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", body_in.display()));
    }
    let out = cmd
        .arg(format!("{}{path}", c.server))
        .output()
        .expect("running curl");
    if !out.status.success() {
        return Err(format!(
            "curl {method} {path} ({} bytes) failed: {}",
            body.len(),
            stderr(&out).trim()
        ));
    }
    let code: u16 = stdout(&out).trim().parse().expect("an HTTP status code");
    let text = std::fs::read_to_string(&body_out).unwrap_or_default();
    let v = serde_json::from_str(&text)
        .map_err(|e| format!("{method} {path}: {code}, not JSON ({e}): {text}"))?;
    Ok((code, v))
}

fn admin(c: &Creds, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    request(c, As::Admin, method, path, "application/json", &bytes)
        .unwrap_or_else(|e| panic!("{e}"))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn python_kubernetes_lists_creates_reads_patches_watches_and_deletes() {
    let module = Command::new(PYTHON)
        .args(["-c", "import kubernetes"])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e}: install python3 (scripts/setup.sh)"));
    assert!(
        module.status.success(),
        "Debian's python3-kubernetes is missing (scripts/setup.sh installs it): {}",
        stderr(&module)
    );
    let lab = Lab::up("raw-python", &lab_yaml("py"));
    let kubeconfig = lab.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, lab.ok(&["kubeconfig"])).unwrap();
    let script = r#"
import json, sys
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()

pods = v1.list_namespaced_pod("default", label_selector="run=py")
names = sorted(p.metadata.name for p in pods.items)
assert len(names) == 2, names
assert all(p.status.pod_ip for p in pods.items), pods
assert v1.list_namespaced_pod("default", label_selector="run=nothing").items == []

cm = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}),
    data={"a": "1"},
)
made = v1.create_namespaced_config_map("default", cm)
assert made.metadata.uid, made
got = v1.read_namespaced_config_map("py-cm", "default")
assert got.data == {"a": "1"}, got.data
assert got.metadata.labels == {"from": "python"}, got.metadata

patched = v1.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "2"}})
assert patched.data == {"a": "1", "b": "2"}, patched.data
assert v1.read_namespaced_config_map("py-cm", "default").data == {"a": "1", "b": "2"}

# From resourceVersion 0: an ADDED event for each pod there is.
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="run=py",
                   resource_version="0", timeout_seconds=15, _request_timeout=20):
    assert ev["type"] == "ADDED", ev["type"]
    seen.append(ev["object"].metadata.name)
    if len(seen) == len(names):
        w.stop()
assert sorted(seen) == names, (seen, names)

status = v1.delete_namespaced_config_map("py-cm", "default")
assert status.status == "Success", status
try:
    v1.read_namespaced_config_map("py-cm", "default")
    raise SystemExit("py-cm is still there after its deletion")
except client.exceptions.ApiException as e:
    assert e.status == 404, e
    assert json.loads(e.body)["reason"] == "NotFound", e.body
print("ok", " ".join(seen))
"#;
    let out = Command::new("timeout")
        .args(["120", PYTHON, "-c", script])
        .arg(&kubeconfig)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "the python client failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("ok py-"), "{}", stdout(&out));
    let cms = lab.ok(&["get", "configmaps", "-o", "name"]);
    assert!(!cms.contains("py-cm"), "{cms}");
    lab.down_clean();
}

#[test]
fn curl_with_the_kubeconfigs_certificates_lists_creates_and_deletes() {
    let lab = Lab::up("raw-curl", &lab_yaml("curled"));
    let c = Creds::of(&lab);
    let (code, pods) = admin(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=run%3Dcurled",
        &Value::Null,
    );
    assert_eq!(
        (code, pods["kind"].as_str()),
        (200, Some("PodList")),
        "{pods}"
    );
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods}");
    assert!(items.iter().all(|p| p["status"]["podIP"].is_string()));
    assert!(pods["metadata"]["resourceVersion"].is_string(), "{pods}");

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "curled"}, "data": {"k": "v"}});
    let (code, made) = admin(&c, "POST", CMS, &cm);
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["metadata"]["namespace"], "default");
    assert!(made["metadata"]["uid"].is_string(), "{made}");
    let (code, got) = admin(&c, "GET", &format!("{CMS}/curled"), &Value::Null);
    assert_eq!((code, &got["data"]), (200, &json!({"k": "v"})), "{got}");
    let (code, again) = admin(&c, "POST", CMS, &cm);
    assert_eq!(
        (code, &again["reason"]),
        (409, &json!("AlreadyExists")),
        "{again}"
    );

    let (code, gone) = admin(&c, "DELETE", &format!("{CMS}/curled"), &Value::Null);
    assert_eq!((code, &gone["status"]), (200, &json!("Success")), "{gone}");
    let (code, missing) = admin(&c, "GET", &format!("{CMS}/curled"), &Value::Null);
    assert_eq!(
        (code, &missing["reason"]),
        (404, &json!("NotFound")),
        "{missing}"
    );
    lab.down_clean();
}

/// Everything a bad request could have changed, as the API lists it.
fn snapshot(c: &Creds) -> Vec<String> {
    let mut out = Vec::new();
    for path in [
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/api/v1/services",
        "/api/v1/pods",
        "/apis/apps/v1/deployments",
    ] {
        let (code, list) = admin(c, "GET", path, &Value::Null);
        assert_eq!(code, 200, "{path}: {list}");
        for item in list["items"].as_array().unwrap() {
            // What a write changes (status and the pods' specs change on
            // their own as the lab runs).
            let m = &item["metadata"];
            let spec = match path.ends_with("pods") {
                true => Value::Null,
                false => item["spec"].clone(),
            };
            out.push(format!(
                "{path} {} {} {} {} {spec}",
                m["namespace"], m["name"], m["uid"], item["data"]
            ));
        }
    }
    out.sort();
    out
}

/// A foreign CA and a client certificate it signed (as another lab's
/// kubeconfig would carry), made with openssl.
fn foreign_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let run = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(out.status.success(), "openssl {args}: {}", stderr(&out));
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1";
    run(&format!(
        "req -x509 {key} -keyout ca.key -out ca.crt -subj /CN=netlab-other-ca"
    ));
    // X.509 v3 with clientAuth, as rcgen makes another lab's admin
    // certificate (rustls' handshake refuses a v1 certificate outright).
    run(&format!(
        "req -x509 {key} -keyout client.key -out client.crt \
         -subj /O=system:masters/CN=kubernetes-admin -CA ca.crt -CAkey ca.key \
         -addext extendedKeyUsage=clientAuth -addext basicConstraints=critical,CA:FALSE"
    ));
    (dir.join("client.crt"), dir.join("client.key"))
}

/// The protobuf envelope kubectl sends (`k8s\0`, then a runtime.Unknown
/// with apiVersion v1 and `kind`), around `raw`.
fn protobuf(kind: &str, raw: &[u8]) -> Vec<u8> {
    let field = |tag: u8, bytes: &[u8]| {
        let mut f = vec![tag, bytes.len() as u8];
        f.extend_from_slice(bytes);
        f
    };
    let type_meta = [field(0x0a, b"v1"), field(0x12, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), field(0x0a, &type_meta), field(0x12, raw)].concat()
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    /// Part of the message kube-apiserver answers with.
    message: &'static str,
}

fn case(what: &'static str, method: &'static str, path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        content_type: "application/json",
        body: body.into(),
        code: 400,
        reason: "BadRequest",
        message: "",
    }
}

impl Case {
    fn ct(self, content_type: &'static str) -> Case {
        Case {
            content_type,
            ..self
        }
    }
    fn answer(self, code: u16, reason: &'static str, message: &'static str) -> Case {
        Case {
            code,
            reason,
            message,
            ..self
        }
    }
}

#[test]
fn bad_requests_get_kube_apiservers_answers_and_change_nothing() {
    let lab = Lab::up("raw-bad", &lab_yaml("bad"));
    let c = Creds::of(&lab);
    // An object each bad request below may try to change.
    let (code, made) = admin(
        &c,
        "POST",
        CMS,
        &json!({"metadata": {"name": "keep"}, "data": {"k": "v"}}),
    );
    assert_eq!(code, 201, "{made}");
    let before = snapshot(&c);
    let keep = format!("{CMS}/keep");
    let cm = |name: &str, extra: Value| {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::to_vec(&v).unwrap()
    };
    let big = cm(
        "big",
        json!({"data": {"big": "x".repeat(3 * 1024 * 1024 + 1)}}),
    );
    let foreign = tempfile::tempdir().unwrap();
    let (fcert, fkey) = foreign_cert(foreign.path());

    let cases = [
        case("malformed JSON", "POST", CMS, &b"{\"metadata\": {\"name\": "[..]),
        case("malformed YAML", "POST", CMS, &b"metadata:\n  name: [bad\n"[..])
            .ct("application/yaml"),
        case("protobuf without the k8s magic", "POST", CMS, &b"junk"[..])
            .ct("application/vnd.kubernetes.protobuf"),
        case("a broken protobuf envelope", "POST", CMS, &b"k8s\0\x0a\xff\xff"[..])
            .ct("application/vnd.kubernetes.protobuf"),
        case(
            "a broken ConfigMap in a protobuf envelope",
            "POST",
            CMS,
            protobuf("ConfigMap", b"\x0a\xff\xff\xff"),
        )
        .ct("application/vnd.kubernetes.protobuf"),
        case(
            "an unknown kind",
            "POST",
            CMS,
            br#"{"apiVersion":"v1","kind":"Widget","metadata":{"name":"w"}}"#.to_vec(),
        )
        .answer(400, "BadRequest", "Widget in version \"v1\" cannot be handled as a ConfigMap"),
        case(
            "a kind that is not the URL's",
            "POST",
            CMS,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#.to_vec(),
        )
        .answer(400, "BadRequest", "Secret in version \"v1\" cannot be handled as a ConfigMap"),
        case(
            "an apiVersion that is not the URL's",
            "POST",
            CMS,
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"av"}}"#.to_vec(),
        )
        .answer(400, "BadRequest", "cannot be handled as a ConfigMap"),
        case(
            "an unknown field, fieldValidation=Strict",
            "POST",
            &format!("{CMS}?fieldValidation=Strict"),
            cm("strict", json!({"bogus": 1})),
        )
        .answer(400, "BadRequest", "strict decoding error: unknown field \"bogus\""),
        case("an invalid name", "POST", CMS, cm("My_Pod", json!({}))).answer(
            422,
            "Invalid",
            "ConfigMap \"My_Pod\" is invalid: metadata.name: Invalid value: \"My_Pod\": a lowercase RFC 1123 subdomain",
        ),
        case(
            "a Service name that is not a DNS-1035 label",
            "POST",
            "/api/v1/namespaces/default/services",
            br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"1svc"},"spec":{"ports":[{"port":80}]}}"#.to_vec(),
        )
        .answer(422, "Invalid", "metadata.name: Invalid value: \"1svc\": a DNS-1035 label"),
        case(
            "another namespace in the body",
            "POST",
            CMS,
            br#"{"metadata":{"name":"ns","namespace":"kube-system"}}"#.to_vec(),
        )
        .answer(400, "BadRequest", "does not match the namespace"),
        case("a body over 3 MiB", "POST", CMS, big).answer(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        ),
        case("a malformed merge patch", "PATCH", &keep, &b"{\"data\": "[..])
            .ct("application/merge-patch+json"),
        case("a malformed strategic merge patch", "PATCH", &keep, &b"{nope"[..])
            .ct("application/strategic-merge-patch+json")
            .answer(400, "BadRequest", "error decoding patch"),
        case("a JSON patch that is no list", "PATCH", &keep, &br#"{"op":"add"}"#[..])
            .ct("application/json-patch+json")
            .answer(400, "BadRequest", "error decoding patch"),
        case("a replacement under another name", "PUT", &keep, cm("other", json!({"data": {"k": "x"}})))
            .answer(400, "BadRequest", "the name of the object (other) does not match the name on the URL (keep)"),
        case("no client certificate", "POST", CMS, cm("anon", json!({}))).answer(
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        case("no client certificate, a read", "GET", CMS, Vec::new()).answer(
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        case("another CA's certificate", "POST", CMS, cm("stranger", json!({}))).answer(
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        case("another CA's certificate, a delete", "DELETE", &keep, Vec::new()).answer(
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        case("an unknown resource", "GET", "/api/v1/namespaces/default/widgets", Vec::new())
            .answer(404, "NotFound", "the server could not find the requested resource"),
        case("an unknown resource, a write", "POST", "/api/v1/namespaces/default/widgets", cm("w", json!({})))
            .answer(404, "NotFound", "the server could not find the requested resource"),
        case("an unknown group", "GET", "/apis/example.com/v1/widgets", Vec::new())
            .answer(404, "NotFound", "the server could not find the requested resource"),
    ];
    let mut failures = Vec::new();
    for k in cases {
        let who = if k.what.starts_with("no client certificate") {
            As::Nobody
        } else if k.what.starts_with("another CA's") {
            As::Cert(&fcert, &fkey)
        } else {
            As::Admin
        };
        let (code, status) = match request(&c, who, k.method, &k.path, k.content_type, &k.body) {
            Ok(answer) => answer,
            Err(e) => {
                failures.push(format!("{}: no answer: {e}", k.what));
                continue;
            }
        };
        let message = status["message"].as_str().unwrap_or_default();
        let ok = code == k.code
            && status["kind"] == "Status"
            && status["code"] == k.code
            && status["reason"] == k.reason
            && message.contains(k.message);
        if !ok {
            failures.push(format!(
                "{}: {} {}: want {} {} ({:?}), got {code} {status}",
                k.what, k.method, k.path, k.code, k.reason, k.message
            ));
        }
        if k.code == 422 {
            let cause = &status["details"]["causes"][0];
            if cause["field"] != "metadata.name" || cause["reason"] != "FieldValueInvalid" {
                failures.push(format!(
                    "{}: a cause naming metadata.name: {status}",
                    k.what
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(snapshot(&c), before, "a bad request changed the lab");
    // What the bad requests were after is not there.
    for name in [
        "w", "s", "av", "strict", "My_Pod", "ns", "big", "other", "anon", "stranger",
    ] {
        let (code, _) = admin(&c, "GET", &format!("{CMS}/{name}"), &Value::Null);
        assert_eq!(code, 404, "configmap {name} was made");
    }
    let (_, kept) = admin(&c, "GET", &keep, &Value::Null);
    assert_eq!(kept["data"], json!({"k": "v"}), "{kept}");
    lab.down_clean();
}
