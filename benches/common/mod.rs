//! What the benchmarks share: root check, medians, and the results file
//! that `scripts/bench.sh` collects into `bench/report.md`
//! (`benches/report.rs`).
//!
//! A bench records figures with [`Results::put`]; on [`Results::save`] they
//! go to `$NETLAB_BENCH_DIR/<bench>.json` (nothing is written when the
//! variable is unset: the figures are printed anyway).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

pub fn require_root(bench: &str) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the {bench} benchmark needs root: sudo cargo bench --bench {bench}");
        std::process::exit(1);
    }
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list from the environment, e.g. `100,500,1000`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// The p-th percentile (nearest rank).
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let rank = ((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A short unique tag for lab and namespace names.
pub fn tag() -> u32 {
    std::process::id() % 100_000
}

/// Figures by key (`podnet.netlab.up.1000` → seconds, …), one file per bench.
#[derive(Default)]
pub struct Results(BTreeMap<String, serde_json::Value>);

impl Results {
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn secs(&mut self, key: impl Into<String>, d: Duration) {
        self.put(key, d.as_secs_f64());
    }

    /// Write `$NETLAB_BENCH_DIR/<bench>.json`, merged over what is there
    /// (a bench run for one size keeps the others' figures).
    pub fn save(&self, bench: &str) {
        let Some(dir) = std::env::var_os("NETLAB_BENCH_DIR") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("creating NETLAB_BENCH_DIR");
        let path = dir.join(format!("{bench}.json"));
        let mut all: BTreeMap<String, serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        all.extend(self.0.clone());
        std::fs::write(&path, serde_json::to_vec_pretty(&all).unwrap()).expect("writing results");
        eprintln!("figures written to {}", path.display());
    }
}

/// Live `struct net` objects in the kernel (from /proc/slabinfo), to wait
/// until namespaces deleted by one measurement are really freed before
/// the next starts (the kernel destroys them asynchronously).
pub fn live_netns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("net_namespace "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// Wait (up to `max`) until no more namespaces are alive than `base`, or
/// their number has not dropped for a second (others on the machine may
/// hold namespaces of their own meanwhile).
pub fn wait_netns_freed(base: Option<u64>, max: Duration) {
    let Some(base) = base else {
        std::thread::sleep(Duration::from_secs(2));
        return;
    };
    let start = std::time::Instant::now();
    let (mut last, mut since) = (u64::MAX, std::time::Instant::now());
    while let Some(n) = live_netns() {
        if n <= base || start.elapsed() > max {
            break;
        }
        if n < last {
            (last, since) = (n, std::time::Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The 1-minute load average, to flag disturbed runs.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

/// Takes a lab down when dropped (the normal end, a panic).
pub struct DownOnDrop(pub String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_netlab"))
            .args(["down", "--lab", &self.0])
            .output();
    }
}

/// Runs the `netlab` binary built with the benches; its stdout, or a panic
/// with its stderr.
pub fn netlab(args: &[&str]) -> String {
    netlab_with(&[], args)
}

/// `netlab` with extra environment (inherited by a lab's process it starts).
pub fn netlab_with(env: &[(&str, &str)], args: &[&str]) -> String {
    run(std::process::Command::new(env!("CARGO_BIN_EXE_netlab"))
        .envs(env.iter().copied())
        .args(args))
}

/// `netlab up` of `file` as lab `lab` (with `env`), timed.
pub fn up_timed(lab: &str, file: &std::path::Path, env: &[(&str, &str)]) -> Duration {
    let t = std::time::Instant::now();
    netlab_with(
        env,
        &[
            "up",
            "--name",
            lab,
            "--timeout",
            "900",
            file.to_str().unwrap(),
        ],
    );
    t.elapsed()
}

/// `net::teardown` of a prefix on a runtime of its own (callable from
/// `Drop` and from inside another runtime): its errors and how long it took.
pub fn teardown(prefix: &str) -> (Vec<netlab::net::NetError>, Duration) {
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let t = std::time::Instant::now();
        let errs = rt.block_on(netlab::net::teardown(&prefix));
        (errs, t.elapsed())
    })
    .join()
    .unwrap()
}

/// Runs a command that must succeed; its standard output.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("spawning a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long a command that must succeed takes.
pub fn timed(cmd: &mut std::process::Command) -> Duration {
    let t = std::time::Instant::now();
    run(cmd);
    t.elapsed()
}

/// What a lab left on the host after `down`: its namespaces,
/// `/run/netlab/<lab>`, mounts, cgroups, nft tables, and any of `pids`
/// still alive (zombies are dead). Empty when it left nothing.
pub fn leftovers(lab: &str, pids: &[u32]) -> Vec<String> {
    let mut left = std::collections::BTreeSet::new();
    let prefix = netlab::paths::netns_prefix(lab);
    left.extend(netlab::net::NetNs::list(&prefix));
    let lab_dir = netlab::paths::lab_dir(lab);
    if lab_dir.exists() {
        left.insert(lab_dir.display().to_string());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&prefix) || l.contains(&format!("{}/", lab_dir.display())))
            .map(str::to_string),
    );
    let cgroup = netlab::paths::cgroup_parent(lab);
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = entry.path().join(&cgroup);
        if p.exists() {
            left.insert(p.display().to_string());
        }
    }
    let top = std::path::Path::new("/sys/fs/cgroup").join(&cgroup);
    if top.exists() {
        left.insert(top.display().to_string());
    }
    if let Ok(out) = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
    {
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(lab))
                .map(|l| format!("nft {l}")),
        );
    }
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.trim_start().chars().next())
            })
            .is_some_and(|st| st != 'Z' && st != 'X');
        if alive {
            left.insert(format!("process {pid}"));
        }
    }
    left.into_iter().collect()
}

/// (VmRSS, VmHWM) in bytes of a process (0 when it is gone).
pub fn memory(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// SO_LINGER {on, 0}: close() sends a RST and leaves no TIME_WAIT behind.
pub fn linger_zero(s: &std::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
