//! A container's stdio.
//!
//! Every container's output reaches its log through this process, which
//! writes it as CRI records (`runtime::crilog`: each line with the time it
//! was read, for `kubectl logs --timestamps/--since`), as containerd's shim
//! does for the kubelet. Most containers write into named pipes in their
//! bundle: they hold them open themselves, so they run on untouched when
//! the lab's process goes, and the next process reads them again
//! ([`adopt`]). A container with `stdin: true` or
//! `tty: true` is attachable, as the kubelet makes it: the lab's process
//! holds its stdin and its output (pipes, or the master end of its
//! terminal) as containerd's shim does, copies the output into the log and
//! to every attached client (`pods/attach`), and writes what clients send
//! to its stdin. With `stdinOnce`, stdin is closed when the first attached
//! client lets go of it (without a terminal: a terminal stays open, as
//! containerd leaves it).
//!
//! Such a container depends on the process that started it: when that
//! process dies, the container's terminal hangs up or its stdin ends, and
//! the next process restarts it as its `restartPolicy` says.
//!
//! Blocking reads and writes run on threads of their own; clients meet
//! them through a broadcast channel (output) and [`Attachable::write_stdin`].

use super::runc::{Io, RunFailed, Runc, RuncError};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{broadcast, watch};

/// What a container asks for (its `stdin`, `stdinOnce` and `tty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl Wants {
    pub fn of(c: &k8s_openapi::api::core::v1::Container) -> Wants {
        Wants {
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        }
    }

    fn attachable(&self) -> bool {
        self.stdin || self.tty
    }
}

/// Which of the container's outputs a chunk came from (a terminal has
/// only one: stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Chunks of output kept for clients that read slower than the
/// container writes; a client further behind loses some.
const BACKLOG: usize = 256;

/// The stdio of a running attachable container.
pub struct Attachable {
    /// The master end of its terminal, if it has one.
    terminal: Option<Arc<OwnedFd>>,
    /// Where clients' input goes (the stdin pipe or the terminal); `None`
    /// once closed, or when the container has no stdin.
    stdin: Mutex<Option<std::fs::File>>,
    stdin_once: bool,
    output: broadcast::Sender<(Stream, Bytes)>,
    /// Turns true when the container's output has ended (it exited).
    ended: watch::Receiver<bool>,
}

impl Attachable {
    /// The master end of its terminal, if it has one.
    pub fn terminal(&self) -> Option<Arc<OwnedFd>> {
        self.terminal.clone()
    }

    /// The output from now on, and a flag that turns true once it has
    /// ended (what was sent before stays to be received).
    pub fn subscribe(&self) -> (broadcast::Receiver<(Stream, Bytes)>, watch::Receiver<bool>) {
        (self.output.subscribe(), self.ended.clone())
    }

    /// Writes to the container's stdin (blocks while its pipe is full).
    pub fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        match &mut *self.stdin.lock().expect("stdin") {
            Some(f) => f.write_all(data),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// A client let go of stdin: with `stdinOnce`, the container's stdin
    /// ends (a terminal stays).
    pub fn client_closed_stdin(&self) {
        if self.stdin_once && self.terminal.is_none() {
            self.stdin.lock().expect("stdin").take();
        }
    }
}

/// Sets a terminal's size through its master end.
pub fn resize(master: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

type Key = (PathBuf, String);

/// The attachable containers this process started, by runc root and id.
static ATTACHABLE: LazyLock<Mutex<HashMap<Key, Arc<Attachable>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The stdio of container `id` under `runc_root`, if this process holds it.
pub fn attachable(runc_root: &Path, id: &str) -> Option<Arc<Attachable>> {
    ATTACHABLE
        .lock()
        .expect("attachable")
        .get(&(runc_root.to_path_buf(), id.to_string()))
        .cloned()
}

/// Starts container `id` from `bundle` with the stdio it asks for, its
/// output ending up in `log`, and watches for its exit code
/// (`runtime::exits`); returns its pid.
pub async fn run(
    runc: &Runc,
    id: &str,
    bundle: &Path,
    log: &Path,
    wants: Wants,
) -> Result<i32, RuncError> {
    let pid = if wants.attachable() {
        run_attachable(runc, id, bundle, log, wants).await?
    } else {
        run_piped(runc, id, bundle, log).await?
    };
    super::exits::watch(&runc.root, id, pid);
    Ok(pid)
}

/// A container that is not attachable writes into two named pipes in its
/// bundle (`stdout.pipe`, `stderr.pipe`), opened read-write for it: it
/// holds a reader of its own, so its writes never fail for want of one,
/// and only block once the pipe is full. This process reads them into
/// the log ([`copy_into_log`]); a process that starts later adopts the
/// pipes of the containers still running ([`adopt`]).
async fn run_piped(runc: &Runc, id: &str, bundle: &Path, log: &Path) -> Result<i32, RuncError> {
    let failed = |m: String| runc.failed("run", id, m);
    let (out_w, out_r) = fifo(bundle, "stdout").map_err(|e| failed(e.to_string()))?;
    let (err_w, err_r) = fifo(bundle, "stderr").map_err(|e| failed(e.to_string()))?;
    let copying = copy_into_log(&runc.root, id, [out_r, err_r], log)
        .map_err(|e| failed(format!("opening log {}: {e}", log.display())))?;
    let started = runc
        .run_detached_with(
            id,
            bundle,
            Io::Passed([Stdio::null(), Stdio::from(out_w), Stdio::from(err_w)]),
        )
        .await;
    match started {
        Ok(pid) => Ok(pid),
        Err(e) => {
            // runc said why on its stderr: in the log once the copy ends.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), copying).await;
            Err(run_failed(e, log, failed))
        }
    }
}

/// Makes `<bundle>/<name>.pipe` afresh (a reader of an earlier run keeps
/// the old one) and opens it for the container (read-write) and for us
/// (read-only, non-blocking).
fn fifo(bundle: &Path, name: &str) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    let path = pipe_path(bundle, name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let open = |flags: OFlag| {
        nix::fcntl::open(
            &path,
            flags | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(std::io::Error::from)
    };
    let writer = open(OFlag::O_RDWR)?;
    let reader = open(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    Ok((writer, reader))
}

fn pipe_path(bundle: &Path, name: &str) -> PathBuf {
    bundle.join(format!("{name}.pipe"))
}

/// Containers whose pipes this process reads, by runc root and id, with
/// the number of the copy (a later run's copy replaces an earlier one).
static COPYING: LazyLock<Mutex<HashMap<Key, u64>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Copies a container's stdout and stderr pipes into its log as CRI
/// records until the container and everything it started let go of them.
fn copy_into_log(
    runc_root: &Path,
    id: &str,
    [stdout, stderr]: [OwnedFd; 2],
    log: &Path,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let file = super::runc::open_log(log)?;
    let pumps = [
        pump_into_log(stdout, "stdout", file.try_clone()?),
        pump_into_log(stderr, "stderr", file),
    ];
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let key = (runc_root.to_path_buf(), id.to_string());
    COPYING.lock().expect("copying").insert(key.clone(), run);
    Ok(tokio::spawn(async move {
        futures::future::join_all(pumps).await;
        let mut copying = COPYING.lock().expect("copying");
        if copying.get(&key) == Some(&run) {
            copying.remove(&key);
        }
    }))
}

/// Reads one pipe into the log until it ends.
async fn pump_into_log(fd: OwnedFd, stream: &'static str, file: std::fs::File) {
    use super::crilog::{stamp, Writer};
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut log = Writer::new(file, stream, false);
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        // Not kept across the wait: a thousand idle containers hold no buffer.
        let mut buf = [0u8; 32 * 1024];
        match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = log.write(&buf[..n], &stamp(chrono::Utc::now()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
}

/// Whether this process reads container `id`'s output already (it
/// started it, or adopted it).
pub fn read_here(runc_root: &Path, id: &str) -> bool {
    let key = (runc_root.to_path_buf(), id.to_string());
    COPYING.lock().expect("copying").contains_key(&key)
        || ATTACHABLE.lock().expect("attachable").contains_key(&key)
}

/// A container started by an earlier process of the lab, still running:
/// its pipes are read into its log again (no-op when this process reads
/// them already, or the container writes straight into its log as
/// containers started before netlab kept CRI logs did).
pub fn adopt(runc_root: &Path, id: &str, bundle: &Path, log: &Path) {
    use nix::fcntl::OFlag;
    if read_here(runc_root, id) {
        return;
    }
    let open = |name: &str| {
        nix::fcntl::open(
            &pipe_path(bundle, name),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
    };
    if let (Ok(out), Ok(err)) = (open("stdout"), open("stderr")) {
        if let Err(e) = copy_into_log(runc_root, id, [out, err], log) {
            tracing::warn!(container = id, error = %e, "reading its output again");
        }
    }
}

async fn run_attachable(
    runc: &Runc,
    id: &str,
    bundle: &Path,
    log: &Path,
    wants: Wants,
) -> Result<i32, RuncError> {
    let failed = |m: String| runc.failed("run", id, m);
    let io = |e: std::io::Error| failed(e.to_string());
    let log_file = super::runc::open_log(log)
        .map_err(|e| failed(format!("opening log {}: {e}", log.display())))?;
    let (ended_tx, ended) = watch::channel(false);
    let (output, _) = broadcast::channel(BACKLOG);
    let (attachable, readers) = if wants.tty {
        // runc makes the terminal and sends its master here. A path under
        // the lab's directory, short enough for a socket's name.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = runc.root.parent().unwrap_or(&runc.root);
        let socket = dir.join(format!("tty-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(io)?;
        let out = log_file.try_clone().map_err(io)?;
        let started = runc
            .run_detached_with(
                id,
                bundle,
                Io::Console {
                    socket: socket.clone(),
                    out,
                },
            )
            .await;
        let _ = std::fs::remove_file(&socket);
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => return Err(run_failed(e, log, failed)),
        };
        // runc sent the master before it returned: it waits in the socket.
        let master = match receive_fd(&listener) {
            Ok(m) => m,
            Err(e) => {
                // A container nobody could talk to: not left running.
                let _ = runc.delete_force(id).await;
                return Err(failed(format!(
                    "receiving the container's terminal from runc: {e}"
                )));
            }
        };
        let master = Arc::new(master);
        let reader = std::fs::File::from(master.try_clone().map_err(io)?);
        let stdin = wants
            .stdin
            .then(|| master.try_clone().map(std::fs::File::from))
            .transpose()
            .map_err(io)?;
        let readers = vec![copy(reader, Stream::Stdout, log_file, output.clone(), true)];
        let a = Attachable {
            terminal: Some(master),
            stdin: Mutex::new(stdin),
            stdin_once: wants.stdin_once,
            output,
            ended,
        };
        (a, (pid, readers))
    } else {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io(e.into()));
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // Copying before runc runs: its own complaint comes through stderr.
        let readers = vec![
            copy(
                std::fs::File::from(out_r),
                Stream::Stdout,
                log_file.try_clone().map_err(io)?,
                output.clone(),
                false,
            ),
            copy(
                std::fs::File::from(err_r),
                Stream::Stderr,
                log_file,
                output.clone(),
                false,
            ),
        ];
        let started = runc
            .run_detached_with(
                id,
                bundle,
                Io::Passed([Stdio::from(in_r), Stdio::from(out_w), Stdio::from(err_w)]),
            )
            .await;
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                // Nothing writes to the pipes any more: the copies end.
                let _ = tokio::task::spawn_blocking(move || {
                    readers.into_iter().for_each(|r| {
                        let _ = r.join();
                    })
                })
                .await;
                return Err(run_failed(e, log, failed));
            }
        };
        let a = Attachable {
            terminal: None,
            stdin: Mutex::new(Some(std::fs::File::from(in_w))),
            stdin_once: wants.stdin_once,
            output,
            ended,
        };
        (a, (pid, readers))
    };
    let (pid, readers) = readers;
    let a = Arc::new(attachable);
    let key = (runc.root.clone(), id.to_string());
    ATTACHABLE
        .lock()
        .expect("attachable")
        .insert(key.clone(), a.clone());
    std::thread::spawn(move || {
        for r in readers {
            let _ = r.join();
        }
        let mut held = ATTACHABLE.lock().expect("attachable");
        if held.get(&key).is_some_and(|b| Arc::ptr_eq(b, &a)) {
            held.remove(&key);
        }
        drop(held);
        let _ = ended_tx.send(true);
    });
    Ok(pid)
}

/// The error of a failed start, with the end of the log (where runc said
/// why) when runc itself failed.
fn run_failed(e: RunFailed, log: &Path, failed: impl Fn(String) -> RuncError) -> RuncError {
    match e {
        RunFailed::Runc(e) => e,
        RunFailed::Exited(status) => failed(format!(
            "exited with {status}: {}",
            super::runc::log_tail(log)
        )),
    }
}

/// A thread copying `from` into `log` (as CRI records) and to the clients.
fn copy(
    from: std::fs::File,
    stream: Stream,
    log: std::fs::File,
    to: broadcast::Sender<(Stream, Bytes)>,
    terminal: bool,
) -> std::thread::JoinHandle<()> {
    use super::crilog::{stamp, Writer};
    let name = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    // What the stream did not end is recorded when the writer goes.
    let mut log = Writer::new(log, name, terminal);
    pump(from, move |chunk| {
        let _ = log.write(chunk, &stamp(chrono::Utc::now()));
        // No client attached is no error.
        let _ = to.send((stream, Bytes::copy_from_slice(chunk)));
    })
}

/// A thread reading `from` until its end (or EIO: a terminal whose other
/// side is closed), handing each chunk to `chunk`.
pub fn pump(
    mut from: impl Read + Send + 'static,
    mut chunk: impl FnMut(&[u8]) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => chunk(&buf[..n]),
            }
        }
    })
}

/// Accepts runc's connection on `listener` and receives the file
/// descriptor it sent (`SCM_RIGHTS`).
fn receive_fd(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    listener.set_nonblocking(true)?;
    let (conn, _) = listener.accept()?;
    conn.set_nonblocking(false)?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("runc sent no file descriptor"))
}
