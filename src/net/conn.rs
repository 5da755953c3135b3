//! One rtnetlink connection per namespace we configure.
//!
//! A netlink socket talks to the namespace it was *created* in, not to the
//! namespace of whichever thread later uses it. So the socket is created by
//! a thread that is inside the target namespace for a moment, and only then
//! registered with the tokio reactor, its connection task spawned on the
//! current runtime:
//! * existing namespaces (dc, nodes, `remove_pod`): the current thread hops
//!   in and back ([`NetNs::hop`]), no extra thread;
//! * new pod namespaces: the netns factory thread opens the socket while it
//!   is still inside the namespace it just created (`NetNsFactory`).

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
        let sock = ns.hop(new_socket)?;
        Conn::with_socket(ns, sock)
    }

    /// A connection to the host's own namespace, for host access only
    /// (`public.rs`): every other configuration goes through [`NetNs::hop`],
    /// which refuses the host's namespace. The socket is made in this
    /// process's namespace, without entering any.
    pub(crate) fn host() -> Result<Conn, NetError> {
        let root = NetNs::root()?;
        let sock = new_socket()
            .map_err(|e| NetError::os("opening netlink socket in", "the host's netns", e))?;
        Conn::with_socket(&root, sock)
    }

    /// Wrap a socket already created inside `ns` (see [`new_socket`]).
    pub(crate) fn with_socket(ns: &NetNs, sock: Socket) -> Result<Conn, NetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NetError::os(
                "opening netlink socket in",
                ns.what(),
                std::io::Error::other("not called from within a tokio runtime"),
            ));
        }
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

/// A NETLINK_ROUTE socket in the calling thread's current namespace.
pub(crate) fn new_socket() -> std::io::Result<Socket> {
    Socket::new(NETLINK_ROUTE)
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Close the socket now rather than whenever the task notices the
        // handle is gone: an open socket pins its namespace in the kernel.
        self.task.abort();
    }
}
