//! The lab's object store as clients see it through the API: a
//! resourceVersion per object that moves only when the object changes,
//! optimistic concurrency (409 Conflict), watches from a resourceVersion
//! (and 410 Expired past the log), paged lists, and writes that survive
//! `kill -9` of the lab's process, after which watches resume.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use std::collections::BTreeMap;
use std::time::Duration;

async fn client(lab: &Lab) -> kube::Client {
    kube_client(&lab.ok(&["kubeconfig"])).await
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn rv(o: &kube::api::ObjectMeta) -> u64 {
    o.resource_version
        .as_deref()
        .expect("a resourceVersion")
        .parse()
        .expect("a number")
}

/// The next watch event within 20 s.
async fn next<S>(events: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = Result<WatchEvent<ConfigMap>, kube::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), events.try_next())
        .await
        .expect("a watch event within 20 s")
        .expect("the watch stream")
        .expect("the watch did not end")
}

#[test]
fn resource_versions_conflicts_watches_from_a_revision_and_pages() {
    let lab = Lab::up("store", &nginx_deployment("my-nginx", 2));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&lab).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let pods: Api<Pod> = Api::default_namespaced(c.clone());

        // Each object has its own resourceVersion; a list has the store's,
        // which is at least the newest object's.
        let a = cms
            .create(&PostParams::default(), &config_map("a", "1"))
            .await
            .expect("create a");
        let b = cms
            .create(&PostParams::default(), &config_map("b", "1"))
            .await
            .expect("create b");
        assert!(rv(&b.metadata) > rv(&a.metadata));
        let list = cms.list(&ListParams::default()).await.expect("list");
        let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
        assert!(list_rv >= rv(&b.metadata));
        // A change moves only the changed object's version.
        let a2 = cms
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"k": "2"}})),
            )
            .await
            .expect("patch a");
        assert!(rv(&a2.metadata) > list_rv);
        assert_eq!(
            rv(&cms.get("b").await.unwrap().metadata),
            rv(&b.metadata),
            "b did not change"
        );

        // Optimistic concurrency: a replace based on the old version is
        // refused with kube-apiserver's 409, and changes nothing.
        let mut stale = a.clone();
        stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
        match cms.replace("a", &PostParams::default(), &stale).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
                assert!(
                    s.message.contains("the object has been modified"),
                    "{}",
                    s.message
                );
            }
            other => panic!("a stale replace: {other:?}"),
        }
        let now = cms.get("a").await.unwrap();
        assert_eq!(now.data.unwrap()["k"], "2");
        // Based on the current version, it goes through.
        let mut fresh = a2.clone();
        fresh.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
        cms.replace("a", &PostParams::default(), &fresh)
            .await
            .expect("a replace of the current version");

        // A watch from a list's resourceVersion sends what changed after
        // it, and only that.
        let from = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        cms.create(&PostParams::default(), &config_map("c", "1"))
            .await
            .unwrap();
        let mut events = cms
            .watch(&WatchParams::default().timeout(20), &from)
            .await
            .expect("watch from a resourceVersion")
            .boxed();
        match next(&mut events).await {
            WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("c")),
            e => panic!("expected c ADDED, got {e:?}"),
        }
        cms.delete("b", &Default::default()).await.unwrap();
        match next(&mut events).await {
            WatchEvent::Deleted(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
            e => panic!("expected b DELETED, got {e:?}"),
        }
        drop(events);

        // A resourceVersion older than the store's log: 410 Expired.
        let mut old = cms
            .watch(&WatchParams::default().timeout(5), "1")
            .await
            .expect("a watch request")
            .boxed();
        match next(&mut old).await {
            WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            e => panic!("expected 410 Expired, got {e:?}"),
        }

        // Paged lists: one pod a page, all pods in the end, one revision.
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut revisions = std::collections::BTreeSet::new();
        loop {
            let mut lp = ListParams::default().limit(1);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = pods.list(&lp).await.expect("a page");
            revisions.insert(page.metadata.resource_version.clone().unwrap());
            names.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => {
                    assert_eq!(page.metadata.remaining_item_count, Some(1));
                    token = Some(t)
                }
                _ => break,
            }
        }
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(revisions.len(), 1, "{revisions:?}");
    });
    // kubectl's own paging (it asks for 500 at a time; here 1).
    let out = lab.kubectl_ok(
        "kubectl",
        &["get", "pods", "--chunk-size=1", "--no-headers"],
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    // kubectl replace of a stale object prints kube-apiserver's conflict.
    let stale = lab.kubectl_ok("kubectl", &["get", "configmap", "a", "-o", "json"]);
    lab.kubectl_ok(
        "kubectl",
        &["patch", "configmap", "a", "-p", r#"{"data":{"k":"4"}}"#],
    );
    let file = std::env::temp_dir().join(format!("{}-stale.json", lab.name));
    std::fs::write(&file, stale).unwrap();
    let out = lab.kubectl("kubectl", &["replace", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Operation cannot be fulfilled on configmaps \"a\""),
        "{}",
        stderr(&out)
    );
    lab.down_clean();
}

#[test]
fn acknowledged_writes_survive_kill_9_and_watches_resume() {
    let lab = Lab::up("store-kill", &nginx_deployment("my-nginx", 1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&lab).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let made = cms
            .create(&PostParams::default(), &config_map("durable", "1"))
            .await
            .expect("create");
        // Killed at once after the acknowledgement.
        let pid = lab.controller_pid().expect("the lab's process runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("the lab's process to die", Duration::from_secs(10), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        // The next verb starts the process again; the write is there, with
        // its resourceVersion.
        lab.ok(&["get", "configmaps"]);
        let back = cms.get("durable").await.expect("the acknowledged write");
        assert_eq!(back.data.unwrap()["k"], "1");
        assert_eq!(
            back.metadata.resource_version,
            made.metadata.resource_version
        );
        // A watch resumes from the last resourceVersion the client saw.
        let from = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let mut events = cms
            .watch(&WatchParams::default().timeout(20), &from)
            .await
            .expect("watch")
            .boxed();
        cms.create(&PostParams::default(), &config_map("after", "1"))
            .await
            .unwrap();
        match next(&mut events).await {
            WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("after")),
            e => panic!("expected ADDED after the restart, got {e:?}"),
        }
    });
    // The pod was adopted, not restarted.
    let pods = lab.pods_json();
    assert_eq!(
        pods["items"][0]["status"]["containerStatuses"][0]["restartCount"], 0,
        "{pods}"
    );
    lab.down_clean();
}
