//! One owner under load: 20 clients create, delete and scale at once
//! while the lab's process is killed with `kill -9` and started again.
//! Every acknowledged write is kept, a watcher resumes (from its
//! resourceVersion, or by listing again after 410 as client-go does) and
//! ends with what the store holds, and the lab ends consistent: pods match
//! replicas, Endpoints and EndpointSlices match the ready pods, and every
//! node's rules match those.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lab's own ConfigMap (the CA every namespace gets), not the clients'.
const ROOT_CA: &str = "kube-root-ca.crt";

const CLIENTS: usize = 20;
const ROUNDS: usize = 6;

async fn client(kubeconfig: &str) -> kube::Client {
    kube_client(kubeconfig).await
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

/// Retries a write until the API acknowledges it (the lab's process may be
/// dead or starting again meanwhile). `done` says which failures mean the
/// write was made by an earlier try whose answer was lost.
async fn until_acknowledged<T, F, Fut>(what: &str, mut f: F, done: fn(&kube::Error) -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(_) => return,
            Err(e) if done(&e) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn lab_yaml() -> String {
    let svc = |n: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\nspec:\n  selector:\n    run: {n}\n  ports:\n  - port: 80\n")
    };
    format!(
        "{}{}{}---\n{}{}",
        lab_doc(2),
        nginx_deployment("web-0", 1),
        svc("web-0"),
        nginx_deployment("web-1", 1),
        svc("web-1")
    )
}

/// The endpoints on port 80 in a node's rules: the elements
/// `RANGE : IP . 80` of the maps the service chains draw from.
fn dnat_targets(lab: &Lab, node: &str) -> BTreeSet<String> {
    let rules = lab.node_table(node);
    rules
        .split([',', '{', '}'])
        .filter_map(|piece| piece.split_once(" : "))
        .filter_map(|(_, t)| t.trim().strip_suffix(" . 80").map(String::from))
        .collect()
}

#[test]
fn twenty_clients_and_a_kill_9_end_consistent() {
    let lab = Lab::up("conc", &lab_yaml());
    let kubeconfig = lab.ok(&["kubeconfig"]);
    let netlab_bin = env!("CARGO_BIN_EXE_netlab").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (expected, watched, relists) = rt.block_on(async {
        let c = client(&kubeconfig).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let system: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
        let dns_before = system.list(&ListParams::default()).await.unwrap().items;

        // A watcher of configmaps that resumes after every break.
        let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relists = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (cms, seen, stop, relists) =
                (cms.clone(), seen.clone(), stop.clone(), relists.clone());
            tokio::spawn(async move {
                let mut rv: Option<String> = None;
                while !stop.load(Ordering::SeqCst) {
                    let from = match &rv {
                        Some(rv) => rv.clone(),
                        None => match cms.list(&ListParams::default()).await {
                            Ok(l) => {
                                let mut s = seen.lock().unwrap();
                                s.clear();
                                s.extend(
                                    l.items
                                        .iter()
                                        .filter_map(|c| c.metadata.name.clone())
                                        .filter(|n| n != ROOT_CA),
                                );
                                l.metadata.resource_version.unwrap()
                            }
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    rv = Some(from.clone());
                    let Ok(stream) = cms.watch(&WatchParams::default().timeout(2), &from).await
                    else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let mut stream = stream.boxed();
                    while let Ok(Some(ev)) = stream.try_next().await {
                        match ev {
                            WatchEvent::Added(c) | WatchEvent::Modified(c) => {
                                rv = c.metadata.resource_version.clone();
                                let name = c.metadata.name.unwrap();
                                if name != ROOT_CA {
                                    seen.lock().unwrap().insert(name);
                                }
                            }
                            WatchEvent::Deleted(c) => {
                                rv = c.metadata.resource_version.clone();
                                seen.lock().unwrap().remove(&c.metadata.name.unwrap());
                            }
                            WatchEvent::Bookmark(b) => rv = Some(b.metadata.resource_version),
                            WatchEvent::Error(e) => {
                                assert_eq!(e.code, 410, "{e:?}");
                                relists.fetch_add(1, Ordering::SeqCst);
                                rv = None;
                                break;
                            }
                        }
                    }
                }
            })
        };

        // 20 clients, each with its own connection.
        let acked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let c = client(&kubeconfig).await;
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
                let deps: Api<Deployment> = Api::default_namespaced(c.clone());
                let mut mine = BTreeSet::new();
                for j in 0..ROUNDS {
                    let name = format!("c{i}-{j}");
                    let (post, cm) = (PostParams::default(), config_map(&name));
                    until_acknowledged(
                        &format!("create {name}"),
                        || cms.create(&post, &cm),
                        |e| code(e) == Some(409),
                    )
                    .await;
                    mine.insert(name);
                    acked.fetch_add(1, Ordering::SeqCst);
                    if j % 2 == 1 {
                        let gone = format!("c{i}-{}", j - 1);
                        let opts = kube::api::DeleteParams::default();
                        until_acknowledged(
                            &format!("delete {gone}"),
                            || cms.delete(&gone, &opts),
                            |e| code(e) == Some(404),
                        )
                        .await;
                        mine.remove(&gone);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 5 == 0 {
                        let dep = format!("web-{}", (i / 5) % 2);
                        let replicas = 1 + (i + j) % 3;
                        let pp = PatchParams::default();
                        let patch =
                            Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
                        until_acknowledged(
                            &format!("scale {dep}"),
                            || deps.patch_scale(&dep, &pp, &patch),
                            |_| false,
                        )
                        .await;
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                }
                mine
            }));
        }

        // Under that load, the lab's process dies and is started again.
        while acked.load(Ordering::SeqCst) < 30 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = std::fs::read_to_string(format!("/run/netlab/{}/controller.pid", lab.name))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Started again once it is gone, as a supervisor would.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let name = lab.name.clone();
        let bin = netlab_bin.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = std::process::Command::new(&bin)
                    .args(["--lab", &name, "controller", "start"])
                    .output()
                    .unwrap();
                if out.status.success() {
                    return;
                }
                // The dying process may still hold its lock a moment.
                assert!(
                    Instant::now() < deadline,
                    "controller start: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .unwrap();

        let mut expected = BTreeSet::new();
        for t in tasks {
            expected.extend(t.await.expect("a client"));
        }
        // The watcher catches up with the last write.
        let deadline = Instant::now() + Duration::from_secs(30);
        while *seen.lock().unwrap() != expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::SeqCst);
        let watched = seen.lock().unwrap().clone();
        watcher.abort();

        // Every acknowledged write is there, and nothing else.
        let stored: BTreeSet<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n != ROOT_CA)
            .collect();
        assert_eq!(stored, expected, "the store after kill -9");

        // The cluster DNS pod was adopted, not restarted.
        let dns_after = system.list(&ListParams::default()).await.unwrap().items;
        for (b, a) in dns_before.iter().zip(&dns_after) {
            assert_eq!(b.metadata.uid, a.metadata.uid);
            let restarts = |p: &Pod| {
                p.status
                    .as_ref()
                    .unwrap()
                    .container_statuses
                    .as_ref()
                    .unwrap()[0]
                    .restart_count
            };
            assert_eq!(
                restarts(b),
                restarts(a),
                "{} restarted",
                b.metadata.name.as_deref().unwrap()
            );
        }
        (expected, watched, relists.load(Ordering::SeqCst))
    });
    assert_eq!(watched, expected, "the watcher's view (relists: {relists})");
    eprintln!("watcher relisted {relists} times");

    // The lab settles consistent: pods match replicas, Endpoints and
    // EndpointSlices match the ready pods, every node's rules match them.
    let check = || -> Result<(), String> {
        let pods = lab.pods_json();
        let mut want_targets = BTreeSet::new();
        for d in ["web-0", "web-1"] {
            let dep: serde_json::Value =
                serde_json::from_str(&lab.ok(&["get", "deployment", d, "-o", "json"])).unwrap();
            let replicas = dep["spec"]["replicas"].as_u64().unwrap() as usize;
            let ready: BTreeSet<String> = pods["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["metadata"]["labels"]["run"] == d)
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .filter_map(|p| p["status"]["podIP"].as_str().map(String::from))
                .collect();
            if ready.len() != replicas {
                return Err(format!(
                    "{d}: {} ready pods for {replicas} replicas",
                    ready.len()
                ));
            }
            let ep = svc_endpoints(&lab, d);
            if ep != ready {
                return Err(format!("{d}: endpoints {ep:?}, ready pods {ready:?}"));
            }
            let slices = slice_addresses(&lab, d);
            if slices != ready {
                return Err(format!("{d}: slices {slices:?}, ready pods {ready:?}"));
            }
            want_targets.extend(ready);
        }
        for node in ["node-1", "node-2"] {
            let got = dnat_targets(&lab, node);
            if got != want_targets {
                return Err(format!(
                    "{node}: rules {got:?}, ready pods {want_targets:?}"
                ));
            }
        }
        Ok(())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check() {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("not consistent after 60 s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    lab.down_clean();
}

fn svc_endpoints(lab: &Lab, name: &str) -> BTreeSet<String> {
    let ep: serde_json::Value =
        serde_json::from_str(&lab.ok(&["get", "endpoints", name, "-o", "json"])).unwrap();
    ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
        .filter_map(|a| a["ip"].as_str().map(String::from))
        .collect()
}

fn slice_addresses(lab: &Lab, service: &str) -> BTreeSet<String> {
    let l: serde_json::Value = serde_json::from_str(&lab.ok(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={service}"),
        "-o",
        "json",
    ]))
    .unwrap();
    l["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter(|e| e["conditions"]["ready"] == true)
        .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}
