//! The `runtime` layer: the image store, container root filesystems, OCI
//! bundles and the OCI runtime (runc). It knows nothing of networks: a pod's
//! network namespace is just a path it is given.

pub mod bundle;
pub mod reference;
pub mod rootfs;
pub mod runc;
pub mod store;
pub mod unpack;

pub use reference::Reference;
pub use runc::Runc;
pub use store::{Image, Store, StoreError};
