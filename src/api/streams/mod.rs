//! The pod streams the API serves:
//!
//! - `logs.rs`: `pods/log`, the container's output, whole or followed
//! - `process.rs`: a command run in a container (`runc exec`), with pipes
//!   or a terminal, or a container's own stdio to attach to
//! - `channel.rs`: the `v4`/`v5.channel.k8s.io` protocol (pure)
//! - `websocket.rs`: that protocol over a WebSocket, and the exec session
//!   (kubectl 1.30+, kube-rs)
//! - `spdy.rs`: SPDY/3.1 framing and the exec session over it (kubectl
//!   1.27–1.29)
//!
//! `pods/attach` is an exec session whose other end is the container's own
//! stdio (`process::attach`), or, for a container without stdin or a
//! terminal, its log as it grows (`process::follow`), over either protocol;
//! `pods/portforward` is served over SPDY (`spdy.rs`).

pub mod channel;
pub mod logs;
pub mod process;
pub mod spdy;
pub mod websocket;

use super::handler::{Body, Ctx};
use super::request::{self, Target};
use super::status::ApiError;
use crate::cluster::state;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::collections::HashMap;

/// Whether the request is for a stream this module serves.
pub fn is_stream(t: &Target) -> bool {
    t.resource.plural == "pods"
        && t.name.is_some()
        && matches!(
            t.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward")
        )
}

/// The container a stream is about.
pub struct Container {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub name: String,
    /// The lab's DNS server, which runs in the lab's process, not in a
    /// container.
    pub builtin_dns: bool,
    /// Why it is not running yet, if it is waiting.
    waiting: Option<String>,
    /// It was started with stdin or a terminal (which the lab's process
    /// holds, to attach to).
    stdio: bool,
}

impl Container {
    /// Whether a stream can reach the container: it has one, and it runs.
    fn ready_for(&self, what: &str) -> Result<(), ApiError> {
        if self.builtin_dns {
            return Err(ApiError::bad_request(format!(
                "pod {} is netlab's built-in DNS server, run by the lab's process: it has no container to {what}",
                self.pod
            )));
        }
        match self.waiting {
            Some(_) => Err(self.waiting()),
            None => Ok(()),
        }
    }

    /// kube-apiserver's answer for a container that has not started.
    fn waiting(&self) -> ApiError {
        ApiError::bad_request(format!(
            "container \"{}\" in pod \"{}\" is waiting to start: {}",
            self.name,
            self.pod,
            self.waiting.as_deref().unwrap_or("ContainerCreating")
        ))
    }
}

/// Finds the pod and the container (`?container=`, or the only one), as
/// kube-apiserver does, with its errors.
fn container(ctx: &Ctx, t: &Target, q: &HashMap<String, String>) -> Result<Container, ApiError> {
    let namespace = t.namespace.clone().unwrap_or_else(|| "default".into());
    let name = t.name.clone().unwrap_or_default();
    let snapshot = ctx.store.snapshot();
    let pod = snapshot
        .state
        .pod(&namespace, &name)
        .ok_or_else(|| ApiError::not_found("pods", &name))?;
    let spec = pod.spec.as_ref().expect("pods have specs");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let wanted = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c.as_str()) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None if names.len() == 1 => names[0].to_string(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    if state::pod_node(pod).is_none() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let waiting = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == wanted))
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let stdio = spec
        .containers
        .iter()
        .find(|c| c.name == wanted)
        .is_some_and(|c| c.stdin == Some(true) || c.tty == Some(true));
    Ok(Container {
        stdio,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        builtin_dns: crate::cluster::dns::is_builtin(pod),
        namespace,
        pod: name,
        name: wanted,
        waiting,
    })
}

/// Serves `pods/NAME/{log,exec,attach,portforward}`.
pub async fn serve(
    mut req: Request<Incoming>,
    ctx: &Ctx,
    t: &Target,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let sub = t.subresource.as_deref().unwrap_or_default();
    match (sub, req.method()) {
        ("log", &Method::GET) => logs::serve(ctx, container(ctx, t, q)?, q),
        ("exec", &Method::GET | &Method::POST) => {
            let c = container(ctx, t, q)?;
            let spec = stream_spec(&req, q);
            if spec.command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            c.ready_for("exec into")?;
            let root = crate::paths::runc_root(&ctx.lab);
            let id = crate::paths::container_id(&c.namespace, &c.pod, &c.name);
            session(&mut req, spec, move |spec| process::start(&root, &id, spec))
        }
        ("attach", &Method::GET | &Method::POST) => {
            let c = container(ctx, t, q)?;
            let spec = stream_spec(&req, q);
            c.ready_for("attach to")?;
            let root = crate::paths::runc_root(&ctx.lab);
            let id = crate::paths::container_id(&c.namespace, &c.pod, &c.name);
            if let Some(held) = crate::runtime::stdio::attachable(&root, &id) {
                return session(&mut req, spec, move |spec| Ok(process::attach(held, spec)));
            }
            let not_running = || {
                ApiError::bad_request(format!(
                    "container {} in pod {} is not running: try again when the pod runs",
                    c.name, c.pod
                ))
            };
            if c.stdio {
                // Between two runs, or adopted from an earlier lab process
                // (which held its stdio).
                return Err(not_running());
            }
            // Started without stdin or a terminal: its output, from its log.
            let state = crate::runtime::Runc::new(&root)
                .state(&id)
                .await
                .map_err(|_| not_running())?;
            if state.status != "running" {
                return Err(not_running());
            }
            let log = crate::paths::container_log(&ctx.lab, &c.namespace, &c.pod, &c.name);
            session(&mut req, spec, move |spec| {
                Ok(process::follow(log, state.pid, spec.stdout))
            })
        }
        ("portforward", &Method::GET | &Method::POST) => {
            let namespace = t.namespace.clone().unwrap_or_else(|| "default".into());
            let name = t.name.clone().unwrap_or_default();
            let netns = {
                let snapshot = ctx.store.snapshot();
                let pod = snapshot
                    .state
                    .pod(&namespace, &name)
                    .ok_or_else(|| ApiError::not_found("pods", &name))?;
                if state::pod_node(pod).is_none() || state::pod_ip(pod).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "unable to forward to pod {name}: it is not running yet"
                    )));
                }
                crate::controller::pods::network_namespace(&ctx.lab, pod)
            };
            if websocket::asked(&req) {
                // kubectl 1.31+: SPDY tunneled in a WebSocket.
                return websocket::upgrade(&mut req, &[websocket::SPDY_TUNNEL], move |ws| {
                    spdy::port_forward(websocket::spdy(ws), netns, name)
                });
            }
            if !spdy::asked(&req) {
                return Err(ApiError::bad_request(
                    "port-forward is served over SPDY/3.1 (portforward.k8s.io), plain or tunneled in a WebSocket (SPDY/3.1+portforward.k8s.io)",
                ));
            }
            spdy::upgrade(&mut req, &[spdy::PORT_FORWARD], move |io| {
                spdy::port_forward(spdy::over(io), netns, name)
            })
        }
        (_, m) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// The first of the `served` protocols the client offers in `header`.
fn choose(
    req: &Request<Incoming>,
    header: &str,
    served: &[&'static str],
) -> Result<&'static str, ApiError> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    pick(offered.iter().copied(), served).ok_or_else(|| {
        ApiError::bad_request(format!(
            "none of the stream protocols {offered:?} is served (served: {})",
            served.join(", ")
        ))
    })
}

/// The first of `served` in the client's values (comma separated,
/// possibly over several headers).
fn pick<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    served: &[&'static str],
) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    served.iter().copied().find(|p| offered.contains(p))
}

/// The streams an exec or attach asks for.
fn stream_spec(req: &Request<Incoming>, q: &HashMap<String, String>) -> process::Spec {
    process::Spec {
        command: request::query_all(req.uri().query(), "command"),
        stdin: request::flag(q, "stdin"),
        stdout: request::flag(q, "stdout"),
        stderr: request::flag(q, "stderr"),
        tty: request::flag(q, "tty"),
    }
}

/// Runs `start` off the runtime's worker threads: starting runc takes
/// milliseconds, which would hold up the other requests on that worker
/// (and the reply to an SPDY client's last stream).
async fn started(
    start: impl FnOnce() -> std::io::Result<process::Running> + Send + 'static,
) -> std::io::Result<process::Running> {
    tokio::task::spawn_blocking(start)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// An exec or attach session over the protocol the client asked for,
/// talking to what `start` starts once the client is ready.
fn session(
    req: &mut Request<Incoming>,
    spec: process::Spec,
    start: impl FnOnce(&process::Spec) -> std::io::Result<process::Running> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    if !(spec.stdin || spec.stdout || spec.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    if websocket::asked(req) {
        websocket::upgrade(req, &channel::PROTOCOLS, move |ws| async move {
            let command = spec.command.clone();
            let started = started(move || start(&spec)).await;
            websocket::exec(ws, started, command).await
        })
    } else if spdy::asked(req) {
        spdy::upgrade(req, &spdy::PROTOCOLS, move |io| async move {
            let run = spec.clone();
            spdy::exec(io, spec, move || start(&run)).await
        })
    } else {
        Err(ApiError::bad_request(
            "exec and attach stream over an upgraded connection: ask for a WebSocket (v5.channel.k8s.io) or SPDY/3.1",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_choice() {
        let choose = |offered: &[&str]| pick(offered.iter().copied(), &channel::PROTOCOLS);
        assert_eq!(choose(&["v5.channel.k8s.io"]), Some("v5.channel.k8s.io"));
        assert_eq!(
            choose(&["v4.channel.k8s.io, v5.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            choose(&["base64.channel.k8s.io", "v4.channel.k8s.io"]),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(choose(&["channel.k8s.io"]), None);
        assert_eq!(choose(&[]), None);
        assert_eq!(
            pick(["SPDY/3.1+portforward.k8s.io"], &[websocket::SPDY_TUNNEL]),
            Some(websocket::SPDY_TUNNEL)
        );
    }
}
