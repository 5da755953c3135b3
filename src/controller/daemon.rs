//! The per-lab controller process: what keeps a lab converging after `up`
//! returns, as the kubelet does on a node. It watches every container
//! process through a pidfd (a process that is not our child can be watched
//! that way), restarts dead containers per `restartPolicy` with the kubelet's
//! back-off, and takes a dead pod out of the Services' endpoints on every
//! node until it runs again.
//!
//! It owns the lab: it holds the store and serves the API (whose writes
//! are committed and acknowledged at once), and its loop makes the host
//! follow, woken by commits, container deaths and timers. A step works on
//! a copy of the state ([`crate::store::Working`]) while writes go on, and
//! commits over them. Nothing else of the lab's is kept in memory but
//! probe trackers: everything is in the store and runc's state, so `kill
//! -9` of the process disturbs no pod, and a new process adopts the
//! running containers without restarting them.

use super::settled::Part;
use super::{liveness, pods, probes, ControllerError};
use crate::cluster::nodes::kubelet_silent;
use crate::cluster::{events, state, ClusterState};
use crate::paths;
use crate::runtime::{rootfs, Runc, Store};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus,
};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// How often the controller looks even when no process died (for changes
/// made by other commands and for back-off timers).
const RESYNC: Duration = Duration::from_millis(500);

pub fn pid_file(lab: &str) -> PathBuf {
    paths::lab_dir(lab).join("controller.pid")
}

pub fn log_file(lab: &str) -> PathBuf {
    paths::lab_dir(lab).join("controller.log")
}

/// The lock a lab's process holds for its life (and `down` to its end).
pub fn lock_file(lab: &str) -> PathBuf {
    paths::lab_dir(lab).join("controller.lock")
}

/// The running controller's pid, if there is one.
pub fn running(lab: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(lab))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    // Guard against a recycled pid: it must be our controller of this lab.
    (crate::runtime::runc::process_alive(pid)
        && cmdline.contains("controller")
        && cmdline.contains(lab))
    .then_some(pid)
}

/// Marks a lab as going down (`down` makes it first): no process of the
/// lab starts any more, so none can start pods while `down` sweeps.
pub fn going_down_file(lab: &str) -> PathBuf {
    paths::lab_dir(lab).join("going-down")
}

fn going_down(lab: &str) -> ControllerError {
    ControllerError::Runtime {
        message: format!("lab {lab} is going down"),
    }
}

/// Starts the controller of a lab in the background (its own session, its
/// output in `controller.log`), adopting what runs. No-op when one runs.
pub fn spawn(lab: &str) -> Result<i32, ControllerError> {
    if let Some(pid) = running(lab) {
        return Ok(pid);
    }
    launch(lab, None)
}

/// Starts the process of a lab that is coming up: it makes the lab's store
/// from `state` (written to its stdin) before anything else. Returns once
/// it runs with its store made, or fails with the end of its log.
pub fn spawn_new(lab: &str, state: &ClusterState) -> Result<i32, ControllerError> {
    let bytes = serde_json::to_vec(state).map_err(|e| ControllerError::Runtime {
        message: format!("handing the planned state to the lab's process: {e}"),
    })?;
    launch(lab, Some(bytes))
}

fn launch(lab: &str, initial: Option<Vec<u8>>) -> Result<i32, ControllerError> {
    if going_down_file(lab).exists() {
        return Err(going_down(lab));
    }
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|e| ControllerError::io(std::path::Path::new("/proc/self/exe"), e))?;
    let log_path = log_file(lab);
    // The files a lab's process needs are made by `up` only: one made by a
    // client while `down` removes the lab's directory would be left.
    if initial.is_some() {
        File::create(lock_file(lab)).map_err(|e| ControllerError::io(&lock_file(lab), e))?;
    }
    let log = std::os::unix::fs::OpenOptionsExt::mode(
        File::options().create(initial.is_some()).append(true),
        0o600,
    )
    .open(&log_path)
    .map_err(|e| ControllerError::io(&log_path, e))?;
    let err = log
        .try_clone()
        .map_err(|e| ControllerError::io(&log_path, e))?;
    // NETLAB_WRAP=program: the lab's process runs as `program netlab …`,
    // for a profiler (e.g. a script that runs `heaptrack -o FILE "$@"`).
    let mut cmd = match std::env::var_os("NETLAB_WRAP") {
        Some(w) => {
            let mut c = std::process::Command::new(w);
            c.arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    // Its log says what it did (restarts, DNS servers), not only warnings.
    let filter = std::env::var("NETLAB_LOG").unwrap_or_else(|_| "warn,netlab=info".into());
    cmd.args(["controller", "run", "--lab", lab])
        .env("NETLAB_LOG", filter)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    if initial.is_some() {
        cmd.arg("--initial-state-on-stdin")
            .stdin(std::process::Stdio::piped());
    }
    // SAFETY: setsid is async-signal-safe; it detaches the controller from
    // the terminal and the caller's process group.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| ControllerError::Runtime {
        message: format!("starting the controller of lab {lab}: {e}"),
    })?;
    let pid = child.id() as i32;
    let failed = |child: &mut std::process::Child, what: String| {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        ControllerError::Runtime {
            message: format!(
                "the process of lab {lab} {what}: {} (see {})",
                tail.join(" / "),
                log_path.display()
            ),
        }
    };
    // The state is written whole, then the pipe closed (end of input).
    let patience = match initial {
        Some(bytes) => {
            let mut stdin = child.stdin.take().expect("piped stdin");
            if let Err(e) = stdin.write_all(&bytes) {
                return Err(failed(&mut child, format!("did not take its state ({e})")));
            }
            drop(stdin);
            // Making the store of a big lab takes seconds.
            Duration::from_secs(120)
        }
        None => Duration::from_secs(2),
    };
    // Return once it runs (its pid file names it), so that a `controller
    // status` right after `up` sees it even on a busy machine.
    let deadline = std::time::Instant::now() + patience;
    while std::time::Instant::now() < deadline {
        if running(lab) == Some(pid) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(&mut child, format!("ended ({status})")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(pid)
}

/// Every controller process of the lab, found by its command line (`netlab
/// controller run --lab LAB`: only netlab starts those), not only the one
/// its pid file names (one may be starting).
fn controllers(lab: &str) -> Vec<i32> {
    super::down::processes_whose_args(|args| {
        args.windows(4).any(|w| {
            w[0] == b"controller" && w[1] == b"run" && w[2] == b"--lab" && w[3] == lab.as_bytes()
        })
    })
}

/// Stops the controller (SIGTERM, then SIGKILL after 2 s). Ok when none runs.
pub async fn stop(lab: &str) -> Result<(), String> {
    let Some(pid) = running(lab) else {
        return Ok(());
    };
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..200 {
        if !crate::runtime::runc::process_alive(pid) {
            return released(lab).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
    super::down::wait_gone(&[pid]).await?;
    released(lab).await
}

/// Waits until no process holds the controllers' lock: a process whose
/// main thread ended may still hold its files (the store) while its other
/// threads end.
async fn released(lab: &str) -> Result<(), String> {
    let path = lock_file(lab);
    for _ in 0..500 {
        let Ok(file) = File::options().write(true).open(&path) else {
            return Ok(()); // no lab, no lock
        };
        if nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "the lab's process ended but {} is still held after 5 s",
        path.display()
    ))
}

/// For `down`: no process of the lab runs, or starts, until the lab is
/// gone. Marks the lab as going down, kills every controller of the lab
/// (one being started by a client included), and holds the controllers'
/// lock, which a new one would need, until the guard is dropped.
pub async fn stop_for_good(lab: &str) -> Result<Option<nix::fcntl::Flock<File>>, String> {
    let dir = paths::lab_dir(lab);
    if !dir.is_dir() {
        return Ok(None);
    }
    let marker = going_down_file(lab);
    std::fs::write(&marker, b"").map_err(|e| format!("{}: {e}", marker.display()))?;
    // The running one first, gently: it saves nothing, but ends its work.
    stop(lab).await?;
    let lock_path = lock_file(lab);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let others = controllers(lab);
        for pid in &others {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        super::down::wait_gone(&others).await?;
        let file = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(lock)),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(_) => {
                return Err(format!(
                    "{} stays locked: a process of lab {lab} does not end",
                    lock_path.display()
                ))
            }
        }
    }
}

/// The controller's main loop (`netlab controller run --lab LAB`).
pub async fn run(lab: &str, initial_on_stdin: bool) -> Result<(), ControllerError> {
    // One controller per lab: a lock held for the process's life.
    let lock_path = lock_file(lab);
    // Never made here (`up` makes it): made while `down` removes the
    // lab's directory, it would be left behind.
    let lock = File::options()
        .write(true)
        .open(&lock_path)
        .map_err(|e| ControllerError::io(&lock_path, e))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |_| ControllerError::Runtime {
            message: format!("a controller of lab {lab} already runs"),
        },
    )?;
    // Held until the process is gone, not until this function returns: the
    // store and the threads that use it outlive it by a moment, and a
    // controller started meanwhile found the store still open.
    std::mem::forget(lock);
    raise_fd_limit();
    crate::runtime::exits::reap_containers();
    // `down` makes the mark, then holds the lock: one that got the lock
    // first sees the mark, or `down` finds it by its command line.
    if going_down_file(lab).exists() {
        return Err(going_down(lab));
    }
    let store = if initial_on_stdin {
        // A lab coming up: `up` planned the state; its store is made here,
        // by its owner.
        use std::io::Read;
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| ControllerError::io(std::path::Path::new("/dev/stdin"), e))?;
        let mut st: ClusterState =
            serde_json::from_slice(&bytes).map_err(|e| ControllerError::Runtime {
                message: format!("the planned state on stdin: {e}"),
            })?;
        drop(bytes);
        crate::store::ObjectStore::create(lab, &mut st)?
    } else {
        crate::store::ObjectStore::open(lab)?
    };
    std::fs::write(pid_file(lab), std::process::id().to_string())
        .map_err(|e| ControllerError::io(&pid_file(lab), e))?;
    tracing::info!(lab, pid = std::process::id(), "controller started");
    let progress = super::settled::Progress::default();
    match crate::api::start(lab, store.clone(), progress.subscribe()).await {
        Ok(addr) => tracing::info!(lab, %addr, "serving the Kubernetes API"),
        Err(e) => tracing::warn!(lab, error = %e, "the Kubernetes API could not start"),
    }
    // Endpoints, EndpointSlices and the rules follow the store on their own.
    super::service_plane::spawn(lab, store.clone(), progress.clone());
    let plane = progress.services();
    let mut probes = Probes::default();
    let mut dns = super::dns::DnsServers::start(&store);
    let mut speaker = super::lb::Speaker::default();
    spawn_log_rotation(lab);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ControllerError::io(&lock_path, e))?;
    // Commits by the API's writes wake the loop; so do the loop's own,
    // which it marks seen (below) so as not to wake itself.
    let mut changes = store.subscribe();
    // The state the last whole step left the host matching.
    let mut converged: Option<Arc<ClusterState>> = None;
    let mut bg = super::converge::Background::default();
    loop {
        if !crate::store::exists(lab) {
            tracing::info!(lab, "the lab is gone; controller exits");
            return Ok(());
        }
        probes
            .run_due(lab, &store, |p| bg.starts.busy_with(p))
            .await;
        store.expire_pins();
        let begun = changes.borrow_and_update().revision;
        let t = std::time::Instant::now();
        let outcome = step(
            lab,
            &store,
            &mut probes,
            &mut dns,
            &mut speaker,
            &mut converged,
            &mut bg,
            &plane,
        )
        .await;
        tracing::debug!(lab, elapsed_ms = t.elapsed().as_secs_f64() * 1e3, "step");
        // The error first: a waiter woken by the count below must see it.
        if let Err(e) = &outcome {
            tracing::warn!(lab, error = %e, "controller step failed");
            progress.failed(Part::Pods, begun, e.to_string());
        }
        progress.busy(bg.busy(), store.snapshot().revision);
        let pids = match outcome {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Something changed or died meanwhile: look again now.
                progress.reached(Part::Pods, begun);
                continue;
            }
            Err(_) => Vec::new(),
        };
        // What the loop committed itself is seen; a write after it is not.
        let latest = changes.borrow_and_update().clone();
        match &converged {
            Some(c) if Arc::ptr_eq(c, &latest.state) => {
                progress.reached(Part::Pods, latest.revision)
            }
            _ => {
                progress.reached(Part::Pods, begun);
                continue;
            }
        }
        tokio::select! {
            _ = any_exits(pids) => {}
            _ = tokio::time::sleep(RESYNC) => {}
            _ = changes.changed() => {}
            _ = bg.ended() => {}
            _ = term.recv() => {
                tracing::info!(lab, "controller stopping");
                let _ = std::fs::remove_file(pid_file(lab));
                return Ok(());
            }
        }
    }
}

/// The lab's process holds descriptors per container (a pidfd each, and
/// the stdio of those with stdin or a terminal) besides its sockets: its
/// soft limit goes up to the hard one, as container runtimes' services
/// set it (a login shell's soft limit is often 1 024).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Rotates the lab's container logs as the kubelet does, on its own
/// timer (the controller's loop wakes for deaths and resyncs, not sizes).
fn spawn_log_rotation(lab: &str) {
    let pods_dir = paths::lab_dir(lab).join("pods");
    tokio::spawn(async move {
        use crate::runtime::logs;
        loop {
            tokio::time::sleep(logs::CHECK_EVERY).await;
            let dir = pods_dir.clone();
            let errors = tokio::task::spawn_blocking(move || logs::rotate_all(&dir, logs::DEFAULT))
                .await
                .unwrap_or_default();
            for e in errors {
                tracing::warn!(error = %e, "log rotation");
            }
        }
    });
}

/// Resolves when any of the processes exits (a pidfd becomes readable).
async fn any_exits(pids: Vec<i32>) {
    let mut fds = Vec::new();
    for pid in pids {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return; // already gone: look again at once
        }
        // SAFETY: the fd was just returned to us and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the AsyncFd owns the pidfd and nothing else closes it
        // while it is registered.
        match unsafe { AsyncFd::register(owned) } {
            Ok(a) => fds.push(a),
            Err(_) => return,
        }
    }
    if fds.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = fds.iter().map(|f| Box::pin(f.readable()));
    let _ = futures::future::select_all(waits).await;
}

/// The prober of every container with a probe, by container id (the pure
/// decisions are `liveness.rs`'s). Kept in memory: a new controller starts
/// from the readiness in the store and probes afresh.
#[derive(Default)]
pub struct Probes {
    trackers: HashMap<String, liveness::ProbeTracker>,
    /// Events to record at the next step:
    /// (namespace, pod, type, reason, message).
    events: Vec<(String, String, &'static str, &'static str, String)>,
    /// The containers it killed, for their exit codes.
    kills: probes::Kills,
}

impl Probes {
    /// Runs the probes that are due, outside the step, and
    /// starts the kills their results call for.
    /// Pods whose start is still being checked (`starting`) are not probed
    /// yet: that check is their startup gate, as a startupProbe is.
    pub async fn run_due(
        &mut self,
        lab: &str,
        store: &crate::store::ObjectStore,
        starting: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
    ) {
        let st = store.snapshot().state.clone();
        let (now, instant) = (Utc::now(), std::time::Instant::now());
        let mut jobs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let stopped = st.stopped_nodes();
        for pod in &st.pods {
            if pod.metadata.deletion_timestamp.is_some()
                || pods::is_pending(pod)
                || starting(pod)
                || kubelet_silent(pod, &stopped)
            {
                continue;
            }
            let ns = state::namespace(&pod.metadata).to_string();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let (Some(ip), Some(node)) = (state::pod_ip(pod), state::pod_node(pod)) else {
                continue;
            };
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                if liveness::ProbeKind::ALL.iter().all(|k| k.of(c).is_none()) {
                    continue;
                }
                let id = paths::container_id(&ns, &name, &c.name);
                let cs = pod
                    .status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .find(|x| x.name == c.name);
                let started = cs
                    .and_then(|x| x.state.as_ref()?.running.as_ref()?.started_at.clone())
                    .map(|t| t.0);
                let Some(started) = started else {
                    // Not running: not ready, and probing starts afresh.
                    continue;
                };
                seen.insert(id.clone());
                let tracker = self.trackers.entry(id.clone()).or_insert_with(|| {
                    liveness::ProbeTracker::new(c, started, cs.is_some_and(|x| x.ready))
                });
                if tracker.instance() != started {
                    *tracker = liveness::ProbeTracker::new(c, started, false);
                }
                let age = (now - started).to_std().unwrap_or_default();
                for kind in liveness::ProbeKind::ALL {
                    let Some(probe) = kind.of(c) else { continue };
                    if !tracker.due(kind, probe, age, instant) {
                        continue;
                    }
                    let (ns, name, node, c, probe) = (
                        ns.clone(),
                        name.clone(),
                        node.to_string(),
                        c.clone(),
                        probe.clone(),
                    );
                    let id = id.clone();
                    let grace = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds);
                    jobs.push(async move {
                        let result = probes::run_once(lab, &node, &ns, &name, ip, &c, &probe).await;
                        (id, ns, name, c, kind, probe, grace, result)
                    });
                }
            }
        }
        self.trackers.retain(|id, _| seen.contains(id));
        let done = std::time::Instant::now();
        for (id, ns, pod, c, kind, probe, grace, result) in futures::future::join_all(jobs).await {
            let Some(tracker) = self.trackers.get_mut(&id) else {
                continue;
            };
            for action in tracker.observe(kind, &probe, result, done) {
                match action {
                    liveness::Action::Unhealthy(message) => {
                        tracing::info!(pod = %pod, container = %c.name, %message, "probe failed");
                        self.events.push((
                            ns.clone(),
                            pod.clone(),
                            "Warning",
                            "Unhealthy",
                            message,
                        ));
                    }
                    liveness::Action::Kill(message) => {
                        tracing::info!(pod = %pod, container = %c.name, %message, "killing");
                        self.events
                            .push((ns.clone(), pod.clone(), "Normal", "Killing", message));
                        // The probe's own grace period wins over the pod's.
                        let grace = probe
                            .termination_grace_period_seconds
                            .or(grace)
                            .unwrap_or(30)
                            .max(0) as u64;
                        let signal = Store::new(&paths::data_dir())
                            .resolve(c.image.as_deref().unwrap_or_default())
                            .ok()
                            .and_then(|i| i.runtime_config().stop_signal().clone())
                            .unwrap_or_else(|| "SIGTERM".into());
                        let (lab, id) = (lab.to_string(), id.clone());
                        let kills = self.kills.clone();
                        tokio::spawn(async move {
                            probes::kill(&lab, &id, &signal, Duration::from_secs(grace), kills)
                                .await
                        });
                    }
                }
            }
        }
    }

    /// A probed container's readiness; None when its probes have no say
    /// (no readiness or startup probe) or it is not tracked.
    fn ready(&self, id: &str) -> Option<bool> {
        self.trackers
            .get(id)
            .filter(|t| t.decides_readiness())
            .map(|t| t.ready())
    }

    /// Whether a container's startup probe has passed (None: not tracked).
    fn started(&self, id: &str) -> Option<bool> {
        self.trackers.get(id).map(|t| t.started())
    }

    /// Records the probes' events in the store; true when there were any.
    fn record_events(&mut self, st: &mut ClusterState, now: DateTime<Utc>) -> bool {
        let any = !self.events.is_empty();
        for (ns, pod, type_, reason, message) in self.events.drain(..) {
            let who = events::Involved {
                kind: "Pod",
                namespace: &ns,
                name: &pod,
            };
            st.record(who, type_, reason, "kubelet", message, now);
        }
        any
    }
}

/// One look at the lab: start and stop pods, restart what died, update
/// their statuses (the service plane follows with endpoints and rules).
/// Returns the pids of the containers that run now, or None when one died
/// meanwhile and another step is due at once.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    lab: &str,
    store: &crate::store::ObjectStore,
    probes: &mut Probes,
    dns: &mut super::dns::DnsServers,
    speaker: &mut super::lb::Speaker,
    converged: &mut Option<Arc<ClusterState>>,
    bg: &mut super::converge::Background,
    plane: &tokio::sync::watch::Receiver<u64>,
) -> Result<Option<Vec<i32>>, ControllerError> {
    let mut st = store.begin();
    // What this step sees is in the store by this revision.
    let seen = store.snapshot().revision;
    // Changed since the last whole step (by the API's writes): statuses
    // and addresses are brought up to date.
    let mut dirty = !converged
        .as_ref()
        .is_some_and(|c| Arc::ptr_eq(c, st.base()));
    // Pods started earlier that now serve are ready; those that do not
    // fail this step (what `up` and netlab's verbs report).
    let (served, failed) = bg.served(&mut st);
    dirty |= served;
    if !failed.is_empty() {
        st.refresh_deployment_status();
        store.commit_working(&mut st)?;
        return Err(ControllerError::NotReady(failed));
    }
    let runc = Runc::new(&paths::runc_root(lab));
    // A verb killed partway leaves pods recorded but not started (or being
    // removed): the lock is free again, so nobody else finishes them.
    // And a pod no node could take is tried again at every resync, as
    // kube-scheduler retries unschedulable pods (a hostPort may be free now).
    let placed = st.pods.iter().any(pods::is_unscheduled) && st.schedule_pending()?;
    // The workload controllers: a rollout's next step once the pods of the
    // last one are ready, a ReplicaSet's pod that died for good replaced.
    // What kube-apiserver and kube-controller-manager keep in place: the
    // bootstrap RBAC policy, each namespace's `default` ServiceAccount and
    // `kube-root-ca.crt` (before pods start: their volumes need both).
    let keys = crate::api::tokens::for_lab(lab);
    let ca = keys.as_ref().map(|k| k.ca.clone());
    let mut access =
        crate::cluster::access::ensure(&mut st, ca.as_deref(), Utc::now(), &mut rand::rng());
    // The token controller: long-lived tokens in Secrets.
    if let Some(k) = &keys {
        let mint =
            |t: crate::cluster::secrets::TokenFor<'_>| crate::api::tokens::for_secret(&k.issuer, t);
        access |= crate::cluster::secrets::fill_token_secrets(&mut st, &k.ca, &mint);
    }
    let workloads = st.reconcile_workloads(Utc::now(), &mut rand::rng())? || access;
    // Pods to start, or to stop (unless their removal is under way), but
    // none on a node a drill stopped (its kubelet is silent).
    let stopped = st.stopped_nodes();
    let to_do = |st: &ClusterState| {
        st.pods.iter().any(|p| {
            !kubelet_silent(p, &stopped)
                && (pods::is_pending(p)
                    || (p.metadata.deletion_timestamp.is_some() && !bg.removals.busy_with(p)))
        })
    };
    // A pod created again under the name of one whose leftovers are being
    // removed waits for that removal (its end wakes the loop).
    let clashes = |st: &ClusterState| {
        st.pods.iter().filter(|p| pods::is_pending(p)).any(|p| {
            super::orphans::keys_of(lab, p)
                .iter()
                .any(|k| bg.sweeps.holds(k))
        })
    };
    if workloads && !to_do(&st) {
        // Only statuses or ReplicaSets changed: nothing to start or stop.
        store.commit_working(&mut st)?;
    }
    if (placed || to_do(&st)) && !clashes(&st) {
        tracing::info!(
            lab,
            "starting or stopping pods (recorded by a verb, or by the workload controllers)"
        );
        let result = super::converge::converge(lab, &mut st, bg, plane, seen).await;
        store.commit_working(&mut st)?;
        result?;
        if !st.saw_others() {
            // The host matches this state: the next step (at once) need not
            // take it for a change by others.
            *converged = Some(st.base().clone());
        }
        return Ok(None);
    }
    let list = runc.list().await.map_err(|e| ControllerError::Runtime {
        message: e.to_string(),
    })?;
    // What no pod owns goes in the background: a pod created meanwhile
    // starts at once (unless it has the same names, see above).
    for (_, errors) in bg.sweeps.finished() {
        for e in errors {
            tracing::warn!(lab, error = %e, "removing what no pod owns");
        }
    }
    let ids = list.iter().map(|c| c.id.clone());
    let found = super::orphans::find(lab, &st, ids).without(|k| bg.sweeps.holds(k));
    if !found.is_empty() {
        let (lab, runc) = (lab.to_string(), runc.clone());
        bg.sweeps.spawn(found.keys(), async move {
            super::orphans::remove(&lab, &runc, &found).await
        });
    }
    // Exit codes are watched for the containers of pods that are still here.
    let known: HashMap<String, (&str, &str, &str)> = st
        .pods
        .iter()
        .flat_map(|p| {
            let ns = state::namespace(&p.metadata);
            let name = p.metadata.name.as_deref().unwrap_or_default();
            p.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(move |c| (paths::container_id(ns, name, &c.name), (ns, name, &*c.name)))
        })
        .collect();
    crate::runtime::exits::retain(&runc.root, |id| known.contains_key(id));
    let live: HashMap<String, i32> = list
        .iter()
        .filter(|c| c.status == "running")
        .map(|c| (c.id.clone(), c.pid))
        .collect();
    // Output of containers an earlier process of the lab started (after
    // this process's first step, there are none left to adopt).
    for (id, (ns, pod, c)) in known.iter().filter(|(id, _)| {
        live.contains_key(*id) && !crate::runtime::stdio::read_here(&runc.root, id)
    }) {
        let bundle = paths::pod_dir(lab, ns, pod).join(c);
        let log = paths::container_log(lab, ns, pod, c);
        crate::runtime::stdio::adopt(&runc.root, id, &bundle, &log);
    }
    let now = Utc::now();
    let mut changed = probes.record_events(&mut st, now) | dirty;
    // Whether this step started a container (then the runtime is asked
    // again at its end, for the processes to watch).
    let mut started = false;
    let images = Store::new(&paths::data_dir());
    let registries = super::images::registries(&st.config)?;
    // Two passes: first every death is noticed and committed, so that the
    // service plane takes the dead pods out of the endpoints on every node
    // at once; then containers are restarted and pods that run (and pass
    // their probes) join again.
    for restart_pass in [false, true] {
        if restart_pass && changed {
            st.refresh_deployment_status();
            store.commit_working(&mut st)?;
        }
        for i in 0..st.pods.len() {
            let pod = &st.pods[i];
            if pod.metadata.deletion_timestamp.is_some()
                || pods::is_pending(pod)
                || pods::is_unscheduled(pod)
                || kubelet_silent(pod, &stopped)
                || crate::cluster::dns::is_builtin(pod)
                || bg.starts.busy_with(pod)
            {
                continue;
            }
            let ns = state::namespace(&pod.metadata).to_string();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let policy = pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.clone())
                .unwrap_or_else(|| "Always".into());
            let containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            for c in &containers {
                let id = paths::container_id(&ns, &name, &c.name);
                if live.contains_key(&id) {
                    continue;
                }
                let cs = status_of(&mut st.pods[i], &c.name);
                if pods::waits_for_image(cs) || pods::waits_for_volumes(cs) {
                    if restart_pass
                        && retry_image(lab, &mut st, i, c, &images, &registries, &runc, now).await
                    {
                        (changed, started) = (true, true);
                    }
                    continue;
                }
                let was_running = pods::running_since(cs).is_some();
                if was_running {
                    // Just died: record it, the pod is no longer ready.
                    let started = pods::running_since(cs).flatten();
                    let seen = crate::runtime::exits::exit_code(&runc.root, &id).await;
                    let code = probes.kills.exit_code(&id).await.or(seen);
                    cs.last_state = Some(match code {
                        Some(code) => pods::exited_with(started.clone(), code),
                        None => pods::exited(started.clone()),
                    });
                    cs.ready = false;
                    changed = true;
                    if policy == "Never" || (policy == "OnFailure" && code == Some(0)) {
                        // Done for good: it stays terminated.
                        cs.state = cs.last_state.clone();
                        continue;
                    }
                    let ran = started.map(|t| (now - t.0).num_seconds()).unwrap_or(0);
                    let delay = backoff(cs.restart_count, ran);
                    cs.state = Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(
                                if delay.is_zero() {
                                    "ContainerCreating"
                                } else {
                                    "CrashLoopBackOff"
                                }
                                .into(),
                            ),
                            message: (!delay.is_zero()).then(|| {
                                format!(
                                    "back-off {}s restarting failed container={} pod={name}",
                                    delay.as_secs(),
                                    c.name
                                )
                            }),
                        }),
                        ..Default::default()
                    });
                    cs.started = Some(false);
                    set_not_before(
                        &mut st.pods[i],
                        &c.name,
                        now + chrono::Duration::from_std(delay).unwrap_or_default(),
                    );
                    let who = events::Involved {
                        kind: "Pod",
                        namespace: &ns,
                        name: &name,
                    };
                    if !delay.is_zero() {
                        st.record(
                            who,
                            "Warning",
                            "BackOff",
                            "kubelet",
                            format!(
                                "Back-off restarting failed container {} in pod {name}",
                                c.name
                            ),
                            now,
                        );
                    }
                }
                let cs = status_of(&mut st.pods[i], &c.name);
                let done = cs.state.as_ref().is_some_and(|s| s.terminated.is_some());
                if done || !restart_pass {
                    continue;
                }
                // Waiting: restart once its back-off has passed.
                if not_before(&st.pods[i], &c.name).is_some_and(|t| t > now) {
                    continue;
                }
                let image = images.resolve(c.image.as_deref().unwrap_or_default())?;
                let layers = images.unpacked_layers(&image)?;
                match restart_container(lab, &ns, &name, c, &layers, &runc).await {
                    Ok(pid) => {
                        started = true;
                        let cs = status_of(&mut st.pods[i], &c.name);
                        cs.restart_count += 1;
                        cs.started = Some(true);
                        cs.state = Some(ContainerState {
                            running: Some(ContainerStateRunning {
                                started_at: Some(state::time(now)),
                            }),
                            ..Default::default()
                        });
                        clear_not_before(&mut st.pods[i], &c.name);
                        let who = events::Involved {
                            kind: "Pod",
                            namespace: &ns,
                            name: &name,
                        };
                        st.record_started(who, &c.name, now);
                        tracing::info!(pod = %name, container = %c.name, pid, "restarted");
                    }
                    Err(e) => {
                        tracing::warn!(pod = %name, container = %c.name, error = %e, "restart failed")
                    }
                }
                changed = true;
            }
            // Pod-level status from its containers: running, and ready by their
            // readiness probes where they have one. Worked out on a copy,
            // put back only if it changed: the pod stays the object the
            // store and the endpoints' memo share otherwise.
            let mut copy = st.pods[i].clone();
            let pod = &mut copy;
            if !restart_pass {
                let dead = pod
                    .status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .any(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_none());
                if dead && state::pod_ready(pod) {
                    pods::set_ready(pod, false);
                    changed = true;
                    st.pods.set(i, copy);
                }
                continue;
            }
            // Readiness where probes decide it: a readiness probe, or a
            // startup probe that has not passed yet.
            let probed: HashMap<String, bool> = containers
                .iter()
                .filter(|c| c.readiness_probe.is_some() || c.startup_probe.is_some())
                .map(|c| {
                    (
                        c.name.clone(),
                        probes
                            .ready(&paths::container_id(&ns, &name, &c.name))
                            .unwrap_or(false),
                    )
                })
                .collect();
            for c in containers.iter().filter(|c| c.startup_probe.is_some()) {
                let started = probes.started(&paths::container_id(&ns, &name, &c.name));
                let cs = status_of(pod, &c.name);
                if let Some(started) = started.filter(|_| pods::running_since(cs).is_some()) {
                    if cs.started != Some(started) {
                        cs.started = Some(started);
                        changed = true;
                    }
                }
            }
            let statuses = || {
                pod.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            };
            let all_running =
                statuses().all(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
            let waits_for_image =
                statuses().any(|cs| pods::waits_for_image(cs) || pods::waits_for_volumes(cs));
            let all_ready =
                all_running && statuses().all(|c| probed.get(&c.name).copied().unwrap_or(true));
            let flags_differ = statuses().any(|c| c.ready != all_ready);
            if all_ready != state::pod_ready(pod) || flags_differ {
                pods::set_ready(pod, all_ready);
                changed = true;
            }
            if policy != "Always" && !all_running && !waits_for_image {
                // Containers that are done for good: the pod is, once all are.
                let codes: Vec<Option<i32>> = pod
                    .status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .map(|c| Some(c.state.as_ref()?.terminated.as_ref()?.exit_code))
                    .collect();
                let phase = match codes.iter().all(Option::is_some) {
                    true if codes.iter().all(|c| *c == Some(0)) => Some("Succeeded"),
                    true => Some("Failed"),
                    false => None,
                };
                if let Some(phase) = phase {
                    pod.status.get_or_insert_with(Default::default).phase = Some(phase.into());
                }
            }
            if copy != st.pods[i] {
                st.pods.set(i, copy);
            }
        }
    }
    refresh_volumes(lab, &st);
    // The cluster DNS pods are served by this process.
    changed |= dns.sync(lab, &mut st);
    // The service controller and MetalLB: addresses for LoadBalancers
    // (the proxy rules need them before they are announced).
    changed |= st.allocate_load_balancers(now);
    if changed {
        st.refresh_deployment_status();
    }
    if speaker.sync(lab, &mut st).await {
        changed = true;
    }
    if changed {
        store.commit_working(&mut st)?;
    }
    if st.saw_others() {
        return Ok(None); // what they changed is not acted on yet
    }
    *converged = Some(st.base().clone());
    // What runs now, to watch. A container the store believes running but
    // runc does not (it died after this step looked) must not be left out
    // of the watch set unnoticed: then the caller looks again at once.
    let believed: std::collections::HashSet<String> = st
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !kubelet_silent(p, &stopped))
        .flat_map(|p| {
            let ns = state::namespace(&p.metadata).to_string();
            let name = p.metadata.name.clone().unwrap_or_default();
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
                .map(move |c| paths::container_id(&ns, &name, &c.name))
                .collect::<Vec<_>>()
        })
        .collect();
    let list = match started {
        true => runc.list().await.map_err(|e| ControllerError::Runtime {
            message: e.to_string(),
        })?,
        false => list,
    };
    let mut watch = Vec::new();
    for c in list {
        // `list` says running only of a live (not zombie) process.
        if c.status == "running" {
            watch.push(c.pid);
        } else if believed.contains(&c.id) {
            return Ok(None);
        }
    }
    Ok(Some(watch))
}

/// A container waiting for its image: while its pull back-off runs it shows
/// `ImagePullBackOff`; when it is over, pull again and start the container
/// if the image came. Returns whether the pod changed.
#[allow(clippy::too_many_arguments)]
async fn retry_image(
    lab: &str,
    st: &mut ClusterState,
    i: usize,
    c: &k8s_openapi::api::core::v1::Container,
    store: &Store,
    registries: &crate::runtime::Registries,
    runc: &Runc,
    now: DateTime<Utc>,
) -> bool {
    use super::images;
    let image = c.image.clone().unwrap_or_default();
    let meta = st.pods[i].metadata.clone();
    let who = events::involved("Pod", &meta);
    // Volumes first, as the kubelet mounts them before it pulls.
    let objects = pods::Objects::of(st);
    let volumes = match pods::prepare_volumes(lab, &st.pods[i], &objects) {
        Ok(v) => v,
        Err(e) => {
            let pod = st.pods[i].clone();
            return pods::record_failed_mount(st, &pod, &e, now);
        }
    };
    // Then what the container's configuration refers to (envFrom, valueFrom).
    let resolved = match pods::resolve_env(c, &st.pods[i], &objects) {
        Ok(resolved) => resolved,
        Err(status) => {
            let message = status
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.message.clone())
                .unwrap_or_default();
            let slot = status_of(&mut st.pods[i], &c.name);
            let changed = *slot != *status;
            *slot = *status;
            let pod = st.pods[i].clone();
            return pods::record_config_error(st, &pod, &message, now) || changed;
        }
    };
    // A container refused by its securityContext tries again every 10 s.
    if pods::config_error(&st.pods[i], &c.name).is_some()
        && not_before(&st.pods[i], &c.name).is_some_and(|t| t > now)
    {
        return false;
    }
    if pods::waits_for_volumes(status_of(&mut st.pods[i], &c.name)) {
        tracing::info!(pod = %pod_name(&st.pods[i]), container = %c.name, "volumes ready");
    } else if not_before(&st.pods[i], &c.name).is_some_and(|t| t > now) {
        let cs = status_of(&mut st.pods[i], &c.name);
        let waiting = cs.state.as_mut().and_then(|s| s.waiting.as_mut());
        let Some(w) = waiting else { return false };
        if w.reason.as_deref() != Some("ErrImagePull") {
            return false;
        }
        w.reason = Some("ImagePullBackOff".into());
        w.message = Some(format!("Back-off pulling image \"{image}\""));
        st.record(
            who.clone(),
            "Normal",
            "BackOff",
            "kubelet",
            format!("Back-off pulling image \"{image}\""),
            now,
        );
        st.record(
            who,
            "Warning",
            "Failed",
            "kubelet",
            "Error: ImagePullBackOff",
            now,
        );
        return true;
    }
    let outcome = images::ensure(
        vec![(image.clone(), images::policy(c))],
        store,
        registries,
        &crate::runtime::Progress::hidden(),
    )
    .await
    .remove(&image)
    .expect("asked for it");
    let pod = st.pods[i].clone();
    images::record(st, &pod, c, &outcome);
    let started = match &outcome {
        Ok(ready) => {
            let layers = store
                .unpacked_layers(&ready.image)
                .map_err(|e| e.to_string());
            match layers {
                Ok(layers) => match pods::start_container(
                    lab,
                    &pod,
                    &resolved,
                    &ready.image,
                    &layers,
                    runc,
                    &objects,
                    &volumes,
                )
                .await
                {
                    Err(ControllerError::ContainerConfig { message, .. }) => {
                        return config_error_again(st, i, c, &message, now);
                    }
                    other => other.map_err(|e| e.to_string()),
                },
                Err(e) => Err(e),
            }
        }
        Err(f) => Err(f.message.clone()),
    };
    let pod = &mut st.pods[i];
    match started {
        Ok((pid, status)) => {
            *status_of(pod, &c.name) = status;
            clear_not_before(pod, &c.name);
            set_pull_failures(pod, &c.name, 0);
            let all_running = pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .all(|cs| pods::running_since(cs).is_some());
            if all_running {
                pod.status.get_or_insert_with(Default::default).phase = Some("Running".into());
            }
            st.record_started(who, &c.name, now);
            tracing::info!(pod = %pod_name(&st.pods[i]), container = %c.name, pid, "image pulled, container started");
        }
        Err(message) => {
            let failures = pull_failures(pod, &c.name) + 1;
            set_pull_failures(pod, &c.name, failures);
            let delay = images::backoff(failures);
            set_not_before(
                pod,
                &c.name,
                now + chrono::Duration::from_std(delay).unwrap_or_default(),
            );
            let reason = outcome
                .as_ref()
                .err()
                .map(|f| f.reason)
                .unwrap_or("ErrImagePull");
            *status_of(pod, &c.name) = pods::image_waiting(c, reason, &message);
            tracing::info!(pod = %pod_name(pod), container = %c.name, %message, "image pull failed");
        }
    }
    true
}

/// A container that still cannot be created as configured: its waiting
/// status and the kubelet's event, and the next try in 10 s.
fn config_error_again(
    st: &mut ClusterState,
    i: usize,
    c: &k8s_openapi::api::core::v1::Container,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let status = pods::image_waiting(c, "CreateContainerConfigError", message);
    let slot = status_of(&mut st.pods[i], &c.name);
    let changed = *slot != status;
    *slot = status;
    set_not_before(
        &mut st.pods[i],
        &c.name,
        now + chrono::Duration::seconds(10),
    );
    let pod = st.pods[i].clone();
    pods::record_config_error(st, &pod, message, now) || changed
}

/// The kubelet keeps the secret and configMap volumes of running pods up to
/// date (an update swaps the files atomically; a deleted object leaves the
/// last files in place, as in Kubernetes).
/// What the volumes of running pods were last written from: they are all
/// written again when one of these changed, or after [`VOLUMES_RESYNC`]
/// (a short-lived token's refresh falls due on a clock); otherwise only
/// the pods not in `pods` (new, or changed since) are.
struct VolumesWrittenFrom {
    pods: Vec<Arc<k8s_openapi::api::core::v1::Pod>>,
    secrets: crate::cluster::collection::Collection<k8s_openapi::api::core::v1::Secret>,
    config_maps: crate::cluster::collection::Collection<k8s_openapi::api::core::v1::ConfigMap>,
    accounts: crate::cluster::collection::Collection<k8s_openapi::api::core::v1::ServiceAccount>,
    at: std::time::Instant,
}

/// The kubelet's sync period for configMap, secret and projected volumes.
const VOLUMES_RESYNC: Duration = Duration::from_secs(60);

static VOLUMES_WRITTEN: std::sync::LazyLock<std::sync::Mutex<HashMap<String, VolumesWrittenFrom>>> =
    std::sync::LazyLock::new(Default::default);

fn refresh_volumes(lab: &str, st: &ClusterState) {
    let projected = |p: &k8s_openapi::api::core::v1::Pod| {
        p.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.secret.is_some() || v.config_map.is_some() || v.projected.is_some())
    };
    let running: Vec<Arc<k8s_openapi::api::core::v1::Pod>> = st
        .pods
        .shared()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !pods::is_pending(p))
        .filter(|p| !pods::is_unscheduled(p))
        .filter(|p| projected(p))
        .filter(|p| {
            !p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .any(pods::waits_for_volumes)
        })
        .cloned()
        .collect();
    let mut written = VOLUMES_WRITTEN.lock().expect("volumes written");
    // With the same Secrets, ConfigMaps and accounts and no resync due,
    // only pods that changed since (a new pod, new labels for a downward
    // API file) are written: writing all of them minted a token for every
    // pod of the lab at each pod's start.
    let same_inputs = written.get(lab).filter(|w| {
        w.at.elapsed() < VOLUMES_RESYNC
            && w.secrets.same(&st.secrets)
            && w.config_maps.same(&st.config_maps)
            && w.accounts.same(&st.service_accounts)
    });
    let at = same_inputs.map_or_else(std::time::Instant::now, |w| w.at);
    let seen: std::collections::HashSet<*const k8s_openapi::api::core::v1::Pod> = same_inputs
        .iter()
        .flat_map(|w| w.pods.iter().map(Arc::as_ptr))
        .collect();
    let to_write: Vec<&Arc<k8s_openapi::api::core::v1::Pod>> = running
        .iter()
        .filter(|p| !seen.contains(&Arc::as_ptr(p)))
        .collect();
    if !to_write.is_empty() {
        let objects = pods::Objects::of(st);
        for p in to_write {
            if let Err(e) = pods::prepare_volumes(lab, p, &objects) {
                tracing::debug!(pod = %pod_name(p), error = %e, "volume not refreshed");
            }
        }
    }
    written.insert(
        lab.to_string(),
        VolumesWrittenFrom {
            pods: running,
            secrets: st.secrets.clone(),
            config_maps: st.config_maps.clone(),
            accounts: st.service_accounts.clone(),
            at,
        },
    );
}

fn pod_name(p: &k8s_openapi::api::core::v1::Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn failures_key(container: &str) -> String {
    format!("netlab.dev/image-pull-failures.{container}")
}

fn pull_failures(pod: &k8s_openapi::api::core::v1::Pod, container: &str) -> u32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&failures_key(container)))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn set_pull_failures(pod: &mut k8s_openapi::api::core::v1::Pod, container: &str, n: u32) {
    let a = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    if n == 0 {
        a.remove(&failures_key(container));
        if a.is_empty() {
            pod.metadata.annotations = None;
        }
    } else {
        a.insert(failures_key(container), n.to_string());
    }
}

/// The kubelet's crash back-off: the first restart at once, then 10 s,
/// 20 s, … up to 5 minutes; a container that ran 10 minutes starts afresh.
pub fn backoff(restarts: i32, ran_seconds: i64) -> Duration {
    if restarts == 0 || ran_seconds >= 600 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (restarts - 1).min(5));
    Duration::from_secs(secs.min(300))
}

fn status_of<'a>(
    pod: &'a mut k8s_openapi::api::core::v1::Pod,
    container: &str,
) -> &'a mut ContainerStatus {
    let statuses = pod
        .status
        .get_or_insert_with(Default::default)
        .container_statuses
        .get_or_insert_with(Vec::new);
    if let Some(i) = statuses.iter().position(|c| c.name == container) {
        return &mut statuses[i];
    }
    statuses.push(ContainerStatus {
        name: container.into(),
        ..Default::default()
    });
    statuses.last_mut().expect("just pushed")
}

/// A waiting container's restart deadline (its back-off) is kept in a pod
/// annotation, so that it survives a controller restart.
fn deadline_key(container: &str) -> String {
    format!("netlab.dev/restart-not-before.{container}")
}

fn set_not_before(pod: &mut k8s_openapi::api::core::v1::Pod, container: &str, t: DateTime<Utc>) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(deadline_key(container), t.timestamp_millis().to_string());
}

fn not_before(pod: &k8s_openapi::api::core::v1::Pod, container: &str) -> Option<DateTime<Utc>> {
    let v = pod
        .metadata
        .annotations
        .as_ref()?
        .get(&deadline_key(container))?;
    DateTime::from_timestamp_millis(v.parse().ok()?)
}

fn clear_not_before(pod: &mut k8s_openapi::api::core::v1::Pod, container: &str) {
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(&deadline_key(container));
        if a.is_empty() {
            pod.metadata.annotations = None;
        }
    }
}

/// A fresh container in the same pod: the old one removed, a new writable
/// layer over the image, the same bundle (config.json) started again.
async fn restart_container(
    lab: &str,
    ns: &str,
    pod: &str,
    c: &k8s_openapi::api::core::v1::Container,
    layers: &[PathBuf],
    runc: &Runc,
) -> Result<i32, ControllerError> {
    let container = c.name.as_str();
    let id = paths::container_id(ns, pod, container);
    let cdir = paths::pod_dir(lab, ns, pod).join(container);
    let err = |m: String| ControllerError::Pod {
        pod: format!("pod/{pod}"),
        message: m,
    };
    runc.delete_force(&id)
        .await
        .map_err(|e| err(e.to_string()))?;
    rootfs::unmount(&cdir.join("rootfs")).map_err(|e| err(e.to_string()))?;
    let writable = paths::container_writable_dir(lab, ns, pod, container);
    for d in ["upper", "work"] {
        let _ = std::fs::remove_dir_all(writable.join(d));
    }
    rootfs::mount_overlay(layers, &writable, &cdir).map_err(|e| err(e.to_string()))?;
    let log = paths::container_log(lab, ns, pod, container);
    crate::runtime::logs::start_over(&log, crate::runtime::logs::DEFAULT)
        .map_err(|e| err(format!("keeping the last run's log: {e}")))?;
    crate::runtime::stdio::run(runc, &id, &cdir, &log, crate::runtime::stdio::Wants::of(c))
        .await
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_backoff() {
        assert_eq!(backoff(0, 0), Duration::ZERO);
        assert_eq!(backoff(1, 1), Duration::from_secs(10));
        assert_eq!(backoff(2, 1), Duration::from_secs(20));
        assert_eq!(backoff(9, 1), Duration::from_secs(300));
        assert_eq!(backoff(5, 700), Duration::ZERO);
    }

    #[test]
    fn restart_deadline_round_trips() {
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        set_not_before(&mut pod, "c", t);
        assert_eq!(not_before(&pod, "c"), Some(t));
        clear_not_before(&mut pod, "c");
        assert!(pod.metadata.annotations.is_none());
    }
}
