//! The one error type of the proxy layer. Every variant names the node's
//! namespace and what was being done; nft failures also quote nft's own
//! message, the offending lines of the transaction, and the services those
//! lines belong to.

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

    /// `nft` could not be started or talked to.
    #[error(
        "{op} in node netns {netns}: running nft: {source} (is the nftables package installed?)"
    )]
    Spawn {
        op: &'static str,
        netns: String,
        #[source]
        source: io::Error,
    },

    /// nft refused the transaction; nothing of it was applied.
    #[error("{op} in node netns {netns}: nft failed{}: {stderr}{}", services_note(.services), offending_note(.offending))]
    Nft {
        op: &'static str,
        netns: String,
        /// nft's stderr, trimmed.
        stderr: String,
        /// The lines nft pointed at, as `line N: <text>`.
        offending: Vec<String>,
        /// Services (`namespace/name`) named by the offending lines.
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
        format!("\noffending transaction lines:\n  {}", lines.join("\n  "))
    }
}
