//! The one error type of the proxy layer. Every variant names the node's
//! namespace and what was being done; a refused transaction also quotes
//! the kernel's error, the offending commands (in nft's syntax), and the
//! services they belong to.

use std::io;
use std::path::PathBuf;

use crate::net::NetError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The node's namespace could not be opened or configured.
    #[error("{op} for node netns {netns}: {source}")]
    Netns {
        op: &'static str,
        netns: String,
        #[source]
        source: NetError,
    },

    /// The nf_tables netlink socket could not be opened or talked to.
    #[error("{op} in node netns {netns}: nf_tables netlink: {source}")]
    Netlink {
        op: &'static str,
        netns: String,
        #[source]
        source: io::Error,
    },

    /// The kernel refused the transaction; nothing of it was applied.
    #[error("{op} in node netns {netns}: the kernel refused the nftables transaction{}: {reason}{}", services_note(.services), offending_note(.offending))]
    Kernel {
        op: &'static str,
        netns: String,
        /// The errors, e.g. "No such file or directory (os error 2)".
        reason: String,
        /// The commands the kernel pointed at, as `command N: <nft text>: <error>`.
        offending: Vec<String>,
        /// Services (`namespace/name`) named by the offending commands.
        services: Vec<String>,
    },

    /// Reading or writing the state file with the last applied ruleset.
    #[error("{op} proxy state file {} (node netns {netns}): {source}", path.display())]
    State {
        op: &'static str,
        netns: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn services_note(services: &[String]) -> String {
    if services.is_empty() {
        String::new()
    } else {
        format!(" (service {})", services.join(", "))
    }
}

fn offending_note(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("\noffending commands:\n  {}", lines.join("\n  "))
    }
}
