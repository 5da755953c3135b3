//! netlab: Kubernetes service networking, for real, on one Linux host.
//!
//! The layers, top to bottom (see DESIGN.md): `cli` → `api` (the lab's
//! Kubernetes API, served by its process) → `controller` →
//! `cluster` (pure state and allocators), `lab` (pure parsing), `net`
//! (netlink and namespaces), `runtime` (images and runc).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod dns;
pub mod graph;
pub mod lab;
pub mod net;
pub mod paths;
pub mod proxy;
pub mod runtime;
pub mod store;
pub mod trace;
pub mod ui;
