//! Shared helpers of the end-to-end tests: they run the real `netlab` binary
//! as root and look at the real kernel objects. Every lab gets a unique name,
//! so tests run in parallel, and every lab is checked for leaks after `down`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");

/// These tests create namespaces and containers: without root they cannot
/// run, and they say so loudly instead of passing.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "end-to-end tests need root (network namespaces, runc): run them with `sudo scripts/test.sh`"
        );
    }
}

/// A unique lab name: the test's name plus the process id and a counter.
pub fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id() % 100000;
    format!("t{pid}-{n}-{name}")
        .chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

pub fn netlab(args: &[&str]) -> Output {
    Command::new(NETLAB)
        .args(args)
        .env_remove("NETLAB_LAB")
        .env("KUBECONFIG", test_kubeconfig())
        .output()
        .expect("running netlab")
}

/// The kubeconfig every test's `up` merges its context into (not root's
/// own `~/.kube/config`); `down_clean` checks the context is gone again.
pub fn test_kubeconfig() -> PathBuf {
    let dir = std::env::temp_dir().join("netlab-tests");
    std::fs::create_dir_all(&dir).expect("creating the tests' kubeconfig directory");
    dir.join("kubeconfig")
}

/// The kubectl binaries here: the newest (`/usr/bin/kubectl`, 1.32) and
/// the oldest (1.27, the SPDY-era client) the lab must serve.
pub const KUBECTLS: [&str; 2] = [
    "/usr/bin/kubectl",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.27",
];

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything of a lab that could leak, as seen from the host.
#[derive(Debug, PartialEq, Eq)]
pub struct Traces {
    pub namespaces: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub run_dir: bool,
    pub processes: BTreeSet<i32>,
    pub nft_tables: BTreeSet<String>,
    /// The lab's disk for writable layers: `/var/lib/netlab/labs/<lab>`
    /// (its image and mount point), if it is still there.
    pub disk_dir: bool,
    /// Loop devices backing a file of the lab (`losetup --list`, as
    /// `losetup -j` but also for an image already deleted).
    pub loop_devices: BTreeSet<String>,
}

impl Traces {
    pub fn of(lab: &str, pids: &[i32]) -> Traces {
        let prefix = format!("netlab-{lab}.");
        let namespaces = std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        let run_dir = format!("/run/netlab/{lab}");
        // Under any data directory (a test may use its own NETLAB_DATA_DIR).
        let disk = format!("/labs/{lab}/");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&run_dir) || l.contains(&prefix) || l.contains(&disk))
            .map(String::from)
            .collect();
        let cgroups = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path().join(format!("netlab-{lab}")))
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        // A zombie is dead (it holds no memory, files or namespaces); it only
        // waits for its adoptive parent to reap it.
        let processes = pids
            .iter()
            .copied()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit(')')
                            .next()
                            .and_then(|r| r.trim_start().chars().next())
                    })
                    .is_some_and(|st| st != 'Z' && st != 'X')
            })
            .collect();
        let nft_tables = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains(lab))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let loop_devices = Command::new("losetup")
            .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains(&disk))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let labs_dir = std::env::var("NETLAB_LABS_DIR").unwrap_or("/var/lib/netlab/labs".into());
        Traces {
            namespaces,
            mounts,
            cgroups,
            run_dir: Path::new(&run_dir).exists(),
            processes,
            nft_tables,
            disk_dir: Path::new(&labs_dir).join(lab).exists(),
            loop_devices,
        }
    }

    pub fn is_clean(&self) -> bool {
        self.namespaces.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && !self.run_dir
            && self.processes.is_empty()
            && self.nft_tables.is_empty()
            && !self.disk_dir
            && self.loop_devices.is_empty()
    }
}

/// Host network links (root namespace): a lab must never add any.
pub fn host_links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A lab brought up for one test. Dropping it takes it down (best effort);
/// `down_clean` takes it down and asserts nothing is left.
pub struct Lab {
    pub name: String,
    pub dir: tempfile::TempDir,
    up: bool,
}

impl Lab {
    /// Writes `yaml` to a file and runs `netlab up` on it.
    pub fn up(name: &str, yaml: &str) -> Lab {
        let mut lab = Lab::prepare(name, yaml);
        lab.up = true;
        let out = netlab(&["up", "--name", &lab.name, lab.file().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "netlab up failed:\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        lab
    }

    /// `up` with extra environment (the controller it starts inherits it).
    pub fn up_env(name: &str, yaml: &str, env: &[(&str, &str)]) -> Lab {
        let mut lab = Lab::prepare(name, yaml);
        lab.up = true;
        let out = netlab_env(
            &["up", "--name", &lab.name, lab.file().to_str().unwrap()],
            env,
        );
        assert!(
            out.status.success(),
            "netlab up failed:\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        lab
    }

    /// A lab whose file is written but not brought up.
    pub fn prepare(name: &str, yaml: &str) -> Lab {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lab.yaml"), yaml).expect("writing lab file");
        Lab {
            name: unique(name),
            dir,
            up: false,
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("lab.yaml")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["--lab", self.name.as_str()];
        full.extend_from_slice(args);
        netlab(&full)
    }

    /// Runs a netlab verb and returns its stdout, failing the test on error.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netlab {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs a real kubectl against the lab, with a standalone kubeconfig
    /// from `netlab kubeconfig` and a discovery cache of the lab's own.
    pub fn kubectl(&self, kubectl: &str, args: &[&str]) -> Output {
        let config = self.dir.path().join("kubeconfig");
        if !config.exists() {
            std::fs::write(&config, self.ok(&["kubeconfig"])).expect("writing the kubeconfig");
        }
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&config)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap_or_else(|e| panic!("running {kubectl}: {e}"))
    }

    /// `kubectl apply -f` of `manifest`, written to `file` in the lab's
    /// directory; must succeed; its stdout.
    pub fn kubectl_apply(&self, kubectl: &str, file: &str, manifest: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::write(&path, manifest).unwrap();
        self.kubectl_ok(kubectl, &["apply", "-f", path.to_str().unwrap()])
    }

    /// `kubectl` that must succeed; its stdout.
    pub fn kubectl_ok(&self, kubectl: &str, args: &[&str]) -> String {
        let out = self.kubectl(kubectl, args);
        assert!(
            out.status.success(),
            "{kubectl} {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `nft list table ip netlab` on node `node` (`node-1`), as a user
    /// reads its rules.
    pub fn node_table(&self, node: &str) -> String {
        let out = self.list_table(node, "netlab");
        assert!(
            out.status.success(),
            "nft list table ip netlab on {node} failed:\n{}",
            stderr(&out)
        );
        stdout(&out)
    }

    /// `nft list table ip TABLE` on node `node`, as run (it fails when
    /// the node has no such table).
    pub fn list_table(&self, node: &str, table: &str) -> Output {
        self.run(&[
            "exec",
            &format!("node/{node}"),
            "--",
            "nft",
            "list",
            "table",
            "ip",
            table,
        ])
    }

    pub fn pods_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", "pods", "-o", "json"])).expect("pods as json")
    }

    /// (name, ip, node) of every pod.
    pub fn pods(&self) -> Vec<(String, String, String)> {
        self.pods_json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["status"]["podIP"].as_str().unwrap().to_string(),
                    p["spec"]["nodeName"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The controller's pid, if one runs.
    pub fn controller_pid(&self) -> Option<i32> {
        std::fs::read_to_string(format!("/run/netlab/{}/controller.pid", self.name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Container pids from the runtime (and the controller's), for the leak check.
    pub fn container_pids(&self) -> Vec<i32> {
        let out = Command::new("runc")
            .args([
                "--root",
                &format!("/run/netlab/{}/runc", self.name),
                "list",
                "--format",
                "json",
            ])
            .output()
            .expect("runc list");
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let mut pids: Vec<i32> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["pid"].as_i64())
                    .map(|p| p as i32)
                    .collect()
            })
            .unwrap_or_default();
        pids.extend(self.controller_pid());
        pids
    }

    /// `netlab down`, then every trace of the lab must be gone.
    pub fn down_clean(mut self) {
        let pids = self.container_pids();
        let links_before = host_links();
        let out = self.run(&["down"]);
        self.up = false;
        assert!(out.status.success(), "netlab down failed: {}", stderr(&out));
        let traces = Traces::of(&self.name, &pids);
        assert!(traces.is_clean(), "lab {} leaked: {traces:#?}", self.name);
        let kubeconfig = std::fs::read_to_string(test_kubeconfig()).unwrap_or_default();
        assert!(
            !kubeconfig.contains(&format!("netlab-{}\n", self.name)),
            "lab {}'s kubeconfig context was left behind",
            self.name
        );
        assert_eq!(links_before, host_links(), "host links changed");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.up || std::thread::panicking() {
            let _ = netlab(&["down", "--lab", &self.name]);
        }
    }
}

/// The tutorial's Deployment, with a replica count and optional extra pod spec lines.
pub fn nginx_deployment(name: &str, replicas: i32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      run: {name}
  replicas: {replicas}
  template:
    metadata:
      labels:
        run: {name}
    spec:
      containers:
      - name: {name}
        image: nginx
        ports:
        - containerPort: 80
"#
    )
}

pub fn lab_doc(nodes: usize) -> String {
    format!("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: {nodes}\n---\n")
}

/// (exit code, stdout) of a curl from a node (`node/NAME`) or a pod.
pub fn curl(lab: &Lab, from: &str, url: &str) -> (i32, String) {
    let out = lab.run(&["exec", from, "--", "curl", "-s", "-m", "3", url]);
    (
        out.status.code().unwrap_or(-1),
        stdout(&out).trim().to_string(),
    )
}

/// The body of a curl that must succeed.
pub fn must_curl(lab: &Lab, from: &str, url: &str) -> String {
    let (code, body) = curl(lab, from, url);
    assert_eq!(
        code, 0,
        "curl {url} from {from} failed with exit code {code}"
    );
    body
}

/// The body of a curl that must succeed within 10 s: after a kubectl
/// write, which returns once the object is stored, as kube-apiserver's
/// does, while the lab's process (kube-proxy's twin) syncs the rules.
pub fn curl_eventually(lab: &Lab, from: &str, url: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let (code, body) = curl(lab, from, url);
        if code == 0 {
            return body;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "curl {url} from {from} still fails (exit code {code}) after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn svc_json(lab: &Lab, name: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["get", "svc", name, "-o", "json"])).unwrap()
}

pub fn cluster_ip(lab: &Lab, name: &str) -> String {
    svc_json(lab, name)["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Polls `f` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The local registry scripts/setup.sh runs (docker.io's mirror).
pub const LOCAL_REGISTRY: &str = "127.0.0.1:5000";

/// Fails the test with what to do when the local registry does not answer.
pub fn require_local_registry() {
    let ok = Command::new("curl")
        .args(["-fsS", "-m", "2", "-o", "/dev/null"])
        .arg(format!("http://{LOCAL_REGISTRY}/v2/"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the local registry does not answer on {LOCAL_REGISTRY}: run scripts/setup.sh (or scripts/registry.sh start)"
    );
}

/// A registry of a test's own (docker-registry on a free loopback port,
/// storage in a temporary directory, optionally with htpasswd auth),
/// stopped when dropped.
pub struct TestRegistry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl TestRegistry {
    pub fn start(user: Option<(&str, &str)>) -> TestRegistry {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = user {
            let hash = bcrypt::hash(p, 4).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{u}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: netlab-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry; scripts/setup.sh does)");
        let r = TestRegistry { addr, dir, child };
        wait_for(
            "the test registry to listen",
            std::time::Duration::from_secs(10),
            || std::net::TcpStream::connect(&r.addr).is_ok(),
        );
        r
    }

    /// Where the registry keeps a blob (to damage it).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// netlab with extra environment (a private image store, registries config, …).
pub fn netlab_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(NETLAB);
    cmd.args(args)
        .env_remove("NETLAB_LAB")
        .env_remove("NETLAB_REGISTRY_MIRRORS")
        .env("KUBECONFIG", test_kubeconfig());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running netlab")
}

/// Removes every namespace (and what is in it) whose name starts with
/// `prefix`, for the tests that build networks with the library directly.
/// Called from `Drop`, which may run while a test's runtime is unwinding,
/// where blocking on another future is not allowed: so it runs on its own
/// thread with its own runtime.
pub fn teardown_net(prefix: &str) {
    let owned = prefix.to_string();
    let errs = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(netlab::net::teardown(&owned))
    })
    .join()
    .unwrap();
    for e in errs {
        eprintln!("cleanup of {prefix}: {e}");
    }
}

/// A path in the repository's `labs/` folder (the tutorial's files).
pub fn lab_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("labs")
        .join(file)
}

/// One of the tutorial's files in `labs/`, verbatim.
pub fn lab_file(file: &str) -> String {
    let path = lab_path(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tutorial's Service for my-nginx, as `kubectl expose` makes it.
pub const MY_NGINX_SVC: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: my-nginx
spec:
  selector:
    run: my-nginx
  ports:
  - name: http
    port: 80
"#;

/// A busybox httpd Deployment labelled `app: {app}` whose pods answer with
/// their hostname, so a test sees which pod served it.
pub fn who_deployment(name: &str, replicas: i32, app: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels:
        app: {app}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: who
        image: radial/busyboxplus:curl
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 80 -h /www"]
        ports:
        - containerPort: 80
          name: http
"#
    )
}

/// The runtime of the tests that call the library directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A kube-rs client from a kubeconfig's text (`netlab kubeconfig`), each
/// with its own connection.
pub async fn kube_client(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("netlab kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("a kube config");
    kube::Client::try_from(config).expect("a kube client")
}
