//! A second real client of the lab's API besides kubectl: kube-rs, as a
//! Rust program would use it, from the kubeconfig `netlab kubeconfig`
//! prints: list with a label selector, watch from resourceVersion 0,
//! create, merge patch, server-side apply of a new object, scale, delete.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use std::collections::BTreeMap;
use std::time::Duration;

async fn client(lab: &Lab) -> kube::Client {
    kube_client(&lab.ok(&["kubeconfig"])).await
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

#[test]
fn kube_rs_lists_watches_creates_patches_applies_scales_and_deletes() {
    let lab = Lab::up("kube-rs", &nginx_deployment("my-nginx", 2));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&lab).await;

        // List with a label selector.
        let pods: Api<Pod> = Api::default_namespaced(c.clone());
        let list = pods
            .list(&ListParams::default().labels("run=my-nginx"))
            .await
            .expect("list pods");
        assert_eq!(list.items.len(), 2, "{:?}", list.items);
        assert!(list.items.iter().all(|p| p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_some()));

        // Create, then watch it from resourceVersion 0: the initial ADDED,
        // then the change a merge patch makes.
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let made = cms
            .create(
                &PostParams::default(),
                &config_map("kube-rs", &[("a", "1")]),
            )
            .await
            .expect("create configmap");
        assert!(made.metadata.uid.is_some());
        let mut events = cms
            .watch(
                &WatchParams::default()
                    .fields("metadata.name=kube-rs")
                    .timeout(20),
                "0",
            )
            .await
            .expect("watch")
            .boxed();
        let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("the initial event in time")
            .expect("a watch event")
            .expect("the stream goes on");
        assert!(
            matches!(&first, WatchEvent::Added(cm) if cm.data.as_ref().unwrap()["a"] == "1"),
            "{first:?}"
        );
        let patched = cms
            .patch(
                "kube-rs",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
            )
            .await
            .expect("merge patch");
        assert_eq!(patched.data.as_ref().unwrap()["b"], "2");
        let modified = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.try_next().await {
                    Ok(Some(WatchEvent::Modified(cm)))
                        if cm.data.as_ref().is_some_and(|d| d.get("b").is_some()) =>
                    {
                        return cm
                    }
                    Ok(Some(_)) => continue,
                    other => panic!("the watch ended: {other:?}"),
                }
            }
        })
        .await
        .expect("the MODIFIED event in time");
        assert_eq!(modified.data.unwrap()["a"], "1");

        // Server-side apply creates what does not exist.
        let applied = cms
            .patch(
                "kube-rs-ssa",
                &PatchParams::apply("kube-rs-test"),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "kube-rs-ssa"},
                    "data": {"k": "v"},
                })),
            )
            .await
            .expect("server-side apply of a new object");
        assert_eq!(applied.data.unwrap()["k"], "v");

        // Scale through the subresource, as a controller would.
        let deps: Api<Deployment> = Api::default_namespaced(c.clone());
        let scale = deps
            .patch_scale(
                "my-nginx",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
            )
            .await
            .expect("scale");
        assert_eq!(scale.spec.unwrap().replicas, Some(3));

        // Delete; then it is gone (404).
        for name in ["kube-rs", "kube-rs-ssa"] {
            cms.delete(name, &DeleteParams::default())
                .await
                .expect("delete");
            match cms.get(name).await {
                Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
                other => panic!("{name} still there: {other:?}"),
            }
        }
    });
    wait_for("3 my-nginx pods", Duration::from_secs(30), || {
        lab.pods()
            .iter()
            .filter(|p| p.0.starts_with("my-nginx"))
            .count()
            == 3
    });
    lab.down_clean();
}
