//! The OCI runtime (runc; crun where the host allows it), driven through its
//! command line. Each lab has its own runtime state root under
//! `/run/netlab/<lab>/runc`, so `down` finds every container of the lab
//! even when netlab's own state file is lost.

use serde::Deserialize;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::process::Command;

use crate::net::MountNs;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("{runtime} not found: install it (apt-get install runc) or set NETLAB_RUNTIME")]
    Missing { runtime: String },
    #[error("{runtime} {action} {id}: {message}")]
    Failed {
        runtime: String,
        action: &'static str,
        id: String,
        message: String,
    },
}

/// The mount namespace containers start from (`net::MountNs`), made on
/// the first start: a copy of the host's mounts without any lab's pods.
/// `NETLAB_START_MOUNTS=host` starts them from the host's own namespace
/// instead, as netlab did before (the benchmark's baseline).
fn start_namespace(runc_root: &Path) -> Result<Option<&'static MountNs>, String> {
    static NS: std::sync::OnceLock<Result<Option<MountNs>, String>> = std::sync::OnceLock::new();
    NS.get_or_init(|| {
        if std::env::var_os("NETLAB_START_MOUNTS").is_some_and(|v| v == "host") {
            return Ok(None);
        }
        let drop_below = [
            PathBuf::from(crate::net::NETNS_RUN_DIR),
            crate::paths::run_dir(),
            crate::paths::labs_dir(),
        ];
        // The lab's own directory (its tmpfs) holds the bundles and the
        // runtime's state. A process serves one lab.
        let keep: Vec<PathBuf> = runc_root
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        MountNs::private_copy(&drop_below, &keep)
            .map(Some)
            .map_err(|e| format!("making the mount namespace containers start from: {e}"))
    })
    .as_ref()
    .map(Option::as_ref)
    .map_err(Clone::clone)
}

/// What a bundle names that only the host's mount namespace has, to be
/// carried into the one its container starts from: the rootfs, and the
/// namespace files under `/run/netns` it joins (the pod's network; the
/// node's, for a host-network pod).
fn carried(bundle: &Path) -> Result<Vec<PathBuf>, String> {
    #[derive(Deserialize)]
    struct Config {
        root: Root,
        #[serde(default)]
        linux: Option<Linux>,
    }
    #[derive(Deserialize)]
    struct Root {
        path: PathBuf,
    }
    #[derive(Deserialize)]
    struct Linux {
        #[serde(default)]
        namespaces: Vec<Namespace>,
    }
    #[derive(Deserialize)]
    struct Namespace {
        #[serde(default)]
        path: Option<PathBuf>,
    }
    let file = bundle.join("config.json");
    let config: Config = std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("reading {}: {e}", file.display()))?;
    let mut carry = vec![bundle.join(&config.root.path)];
    carry.extend(
        config
            .linux
            .into_iter()
            .flat_map(|l| l.namespaces)
            .filter_map(|n| n.path)
            .filter(|p| p.starts_with(crate::net::NETNS_RUN_DIR)),
    );
    Ok(carry)
}

/// The last lines of a container's log, where runc says why it failed
/// (its own stderr goes there too), joined on one line.
pub fn log_tail(log: &Path) -> String {
    let text = super::crilog::text(log);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Opens (creating) a container's log for appending, root only: a
/// container's output may carry what it was given.
pub fn open_log(log: &Path) -> std::io::Result<std::fs::File> {
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(log)
}

/// The stdio a container is started with.
pub enum Io {
    /// stdin, stdout and stderr, passed through to the container as they
    /// are (runc's own complaints go to its stderr too).
    Passed([Stdio; 3]),
    /// A terminal: runc makes it and sends its master end to the Unix
    /// socket listening at `socket`; runc's own output goes to `out`.
    Console { socket: PathBuf, out: std::fs::File },
}

/// Why [`Runc::run_detached_with`] did not start a container.
#[derive(Debug)]
pub enum RunFailed {
    Runc(RuncError),
    /// runc ran and failed, saying why on its stderr.
    Exited(std::process::ExitStatus),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub status: String,
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub created: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    pub fn new(root: &Path) -> Runc {
        let binary = std::env::var_os("NETLAB_RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("runc"));
        Runc {
            binary,
            root: root.to_path_buf(),
        }
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd.stdin(Stdio::null());
        cmd.kill_on_drop(false);
        cmd
    }

    pub fn failed(&self, action: &'static str, id: &str, message: String) -> RuncError {
        RuncError::Failed {
            runtime: self.name(),
            action,
            id: id.to_string(),
            message,
        }
    }

    fn spawn_error(&self, action: &'static str, id: &str, e: std::io::Error) -> RuncError {
        if e.kind() == std::io::ErrorKind::NotFound {
            RuncError::Missing {
                runtime: self.name(),
            }
        } else {
            self.failed(action, id, e.to_string())
        }
    }

    /// Starts a container detached and returns its pid. Its stdout and
    /// stderr go straight into `log` (runc passes our fds through), which is
    /// what `netlab logs` reads.
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<i32, RuncError> {
        let out = open_log(log)
            .map_err(|e| self.failed("run", id, format!("opening log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| self.failed("run", id, e.to_string()))?;
        self.run_detached_with(
            id,
            bundle,
            Io::Passed([Stdio::null(), out.into(), err.into()]),
        )
        .await
        .map_err(|e| match e {
            RunFailed::Runc(e) => e,
            RunFailed::Exited(status) => self.failed(
                "run",
                id,
                format!("exited with {status}: {}", log_tail(log)),
            ),
        })
    }

    /// Starts a container detached with the stdio `io` says and returns
    /// its pid; when runc fails, how it exited (its complaint is wherever
    /// its stderr went).
    pub async fn run_detached_with(
        &self,
        id: &str,
        bundle: &Path,
        io: Io,
    ) -> Result<i32, RunFailed> {
        let pid_file = bundle.join("pid");
        let mut cmd = self.command();
        cmd.arg("run").arg("--detach").arg("--bundle").arg(bundle);
        cmd.arg("--pid-file").arg(&pid_file);
        match io {
            Io::Passed([stdin, stdout, stderr]) => {
                cmd.stdin(stdin).stdout(stdout).stderr(stderr);
            }
            Io::Console { socket, out } => {
                let err = out
                    .try_clone()
                    .map_err(|e| RunFailed::Runc(self.failed("run", id, e.to_string())))?;
                cmd.arg("--console-socket").arg(socket);
                cmd.stdout(out).stderr(err);
            }
        }
        cmd.arg(id);
        let failed = |m: String| RunFailed::Runc(self.failed("run", id, m));
        let child = match start_namespace(&self.root).map_err(failed)? {
            Some(ns) => {
                let carry = carried(bundle).map_err(failed)?;
                ns.spawn_in_copy(&mut cmd, &carry)
            }
            None => cmd.spawn(),
        };
        let status = child
            .map_err(|e| RunFailed::Runc(self.spawn_error("run", id, e)))?
            .wait()
            .await
            .map_err(|e| RunFailed::Runc(self.spawn_error("run", id, e)))?;
        drop(cmd); // our copies of the container's stdio
        if !status.success() {
            return Err(RunFailed::Exited(status));
        }
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| RunFailed::Runc(self.failed("run", id, "no pid file written".into())))
    }

    /// One container's state. runc's is read from its state file, as
    /// [`Runc::list`] reads them (a pod's removal asked a `runc state`
    /// process first, about 20 ms of CPU at 1 000 pods).
    pub async fn state(&self, id: &str) -> Result<ContainerState, RuncError> {
        if self.name() == "runc" {
            return read_state(&self.root, id).map_err(|m| self.failed("state", id, m));
        }
        let out = self
            .command()
            .arg("state")
            .arg(id)
            .output()
            .await
            .map_err(|e| self.spawn_error("state", id, e))?;
        if !out.status.success() {
            return Err(self.failed(
                "state",
                id,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| self.failed("state", id, e.to_string()))
    }

    /// Every container under this root (empty when the root does not exist).
    ///
    /// runc's are read from its own state files, as `runc list` reads them,
    /// without its process: at 1 000 containers a `runc list` took about
    /// 250 ms, the lab's loop asks twice a step, and a new pod waited for
    /// that (pod create → Running 680 ms at 1 000 pods). Another runtime
    /// is asked with its `list`. Either way `running` means a live process,
    /// not a zombie.
    pub async fn list(&self) -> Result<Vec<ContainerState>, RuncError> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        if self.name() == "runc" {
            let root = self.root.clone();
            return tokio::task::spawn_blocking(move || read_states(&root))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|message| self.failed("list", "", message));
        }
        let mut tries = 0;
        let out = loop {
            let out = self
                .command()
                .args(["list", "--format", "json"])
                .output()
                .await
                .map_err(|e| self.spawn_error("list", "", e))?;
            // A container deleted while runc reads the root (a pod being
            // removed in the background) fails the whole list: read again.
            let vanished =
                String::from_utf8_lossy(&out.stderr).contains("no such file or directory");
            tries += 1;
            if out.status.success() || !vanished || tries == 5 {
                break out;
            }
        };
        if !out.status.success() {
            return Err(self.failed(
                "list",
                "",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim() == "null" || text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut all: Vec<ContainerState> =
            serde_json::from_str(&text).map_err(|e| self.failed("list", "", e.to_string()))?;
        // A zombie is no running container (runc's own statuses say so).
        for c in all.iter_mut() {
            if c.status == "running" && !process_alive(c.pid) {
                (c.status, c.pid) = ("stopped".into(), 0);
            }
        }
        Ok(all)
    }

    /// Kills and removes a container, whatever its state.
    pub async fn delete_force(&self, id: &str) -> Result<(), RuncError> {
        let out = self
            .command()
            .args(["delete", "--force", id])
            .output()
            .await
            .map_err(|e| self.spawn_error("delete", id, e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("does not exist") {
            Ok(())
        } else {
            Err(self.failed("delete", id, stderr.trim().to_string()))
        }
    }

    /// Sends a signal (`SIGTERM`, `SIGQUIT`, …) to a container's init process.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        let out = self
            .command()
            .args(["kill", id, signal])
            .output()
            .await
            .map_err(|e| self.spawn_error("kill", id, e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failed(
                "kill",
                id,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// `runc exec` with the caller's stdio, for `netlab exec POD -- CMD`.
    pub fn exec_command(&self, id: &str, args: &[String], tty: bool) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).arg("exec");
        if tty {
            cmd.arg("--tty");
        }
        cmd.arg(id).args(args);
        cmd
    }

    /// `runc exec` of a command the caller may have to end early (a probe
    /// or a hook that timed out): runc writes the command's host pid to
    /// `pid_file`. Killing that process ends `runc exec`, which reaps it;
    /// killing `runc exec` instead would leave the command running, then a
    /// zombie no one reaps, and the container's init could never finish.
    pub fn exec_bounded(
        &self,
        id: &str,
        args: &[String],
        pid_file: &Path,
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .args(args);
        cmd
    }

    pub async fn version(&self) -> Option<String> {
        let out = Command::new(&self.binary)
            .arg("--version")
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next()?;
        // "runc version 1.1.5" → "runc://1.1.5", like containerd://1.7.x in kubectl.
        let version = first.split_whitespace().last()?;
        let name = self
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".into());
        Some(format!("{name}://{version}"))
    }
}

/// What `runc list` reads of a container's `state.json`.
#[derive(Deserialize)]
struct StateFile {
    id: String,
    init_process_pid: i32,
    init_process_start: u64,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: StateConfig,
}

#[derive(Deserialize, Default)]
struct StateConfig {
    #[serde(default)]
    labels: Vec<String>,
}

/// The containers under runc's `root`, with runc's statuses: `running`
/// while the init process lives (the same process: its start time is the
/// one recorded), `created` while it waits on `exec.fifo` for `runc start`,
/// else `stopped` with pid 0 (libcontainer's `currentStatus`; `paused` is
/// not told apart: netlab never pauses). A container removed while this
/// reads is left out, as it would be a moment later.
fn read_states(root: &Path) -> Result<Vec<ContainerState>, String> {
    let dir = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", root.display())),
    };
    // What the last listing of this root parsed, by container id: a state
    // file is parsed again only when it changed (runc replaces it whole).
    let mut cache = PARSED.lock().expect("parsed states");
    let before = cache.remove(root).unwrap_or_default();
    let mut now: Vec<(std::ffi::OsString, Parsed)> = Vec::with_capacity(before.len());
    for entry in dir.flatten() {
        let path = entry.path().join("state.json");
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let key = FileKey::of(&meta);
        let name = entry.file_name();
        let parsed = match before.get(&name) {
            Some(p) if p.key == key => p.clone(),
            _ => match std::fs::read(&path) {
                Ok(bytes) => {
                    Parsed::of(key, &bytes).map_err(|e| format!("{}: {e}", path.display()))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            },
        };
        now.push((name, parsed));
    }
    // Whether each init process still lives: through a pidfd opened once
    // (after which one poll of them all answers), the recorded start time
    // telling a reused pid at the opening.
    for (_, p) in now
        .iter_mut()
        .filter(|(_, p)| matches!(p.life, Life::Unknown))
    {
        p.life = match exits_pidfd(p.pid) {
            Some(fd) if process_start(p.pid) == Some(p.start) => Life::Alive(Arc::new(fd)),
            _ => Life::Dead,
        };
    }
    let alive: Vec<usize> = (0..now.len())
        .filter(|&i| matches!(now[i].1.life, Life::Alive(_)))
        .collect();
    let fds: Vec<Arc<std::os::fd::OwnedFd>> = alive
        .iter()
        .filter_map(|&i| match &now[i].1.life {
            Life::Alive(fd) => Some(fd.clone()),
            _ => None,
        })
        .collect();
    let mut polls: Vec<nix::poll::PollFd> = fds
        .iter()
        .map(|fd| nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN))
        .collect();
    if !polls.is_empty() {
        nix::poll::poll(&mut polls, nix::poll::PollTimeout::ZERO)
            .map_err(|e| format!("polling the containers' processes: {e}"))?;
    }
    // A pidfd turns readable once its process has exited (zombie or not).
    let exited: Vec<usize> = alive
        .iter()
        .zip(&polls)
        .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
        .map(|(&i, _)| i)
        .collect();
    drop(polls);
    for i in exited {
        now[i].1.life = Life::Dead;
    }
    let mut all = Vec::with_capacity(now.len());
    for (name, p) in now.iter_mut() {
        let (status, pid) = match &p.life {
            Life::Alive(_) if !p.started && root.join(&*name).join("exec.fifo").exists() => {
                ("created", p.pid)
            }
            Life::Alive(_) => {
                // `runc start` removes the fifo; it never comes back.
                p.started = true;
                ("running", p.pid)
            }
            _ => ("stopped", 0),
        };
        all.push(ContainerState {
            id: p.id.clone(),
            pid,
            status: status.to_string(),
            bundle: p.bundle.clone(),
            created: p.created.clone(),
        });
    }
    cache.insert(root.to_path_buf(), now.into_iter().collect());
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// One container's state file, read as [`read_states`] reads them.
fn read_state(root: &Path, id: &str) -> Result<ContainerState, String> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(format!("invalid container id {id:?}"));
    }
    let dir = root.join(id);
    let path = dir.join("state.json");
    let (meta, bytes) = match std::fs::metadata(&path).and_then(|m| Ok((m, std::fs::read(&path)?)))
    {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("container does not exist: {id}"))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let p =
        Parsed::of(FileKey::of(&meta), &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let alive = process_start(p.pid) == Some(p.start);
    let (status, pid) = match alive {
        true if dir.join("exec.fifo").exists() => ("created", p.pid),
        true => ("running", p.pid),
        false => ("stopped", 0),
    };
    Ok(ContainerState {
        id: p.id,
        pid,
        status: status.into(),
        bundle: p.bundle,
        created: p.created,
    })
}

/// A pidfd of `pid`, if it exists.
fn exits_pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    (pid > 0)
        .then(|| super::exits::pidfd_open(pid).ok())
        .flatten()
}

/// The state files [`read_states`] parsed, by runc root and container
/// (directory) name: at 1 000 containers, parsing them all (7.5 KB each)
/// and reading each process's `/proc/PID/stat` at every step of the lab's
/// loop was most of its time at rest.
static PARSED: std::sync::LazyLock<
    std::sync::Mutex<HashMap<PathBuf, HashMap<std::ffi::OsString, Parsed>>>,
> = std::sync::LazyLock::new(Default::default);

/// Which version of a file: a replaced or rewritten file differs in one.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileKey {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileKey {
    fn of(m: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// What a listing needs of one state file, and what it learnt of its
/// process.
#[derive(Clone)]
struct Parsed {
    key: FileKey,
    id: String,
    pid: i32,
    start: u64,
    bundle: String,
    created: Option<String>,
    life: Life,
    /// Seen running: `exec.fifo` is gone for good.
    started: bool,
}

/// Whether a state file's init process lives.
#[derive(Clone)]
enum Life {
    /// Not looked at yet.
    Unknown,
    /// It did at the last look; the pidfd tells when it exits.
    Alive(Arc<std::os::fd::OwnedFd>),
    /// Gone (and a process never comes back under the same state file).
    Dead,
}

impl Parsed {
    fn of(key: FileKey, bytes: &[u8]) -> serde_json::Result<Parsed> {
        let state: StateFile = serde_json::from_slice(bytes)?;
        let bundle = state
            .config
            .labels
            .iter()
            .find_map(|l| l.strip_prefix("bundle="))
            .unwrap_or_default()
            .to_string();
        Ok(Parsed {
            key,
            id: state.id,
            pid: state.init_process_pid,
            start: state.init_process_start,
            bundle,
            created: state.created,
            life: Life::Unknown,
            started: false,
        })
    }
}

/// A live (not zombie) process's start time in clock ticks since boot
/// (`/proc/PID/stat` field 22), what runc records to tell a reused pid.
fn process_start(pid: i32) -> Option<u64> {
    let stat = live_stat(pid)?;
    // After the command's name: field 3 (the state) on; field 22 is the
    // 20th of them.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// `/proc/PID/stat` of a process that exists and is not a zombie.
fn live_stat(pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command's name, which may hold spaces and
    // parentheses.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    (state != 'Z' && state != 'X').then_some(stat)
}

/// Whether a process still runs: it exists and is not a zombie. A killed
/// container process stays a zombie until whoever adopted it after `runc
/// run -d` returned (init, or a subreaper) reaps it; as a zombie it holds no
/// memory, files or namespaces any more.
pub fn process_alive(pid: i32) -> bool {
    live_stat(pid).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_field_22_of_its_stat() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let want: u64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
        assert_eq!(process_start(std::process::id() as i32), Some(want));
        assert_eq!(process_start(0), None);
        assert_eq!(process_start(i32::MAX), None);
    }

    #[test]
    fn states_are_read_as_runc_lists_them() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let write = |id: &str, pid: i32, start: u64, fifo: bool| {
            let d = root.path().join(id);
            std::fs::create_dir(&d).unwrap();
            let state = serde_json::json!({
                "id": id, "init_process_pid": pid, "init_process_start": start,
                "created": "2026-12-05T12:30:57.039540338Z",
                "config": {"labels": [format!("bundle=/b/{id}")], "rootfs": "/r"},
                "cgroup_paths": {}, "namespace_paths": {},
            });
            std::fs::write(d.join("state.json"), state.to_string()).unwrap();
            if fifo {
                std::fs::write(d.join("exec.fifo"), "").unwrap();
            }
        };
        let start = process_start(me).unwrap();
        write("b-running", me, start, false);
        write("a-created", me, start, true);
        write("c-reused-pid", me, start + 1, false);
        write("d-gone", i32::MAX, 1, false);
        std::fs::create_dir(root.path().join("e-being-deleted")).unwrap();
        let got: Vec<(String, String, i32, String)> = read_states(root.path())
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.status, c.pid, c.bundle))
            .collect();
        let row = |id: &str, status: &str, pid: i32| {
            (id.to_string(), status.to_string(), pid, format!("/b/{id}"))
        };
        assert_eq!(
            got,
            [
                row("a-created", "created", me),
                row("b-running", "running", me),
                row("c-reused-pid", "stopped", 0),
                row("d-gone", "stopped", 0),
            ]
        );
        assert!(read_states(&root.path().join("none")).unwrap().is_empty());
    }

    /// The second listing answers from what the first learnt (the state
    /// file unchanged, the process watched through its pidfd), and still
    /// sees a process die, a container started, and a state file replaced.
    #[test]
    fn later_listings_see_what_changed() {
        let root = tempfile::tempdir().unwrap();
        let write = |id: &str, pid: i32, fifo: bool| {
            let d = root.path().join(id);
            std::fs::create_dir_all(&d).unwrap();
            let state = serde_json::json!({
                "id": id, "init_process_pid": pid,
                "init_process_start": process_start(pid).unwrap(),
                "config": {"labels": [format!("bundle=/b/{pid}")]},
            });
            // As runc writes it: a new file renamed over the old one.
            let tmp = d.join("state.json.tmp");
            std::fs::write(&tmp, state.to_string()).unwrap();
            std::fs::rename(&tmp, d.join("state.json")).unwrap();
            let fifo_path = d.join("exec.fifo");
            match fifo {
                true => std::fs::write(fifo_path, "").unwrap(),
                false => {
                    let _ = std::fs::remove_file(fifo_path);
                }
            }
        };
        let list = || -> Vec<(String, String, String)> {
            read_states(root.path())
                .unwrap()
                .into_iter()
                .map(|c| (c.id, c.status, c.bundle))
                .collect()
        };
        let row = |id: &str, status: &str, pid: u32| {
            (id.to_string(), status.to_string(), format!("/b/{pid}"))
        };
        let mut a = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut b = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        write("a", a.id() as i32, false);
        write("b", b.id() as i32, true);
        assert_eq!(
            list(),
            [row("a", "running", a.id()), row("b", "created", b.id())]
        );
        let one = |id: &str| {
            let c = read_state(root.path(), id).unwrap();
            (c.id, c.status, c.bundle)
        };
        assert_eq!(one("b"), row("b", "created", b.id()));
        assert!(read_state(root.path(), "none")
            .unwrap_err()
            .contains("does not exist"));
        assert!(read_state(root.path(), "../a").is_err());
        // b's `runc start`; a dies (a zombie until reaped: stopped already).
        write("b", b.id() as i32, false);
        a.kill().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            list(),
            [row("a", "stopped", a.id()), row("b", "running", b.id())]
        );
        assert_eq!(one("a"), row("a", "stopped", a.id()));
        a.wait().unwrap();
        // a again, as a new process under the same id.
        let mut a2 = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        write("a", a2.id() as i32, false);
        assert_eq!(
            list(),
            [row("a", "running", a2.id()), row("b", "running", b.id())]
        );
        std::fs::remove_dir_all(root.path().join("b")).unwrap();
        assert_eq!(list(), [row("a", "running", a2.id())]);
        for c in [&mut a2, &mut b] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}
