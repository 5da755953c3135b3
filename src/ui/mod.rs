//! The lab's page: `netlab graph`'s picture, live, with traces drawn over
//! it, served by the lab's process on the host's loopback (plain HTTP on
//! 127.0.0.1, a port of its own recorded in `ui.address`; no TLS, so no
//! certificate warning, and nothing from the internet).
//!
//! - `netlab ui` asks the lab's API (as its admin, POST [`TOKEN_PATH`])
//!   for a link with a one-time token; opening it trades the token for a
//!   session cookie, and every other request needs that cookie.
//! - The page (page.html, page.js, page.css, built into the binary) reads
//!   the lab's API through this origin: GET requests under `/api` and
//!   `/apis` go to the API's handler as the admin; nothing else does, so
//!   the page can watch but not write.
//! - `/ui/graph.svg` is `netlab graph`'s SVG of the objects now;
//!   `POST /ui/trace` runs `netlab trace` ([`crate::trace::run`]) in
//!   this process and answers its JSON.
//! - Only `Host: 127.0.0.1:PORT` (or `localhost:PORT`) is served, against
//!   DNS rebinding; the cookie is `SameSite=Strict` and `HttpOnly`.

use crate::api::handler::{self, Body, Caller, Ctx};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the lab's API hands out links to the page (its admin only).
pub const TOKEN_PATH: &str = "/netlab/ui/token";
/// How long a link works, unused.
pub const TOKEN_LIFE: Duration = Duration::from_secs(300);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// The page's one-time tokens and open sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    tokens: Mutex<HashMap<String, Instant>>,
    open: Mutex<HashSet<String>>,
    /// Where the page is served, once it is.
    address: OnceLock<SocketAddr>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl Sessions {
    /// A link to the page with a new one-time token; None when the page
    /// is not served.
    pub fn mint(&self) -> Option<String> {
        let at = self.address.get()?;
        let token = random_hex();
        let mut tokens = self.tokens.lock().expect("tokens");
        tokens.retain(|_, made| made.elapsed() < TOKEN_LIFE);
        tokens.insert(token.clone(), Instant::now());
        Some(format!("http://{at}/?token={token}"))
    }

    /// A new session for a token that is fresh and unused (used now).
    fn redeem(&self, token: &str) -> Option<String> {
        let made = self.tokens.lock().expect("tokens").remove(token)?;
        if made.elapsed() >= TOKEN_LIFE {
            return None;
        }
        let session = random_hex();
        self.open.lock().expect("sessions").insert(session.clone());
        Some(session)
    }

    fn valid(&self, session: &str) -> bool {
        self.open.lock().expect("sessions").contains(session)
    }
}

/// The file where the lab's process records the page's address.
pub fn address_file(lab: &str) -> std::path::PathBuf {
    crate::paths::lab_dir(lab).join("ui.address")
}

/// Serves the page on the host's loopback, on the port it had before if it
/// is free (an open page reconnects to a restarted process), else another.
/// Returns the address at once.
pub async fn start(ctx: Arc<Ctx>) -> std::io::Result<SocketAddr> {
    let before = std::fs::read_to_string(address_file(&ctx.lab))
        .ok()
        .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback());
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let listener = match before {
        Some(a) => match tokio::net::TcpListener::bind(a).await {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind(any).await?,
        },
        None => tokio::net::TcpListener::bind(any).await?,
    };
    let bound = listener.local_addr()?;
    let _ = ctx.ui.address.set(bound);
    let file = address_file(&ctx.lab);
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, bound.to_string())?;
    std::fs::rename(&tmp, &file)?;
    // The external host's address, for the picture, once it has one.
    let external = Arc::new(Mutex::new(None));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "ui: accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (ctx, external) = (ctx.clone(), external.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (ctx, external) = (ctx.clone(), external.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(serve(req, &ctx, bound, &external).await)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "ui: connection");
                }
            });
        }
    });
    Ok(bound)
}

fn respond(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
        .header(
            "Content-Security-Policy",
            // The SVG carries its own <style>.
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        )
        .body(Full::new(body.into()).boxed_unsync())
        .expect("a valid response")
}

fn message(code: u16, text: &str) -> Response<Body> {
    respond(
        code,
        "application/json",
        json!({"message": text}).to_string(),
    )
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page's answer to a browser without a session.
fn closed(lab: &str, why: &str) -> Response<Body> {
    let lab = esc(lab);
    respond(
        401,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>netlab · lab {lab}</title>\
             <p>{why} Run <code>sudo netlab ui --lab {lab}</code> for a new link: each link opens the page once, within {} minutes.</p></html>",
            TOKEN_LIFE.as_secs() / 60
        ),
    )
}

/// The session the request's cookie names, if it has one.
fn cookie<'r>(req: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn serve(
    req: Request<Incoming>,
    ctx: &Ctx,
    bound: SocketAddr,
    external: &Mutex<Option<String>>,
) -> Response<Body> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let port = bound.port();
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        return message(
            403,
            &format!("the lab's page answers at http://127.0.0.1:{port}/ only"),
        );
    }
    // Cookies are per host, not per port: one per lab.
    let cookie_name = format!("netlab-ui-{}", ctx.lab);
    let path = req.uri().path().to_string();
    if path == "/" {
        if let Some(token) = crate::api::request::query(req.uri().query()).get("token") {
            return match ctx.ui.redeem(token) {
                Some(session) => Response::builder()
                    .status(303)
                    .header("Location", "/")
                    .header(
                        "Set-Cookie",
                        format!("{cookie_name}={session}; Path=/; HttpOnly; SameSite=Strict"),
                    )
                    .header("Cache-Control", "no-store")
                    .header("Referrer-Policy", "no-referrer")
                    .body(http_body_util::Empty::<Bytes>::new().boxed_unsync())
                    .expect("a valid response"),
                None => closed(&ctx.lab, "This link has been used, or it is too old."),
            };
        }
    }
    if !cookie(&req, &cookie_name).is_some_and(|s| ctx.ui.valid(s)) {
        return closed(
            &ctx.lab,
            "This page needs a link from <code>netlab ui</code>.",
        );
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => respond(
            200,
            "text/html; charset=utf-8",
            PAGE.replace("{{LAB}}", &esc(&ctx.lab)),
        ),
        (Method::GET, "/ui/page.js") => respond(200, "text/javascript; charset=utf-8", SCRIPT),
        (Method::GET, "/ui/page.css") => respond(200, "text/css; charset=utf-8", STYLE),
        (Method::GET, "/ui/graph.svg") => {
            let known = external.lock().expect("external").clone();
            let external = match known {
                Some(a) => Some(a),
                None => {
                    // Made with the lab's network, which may come after
                    // this process starts; it does not change after.
                    let host =
                        crate::paths::host_netns(&ctx.lab, crate::lab::config::EXTERNAL_HOST);
                    let found = crate::net::public::addresses(&host, "eth0")
                        .await
                        .ok()
                        .and_then(|a| a.first().map(ToString::to_string));
                    external.lock().expect("external").clone_from(&found);
                    found
                }
            };
            let [nodes, pods, services, slices, _, _] = lists(ctx);
            let g = crate::graph::Graph::from_objects(
                &ctx.lab, external, &nodes, &pods, &services, &slices,
            );
            respond(200, "image/svg+xml", g.svg())
        }
        (Method::POST, "/ui/trace") => trace(req, ctx).await,
        (Method::GET, p) if p == "/api" || p.starts_with("/api/") || p.starts_with("/apis") => {
            handler::handle(req, ctx, Some(Caller::Admin)).await
        }
        (_, p) if p.starts_with("/api") => message(
            405,
            "the lab's page reads the API (GET); write with kubectl or netlab",
        ),
        _ => message(404, &format!("{path}: not on the lab's page")),
    }
}

/// The lab's nodes, pods, services and endpointslices now, as the API
/// lists them.
fn lists(ctx: &Ctx) -> [Value; 6] {
    use crate::api::objects::{self, Filter};
    let snapshot = ctx.store.snapshot();
    let now = chrono::Utc::now();
    [
        ("", "nodes"),
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "networkpolicies"),
        ("", "namespaces"),
    ]
    .map(|(group, plural)| {
        let r = crate::api::resources::find(group, "v1", plural).expect("served");
        let filter = Filter {
            namespace: None,
            name: None,
            labels: Default::default(),
            fields: Default::default(),
        };
        let (items, _) = objects::select(&snapshot.state, r, &filter, now, true);
        json!({ "items": items })
    })
}

/// `POST /ui/trace`: a [`crate::trace::run::Request`] in, the trace out.
async fn trace(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return message(400, &e.to_string()),
    };
    let asked: crate::trace::run::Request = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return message(
                400,
                &format!("a trace is asked as {{from, to, port?, udp?, namespace?}}: {e}"),
            )
        }
    };
    let [nodes, pods, services, _, policies, namespaces] = lists(ctx);
    let view = crate::trace::run::view(&nodes, &pods, &services, &policies, &namespaces);
    match crate::trace::run::run(&ctx.lab, &asked, &view).await {
        Ok(t) => respond(
            200,
            "application/json",
            serde_json::to_vec(&t).expect("a trace is JSON"),
        ),
        Err(e) => message(400, &format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_session_once() {
        let s = Sessions::default();
        assert_eq!(s.mint(), None, "no link before the page is served");
        s.address
            .set(SocketAddr::from(([127, 0, 0, 1], 4242)))
            .unwrap();
        let url = s.mint().unwrap();
        let token = url.strip_prefix("http://127.0.0.1:4242/?token=").unwrap();
        let session = s.redeem(token).expect("a fresh token opens a session");
        assert!(s.valid(&session));
        assert_eq!(s.redeem(token), None, "a token works once");
        assert!(!s.valid(token), "a token is not a session");
        assert!(!s.valid("nonsense"));
        // An old token does not open a session.
        if let Some(then) = Instant::now().checked_sub(TOKEN_LIFE) {
            let old = random_hex();
            s.tokens.lock().unwrap().insert(old.clone(), then);
            assert_eq!(s.redeem(&old), None);
        }
    }

    #[test]
    fn the_page_escapes_the_lab_name() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
        assert!(PAGE.contains("{{LAB}}"));
        assert!(SCRIPT.contains("/ui/graph.svg") && SCRIPT.contains("/ui/trace"));
    }
}
