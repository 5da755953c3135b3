//! The `api` layer: the Kubernetes API a lab serves, so that the real
//! `kubectl` (and any client) works against it. It runs inside the lab's
//! process (`netlab controller run`), on the host's loopback, over HTTPS
//! with the lab's own CA and client certificates (see DESIGN.md, "Control
//! plane").
//!
//! - `pki.rs`: the lab's CA and certificates
//! - `server.rs`: TLS, HTTP/1.1 and HTTP/2, client-certificate checks
//! - `handler.rs`: authentication, routing, content negotiation, verbs
//! - `request.rs`: paths and queries (pure); `resources.rs`: what is served
//! - `discovery.rs`: `/version`, `/api`, `/apis` (legacy and aggregated)
//! - `objects.rs`: reads (filters, lists, Tables); `status.rs`: errors
//! - `streams/`: `pods/log`, and `pods/exec` over WebSocket
//! - `tokens.rs`: ServiceAccount tokens (signed, checked); `rbac.rs`: who
//!   may do what (RBAC over the stored Roles and bindings), and the answers
//!   to `kubectl auth can-i` and `kubectl create token`
//!
//! - `writes.rs`: create, replace, patch, scale, delete (with
//!   `fieldValidation=Strict` against the schemas)
//! - `schemas.rs`: the served kinds' schemas, from k8s-openapi; `openapi.rs`:
//!   `/openapi/v2` and `/openapi/v3` from them; `openapi_v2.rs`: the gnostic
//!   protobuf messages `/openapi/v2` is served in
//!
//! Reads and watches come from the lab's object store (`crate::store`),
//! which the lab's process owns; writes are made one at a time by one task
//! with the pure edits of `cluster::objects`, committed, and answered; the
//! process's control loop converges the host afterwards.

pub mod discovery;
pub mod drills;
pub mod handler;
pub mod objects;
pub mod openapi;
pub mod openapi_v2;
pub mod pki;
pub mod protobuf;
pub mod rbac;
pub mod request;
pub mod resources;
pub mod schemas;
pub mod server;
pub mod status;
pub mod streams;
pub mod tokens;
pub mod watch;
pub mod writes;

use crate::paths;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The file where the lab's process records the address it serves on.
pub fn address_file(lab: &str) -> PathBuf {
    paths::lab_dir(lab).join("api.address")
}

/// The address the lab's API serves on, once its process listens.
pub fn address(lab: &str) -> Option<SocketAddr> {
    std::fs::read_to_string(address_file(lab))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `https://127.0.0.1:PORT`
pub fn url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// The lab's certificates, made on the first start of its process, for
/// the addresses clients dial: the loopback, the `kubernetes` Service's
/// ClusterIP, and the in-lab address it leads to.
fn lab_pki(lab: &str, config: Option<&crate::lab::LabConfig>) -> std::io::Result<pki::LabPki> {
    let dir = pki::dir(lab);
    if let Ok(p) = pki::LabPki::read(&dir) {
        return Ok(p);
    }
    let mut ips = vec![std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if let Some(config) = config {
        ips.push(crate::cluster::services::kubernetes_ip(config.service_cidr).into());
        ips.push((*crate::cluster::services::api_endpoint(config).ip()).into());
    }
    let p = pki::generate(lab, &ips).map_err(std::io::Error::other)?;
    p.write(&dir)?;
    Ok(p)
}

/// Starts serving the lab's API on the host's loopback: on the port it
/// had before (a restarted process keeps the kubeconfig valid), else a
/// free one. Records the address for `up` and `netlab kubeconfig`.
/// It also serves inside the lab, on the dc namespace's LAN address, port
/// 6443, where the `kubernetes` Service leads pods (a warning, not a
/// failure, when that socket cannot be opened).
/// Writes are made one at a time, in the order they came, by one task
/// (`writes::execute`), each committed before it is answered.
/// `settled` is how far the lab's control loop has got (served at
/// `controller::settled::PATH` for netlab's verbs).
pub async fn start(
    lab: &str,
    store: crate::store::ObjectStore,
    settled: tokio::sync::watch::Receiver<crate::controller::settled::Settled>,
) -> std::io::Result<SocketAddr> {
    let config = Some(store.snapshot().state.config.clone()).filter(|c| !c.name.is_empty());
    let pki = lab_pki(lab, config.as_ref())?;
    let (writer, mut writes) = tokio::sync::mpsc::channel::<writes::Request>(64);
    {
        let store = store.clone();
        tokio::spawn(async move {
            while let Some(w) = writes.recv().await {
                let answer = writes::execute(&store, w.op).await;
                let _ = w.reply.send(answer);
            }
        });
    }
    let ui = std::sync::Arc::new(crate::ui::Sessions::default());
    let ctx = |server_address: String| handler::Ctx {
        lab: lab.to_string(),
        server_address,
        store: store.clone(),
        writer: writer.clone(),
        settled: settled.clone(),
        ui: ui.clone(),
    };
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let before = address(lab).filter(|a| a.ip().is_loopback());
    let bound = match before {
        Some(a) => match server::start(ctx(a.to_string()), &pki, a).await {
            Ok(b) => b,
            Err(_) => server::start(ctx(String::new()), &pki, any).await?,
        },
        None => server::start(ctx(String::new()), &pki, any).await?,
    };
    if let Some(config) = &config {
        let at = SocketAddr::from(crate::cluster::services::api_endpoint(config));
        match listen_in_lab(lab, at) {
            Ok(l) => {
                server::serve(ctx(at.to_string()), &pki, l)?;
                tracing::info!(lab, %at, "serving the Kubernetes API inside the lab");
            }
            Err(e) => tracing::warn!(lab, error = %e, "the Kubernetes API for pods"),
        }
    }
    // The lab's page, on a loopback port of its own (a warning, not a
    // failure, when it cannot be served).
    if let Err(e) = crate::ui::start(std::sync::Arc::new(ctx(bound.to_string()))).await {
        tracing::warn!(lab, error = %e, "the lab's page");
    }
    let file = address_file(lab);
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, bound.to_string())?;
    std::fs::rename(&tmp, &file)?;
    Ok(bound)
}

/// The socket pods reach the API on: in the lab's dc namespace.
fn listen_in_lab(lab: &str, at: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let ns =
        crate::net::netns::NetNs::open(&paths::dc_netns(lab)).map_err(std::io::Error::other)?;
    let l = ns.listen_tcp(at).map_err(std::io::Error::other)?;
    tokio::net::TcpListener::from_std(l)
}
