//! The `cluster` layer: the lab's object store and its allocators (pod IPs,
//! names, node addresses), persisted atomically. Pure: no kernel, no runtime.

pub mod access;
pub mod collection;
pub mod deployments;
pub mod dns;
pub mod endpointslices;
pub mod envvars;
pub mod events;
pub mod external_ips;
pub mod gc;
pub mod host_network;
pub mod ipam;
pub mod loadbalancer;
pub mod managed;
pub mod names;
pub mod namespaces;
pub mod network_policies;
pub mod nodes;
pub mod objects;
pub mod patch;
pub mod reachability;
pub mod replicasets;
pub mod resources;
pub mod scheduler;
pub mod secrets;
pub mod security;
pub mod selector;
pub mod services;
pub mod state;
pub mod tables;
pub mod tls;
pub mod topology;
pub mod volumes;

pub use collection::Collection;
pub use selector::Selector;
pub use state::{ClusterState, HostInfo};
