//! What a stream talks to: a command run in a container for `pods/exec`
//! (`runc exec`, with pipes, or with a terminal: a pty whose master the
//! lab's process holds; runc, on the other side, makes the container's
//! own terminal and copies between the two, resizing it when ours is
//! resized), or, for `pods/attach`, a container's own stdio, which the
//! lab's process holds (`runtime::stdio`).
//!
//! Blocking reads and writes run on their own threads and meet the
//! async side in channels: the stream (WebSocket) is the async part.

use super::channel::{STDERR, STDOUT};
use crate::runtime::stdio;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What is run, and which streams the client wants.
#[derive(Debug, Clone)]
pub struct Spec {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A running command.
pub struct Running {
    /// Output as it comes, tagged with its channel (stdout, stderr); ends
    /// when the command and everything it started closed their output.
    pub output: mpsc::Receiver<(u8, Vec<u8>)>,
    /// Bytes for its stdin; dropping it closes stdin (without a terminal).
    pub stdin: Option<Stdin>,
    /// Its exit code (as a shell gives it), once it has exited.
    pub exit: oneshot::Receiver<i32>,
    terminal: Option<Arc<OwnedFd>>,
    /// The runc process of an exec, hung up on when the client goes away;
    /// none for an attach (the container goes on).
    pid: Option<u32>,
}

/// Chunks of a client's stdin that wait for the command to read them.
/// Bounded, as the kubelet's streams are: a command that does not read
/// holds the client back (its session stops reading frames, then TCP
/// does) rather than growing the lab's memory.
const STDIN_CHUNKS: usize = 16;

/// A command's stdin, as the sessions feed it.
pub struct Stdin {
    tx: mpsc::Sender<Vec<u8>>,
    /// A chunk the queue had no room for: the session reads nothing more
    /// from its client until `room` has passed it on.
    waiting: Option<Vec<u8>>,
}

impl Stdin {
    /// A stdin, and the end the writer thread reads.
    fn new() -> (Stdin, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(STDIN_CHUNKS);
        (Stdin { tx, waiting: None }, rx)
    }

    /// Queues `data`, or keeps it waiting when the queue is full.
    pub fn send(&mut self, data: Vec<u8>) {
        if let Some(w) = &mut self.waiting {
            w.extend(data);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(d)) = self.tx.try_send(data) {
            self.waiting = Some(d);
        }
    }

    /// Whether a chunk waits: stop reading the client.
    pub fn full(&self) -> bool {
        self.waiting.is_some()
    }

    /// Passes the waiting chunk on once there is room (cancel-safe: a
    /// cancelled wait keeps the chunk).
    pub async fn room(&mut self) {
        let Ok(permit) = self.tx.clone().reserve_owned().await else {
            self.waiting = None; // the command's stdin has closed
            return;
        };
        if let Some(d) = self.waiting.take() {
            permit.send(d);
        }
    }
}

/// Waits for room for `stdin`'s waiting chunk (for a session's select).
pub async fn room(stdin: &mut Option<Stdin>) {
    match stdin {
        Some(s) => s.room().await,
        None => std::future::pending().await,
    }
}

impl Running {
    /// Resizes the terminal (nothing without one).
    pub fn resize(&self, width: u16, height: u16) {
        if let Some(master) = &self.terminal {
            stdio::resize(master, width, height);
        }
    }

    /// The client went away: an attached container goes on; an exec'd
    /// command is hung up on as a closed terminal does (runc passes the
    /// signal on to the command), and what it still writes is drained so
    /// that it is not blocked on a full pipe, until it has exited.
    pub async fn abandon(mut self) {
        let Some(pid) = self.pid else { return };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        );
        self.stdin = None;
        while self.output.recv().await.is_some() {}
        let _ = self.exit.await;
    }
}

/// How much of the command's output is kept to read runc's own
/// complaint from (a command that could not be started).
const TAIL: usize = 1024;

/// Starts `spec.command` in container `id` of the lab whose runc state is
/// under `runc_root`.
pub fn start(runc_root: &std::path::Path, id: &str, spec: &Spec) -> std::io::Result<Running> {
    let mut cmd = crate::runtime::Runc::new(runc_root).exec_command(id, &spec.command, spec.tty);
    let (tx, output) = mpsc::channel(16);
    let tail = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    let (stdin, terminal, child) = if spec.tty {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // runc's terminal: its own session, the pty as its
                // controlling terminal, so a resize reaches it as SIGWINCH.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(cmd); // the parent's copies of the slave: reads end when runc's end
        let master = Arc::new(pty.master);
        let reader = std::fs::File::from(master.try_clone()?);
        readers.push(read_into(reader, Some(STDOUT), tx.clone(), tail.clone()));
        let stdin = spec.stdin.then(|| {
            let writer = std::fs::File::from(master.try_clone().expect("dup of the pty"));
            write_from(writer)
        });
        (stdin, Some(master), child)
    } else {
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        // A stream the client did not ask for is read all the same (the
        // command must not block on it), and dropped.
        readers.push(read_into(
            out,
            spec.stdout.then_some(STDOUT),
            tx.clone(),
            Arc::new(Mutex::new(Vec::new())),
        ));
        readers.push(read_into(
            err,
            spec.stderr.then_some(STDERR),
            tx.clone(),
            tail.clone(),
        ));
        let stdin = child.stdin.take().map(write_from);
        (stdin, None, child)
    };
    drop(tx);
    let pid = child.id();
    let (done, exit) = oneshot::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let status = child.wait();
        for r in readers {
            let _ = r.join();
        }
        let tail = String::from_utf8_lossy(&tail.lock().expect("tail")).into_owned();
        let code = match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                exit_code(s.code().or_else(|| s.signal().map(|n| 128 + n)), &tail)
            }
            Err(_) => 1,
        };
        let _ = done.send(code);
    });
    Ok(Running {
        output,
        stdin,
        exit,
        terminal,
        pid: Some(pid),
    })
}

/// A client attached to a container's own stdio, with the streams `spec`
/// asks for; its "exit" comes when the container's output ends, always 0
/// (as the kubelet's attach reports success: the exit code is the pod's).
pub fn attach(container: Arc<stdio::Attachable>, spec: &Spec) -> Running {
    let (tx, output) = mpsc::channel(16);
    let (done, exit) = oneshot::channel();
    let (mut from, mut ended) = container.subscribe();
    let (stdout, stderr) = (spec.stdout, spec.stderr);
    tokio::spawn(async move {
        let wanted = |s: stdio::Stream| match s {
            stdio::Stream::Stdout => stdout.then_some(STDOUT),
            stdio::Stream::Stderr => stderr.then_some(STDERR),
        };
        loop {
            let chunk = tokio::select! {
                biased;
                c = from.recv() => match c {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = async { let _ = ended.wait_for(|e| *e).await; } => {
                    // What came before the end is still to be sent.
                    while let Ok((s, b)) = from.try_recv() {
                        if let Some(ch) = wanted(s) {
                            let _ = tx.send((ch, b.to_vec())).await;
                        }
                    }
                    break;
                }
                _ = tx.closed() => return, // the client went away
            };
            if let Some(ch) = wanted(chunk.0) {
                if tx.send((ch, chunk.1.to_vec())).await.is_err() {
                    return;
                }
            }
        }
        drop(tx);
        let _ = done.send(0);
    });
    let stdin = spec.stdin.then(|| {
        let (tx, mut rx) = Stdin::new();
        let c = container.clone();
        std::thread::spawn(move || {
            while let Some(chunk) = rx.blocking_recv() {
                if c.write_stdin(&chunk).is_err() {
                    break;
                }
            }
            // This client let go of stdin (or its session ended).
            c.client_closed_stdin();
        });
        tx
    });
    Running {
        output,
        stdin,
        exit,
        terminal: container.terminal(),
        pid: None,
    }
}

/// A client attached to a container started without stdin or a terminal,
/// whose output is copied into its log line by line: what the log gains
/// from now on, as stdout, until the container (process `pid`) has
/// exited. Its "exit" is 0, as [`attach`]'s.
pub fn follow(log: std::path::PathBuf, pid: i32, stdout: bool) -> Running {
    let (tx, output) = mpsc::channel(16);
    let (done, exit) = oneshot::channel();
    tokio::spawn(async move {
        let mut follower = crate::runtime::logs::Follower::from_end(log, Default::default());
        loop {
            tokio::select! {
                _ = follower.wait() => {}
                _ = tx.closed() => return, // the client went away
            }
            // Looked at before reading: what it wrote before it died is read.
            let alive = crate::runtime::runc::process_alive(pid);
            let text = follower.read();
            if stdout && !text.is_empty() && tx.send((STDOUT, text)).await.is_err() {
                return;
            }
            if !alive {
                break;
            }
        }
        drop(tx);
        let _ = done.send(0);
    });
    Running {
        output,
        stdin: None,
        exit,
        terminal: None,
        pid: None,
    }
}

/// Reads `from` until its end (or EIO: a pty whose other side closed),
/// sending each chunk on `channel` (if there is one); keeps the last bytes
/// in `tail`.
fn read_into(
    from: impl Read + Send + 'static,
    channel: Option<u8>,
    tx: mpsc::Sender<(u8, Vec<u8>)>,
    tail: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    stdio::pump(from, move |chunk| {
        {
            let mut t = tail.lock().expect("tail");
            t.extend_from_slice(chunk);
            let excess = t.len().saturating_sub(TAIL);
            t.drain(..excess);
        }
        // A client that went away: keep draining, so the command is not
        // blocked on a full pipe.
        if let Some(channel) = channel {
            let _ = tx.blocking_send((channel, chunk.to_vec()));
        }
    })
}

/// A thread writing what arrives to `to`; the sender's drop closes it.
fn write_from(mut to: impl Write + Send + 'static) -> Stdin {
    let (tx, mut rx) = Stdin::new();
    std::thread::spawn(move || {
        while let Some(chunk) = rx.blocking_recv() {
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    tx
}

/// The exit code a user expects, as a shell (and kubectl) gives it: runc
/// exits 255 when the command cannot be started at all, where a shell says
/// 127 (not found) or 126 (found, not executable).
pub fn exit_code(code: Option<i32>, stderr_tail: &str) -> i32 {
    match code {
        Some(255) if stderr_tail.contains("exec failed") || stderr_tail.contains("exec:") => {
            if stderr_tail.contains("permission denied") {
                126
            } else if stderr_tail.contains("not found") || stderr_tail.contains("no such file") {
                127
            } else {
                255
            }
        }
        Some(c) => c,
        None => 128 + 9, // killed, and how is not known
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn exit_codes_as_a_shell_gives_them() {
        let cases = [
            (Some(0), "", 0),
            (Some(3), "", 3),
            (Some(255), "", 255),
            (Some(255), "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH", 127),
            (Some(255), "exec failed: unable to start container process: exec: \"/x/y\": stat /x/y: no such file or directory", 127),
            (Some(255), "exec failed: unable to start container process: exec: \"/etc/hosts\": permission denied", 126),
            (None, "", 137),
        ];
        for (code, tail, want) in cases {
            assert_eq!(exit_code(code, tail), want, "{code:?} {tail}");
        }
    }
}
