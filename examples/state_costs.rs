//! Where a write's time goes at the scale lab's size (1 000 pods, 10 000
//! Services), in process, without a lab: copying a state, the store's
//! commit, the endpoints refresh (full and of what changed), the workload
//! controllers, a node's proxy model, the three-way merge.
//!
//!   cargo run --release --example state_costs
//!   STATE_COSTS_MEM=1 cargo run --release --example state_costs   # memory by part
//!
//! A tool for finding the next cost, not a benchmark with targets (those
//! are `scripts/bench.sh`'s).
use netlab::cluster::{ClusterState, HostInfo};
use netlab::store::{self, ObjectStore};
use rand::SeedableRng;
use std::time::Instant;
#[path = "../benches/common/scale_lab.rs"]
mod scale_lab;
use scale_lab::lab_yaml;

/// The process's resident memory now, printed with `what`.
fn m(what: &str) {
    // SAFETY: malloc_trim only gives glibc's free pages back, as the lab's
    // process does every 5 s.
    unsafe { libc::malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    println!("{what:40} {:>10.1} MiB resident", kb / 1024.0);
}

fn t<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let s = Instant::now();
    let r = f();
    println!("{what:40} {:>10.2} ms", s.elapsed().as_secs_f64() * 1e3);
    r
}

fn main() {
    let y = lab_yaml(1000, 10000);
    // STATE_COSTS_YAML=file: write the scale lab's file (to profile a real
    // lab of it) and stop.
    if let Ok(file) = std::env::var("STATE_COSTS_YAML") {
        std::fs::write(file, &y).unwrap();
        return;
    }
    let spec =
        netlab::lab::load_str(std::path::Path::new("s.yaml"), &y, &Default::default()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut st = t("plan", || {
        ClusterState::plan(&spec, &HostInfo::default(), chrono::Utc::now(), &mut rng).unwrap()
    });
    println!(
        "pods {} services {} endpoints {} slices {}",
        st.pods.len(),
        st.services.len(),
        st.endpoints.len(),
        st.endpoint_slices.len()
    );
    m("after plan");
    for _ in 0..3 {
        t("clone", || st.clone());
    }
    let file = std::path::PathBuf::from("/tmp/profile-store.redb");
    let store = t("create store", || {
        ObjectStore::create_at(file.clone(), &mut st).unwrap()
    });
    m("after the store's creation");
    // STATE_COSTS_MEM=1: what each part holds, by dropping them in turn.
    if std::env::var("STATE_COSTS_MEM").is_ok() {
        let snap = store.snapshot();
        drop(st);
        m("without the example's copy");
        drop(store);
        m("without the store (its snapshot kept)");
        drop(snap);
        m("without the snapshot");
        drop(spec);
        m("without the spec");
        return;
    }
    {
        let s = store.state();
        let (node, services) = netlab::controller::proxier::node_model(&s, "node-1");
        m("with one node's proxy model");
        let rules = netlab::proxy::rules::ruleset(&node, &services);
        m("with one node's whole ruleset");
        drop(rules);
    }
    {
        // A LIST of every pod as kubectl asks for it (a Table), and as JSON.
        let snap = store.snapshot();
        let pods = netlab::api::resources::find("", "v1", "pods").unwrap();
        let all = netlab::api::objects::Filter::default();
        for (what, as_json, table) in [
            ("LIST pods as a Table", false, true),
            ("LIST pods as a Table, JSON made too", true, true),
            ("LIST pods as JSON", true, false),
        ] {
            for _ in 0..3 {
                t(what, || {
                    let (items, tab) = netlab::api::objects::select(
                        &snap.state,
                        pods,
                        &all,
                        chrono::Utc::now(),
                        as_json,
                    );
                    let body = if table {
                        tab.to_json(true, "1")
                    } else {
                        netlab::api::objects::list(pods, items, "1")
                    };
                    serde_json::to_vec(&body).unwrap().len()
                });
            }
        }
    }
    for _ in 0..3 {
        let mut s = store.state();
        s.pods[0]
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("x".into(), format!("{:?}", Instant::now()));
        t("commit one annotation", || store.commit(&mut s).unwrap());
    }
    for _ in 0..3 {
        t("commit nothing", || {
            store.commit(&mut store.state()).unwrap()
        });
    }
    for _ in 0..3 {
        t("update nothing", || {
            store.update(|_s| Ok::<_, store::StoreError>(())).unwrap()
        });
    }
    for _ in 0..3 {
        let mut s = store.state();
        t("refresh_endpoints (no change)", || s.refresh_endpoints());
    }
    for _ in 0..3 {
        let mut s = store.state();
        t("refresh_endpoint_slices (no change)", || {
            s.refresh_endpoint_slices()
        });
    }
    for _ in 0..3 {
        let mut s = store.state();
        t("refresh_deployment_status", || {
            s.refresh_deployment_status()
        });
    }
    for _ in 0..3 {
        let mut s = store.state();
        t("reconcile_workloads", || {
            s.reconcile_workloads(chrono::Utc::now(), &mut rng).unwrap()
        });
    }
    for _ in 0..3 {
        let s = store.state();
        t("node_model", || {
            netlab::controller::proxier::node_model(&s, "node-1")
        });
    }
    // A pod deletion: mark terminating, refresh endpoints, commit.
    let mut s = store.state();
    s.pods[5].metadata.deletion_timestamp = Some(netlab::cluster::state::time(chrono::Utc::now()));
    t("refresh_endpoints (one pod gone)", || s.refresh_endpoints());
    let mut s4 = store.state();
    s4.refresh_endpoints();
    s4.pods[11].metadata.deletion_timestamp =
        Some(netlab::cluster::state::time(chrono::Utc::now()));
    t("refresh_endpoints after a refresh (one pod gone)", || {
        s4.refresh_endpoints()
    });
    t("refresh_endpoints after a refresh (none)", || {
        s4.refresh_endpoints()
    });
    // For a profiler: STATE_COSTS_LOOP=N repeats the one-deletion refresh.
    if let Some(n) = std::env::var("STATE_COSTS_LOOP")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        for i in 0..n {
            let pod = &mut s4.pods[20 + i % 500];
            pod.metadata.deletion_timestamp = match pod.metadata.deletion_timestamp {
                Some(_) => None,
                None => Some(netlab::cluster::state::time(chrono::Utc::now())),
            };
            s4.refresh_endpoints();
        }
        return;
    }
    let r0 = store.snapshot().revision;
    let r1 = t("commit deletion", || store.commit(&mut s).unwrap());
    println!("objects written: {}", r1 - r0);
    let base = store.snapshot().state.clone();
    for (name, same) in [
        ("pods", s.pods.same(&base.pods)),
        ("endpoints", s.endpoints.same(&base.endpoints)),
        ("slices", s.endpoint_slices.same(&base.endpoint_slices)),
        ("services", s.services.same(&base.services)),
        ("rs", s.replica_sets.same(&base.replica_sets)),
        ("deps", s.deployments.same(&base.deployments)),
    ] {
        println!("{name} same after commit: {same}");
    }
    let mut s2 = store.state();
    s2.refresh_endpoints();
    for (name, same) in [
        ("endpoints", s2.endpoints.same(&base.endpoints)),
        ("slices", s2.endpoint_slices.same(&base.endpoint_slices)),
    ] {
        println!("{name} same after a second refresh: {same}");
    }
    let mut s3 = store.state();
    s3.reconcile_workloads(chrono::Utc::now(), &mut rng)
        .unwrap();
    let np = s3
        .pods
        .shared()
        .iter()
        .zip(base.pods.shared())
        .filter(|(a, b)| !std::sync::Arc::ptr_eq(a, b))
        .count();
    let eqp = s3
        .pods
        .shared()
        .iter()
        .zip(base.pods.shared())
        .filter(|(a, b)| !std::sync::Arc::ptr_eq(a, b) && a == b)
        .count();
    let nr = s3
        .replica_sets
        .shared()
        .iter()
        .zip(base.replica_sets.shared())
        .filter(|(a, b)| !std::sync::Arc::ptr_eq(a, b))
        .count();
    let eqr = s3
        .replica_sets
        .shared()
        .iter()
        .zip(base.replica_sets.shared())
        .filter(|(a, b)| !std::sync::Arc::ptr_eq(a, b) && a == b)
        .count();
    println!("reconcile: pods {} {} / {np} replaced ({eqp} equal), rs {} {} / {nr} replaced ({eqr} equal)", s3.pods.len(), base.pods.len(), s3.replica_sets.len(), base.replica_sets.len());
    for (name, same) in [
        ("pods", s3.pods.same(&base.pods)),
        ("rs", s3.replica_sets.same(&base.replica_sets)),
        ("deps", s3.deployments.same(&base.deployments)),
    ] {
        println!("{name} same after reconcile: {same}");
    }
    // merge
    let base = store.snapshot().state.clone();
    let mut ours = (*base).clone();
    ours.pods[7]
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("y".into(), "1".into());
    let mut theirs = (*base).clone();
    theirs.pods[9]
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("z".into(), "1".into());
    t("merge", || store::merge(&base, ours, &theirs));
    let _ = std::fs::remove_file(&file);
}
