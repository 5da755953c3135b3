//! The `runtime` layer: the image store, pulls from registries, container
//! root filesystems, OCI bundles and the OCI runtime (runc). It knows nothing
//! of networks: a pod's network namespace is just a path it is given.

pub mod bundle;
pub mod crilog;
pub mod disk;
pub mod exits;
pub mod fetch;
pub mod import;
pub mod logs;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod resources;
pub mod rootfs;
pub mod runc;
pub mod seccomp;
pub mod securejoin;
pub mod security;
pub mod stdio;
pub mod store;
pub mod unpack;
pub mod untrusted;
pub mod volumes;

pub use progress::Progress;
pub use pull::{pull, PullError, Pulled};
pub use reference::Reference;
pub use registry::Registries;
pub use runc::Runc;
pub use store::{Image, Store, StoreError};
