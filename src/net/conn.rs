//! One rtnetlink connection per namespace we configure.
//!
//! A netlink socket talks to the namespace it was *created* in, not to the
//! namespace of whichever thread later uses it. So we create the socket with
//! the current thread briefly hopped into the target namespace
//! ([`NetNs::hop`]), hop back, and only then register it with the tokio
//! reactor and spawn its connection task on the current runtime. No extra
//! thread is involved.

use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, TokioSocket};
use rtnetlink::Handle;
use std::os::fd::{FromRawFd, IntoRawFd};

use super::error::NetError;
use super::netns::NetNs;

pub(crate) struct Conn {
    pub(crate) handle: Handle,
    netns: String,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    pub(crate) fn open(ns: &NetNs) -> Result<Conn, NetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NetError::os(
                "opening netlink socket in",
                ns.what(),
                std::io::Error::other("not called from within a tokio runtime"),
            ));
        }
        let sock = ns.hop(|| Socket::new(NETLINK_ROUTE))?;
        // SAFETY: the fd comes straight from a freshly created netlink socket
        // whose ownership we hand over.
        let sock = unsafe { TokioSocket::from_raw_fd(sock.into_raw_fd()) };
        let (conn, handle, _unsolicited) = rtnetlink::from_socket(sock);
        let task = tokio::spawn(conn);
        Ok(Conn {
            handle,
            netns: ns.name().to_string(),
            task,
        })
    }

    /// Name of the namespace this connection configures (for messages).
    pub(crate) fn netns(&self) -> &str {
        &self.netns
    }

    /// "<kind> <name> in netns <ns>" — the object part of error messages.
    pub(crate) fn obj(&self, kind: &str, name: impl std::fmt::Display) -> String {
        format!("{kind} {name} in netns {}", self.netns)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Close the socket now rather than whenever the task notices the
        // handle is gone: an open socket pins its namespace in the kernel.
        self.task.abort();
    }
}
