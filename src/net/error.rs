//! The one error type of the network layer.
//!
//! Every failure names the operation and the object it was applied to, in
//! words an operator can act on, e.g.
//! `creating veth vethab12cd34 in netns netlab-x.node.node-1: File exists (os error 17)`.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A syscall or a netlink request failed.
    #[error("{op} {object}: {source}")]
    Os {
        /// What we were doing, e.g. "creating veth".
        op: &'static str,
        /// What we were doing it to, e.g. "vethab12cd34 in netns netlab-x.node.node-1".
        object: String,
        #[source]
        source: io::Error,
    },

    /// The plan is inconsistent; detected before anything was touched.
    #[error("invalid network plan: {0}")]
    InvalidPlan(String),

    /// A safety guard stopped us (e.g. a namespace we did not create, or the
    /// host's own network namespace).
    #[error("refusing to {op} {object}: {reason}")]
    Refused {
        op: &'static str,
        object: String,
        reason: String,
    },
}

impl NetError {
    pub(crate) fn os(op: &'static str, object: impl Into<String>, source: io::Error) -> Self {
        NetError::Os {
            op,
            object: object.into(),
            source,
        }
    }

    pub(crate) fn nl(
        op: &'static str,
        object: impl Into<String>,
        source: rtnetlink::Error,
    ) -> Self {
        NetError::os(op, object, nl_to_io(source))
    }

    pub(crate) fn refused(
        op: &'static str,
        object: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NetError::Refused {
            op,
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// The kernel's errno behind this error, if there is one (e.g. `libc::EEXIST`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True if the kernel said the object already exists.
    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// Netlink NACKs carry a negative errno; turn them into a plain `io::Error` so
/// that messages read "File exists" rather than a debug dump of the request.
pub(crate) fn nl_to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(ref msg) if msg.code.is_some() => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

pub(crate) fn nix_to_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}
