//! The lab's OpenAPI with the real kubectl: 1.27 and 1.28 read
//! `/openapi/v2` (protobuf) before `apply`, `edit` and `patch`; `explain`
//! reads the `/openapi/v3` schemas; `--validate=strict` is refused by the
//! server's `fieldValidation=Strict`, naming the unknown field.

mod common;

use common::*;
use std::process::{Command, Output};

const KUBECTL_1_27: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const KUBECTL_1_28: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.28";

/// `kubectl` with extra environment (`EDITOR` for `edit`), with the lab's
/// standalone kubeconfig and discovery cache.
fn kubectl_env(lab: &Lab, k: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = lab.dir.path().join("kubeconfig");
    if !config.exists() {
        std::fs::write(&config, lab.ok(&["kubeconfig"])).expect("writing the kubeconfig");
    }
    Command::new(k)
        .arg("--kubeconfig")
        .arg(&config)
        .arg("--cache-dir")
        .arg(lab.dir.path().join("kube-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {k}: {e}"))
}

fn write(lab: &Lab, name: &str, text: &str) -> String {
    let p = lab.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  selector:\n    run: my-nginx\n  ports:\n  - port: {port}\n    protocol: TCP\n"
    )
}

#[test]
fn apply_edit_and_patch_with_kubectl_1_27_and_1_28() {
    let lab = Lab::up("kubectl-oa-writes", &lab_file("nginx.yaml"));
    for (k, svc) in [(KUBECTL_1_27, "oa-127"), (KUBECTL_1_28, "oa-128")] {
        let get =
            |path: &str| lab.kubectl_ok(k, &["get", "svc", svc, "-o", &format!("jsonpath={path}")]);
        // apply: create, then a change (a three-way patch built from v2).
        let first = write(&lab, &format!("{svc}.yaml"), &service(svc, 80));
        let out = lab.kubectl_ok(k, &["apply", "-f", &first]);
        assert_eq!(out.trim(), format!("service/{svc} created"));
        let changed = write(&lab, &format!("{svc}-2.yaml"), &service(svc, 8080));
        let out = lab.kubectl_ok(k, &["apply", "-f", &changed]);
        assert_eq!(out.trim(), format!("service/{svc} configured"));
        // The ports list merged by its key: 80 went, 8080 came.
        assert_eq!(get("{.spec.ports[*].port}"), "8080");
        // patch (strategic, then merge).
        let out = lab.kubectl_ok(
            k,
            &[
                "patch",
                "svc",
                svc,
                "-p",
                r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
            ],
        );
        assert_eq!(out.trim(), format!("service/{svc} patched"));
        lab.kubectl_ok(
            k,
            &[
                "patch",
                "svc",
                svc,
                "--type=merge",
                "-p",
                r#"{"spec":{"type":"NodePort"}}"#,
            ],
        );
        assert_eq!(get("{.spec.type}"), "NodePort");
        // edit, with a sed script for an editor.
        let sed = format!("sed -i s/app:\\ {svc}/app:\\ edited/");
        let out = kubectl_env(&lab, k, &["edit", "svc", svc], &[("EDITOR", &sed)]);
        assert!(out.status.success(), "{k} edit: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), format!("service/{svc} edited"));
        assert_eq!(
            get("{.metadata.labels.app}/{.metadata.labels.patched}"),
            "edited/yes"
        );
        lab.kubectl_ok(k, &["delete", "svc", svc]);
    }
    lab.down_clean();
}

#[test]
fn explain_with_the_oldest_and_newest_kubectl() {
    let lab = Lab::up("kubectl-oa-explain", &lab_file("nginx.yaml"));
    for k in KUBECTLS {
        let pods = lab.kubectl_ok(k, &["explain", "pods"]);
        assert!(pods.contains("KIND:       Pod"), "{k}:\n{pods}");
        assert!(
            pods.contains("Pod is a collection of containers that can run on a host."),
            "{k}:\n{pods}"
        );
        assert!(pods.contains("spec\t<PodSpec>"), "{k}:\n{pods}");
        let ports = lab.kubectl_ok(k, &["explain", "pods.spec.containers.ports"]);
        assert!(
            ports.contains("FIELD: ports <[]ContainerPort>"),
            "{k}:\n{ports}"
        );
        assert!(
            ports.contains("containerPort\t<integer> -required-"),
            "{k}:\n{ports}"
        );
        let spec = lab.kubectl_ok(k, &["explain", "deployment.spec"]);
        assert!(spec.contains("GROUP:      apps"), "{k}:\n{spec}");
        assert!(
            spec.contains("FIELD: spec <DeploymentSpec>"),
            "{k}:\n{spec}"
        );
        assert!(
            spec.contains("template\t<PodTemplateSpec> -required-"),
            "{k}:\n{spec}"
        );
    }
    lab.down_clean();
}

#[test]
fn validate_strict_refuses_unknown_fields() {
    let lab = Lab::up("kubectl-oa-strict", &lab_file("nginx.yaml"));
    for (i, k) in [KUBECTLS[0], KUBECTL_1_28, KUBECTLS[1]]
        .into_iter()
        .enumerate()
    {
        let svc = format!("oa-strict-{i}");
        let bad =
            service(&svc, 80).replace("    protocol: TCP\n", "    protocol: TCP\n    bogus: 1\n");
        let file = write(&lab, &format!("{svc}.yaml"), &bad);
        // Create: refused, nothing made.
        let out = lab.kubectl(k, &["apply", "--validate=strict", "-f", &file]);
        assert!(!out.status.success(), "{k} accepted an unknown field");
        assert!(
            stderr(&out).contains(&format!(
                "Error from server (BadRequest): error when creating \"{file}\": Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.ports[0].bogus\""
            )),
            "{k}: {}",
            stderr(&out)
        );
        let gone = lab.kubectl(k, &["get", "svc", &svc]);
        assert!(stderr(&gone).contains("NotFound"), "{k}: {}", stderr(&gone));
        // A change (PATCH) with an unknown field: refused, nothing changed.
        let good = write(&lab, &format!("{svc}-good.yaml"), &service(&svc, 80));
        lab.kubectl_ok(k, &["apply", "-f", &good]);
        let bad = service(&svc, 80).replace("spec:\n", "spec:\n  clusterIPz: None\n");
        let file = write(&lab, &format!("{svc}-bad.yaml"), &bad);
        let out = lab.kubectl(k, &["apply", "--validate=strict", "-f", &file]);
        assert!(!out.status.success(), "{k} accepted an unknown field");
        assert!(
            stderr(&out).contains("strict decoding error: unknown field \"spec.clusterIPz\""),
            "{k}: {}",
            stderr(&out)
        );
        // Without validation the field is dropped, as kube-apiserver does.
        let out = lab.kubectl_ok(k, &["apply", "--validate=false", "-f", &file]);
        assert!(out.contains(&format!("service/{svc}")), "{out}");
        let spec = lab.kubectl_ok(k, &["get", "svc", &svc, "-o", "jsonpath={.spec}"]);
        assert!(!spec.contains("clusterIPz"), "{spec}");
        // `kubectl patch` sends no fieldValidation: kube-apiserver's
        // default (Warn) lets it through with a warning kubectl prints.
        let out = lab.kubectl(k, &["patch", "svc", &svc, "-p", r#"{"spec":{"typo":1}}"#]);
        assert!(out.status.success(), "{k}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Warning: unknown field \"spec.typo\""),
            "{k}: {}",
            stderr(&out)
        );
    }
    lab.down_clean();
}
