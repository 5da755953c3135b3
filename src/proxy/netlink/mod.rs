//! The only place in netlab that speaks nf_tables netlink.
//!
//! A [`Transaction`] is encoded (`encode.rs`, framing in `tlv.rs`) into one
//! nfnetlink batch (`BATCH_BEGIN`, the messages, `BATCH_END`) and sent on a
//! `NETLINK_NETFILTER` socket opened inside the node's network namespace:
//! the kernel applies the whole batch or nothing of it.
//!
//! Why not run `nft -f`: nft first dumps the kernel's ruleset into its
//! cache, every time. With 10 000 services loaded that alone costs ~100 ms,
//! whatever the size of the change; here a one-endpoint change is a few
//! hundred bytes and one system call.
//!
//! Replies: the kernel processes a batch while `send` runs and queues its
//! answers before `send` returns. It reports every failed message (by its
//! sequence number, with the offending attribute's offset as an extended
//! ack), and we ask for one acknowledgement, of the last message, so that
//! success is something we see rather than the absence of an error.

mod encode;
pub mod tlv;
pub mod trace;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error::ProxyError;
use super::ruleset::Transaction;
use crate::net::NetNs;

pub use encode::{batch, Batch, Message};

const NETLINK_NETFILTER: libc::c_int = 12;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Apply `tx` inside `ns`, as one atomic batch.
pub async fn apply(ns: &NetNs, tx: &Transaction<'_>) -> Result<(), ProxyError> {
    apply_as(ns, "applying nftables transaction", tx).await
}

/// [`apply`], naming the operation (`"full sync"`, ...) in errors.
pub(crate) async fn apply_as(
    ns: &NetNs,
    op: &'static str,
    tx: &Transaction<'_>,
) -> Result<(), ProxyError> {
    if tx.is_empty() {
        return Ok(());
    }
    let (id, sock) = take_socket(ns, op)?;
    let batch = batch(tx, 1);
    // A big batch keeps the kernel busy for most of a second: not on a
    // runtime worker. A small one is quicker done than handed over.
    let (batch, sock, res) = if batch.bytes.len() > 256 * 1024 {
        tokio::task::spawn_blocking(move || {
            let res = sock.send_batch(&batch.bytes, batch.last_seq);
            (batch, sock, res)
        })
        .await
        .map_err(|e| ProxyError::Netlink {
            op,
            netns: ns.name().to_string(),
            source: io::Error::other(e),
        })?
    } else {
        let res = sock.send_batch(&batch.bytes, batch.last_seq);
        (batch, sock, res)
    };
    // A socket that answered is good for the next batch; one that failed
    // (a timeout, say) may still hold a late reply.
    if res.is_ok() {
        put_back(id, sock);
    } else {
        close_later(sock);
    }
    match res {
        Ok(errors) if errors.is_empty() => Ok(()),
        Ok(errors) => Err(kernel_error(ns, op, tx, &batch, &errors)),
        Err(source) => Err(ProxyError::Netlink {
            op,
            netns: ns.name().to_string(),
            source,
        }),
    }
}

/// An error the kernel answered to one of our messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub seq: u32,
    pub errno: i32,
    pub msg: Option<String>,
    pub offset: Option<u32>,
}

fn kernel_error(
    ns: &NetNs,
    op: &'static str,
    tx: &Transaction<'_>,
    batch: &Batch,
    errors: &[Refusal],
) -> ProxyError {
    let mut offending = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for e in errors {
        let mut reason = io::Error::from_raw_os_error(e.errno).to_string();
        if let Some(m) = &e.msg {
            reason = format!("{reason} ({m})");
        }
        if !reasons.contains(&reason) {
            reasons.push(reason.clone());
        }
        match batch.op_of(e.seq, e.offset) {
            Some(ops) => {
                for i in ops {
                    offending.push(format!("command {}: {}: {reason}", i + 1, tx.command(i)));
                }
            }
            // The batch as a whole (its commit) failed.
            None => offending.push(format!("the whole transaction: {reason}")),
        }
    }
    let services = services_in(&offending);
    ProxyError::Kernel {
        op,
        netns: ns.name().to_string(),
        reason: reasons.join("; "),
        offending,
        services,
    }
}

/// The services (`namespace/name`) whose objects the lines mention: every
/// per-service object name is `<kind>-<hash>-<namespace>/<name>/...`.
fn services_in(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in lines.iter().flat_map(|l| l.split_whitespace()) {
        let word = word.trim_start_matches('@').trim_end_matches(':');
        let kinds = ["service-", "external-", "local-", "endpoint-", "affinity-"];
        let Some(rest) = kinds.iter().find_map(|k| word.strip_prefix(k)) else {
            continue;
        };
        let Some((hash, readable)) = rest.split_once('-') else {
            continue;
        };
        if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let mut parts = readable.split('/');
        if let (Some(ns), Some(name)) = (parts.next(), parts.next()) {
            let svc = format!("{ns}/{name}");
            if !out.contains(&svc) {
                out.push(svc);
            }
        }
    }
    out
}

/// Sockets are kept open between batches, a short while.
///
/// Closing an nf_tables socket makes the kernel finish freeing what
/// earlier commits replaced (`nft_rcv_nl_event` flushes the destroy work,
/// which waits for an RCU grace period) while it holds the namespace's
/// commit mutex: 4 to 16 ms here, during which the next batch for that
/// namespace waits too. So a socket stays open for the next batch to the
/// same namespace, and is closed on a thread of its own once it has been
/// idle for [`KEEP_IDLE`] (a socket keeps its namespace alive: not long).
const KEEP_IDLE: Duration = Duration::from_millis(250);

type NsId = (u64, u64);

struct Idle {
    id: NsId,
    sock: Socket,
    since: Instant,
}

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();

/// The open socket of `ns`, or a new one.
fn take_socket(ns: &NetNs, op: &'static str) -> Result<(NsId, Socket), ProxyError> {
    let id = ns.id().map_err(|source| ProxyError::Netlink {
        op,
        netns: ns.name().to_string(),
        source,
    })?;
    let cached = {
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter()
            .position(|i| i.id == id)
            .map(|at| idle.swap_remove(at).sock)
    };
    match cached {
        Some(sock) => Ok((id, sock)),
        None => Ok((id, Socket::open(ns, op)?)),
    }
}

fn put_back(id: NsId, sock: Socket) {
    park(id, sock, Instant::now());
}

/// Hand `sock` to the reaper, idle since `since`.
fn park(id: NsId, sock: Socket, since: Instant) {
    static REAPER: OnceLock<bool> = OnceLock::new();
    let running = *REAPER.get_or_init(|| {
        std::thread::Builder::new()
            .name("nft-sockets".into())
            .spawn(reap)
            .is_ok()
    });
    if !running {
        // No thread: close here, slowly.
        return drop(sock);
    }
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    idle.push(Idle { id, sock, since });
    WAKE.notify_one();
}

/// Close the sockets idle for long enough, forever.
fn reap() {
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let (stale, fresh): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|i| now.duration_since(i.since) >= KEEP_IDLE);
        *idle = fresh;
        if !stale.is_empty() {
            drop(idle);
            drop(stale); // slow: outside the lock
            idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        idle = if idle.is_empty() {
            WAKE.wait(idle).unwrap_or_else(|e| e.into_inner())
        } else {
            WAKE.wait_timeout(idle, KEEP_IDLE)
                .unwrap_or_else(|e| e.into_inner())
                .0
        };
    }
}

/// Close the kept socket of `ns`, if any, now (on the reaper's side): for
/// a namespace about to go away.
pub(crate) fn forget(ns: &NetNs) {
    let Ok(id) = ns.id() else {
        return;
    };
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    for i in idle.iter_mut().filter(|i| i.id == id) {
        i.since = Instant::now() - KEEP_IDLE;
    }
    WAKE.notify_one();
}

/// Close `sock` on the reaper's thread.
fn close_later(sock: Socket) {
    // An identity no namespace has: nobody takes it back.
    park((u64::MAX, u64::MAX), sock, Instant::now() - KEEP_IDLE);
}

/// A new `NETLINK_NETFILTER` socket in `ns` (`flags`: more socket type
/// flags, e.g. `SOCK_NONBLOCK`). `hop` refuses the host's own namespace:
/// a table there would filter the host's traffic.
pub(crate) fn netfilter_socket(
    ns: &NetNs,
    flags: libc::c_int,
) -> Result<OwnedFd, crate::net::NetError> {
    ns.hop(|| {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// A `NETLINK_NETFILTER` socket of one namespace.
struct Socket(OwnedFd);

impl Socket {
    fn open(ns: &NetNs, op: &'static str) -> Result<Socket, ProxyError> {
        // `hop` refuses the host's own namespace: a table there would
        // filter the host's traffic.
        let fd = netfilter_socket(ns, 0).map_err(|source| ProxyError::Netns {
            op,
            netns: ns.name().to_string(),
            source,
        })?;
        let s = Socket(fd);
        // Errors quote only our header, not the whole message; and say
        // which attribute they object to.
        let on: libc::c_int = 1;
        let _ = s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, on);
        let _ = s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, on);
        // Room for many error replies.
        let _ = s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
        let tv = libc::timeval {
            tv_sec: 30,
            tv_usec: 0,
        };
        s.setsockopt_raw(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|source| ProxyError::Netlink {
                op,
                netns: ns.name().to_string(),
                source,
            })?;
        Ok(s)
    }

    fn setsockopt(&self, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
        self.setsockopt_raw(level, name, &v)
    }

    fn setsockopt_raw<T>(&self, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` points to a live T of the size we pass.
        let rc = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Send the batch in one datagram (the kernel requires a batch to be
    /// one), then read what the kernel said: the errors, empty if it
    /// applied the batch.
    fn send_batch(&self, bytes: &[u8], last_seq: u32) -> io::Result<Vec<Refusal>> {
        // The send buffer must hold the whole batch (root may raise it).
        let want = (bytes.len() + 4096).min(i32::MAX as usize) as libc::c_int;
        if bytes.len() > 200_000 {
            self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, want)?;
        }
        // SAFETY: sending from a live slice.
        let n = unsafe { libc::send(self.0.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut errors = Vec::new();
        let mut acked = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut wait = true;
        loop {
            let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
            // SAFETY: receiving into a live buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock if !wait => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            for r in tlv::parse_replies(&buf[..n as usize]) {
                if r.ty != tlv::NLMSG_ERROR {
                    continue;
                }
                if r.error == 0 {
                    acked |= r.seq == last_seq;
                } else {
                    errors.push(Refusal {
                        seq: r.seq,
                        errno: -r.error,
                        msg: r.msg,
                        offset: r.offset,
                    });
                }
            }
            // Everything the kernel had to say was queued during send():
            // once the ack or an error is here, take the rest without
            // waiting.
            wait = !acked && errors.is_empty();
        }
        if errors.is_empty() && !acked {
            return Err(io::Error::other(
                "the kernel neither acknowledged nor refused the batch",
            ));
        }
        Ok(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_by_object_names() {
        let lines = ["command 3: add rule ip netlab service-0123abcd-default/web/tcp/http goto nosuch: No such file or directory (os error 2)".to_string()];
        assert_eq!(services_in(&lines), ["default/web"]);
        assert!(
            services_in(&["command 1: add chain ip netlab service-endpoints-check".into()])
                .is_empty()
        );
    }
}
