//! The lab's Kubernetes API (root: `sudo cargo bench --bench api`): a lab
//! of NETLAB_BENCH_API_PODS pods (default 1 000: one Deployment of busybox
//! httpd pods on 2 nodes) comes up, and a client measures over HTTPS what
//! kubectl and controllers do, with the baselines in the same run.
//!
//! - The client: kube-rs from the kubeconfig `netlab kubeconfig` prints,
//!   its own stack but with TCP_NODELAY (as client-go has it), one
//!   kept-alive connection, raw requests (the bodies are read whole, not
//!   decoded) for GET and LIST; typed for the ConfigMap writes.
//! - GET one pod; LIST every pod as JSON and as a Table (kubectl's
//!   `Accept`); CREATE, merge PATCH and DELETE of ConfigMaps: p50 and p99
//!   of NETLAB_BENCH_API_ROUNDS requests (default 500; LISTs:
//!   NETLAB_BENCH_API_LIST_ROUNDS, default 100; writes:
//!   NETLAB_BENCH_API_WRITE_ROUNDS, default 100), after a warm-up.
//! - Watch delivery: a watch on one ConfigMap is open while it is merge
//!   patched NETLAB_BENCH_API_WRITE_ROUNDS times; the time from the PATCH's
//!   response to the MODIFIED event of that resourceVersion (0 when the
//!   event came first), and from the request's start.
//! - Pod create → Running: a bare pod of the lab's (cached) image is
//!   created with a watch open on its name; the time from the request to
//!   the event that shows it Running, median of NETLAB_BENCH_API_POD_ROUNDS
//!   pods (default 20) after 3 warm-up ones, each deleted (grace 0) and
//!   gone before the next.
//! - The lab's process: VmRSS after `up` and after the run, VmHWM.
//! - Baselines: `kubectl get pods` (`/usr/bin/kubectl` with the standalone
//!   kubeconfig, its own discovery cache, warm) and `netlab get pods` as
//!   processes, median of NETLAB_BENCH_API_PROC_ROUNDS (default 10); the
//!   store's commit of a one-object change (an annotation of a pod) at this
//!   size against the whole-file store it replaced (`ClusterState` as
//!   pretty JSON to a 0600 temp file, renamed over `state.json`, as
//!   `ClusterState::persist` did before b5f329a), both in-process on one
//!   state (read from a copy of the lab's `store.redb`), interleaved,
//!   NETLAB_BENCH_API_COMMITS rounds (default 50), in one directory under
//!   /run (where the lab's files are).
//! - `down` in every path (also on panic, SIGINT, SIGTERM), then a check
//!   that nothing of the lab is left.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{env_or, median, percentile, Results};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use netlab::cluster::ClusterState;
use netlab::store::ObjectStore;

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");
const KUBECTL: &str = "/usr/bin/kubectl";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Takes the lab down when dropped (the normal end, a panic).
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        down(&self.0);
    }
}

fn down(lab: &str) {
    match Command::new(NETLAB).args(["down", "--lab", lab]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "netlab down --lab {lab}: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("netlab down --lab {lab}: {e}"),
    }
}

fn lab_yaml(pods: usize) -> String {
    format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  podCIDRMaskSize: 22\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {pods}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      enableServiceLinks: false\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: radial/busyboxplus:curl\n        command: [\"sh\", \"-c\", \"echo ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp\"]\n        ports:\n        - containerPort: 80\n"
    )
}

/// (VmRSS, VmHWM) in bytes of a process.
fn memory(pid: u32) -> (u64, u64) {
    common::memory(&pid.to_string())
}

fn ms(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// p50 and p99 of a series, recorded as `<key>.p50` / `<key>.p99`.
fn record(results: &mut Results, key: &str, v: &[Duration]) -> (Duration, Duration) {
    let (p50, p99) = (median(v), percentile(v, 99.0));
    results.secs(format!("{key}.p50"), p50);
    results.secs(format!("{key}.p99"), p99);
    (p50, p99)
}

fn get(path: &str, accept: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .unwrap()
}

/// Times `rounds` runs of a request (after `warm` unmeasured ones); the
/// last body.
async fn time_requests(
    c: &kube::Client,
    make: impl Fn() -> http::Request<Vec<u8>>,
    warm: usize,
    rounds: usize,
) -> (Vec<Duration>, String) {
    let mut body = String::new();
    for _ in 0..warm {
        body = c.request_text(make()).await.expect("request");
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let req = make();
        let t = Instant::now();
        body = c.request_text(req).await.expect("request");
        times.push(t.elapsed());
    }
    (times, body)
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("bench".to_string(), "api".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("a".to_string(), "1".to_string())])),
        ..Default::default()
    }
}

/// kube-rs's client as `Client::try_from(Config)` builds it, but with
/// TCP_NODELAY, as client-go's (Go sets it on every TCP connection): with
/// Nagle's algorithm on, a request whose body goes out in a second segment
/// waits for the server's delayed ACK (40 ms here), which would measure the
/// client, not the server (kube-rs issue 2056).
fn nodelay_client(config: kube::Config) -> kube::Client {
    use kube::client::ConfigExt;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config
        .rustls_https_connector_with_connector(http)
        .expect("the kubeconfig's TLS settings");
    let hc = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, kube::client::Body>(https);
    let svc = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().expect("the kubeconfig's credentials"))
        .map_err(tower::BoxError::from)
        .service(hc);
    kube::Client::new(svc, config.default_namespace)
}

/// CREATE, then merge PATCH, then DELETE `warm + rounds` ConfigMaps
/// `<prefix>-<i>`; the times of the last `rounds` of each.
async fn crud(
    cms: &Api<ConfigMap>,
    prefix: &str,
    warm: usize,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let names: Vec<String> = (0..warm + rounds)
        .map(|i| format!("{prefix}-{i}"))
        .collect();
    let (mut create, mut patch, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    for (i, n) in names.iter().enumerate() {
        let cm = config_map(n);
        let t = Instant::now();
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        if i >= warm {
            create.push(t.elapsed());
        }
    }
    for (i, n) in names.iter().enumerate() {
        let p = Patch::Merge(serde_json::json!({"data": {"b": i.to_string()}}));
        let t = Instant::now();
        cms.patch(n, &PatchParams::default(), &p)
            .await
            .expect("patch");
        if i >= warm {
            patch.push(t.elapsed());
        }
    }
    for (i, n) in names.iter().enumerate() {
        let t = Instant::now();
        cms.delete(n, &DeleteParams::default())
            .await
            .expect("delete");
        if i >= warm {
            delete.push(t.elapsed());
        }
    }
    (create, patch, delete)
}

/// The whole-file store `ClusterState::persist` was before b5f329a.
/// Pod create → Running, `rounds` times after `warm` (see the top).
async fn pod_starts(c: &kube::Client, warm: usize, rounds: usize) -> Vec<Duration> {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut times = Vec::new();
    for i in 0..warm + rounds {
        let name = format!("bench-start-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "start"}},
            "spec": {"enableServiceLinks": false, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "httpd", "image": "radial/busyboxplus:curl",
                                     "command": ["sh", "-c", "echo ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp"],
                                     "ports": [{"containerPort": 80}]}]}
        }))
        .expect("a pod");
        let by_name = format!("metadata.name={name}");
        let list = pods
            .list(&ListParams::default().fields(&by_name))
            .await
            .expect("list pods");
        let rv = list
            .metadata
            .resource_version
            .expect("a list's resourceVersion");
        let mut events = pods
            .watch(&WatchParams::default().fields(&by_name).timeout(60), &rv)
            .await
            .expect("watch pods")
            .boxed();
        let t0 = Instant::now();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create a pod");
        let at = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(ev) = events.try_next().await.expect("the watch failed") {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                    if running(&p) {
                        return Instant::now();
                    }
                }
            }
            panic!("the watch of pod {name} ended before it ran");
        })
        .await
        .unwrap_or_else(|_| panic!("pod {name} not Running within 60 s"));
        if i >= warm {
            times.push(at - t0);
        }
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        pods.delete(&name, &now).await.expect("delete the pod");
        let gone = Instant::now() + Duration::from_secs(60);
        while pods.get_opt(&name).await.expect("get the pod").is_some() {
            assert!(Instant::now() < gone, "pod {name} not gone within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    times
}

fn old_persist(st: &ClusterState, dir: &Path) -> usize {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("state.json");
    let tmp = dir.join(format!(".state.json.{}", std::process::id()));
    let json = serde_json::to_vec_pretty(st).expect("state serializes");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .unwrap();
        f.write_all(&json).unwrap();
    }
    std::fs::rename(&tmp, &path).unwrap();
    json.len()
}

/// A store copied from the lab's, opened in `dir` (retried: the lab's
/// process may commit while the file is copied).
fn store_copy(lab: &str, dir: &Path) -> ObjectStore {
    let from = netlab::store::path(lab);
    let to = dir.join("store.redb");
    let mut last = String::new();
    for _ in 0..5 {
        std::fs::copy(&from, &to).expect("copying the lab's store");
        match ObjectStore::open_at(to.clone()) {
            Ok(s) => return s,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("a copy of {} does not open: {last}", from.display());
}

fn process_times(cmd: impl Fn() -> Command, rounds: usize, expect_lines: usize) -> Vec<Duration> {
    let run = || {
        let mut c = cmd();
        let t = Instant::now();
        let out = c.output().expect("spawning");
        let d = t.elapsed();
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(lines, expect_lines, "{c:?}: {lines} lines of output");
        d
    };
    run(); // warm: discovery cache, page cache
    (0..rounds).map(|_| run()).collect()
}

fn main() {
    common::require_root("api");
    let load_at_start = common::load1();
    let pods: usize = env_or("NETLAB_BENCH_API_PODS", 1000);
    let rounds: usize = env_or("NETLAB_BENCH_API_ROUNDS", 500);
    let list_rounds: usize = env_or("NETLAB_BENCH_API_LIST_ROUNDS", 100);
    let proc_rounds: usize = env_or("NETLAB_BENCH_API_PROC_ROUNDS", 10);
    let commits: usize = env_or("NETLAB_BENCH_API_COMMITS", 50);
    let write_rounds: usize = env_or("NETLAB_BENCH_API_WRITE_ROUNDS", 100);
    let pod_rounds: usize = env_or("NETLAB_BENCH_API_POD_ROUNDS", 20);
    assert!(
        pods >= 1
            && rounds >= 1
            && write_rounds >= 1
            && list_rounds >= 1
            && proc_rounds >= 1
            && commits >= 1
            && pod_rounds >= 1,
        "NETLAB_BENCH_API_*: positive numbers"
    );
    let lab = format!("b{}-api", common::tag());
    let dir = tempfile::tempdir().unwrap();
    // `up` merges its context here, not into root's own kubeconfig.
    let kubeconfig = dir.path().join("kubeconfig");
    std::env::set_var("KUBECONFIG", &kubeconfig);
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, lab_yaml(pods)).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Interrupted: down, then exit (a panic's unwinding drops the guard).
    {
        let lab = lab.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut int = signal(SignalKind::interrupt()).unwrap();
            let mut term = signal(SignalKind::terminate()).unwrap();
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("interrupted: taking lab {lab} down");
            down(&lab);
            std::process::exit(130);
        });
    }
    let guard = Guard(lab.clone());
    let mut results = Results::default();
    results.put("api.pods", pods);
    results.put("api.rounds", rounds);
    results.put("api.list_rounds", list_rounds);
    results.put("api.write_rounds", write_rounds);
    println!(
        "api: {pods} pods (one Deployment, 2 nodes), {rounds} GETs, {list_rounds} per LIST, {write_rounds} per write (load {:.2})",
        common::load1()
    );

    let up = common::up_timed(&lab, &file, &[]);
    println!("up: {:.1} s", up.as_secs_f64());
    results.secs("api.up", up);

    let pid: u32 = std::fs::read_to_string(netlab::controller::daemon::pid_file(&lab))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (rss_up, hwm_up) = memory(pid);
    results.put("api.rss_up", rss_up);
    results.put("api.hwm_up", hwm_up);

    let standalone = common::netlab(&["kubeconfig", "--lab", &lab]);
    let standalone_file = dir.path().join("standalone.kubeconfig");
    std::fs::write(&standalone_file, &standalone).unwrap();

    let mut table: Vec<[String; 4]> = Vec::new();
    let mut targets: Vec<(String, String, bool)> = Vec::new();

    let list_table_p50 = rt.block_on(async {
        let kc = kube::config::Kubeconfig::from_yaml(&standalone).expect("netlab kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("a kube config");
        let c = nodelay_client(config.clone());

        // LIST: JSON and Table (and a pod's name for GET).
        let pods_path = "/api/v1/namespaces/default/pods";
        let (times, body) =
            time_requests(&c, || get(pods_path, "application/json"), 5, list_rounds).await;
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let items = list["items"].as_array().expect("a pod list");
        assert_eq!(items.len(), pods, "the list holds every pod");
        let name = items[items.len() / 2]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        results.put("api.list.json.bytes", body.len());
        let (lj50, lj99) = record(&mut results, "api.list.json", &times);
        let json_kib = body.len() as f64 / 1024.0;
        let (times, body) = time_requests(&c, || get(pods_path, TABLE), 5, list_rounds).await;
        let t: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(t["kind"], "Table", "a Table: {}", &body[..body.len().min(300)]);
        assert_eq!(
            t["rows"].as_array().map(Vec::len),
            Some(pods),
            "a row per pod"
        );
        results.put("api.list.table.bytes", body.len());
        let (lt50, lt99) = record(&mut results, "api.list.table", &times);
        let table_kib = body.len() as f64 / 1024.0;

        // GET one pod.
        let pod_path = format!("{pods_path}/{name}");
        let (times, body) =
            time_requests(&c, || get(&pod_path, "application/json"), 20, rounds).await;
        assert!(body.contains(&name));
        let (g50, g99) = record(&mut results, "api.get", &times);
        table.push([
            "GET one pod".into(),
            ms(g50),
            ms(g99),
            format!("p99 < 2 ms: {}", verdict(g99 < Duration::from_millis(2))),
        ]);
        targets.push((
            format!("GET one pod p99 < 2 ms ({pods} pods)"),
            ms(g99),
            g99 < Duration::from_millis(2),
        ));
        table.push([
            format!("LIST {pods} pods, JSON ({json_kib:.0} KiB)"),
            ms(lj50),
            ms(lj99),
            String::new(),
        ]);
        let scaled = if pods == 1000 { "" } else { " (target is at 1 000)" };
        table.push([
            format!("LIST {pods} pods, Table ({table_kib:.0} KiB)"),
            ms(lt50),
            ms(lt99),
            format!(
                "median < 50 ms: {}{scaled}",
                verdict(lt50 < Duration::from_millis(50))
            ),
        ]);
        targets.push((
            format!("LIST {pods} pods as a Table < 50 ms (median)"),
            format!("{} (p99 {})", ms(lt50), ms(lt99)),
            lt50 < Duration::from_millis(50),
        ));

        // CREATE, merge PATCH, DELETE of ConfigMaps.
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let (create, patch, delete) = crud(&cms, "bench-crud", 10, write_rounds).await;
        for (what, key, v) in [
            ("CREATE a ConfigMap", "api.create", &create),
            ("PATCH (merge) a ConfigMap", "api.patch", &patch),
            ("DELETE a ConfigMap", "api.delete", &delete),
        ] {
            let (p50, p99) = record(&mut results, key, v);
            table.push([what.into(), ms(p50), ms(p99), String::new()]);
        }

        // Watch delivery.
        let warm = 10;
        let made = cms
            .create(&PostParams::default(), &config_map("bench-watch"))
            .await
            .expect("create bench-watch");
        let rv = made.metadata.resource_version.clone().unwrap();
        let stream = cms
            .watch(
                &WatchParams::default()
                    .fields("metadata.name=bench-watch")
                    .timeout(280),
                &rv,
            )
            .await
            .expect("watch");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let reader = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(ev)) = stream.try_next().await {
                let at = Instant::now();
                if let WatchEvent::Modified(cm) = ev {
                    let rv = cm.metadata.resource_version.unwrap_or_default();
                    if tx.send((rv, at)).is_err() {
                        break;
                    }
                }
            }
        });
        let (mut after_ack, mut from_start, mut early) = (Vec::new(), Vec::new(), 0usize);
        for i in 0..warm + write_rounds {
            let p = Patch::Merge(serde_json::json!({"data": {"i": i.to_string()}}));
            let t0 = Instant::now();
            let done = cms
                .patch("bench-watch", &PatchParams::default(), &p)
                .await
                .expect("patch bench-watch");
            let acked = Instant::now();
            let rv = done.metadata.resource_version.unwrap();
            let at = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let (got, at) = rx.recv().await.expect("the watch ended");
                    if got == rv {
                        return at;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no event of resourceVersion {rv} within 10 s"));
            if i >= warm {
                if at < acked {
                    early += 1;
                }
                after_ack.push(at.saturating_duration_since(acked));
                from_start.push(at - t0);
            }
        }
        reader.abort();
        cms.delete("bench-watch", &DeleteParams::default())
            .await
            .expect("delete bench-watch");
        let (w50, w99) = record(&mut results, "api.watch", &after_ack);
        let (s50, s99) = record(&mut results, "api.watch.from_request", &from_start);
        results.put("api.watch.before_ack", early);
        table.push([
            format!("watch delivery: PATCH acknowledged → event ({early} of {write_rounds} came first: 0)"),
            ms(w50),
            ms(w99),
            format!("p99 < 5 ms: {}", verdict(w99 < Duration::from_millis(5))),
        ]);
        table.push([
            "watch delivery: PATCH sent → event".into(),
            ms(s50),
            ms(s99),
            String::new(),
        ]);
        targets.push((
            format!("watch delivery p99 < 5 ms ({pods} pods)"),
            ms(w99),
            w99 < Duration::from_millis(5),
        ));

        // Pod create → Running.
        let starts = pod_starts(&c, 3, pod_rounds).await;
        let (p50, p99) = record(&mut results, "api.pod_start", &starts);
        table.push([
            "pod create → Running (cached image, watch)".into(),
            ms(p50),
            ms(p99),
            format!("median < 150 ms: {}", verdict(p50 < Duration::from_millis(150))),
        ]);
        targets.push((
            format!("pod create → Running < 150 ms (median, {pods} pods running)"),
            format!("{} (p99 {})", ms(p50), ms(p99)),
            p50 < Duration::from_millis(150),
        ));
        lt50
    });

    println!("\nover HTTPS (kube-rs with TCP_NODELAY, one kept-alive connection), {pods} pods:");
    println!("| operation | p50 | p99 | target |");
    println!("|---|---:|---:|---|");
    for r in &table {
        println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
    }

    // Baselines: processes.
    let kcache = dir.path().join("kube-cache");
    let kubectl = median(&process_times(
        || {
            let mut c = Command::new(KUBECTL);
            c.arg("--kubeconfig")
                .arg(&standalone_file)
                .arg("--cache-dir")
                .arg(&kcache)
                .args(["get", "pods"]);
            c
        },
        proc_rounds,
        pods + 1,
    ));
    let netlab_get = median(&process_times(
        || {
            let mut c = Command::new(NETLAB);
            c.args(["--lab", &lab, "get", "pods"]);
            c
        },
        proc_rounds,
        pods + 1,
    ));
    results.secs("api.kubectl_get_pods", kubectl);
    results.secs("api.netlab_get_pods", netlab_get);
    let x = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "\nas processes (median of {proc_rounds}, warm):\n\
         | command | time | ÷ in-process LIST as a Table |\n|---|---:|---:|\n\
         | `kubectl get pods` (/usr/bin/kubectl) | {} | {:.1}× |\n\
         | `netlab get pods` | {} | {:.1}× |\n\
         kubectl ÷ netlab: {:.2}×",
        ms(kubectl),
        x(kubectl, list_table_p50),
        ms(netlab_get),
        x(netlab_get, list_table_p50),
        x(kubectl, netlab_get)
    );

    // Baseline: the store's commit of one change against the old file.
    // Under /run, where the lab's files are (the same file system).
    let work = tempfile::Builder::new()
        .prefix("netlab-bench-api.")
        .tempdir_in("/run")
        .unwrap();
    let store = store_copy(&lab, work.path());
    let mut st = store.state();
    let old_dir = work.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    let (mut new_t, mut old_t, mut load_t, mut bytes) = (Vec::new(), Vec::new(), Vec::new(), 0);
    assert!(!st.pods.is_empty(), "the store holds the pods");
    for i in 0..commits + 3 {
        st.pods[0]
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("bench.netlab.dev/round".into(), i.to_string());
        let t = Instant::now();
        store.commit(&mut st).expect("commit");
        let new = t.elapsed();
        let t = Instant::now();
        bytes = old_persist(&st, &old_dir);
        let old = t.elapsed();
        // What every verb did first: read and parse the whole file.
        let t = Instant::now();
        let back: ClusterState =
            serde_json::from_slice(&std::fs::read(old_dir.join("state.json")).unwrap()).unwrap();
        let load = t.elapsed();
        assert_eq!(back.pods.len(), st.pods.len());
        if i >= 3 {
            new_t.push(new);
            old_t.push(old);
            load_t.push(load);
        }
    }
    drop(store);
    let store_bytes = std::fs::metadata(work.path().join("store.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let (n50, n99) = record(&mut results, "api.store.commit", &new_t);
    let (o50, o99) = record(&mut results, "api.oldfile.persist", &old_t);
    let (l50, _) = record(&mut results, "api.oldfile.load", &load_t);
    results.put("api.oldfile.bytes", bytes);
    results.put("api.store.bytes", store_bytes);
    results.put("api.store.objects", {
        let s = &st;
        s.nodes.len()
            + s.deployments.len()
            + s.replica_sets.len()
            + s.pods.len()
            + s.services.len()
            + s.endpoints.len()
            + s.endpoint_slices.len()
            + s.events.len()
            + s.secrets.len()
            + s.config_maps.len()
    });
    println!(
        "\none object changed at this size (in-process, {commits} rounds, {} file system):\n\
         | store | p50 | p99 |\n|---|---:|---:|\n\
         | redb store `commit` (diff, one durable transaction) | {} | {} |\n\
         | old whole-file store: pretty JSON ({:.1} MiB), 0600 temp file, rename | {} | {} |\n\
         | old whole-file store: read and parse it (each verb did, first) | {} | |\n\
         old persist ÷ store commit: {:.2}× (median)",
        fs_type("/run"),
        ms(n50),
        ms(n99),
        bytes as f64 / 1048576.0,
        ms(o50),
        ms(o99),
        ms(l50),
        x(o50, n50)
    );
    drop(work);

    let (rss_end, hwm_end) = memory(pid);
    results.put("api.rss_end", rss_end);
    results.put("api.hwm", hwm_end);
    println!(
        "\nthe lab's process: VmRSS {:.1} MiB after up, {:.1} MiB after the run; peak (VmHWM) {:.1} MiB",
        rss_up as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        hwm_end as f64 / 1048576.0
    );

    let t = Instant::now();
    common::netlab(&["down", "--lab", &lab]);
    let down_t = t.elapsed();
    std::mem::forget(guard);
    results.secs("api.down", down_t);
    let mut left = common::leftovers(&lab, &[pid]);
    let kc = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
    if kc.contains(&format!("netlab-{lab}")) {
        left.push(format!("context netlab-{lab} in {}", kubeconfig.display()));
    }
    println!(
        "down: {:.1} s; left behind: {}",
        down_t.as_secs_f64(),
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    );
    results.put("api.leftovers", left.len());
    results.put("api.load", load_at_start);

    println!("\ntargets:");
    for (what, fig, ok) in &targets {
        println!("  {what}: {fig}: {}", verdict(*ok));
    }
    results.save("api");
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn fs_type(path: &str) -> String {
    Command::new("findmnt")
        .args(["-no", "FSTYPE", "-T", path])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
