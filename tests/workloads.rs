//! Deployments → ReplicaSets → Pods with the real kubectl (the newest here
//! and 1.27): ReplicaSets named by pod-template-hash and owned through
//! ownerReferences, rolling updates that `kubectl rollout status` follows,
//! `kubectl wait --for=condition=Available`, describe, rollout history, and
//! garbage collection by propagation policy.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn json(lab: &Lab, k: &str, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(k, &full)).expect("kubectl -o json")
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// The live (not terminating) pods of my-nginx.
fn live_pods(lab: &Lab, k: &str) -> Vec<Value> {
    json(lab, k, &["get", "pods", "-l", "run=my-nginx"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn rollout_done(lab: &Lab, k: &str) {
    let out = lab.kubectl_ok(
        k,
        &["rollout", "status", "deployment/my-nginx", "--timeout=90s"],
    );
    assert!(
        out.contains("deployment \"my-nginx\" successfully rolled out"),
        "{k}: {out}"
    );
}

#[test]
fn replica_sets_rollouts_and_status_with_kubectl() {
    let lab = Lab::up("workloads", &lab_file("nginx.yaml"));
    let newest = KUBECTLS[0];
    for k in KUBECTLS {
        rollout_done(&lab, k);
        let out = lab.kubectl_ok(
            k,
            &[
                "wait",
                "--for=condition=Available",
                "deployment/my-nginx",
                "--timeout=60s",
            ],
        );
        assert!(out.contains("condition met"), "{k}: {out}");
    }
    // One ReplicaSet, <deployment>-<hash>, owned by the Deployment; its pods
    // <rs>-<5 chars>, owned by it, labelled with the hash.
    let dep = json(&lab, newest, &["get", "deploy", "my-nginx"]);
    let rss = json(&lab, newest, &["get", "rs"]);
    assert_eq!(rss["items"].as_array().unwrap().len(), 1, "{rss}");
    let rs = &rss["items"][0];
    let rs_name = rs["metadata"]["name"].as_str().unwrap().to_string();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs_name, format!("my-nginx-{hash}"));
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["apiVersion"], "apps/v1");
    assert_eq!(owner["uid"], dep["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "2"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "3"
    );
    let pods = live_pods(&lab, newest);
    assert_eq!(pods.len(), 2);
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let suffix = name.strip_prefix(&format!("{rs_name}-")).unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        let o = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (o["kind"].as_str(), o["name"].as_str()),
            (Some("ReplicaSet"), Some(rs_name.as_str()))
        );
        assert_eq!(o["uid"], rs["metadata"]["uid"]);
    }
    let st = &dep["status"];
    assert_eq!(st["observedGeneration"], dep["metadata"]["generation"]);
    for f in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(st[f], 2, "{f}: {st}");
    }
    let conds: Vec<(String, String, String)> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
                c["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        conds,
        [
            (
                "Available".into(),
                "True".into(),
                "MinimumReplicasAvailable".into()
            ),
            (
                "Progressing".into(),
                "True".into(),
                "NewReplicaSetAvailable".into()
            )
        ]
    );

    // Tables: kubectl's and netlab's agree; the wide columns.
    for k in KUBECTLS {
        let table = lab.kubectl_ok(k, &["get", "rs"]);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            "{k}"
        );
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], [rs_name.as_str(), "2", "2", "2"], "{k}: {table}");
        let wide = lab.kubectl_ok(k, &["get", "rs", "-o", "wide"]);
        let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(&header[5..], ["CONTAINERS", "IMAGES", "SELECTOR"], "{k}");
        assert!(
            wide.contains(&format!("pod-template-hash={hash},run=my-nginx")),
            "{k}: {wide}"
        );
    }
    let ours = lab.ok(&["get", "rs"]);
    assert!(ours.starts_with("NAME"), "{ours}");
    assert!(ours.contains(&rs_name), "{ours}");

    // An image change rolls the pods over to a new ReplicaSet; the old one
    // is kept at 0: `set image`, then `apply` of a changed manifest, each
    // followed by the newest kubectl and by 1.27.
    lab.kubectl_ok(
        newest,
        &[
            "set",
            "image",
            "deployment/my-nginx",
            "my-nginx=nginx:latest",
        ],
    );
    for k in KUBECTLS {
        rollout_done(&lab, k);
    }
    let manifest = nginx_deployment("my-nginx", 2)
        .replace("image: nginx\n", "image: docker.io/library/nginx:latest\n");
    lab.kubectl_apply(newest, "changed.yaml", &manifest);
    for k in KUBECTLS {
        rollout_done(&lab, k);
    }
    let dep = json(&lab, newest, &["get", "deploy", "my-nginx"]);
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(dep["metadata"]["generation"], 3);
    assert_eq!(dep["status"]["observedGeneration"], 3);
    let rss = json(&lab, newest, &["get", "rs", "-l", "run=my-nginx"]);
    let items = rss["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{rss}");
    let current: Vec<&Value> = items
        .iter()
        .filter(|r| r["spec"]["replicas"] == 2)
        .collect();
    assert_eq!(current.len(), 1, "{rss}");
    let new_rs = current[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert!(items
        .iter()
        .filter(|r| r["metadata"]["name"] != new_rs.as_str())
        .all(|r| r["spec"]["replicas"] == 0 && r["status"]["replicas"] == 0));
    let pods = live_pods(&lab, newest);
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{new_rs}-"))));
    assert!(pods
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "docker.io/library/nginx:latest"));
    // The rollout went one pod at a time, as the events say.
    let events = lab.kubectl_ok(
        newest,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Deployment",
        ],
    );
    assert!(
        events.contains(&format!("Scaled down replica set {rs_name} to 0 from 1")),
        "{events}"
    );

    for k in KUBECTLS {
        let history = lab.kubectl_ok(k, &["rollout", "history", "deployment/my-nginx"]);
        let revisions: Vec<&str> = history
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(revisions, ["1", "2", "3"], "{k}: {history}");
        let describe = lab.kubectl_ok(k, &["describe", "deployment", "my-nginx"]);
        assert!(
            describe.contains(&format!("NewReplicaSet:   {new_rs} (2/2 replicas created)")),
            "{k}: {describe}"
        );
        // netlab's describe prints the same ReplicaSet lines.
        let ours = lab.ok(&["describe", "deployment", "my-nginx"]);
        for key in [
            "OldReplicaSets:",
            "NewReplicaSet:",
            "  Available ",
            "  Progressing ",
        ] {
            let line = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(key))
                    .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            };
            assert!(line(&describe).is_some(), "{k}: {key}\n{describe}");
            assert_eq!(
                line(&describe),
                line(&ours),
                "{k}: {key}\n{describe}\nnetlab:\n{ours}"
            );
        }
        let describe = lab.kubectl_ok(k, &["describe", "rs", &new_rs]);
        assert!(
            describe.contains("Controlled By:  Deployment/my-nginx"),
            "{k}: {describe}"
        );
        assert!(
            describe.contains("2 Running / 0 Waiting / 0 Succeeded / 0 Failed"),
            "{k}: {describe}"
        );
    }
    let ours = lab.ok(&["describe", "deployment", "my-nginx"]);
    assert!(
        ours.contains(&format!("NewReplicaSet:   {new_rs} (2/2 replicas created)")),
        "{ours}"
    );

    // Scale still works, through the Deployment.
    lab.kubectl_ok(newest, &["scale", "deployment/my-nginx", "--replicas=3"]);
    rollout_done(&lab, newest);
    assert_eq!(live_pods(&lab, newest).len(), 3);
    lab.down_clean();
}

#[test]
fn garbage_collection_follows_the_propagation_policy() {
    let lab = Lab::up("workloads-gc", &lab_file("nginx.yaml"));
    let k = KUBECTLS[0];
    rollout_done(&lab, k);
    let rs_name = names(&json(&lab, k, &["get", "rs"]))[0].clone();
    let pod_names = |lab: &Lab| -> Vec<String> {
        let mut n: Vec<String> = live_pods(lab, k)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let before = pod_names(&lab);

    // A ReplicaSet deleted under its live Deployment comes back, with new pods.
    lab.kubectl_ok(k, &["delete", "rs", &rs_name]);
    rollout_done(&lab, k);
    let rs = json(&lab, k, &["get", "rs", &rs_name]);
    assert_eq!(rs["status"]["readyReplicas"], 2, "{rs}");
    let after = pod_names(&lab);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );

    // Orphaned: the pods stay (same names), adopted by the recreated one.
    lab.kubectl_ok(k, &["delete", "rs", &rs_name, "--cascade=orphan"]);
    rollout_done(&lab, k);
    wait_for("the ReplicaSet to be back", Duration::from_secs(30), || {
        lab.kubectl(k, &["get", "rs", &rs_name]).status.success()
    });
    assert_eq!(pod_names(&lab), after);
    let uid = json(&lab, k, &["get", "rs", &rs_name])["metadata"]["uid"].clone();
    assert!(live_pods(&lab, k)
        .iter()
        .all(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid));

    // The Deployment orphaned: its ReplicaSet and pods stay, without the
    // ownerReference to it.
    lab.kubectl_ok(k, &["delete", "deployment", "my-nginx", "--cascade=orphan"]);
    let rs = json(&lab, k, &["get", "rs", &rs_name]);
    assert!(rs["metadata"]["ownerReferences"].is_null(), "{rs}");
    assert_eq!(pod_names(&lab), after);
    // Deleting that ReplicaSet (Background) takes its pods.
    lab.kubectl_ok(k, &["delete", "rs", &rs_name]);
    wait_for("the pods to go", Duration::from_secs(30), || {
        live_pods(&lab, k).is_empty()
    });

    // A Deployment deleted (Background, kubectl's default; then Foreground)
    // takes its ReplicaSets and their pods.
    for cascade in ["background", "foreground"] {
        lab.kubectl_apply(k, "dep.yaml", &nginx_deployment("my-nginx", 2));
        rollout_done(&lab, k);
        assert_eq!(live_pods(&lab, k).len(), 2);
        lab.kubectl_ok(
            k,
            &[
                "delete",
                "deployment",
                "my-nginx",
                &format!("--cascade={cascade}"),
            ],
        );
        wait_for(
            "the ReplicaSets and pods to go",
            Duration::from_secs(30),
            || names(&json(&lab, k, &["get", "rs"])).is_empty() && live_pods(&lab, k).is_empty(),
        );
    }
    lab.down_clean();
}
