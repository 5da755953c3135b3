//! The `controller` layer: turns the cluster state into kernel objects and
//! containers (`up`), removes them (`down`), and observes what runs.
//!
//! `up` brings the lab up and starts its process (`daemon.rs`), which owns
//! it from then on: it serves the API, whose writes are committed to the
//! store and acknowledged, and its control loop makes the host follow
//! (`converge.rs`: pods started and stopped; restarts, readiness, the
//! cluster DNS (`dns.rs`), LoadBalancer addresses and their announcements
//! (`lb.rs`)). The service plane (`service_plane.rs`) follows the store on
//! its own: Endpoints, EndpointSlices and every node's rules
//! (`proxier.rs`). Both report how far they got (`settled.rs`).

pub mod converge;
pub mod daemon;
pub mod dns;
pub mod down;
pub mod faults;
pub mod images;
pub mod lb;
pub mod liveness;
pub mod orphans;
pub mod pods;
pub mod policies;
pub mod power;
pub mod probes;
pub mod proxier;
pub mod service_plane;
pub mod settled;
pub mod up;

pub use down::{down, DownReport};
pub use up::{up, UpOptions, UpSummary};

use crate::cluster::state::StateError;
use crate::net::{NetError, NetNs};
use crate::paths;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("lab {lab} is already up (or was left behind by a crash): use it, or remove it with `netlab down --lab {lab}`")]
    AlreadyUp { lab: String },
    #[error("no lab named {lab} is up (labs up: {up})")]
    NoSuchLab { lab: String, up: String },
    #[error("lab {lab} has traces on this host but no state: it was interrupted while coming up or going down; remove it with `netlab down --lab {lab}` and bring it up again")]
    NoState { lab: String },
    #[error("images could not be had (nothing was created):\n  {}", .0.join("\n  "))]
    Images(Vec<String>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error(transparent)]
    Store(#[from] crate::runtime::StoreError),
    /// The lab's object store (`store/`).
    #[error(transparent)]
    Objects(#[from] crate::store::StoreError),
    #[error("{message}")]
    Runtime { message: String },
    #[error("{0}")]
    Object(String),
    /// An object refused by admission (kube-apiserver's 403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{pod}: {message}")]
    Pod { pod: String, message: String },
    /// The kubelet's CreateContainerConfigError: the container cannot be
    /// created as configured (runAsNonRoot and a root image, …); retried.
    #[error("{pod}: {message}")]
    ContainerConfig { pod: String, message: String },
    #[error("pods did not become ready:\n  {}", .0.join("\n  "))]
    NotReady(Vec<String>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cause}\nand the lab could not be removed completely:\n  {}", .problems.join("\n  "))]
    Cleanup {
        cause: Box<ControllerError>,
        problems: Vec<String>,
    },
}

impl ControllerError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ControllerError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Whether anything of a lab exists on the host (its directory or namespaces).
pub fn lab_exists(lab: &str) -> bool {
    paths::lab_dir(lab).exists()
        || paths::disk_dir(lab).exists()
        || !NetNs::list(&paths::netns_prefix(lab)).is_empty()
}

/// Every lab with anything on this host, sorted.
pub fn labs() -> Vec<String> {
    let dirs = |d: std::path::PathBuf| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // A lab's disk can outlive its run directory (a crash, a reboot: /run
    // is a tmpfs).
    let mut labs = dirs(paths::run_dir());
    if let Some(root) = paths::disk_dir("x").parent() {
        labs.extend(dirs(root.to_path_buf()));
    }
    for ns in NetNs::list("netlab-") {
        if let Some(lab) = paths::lab_of_netns(&ns) {
            labs.push(lab.to_string());
        }
    }
    labs.sort();
    labs.dedup();
    labs
}

/// Why a lab's state cannot be read: no such lab, or one half there.
pub fn missing(lab: &str) -> ControllerError {
    if lab_exists(lab) {
        ControllerError::NoState { lab: lab.into() }
    } else {
        let up: Vec<String> = labs().into_iter().filter(|l| l != lab).collect();
        ControllerError::NoSuchLab {
            lab: lab.into(),
            up: if up.is_empty() {
                "none".into()
            } else {
                up.join(", ")
            },
        }
    }
}
