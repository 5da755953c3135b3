//! The service proxy: kube-proxy's nftables mode, one `ip netlab` table per
//! node, in the node's network namespace.
//!
//! * [`model`]: the input (services, endpoints, the node), pure data;
//! * [`rules`]: `ruleset(node, services)`, the desired table, pure;
//! * [`ruleset`]: the table as data, rendered whole or diffed into one
//!   atomic transaction of only what changed;
//! * [`nft`]: the only code that runs `nft`;
//! * here: [`Proxier`], which remembers per node what was applied last (in
//!   memory and in a JSON state file, so that a later netlab process diffs
//!   instead of rewriting) and applies the difference.
//!
//! Outside the table, services need three things of the node namespace:
//! * `net.bridge.bridge-nf-call-iptables=1`, set here on every full sync
//!   (see [`Proxier::sync`]);
//! * hairpin mode on each pod's bridge port, for a pod reaching itself
//!   through a service (the network layer sets it);
//! * a route covering the service CIDR (a real node has a default route).
//!   Without one, the node's own connections to a cluster IP fail in
//!   routing (ENETUNREACH) before nat-output can DNAT them, and a pod's
//!   packet to a cluster IP without endpoints dies in routing (ICMP host
//!   unreachable) instead of reaching filter-forward's reject. Where it
//!   points does not matter much: every cluster IP is DNATed, rejected or
//!   dropped before it would leave.
//!
//! Established connections keep the endpoint conntrack chose for them when
//! rules change: removing an endpoint breaks no open TCP connection to the
//! others, but a UDP "connection" (same client address and port) keeps
//! going to the removed endpoint until its conntrack entry expires.
//! kube-proxy deletes those entries; netlab does not yet.

pub mod error;
pub mod model;
pub mod nft;
pub mod rules;
pub mod ruleset;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::{sysctl, NetNs};

pub use error::ProxyError;
pub use model::{Endpoint, Node, Protocol, Service, ServicePort};
pub use rules::ruleset;
pub use ruleset::{diff, Changes, Ruleset, Transaction};

/// Format version of the state file; a file with another version is
/// ignored (and the table rewritten).
const STATE_VERSION: u32 = 1;

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was (re)created, rather than diffed.
    pub full: bool,
    /// nft commands sent (0: nothing had changed, nft was not run).
    pub commands: usize,
    pub changes: Changes,
    /// Computing the transaction.
    pub diff_time: Duration,
    /// Running nft.
    pub nft_time: Duration,
    /// Writing the state file.
    pub persist_time: Duration,
}

/// One node's proxy: its namespace, its state file, and the ruleset last
/// applied there (None: unknown, the next sync rewrites the whole table).
#[derive(Debug)]
pub struct Proxier {
    netns: String,
    state_file: PathBuf,
    applied: Option<Ruleset>,
}

#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    netns: String,
    ruleset: Ruleset,
}

impl Proxier {
    /// A proxier for `node_netns` that remembers what it applied in
    /// `state_file`, starting from what an earlier process recorded there.
    /// A missing, unreadable or foreign file only means the next sync
    /// rewrites the whole table; other I/O errors are returned.
    pub fn load(node_netns: &str, state_file: &Path) -> Result<Proxier, ProxyError> {
        let applied = match std::fs::read(state_file) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(s) if s.version == STATE_VERSION && s.netns == node_netns => Some(s.ruleset),
                Ok(_) => {
                    tracing::warn!(file = %state_file.display(), netns = node_netns,
                        "proxy state file is for another version or namespace; rewriting the table");
                    None
                }
                Err(e) => {
                    tracing::warn!(file = %state_file.display(), netns = node_netns, error = %e,
                        "proxy state file is corrupt; rewriting the table");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ProxyError::State {
                    op: "reading",
                    netns: node_netns.to_string(),
                    path: state_file.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Proxier {
            netns: node_netns.to_string(),
            state_file: state_file.to_path_buf(),
            applied,
        })
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The ruleset the table holds, as far as this proxier knows.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// Make the node's table `desired`: the whole table the first time,
    /// afterwards one transaction of only what changed (nothing at all if
    /// nothing did). If a diff is refused (the table was removed or changed
    /// behind our back, e.g. the namespace was re-created), the whole table
    /// is rewritten once. The state file is written after success.
    pub async fn sync(&mut self, desired: Ruleset) -> Result<SyncStats, ProxyError> {
        let ns = self.open("opening")?;
        let mut stats = SyncStats::default();
        // Say it once, not on every sync.
        if self.applied.as_ref().map(|a| &a.warnings) != Some(&desired.warnings) {
            for w in &desired.warnings {
                tracing::warn!(netns = %self.netns, "{w}");
            }
        }

        if let Some(old) = &self.applied {
            let start = Instant::now();
            let tx = diff(old, &desired);
            stats.diff_time = start.elapsed();
            stats.commands = tx.commands();
            stats.changes = tx.changes;
            if tx.is_empty() {
                return Ok(stats);
            }
            let start = Instant::now();
            let res = nft::apply_as(&ns, "incremental sync", &tx.text).await;
            stats.nft_time = start.elapsed();
            match res {
                Ok(()) => {
                    self.applied = Some(desired);
                    stats.persist_time = self.persist()?;
                    return Ok(stats);
                }
                Err(e) => {
                    tracing::warn!(netns = %self.netns, error = %e,
                        "incremental proxy sync failed; rewriting the whole table");
                    self.applied = None;
                }
            }
        }

        // Pods of one node share the cni0 bridge. When a pod connects to a
        // service whose endpoint is another pod on the same bridge, the
        // endpoint's reply is *bridged* straight back to the client, never
        // reaching the node's IP layer, so conntrack never reverses the DNAT
        // and the client gets a reply from an address it did not talk to.
        // br_netfilter passes bridged IPv4 through the netfilter hooks,
        // where conntrack un-DNATs it.
        sysctl::set(&ns, "net.bridge.bridge-nf-call-iptables", "1").map_err(|source| {
            ProxyError::Netns {
                op: "enabling br_netfilter (net.bridge.bridge-nf-call-iptables)",
                netns: self.netns.clone(),
                source,
            }
        })?;
        let start = Instant::now();
        let tx = desired.create_transaction();
        stats.diff_time += start.elapsed();
        stats.full = true;
        stats.commands = tx.commands();
        stats.changes = tx.changes;
        let start = Instant::now();
        nft::apply_as(&ns, "full sync", &tx.text).await?;
        stats.nft_time += start.elapsed();
        self.applied = Some(desired);
        stats.persist_time = self.persist()?;
        Ok(stats)
    }

    /// Delete the node's table and forget the state (the file too).
    pub async fn remove(&mut self) -> Result<(), ProxyError> {
        remove(&self.netns).await?;
        self.applied = None;
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.state_err("removing", source)),
        }
    }

    fn open(&self, op: &'static str) -> Result<NetNs, ProxyError> {
        NetNs::open(&self.netns).map_err(|source| ProxyError::Netns {
            op,
            netns: self.netns.clone(),
            source,
        })
    }

    /// Write the state file atomically (temp file + rename): a crash leaves
    /// the old state or the new one, never half of one.
    fn persist(&self) -> Result<Duration, ProxyError> {
        let start = Instant::now();
        let Some(ruleset) = &self.applied else {
            return Ok(Duration::ZERO);
        };
        #[derive(Serialize)]
        struct StateRef<'a> {
            version: u32,
            netns: &'a str,
            ruleset: &'a Ruleset,
        }
        let state = StateRef {
            version: STATE_VERSION,
            netns: &self.netns,
            ruleset,
        };
        let err = |op, source| self.state_err(op, source);
        if let Some(dir) = self
            .state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
        }
        let mut name = self.state_file.as_os_str().to_owned();
        name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(name);
        let write = || -> io::Result<()> {
            let mut f = io::BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut f, &state)?;
            f.flush()?;
            std::fs::rename(&tmp, &self.state_file)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(err("writing", e));
        }
        Ok(start.elapsed())
    }

    fn state_err(&self, op: &'static str, source: io::Error) -> ProxyError {
        ProxyError::State {
            op,
            netns: self.netns.clone(),
            path: self.state_file.clone(),
            source,
        }
    }
}

/// Sync one node: load its state file, apply `desired` (whole table the
/// first time, only the difference afterwards), write the state file.
pub async fn sync(
    node_netns: &str,
    state_file: &Path,
    desired: &Ruleset,
) -> Result<SyncStats, ProxyError> {
    Proxier::load(node_netns, state_file)?
        .sync(desired.clone())
        .await
}

/// Delete the node's `ip netlab` table. Ok if it or the namespace is gone.
/// (Deleting the namespace removes the table too.)
pub async fn remove(node_netns: &str) -> Result<(), ProxyError> {
    let ns = match NetNs::open(node_netns) {
        Ok(ns) => ns,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(()),
        Err(source) => {
            return Err(ProxyError::Netns {
                op: "opening",
                netns: node_netns.to_string(),
                source,
            })
        }
    };
    nft::apply_as(
        &ns,
        "removing the table",
        &ruleset::delete_transaction().text,
    )
    .await
}
