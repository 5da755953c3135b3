//! `netlab down`: remove everything of a lab, found by its name rather than
//! by its state file (which a crash may have lost or never written):
//! containers in the lab's runc root, processes left in its cgroups, mounts
//! under its run directory, its disk for writable layers (under
//! `/var/lib/netlab/labs/<lab>`), namespaces with its prefix, its cgroups,
//! its files. Idempotent; keeps going past failures and reports them all.

use crate::net;
use crate::paths;
use crate::runtime::{rootfs, Runc};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runtime commands run at once: the cores, and a little more for their waits.
const RUNTIME_CONCURRENCY: usize = 8;

#[derive(Debug, Default)]
pub struct DownReport {
    pub containers: usize,
    pub namespaces: usize,
    pub errors: Vec<String>,
    /// Whether anything of the lab was found at all.
    pub found: bool,
}

pub async fn down(lab: &str) -> DownReport {
    let start = Instant::now();
    let phase = |what: &str| tracing::debug!(elapsed = ?start.elapsed(), "down: {what}");
    let mut report = DownReport::default();
    let dir = paths::lab_dir(lab);
    let prefix = paths::netns_prefix(lab);
    let namespaces = net::NetNs::list(&prefix);
    let cgroups = cgroup_dirs(lab);
    report.found = dir.exists()
        || paths::disk_dir(lab).exists()
        || !namespaces.is_empty()
        || !cgroups.is_empty();
    report.namespaces = namespaces.len();

    // 0. The lab's process first, so that it does not restart what we
    //    stop; and none starts again (a client would start one) until the
    //    lab is gone: `_owner` holds its lock to the end.
    let _owner = match super::daemon::stop_for_good(lab).await {
        Ok(lock) => lock,
        Err(e) => {
            report.errors.push(e);
            None
        }
    };

    // 1. Runtime commands still at work for this lab (a `runc run` left
    //    behind by a killed `up` would go on creating its container while
    //    we remove things), then the containers, through the runtime.
    let runc = Runc::new(&paths::runc_root(lab));
    let runtime_cmds = runtime_commands(&paths::runc_root(lab));
    for pid in &runtime_cmds {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Err(e) = wait_gone(&runtime_cmds).await {
        report.errors.push(e);
    }
    let mut pids = Vec::new();
    let containers = match runc.list().await {
        Ok(list) => {
            report.containers = list.len();
            pids.extend(list.iter().map(|c| c.pid).filter(|p| *p > 0));
            list
        }
        Err(e) => {
            report.errors.push(e.to_string());
            Vec::new()
        }
    };

    phase("containers listed");
    // 2. Every process of the lab, with SIGKILL as `runc delete --force`
    //    would: the containers' (their init pids, then anything still in
    //    the lab's cgroups, such as a `runc init` orphaned by a killed
    //    `up`); these processes are the lab's own, by construction.
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // While the kernel tears those processes down, the mounts and the
    // namespaces go (neither waits for them: a detached overlay and a
    // namespace whose file is gone live on until their last user ends).
    let dying = async {
        let mut errors = Vec::new();
        if let Err(e) = kill_cgroup_processes(lab).await {
            errors.push(e);
        }
        // SIGKILL is asynchronous: wait until the processes have died, so
        // that `down` returning means nothing of the lab runs any more.
        if let Err(e) = wait_gone(&pids).await {
            errors.push(e);
        }
        errors
    };
    let unplugged = async {
        let mut errors = Vec::new();
        // 3. Mounts (container rootfs overlays), deepest first; the lab's
        //    directory itself (a tmpfs) holds the runtime's state until 7.
        for m in rootfs::mounts_under(&dir).into_iter().filter(|m| m != &dir) {
            if let Err(e) = rootfs::unmount(&m) {
                errors.push(e.to_string());
            }
        }
        // 4. Host access (its veth would go with the dc namespace too), then
        //    namespaces, which take their links, addresses and routes with them.
        if let Err(e) = net::public::remove_host_access(&paths::host_access_ifname(lab)).await {
            errors.push(e.to_string());
        }
        errors.extend(
            net::teardown(&prefix)
                .await
                .into_iter()
                .map(|e| e.to_string()),
        );
        errors
    };
    let (dying, unplugged) = tokio::join!(dying, unplugged);
    let all_gone = dying.is_empty();
    report.errors.extend(dying);
    report.errors.extend(unplugged);
    phase("processes gone, mounts and namespaces removed");

    // 4b. The lab's disk for writable layers (its loop device goes with
    //     the mount, once no overlay of a container still holds it), its
    //     image and directory.
    report
        .errors
        .extend(crate::runtime::disk::remove(&paths::disk_dir(lab)));

    phase("disk removed");
    // 5. The containers' runtime state is files under the lab's directory
    //    and cgroups, both removed below: with every process gone there is
    //    nothing else `runc delete` would do, and it costs a runc process
    //    per container (5 s at 1 000 pods). Only when processes survived
    //    (a frozen cgroup, say) is the runtime asked to delete by force.
    if !all_gone {
        let deletions = futures::stream::iter(containers.iter().map(|c| runc.delete_force(&c.id)))
            .buffer_unordered(RUNTIME_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        report.errors.extend(
            deletions
                .into_iter()
                .filter_map(|r| r.err().map(|e| e.to_string())),
        );
    }
    phase("runtime state");
    // 6. Empty cgroup directories, children first. A cgroup whose last
    //    process is still exiting is busy for a moment: kill and retry.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // One thread per hierarchy: a cgroup's removal waits for the
        // kernel to take it offline, 10 hierarchies × 1 000 pods of it.
        let failures: Vec<String> = std::thread::scope(|s| {
            let removals: Vec<_> = cgroup_dirs(lab)
                .into_iter()
                .map(|d| {
                    s.spawn(move || {
                        remove_cgroup_tree(&d)
                            .err()
                            .map(|e| format!("removing cgroup {}: {e}", d.display()))
                    })
                })
                .collect();
            removals
                .into_iter()
                .filter_map(|r| r.join().ok().flatten())
                .collect()
        });
        if failures.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            report.errors.extend(failures);
            break;
        }
        let _ = kill_cgroup_processes(lab).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    phase("cgroups removed");
    // 7. Files: the lab's tmpfs takes them all with it.
    if let Err(e) = rootfs::unmount(&dir) {
        report.errors.push(e.to_string());
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            report
                .errors
                .push(format!("removing {}: {e}", dir.display()));
        }
    }
    phase("files removed");
    report
}

/// Processes running the OCI runtime on this lab's state root (`runc --root
/// /run/netlab/<lab>/runc …`): only netlab starts those.
fn runtime_commands(root: &Path) -> Vec<i32> {
    let root = root.display().to_string();
    processes_whose_args(|args| {
        args.windows(2)
            .any(|w| w[0] == b"--root" && w[1] == root.as_bytes())
    })
}

/// The processes (this one aside) whose command line `matches`, by
/// `/proc/<pid>/cmdline`: how `down` finds a lab's processes by name even
/// when no file of the lab names them.
pub(crate) fn processes_whose_args(matches: impl Fn(&[&[u8]]) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                        return false;
                    };
                    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                    matches(&args)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `/sys/fs/cgroup/<controller>/netlab-<lab>` in every hierarchy (v1 and v2).
fn cgroup_dirs(lab: &str) -> Vec<PathBuf> {
    let parent = paths::cgroup_parent(lab);
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    if base.join(&parent).is_dir() {
        dirs.push(base.join(&parent));
    }
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let d = e.path().join(&parent);
            if d.is_dir() {
                dirs.push(d);
            }
        }
    }
    dirs
}

async fn kill_cgroup_processes(lab: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pids = Vec::new();
        for d in cgroup_dirs(lab) {
            collect_procs(&d, &mut pids);
        }
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {pids:?} of lab {lab} survived SIGKILL for 5s"
            ));
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn wait_gone(pids: &[i32]) -> Result<(), String> {
    wait_gone_within(pids, Duration::from_secs(5)).await
}

/// Waits until none of `pids` runs, at most `limit`.
pub(crate) async fn wait_gone_within(pids: &[i32], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| crate::runtime::runc::process_alive(*p))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "container processes {left:?} still run {}s after being killed",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), pids);
            }
        }
    }
}

/// cgroup directories are removed with rmdir (their files are not real files).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
