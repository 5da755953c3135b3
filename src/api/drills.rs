//! netlab's own routes for the failure drills, for the lab's admin only
//! (no Kubernetes verb does these, so every `netlab` drill is still an API
//! call to the one process that owns the lab):
//!
//! - `POST /netlab/nodes/NODE/stop|start`: the power switch
//!   (`controller::power::switch`);
//! - `POST /netlab/nodes/NODE/links/down|up`: its ports on the lab's bridges;
//! - `POST /netlab/partition?a=NODE&b=NODE&heal=BOOL`;
//! - `POST /netlab/netem?target=node/N|pod/P|host/external&namespace=NS`
//!   with a [`Netem`] as JSON (or `clear=true`), and `GET /netlab/netem`:
//!   what is in force, `{"items": [{"target", "netem"}]}`
//!   (`controller::faults`).

use super::handler::{json, Body, Ctx, JSON};
use super::request;
use super::status::ApiError;
use crate::controller::faults::{self, FaultError};
use crate::controller::power;
use crate::net::tc::Netem;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

pub const NETEM_PATH: &str = "/netlab/netem";

/// Whether `path` is one of these routes.
pub fn is_drill(path: &str) -> bool {
    path.starts_with(power::PATH_PREFIX) || path == power::PARTITION_PATH || path == NETEM_PATH
}

/// The node and what to do with its links: `/netlab/nodes/NODE/links/up`.
fn links(path: &str) -> Option<(&str, bool)> {
    let (node, state) = path
        .strip_prefix(power::PATH_PREFIX)?
        .split_once("/links/")?;
    match state {
        "up" => Some((node, true)),
        "down" => Some((node, false)),
        _ => None,
    }
}

fn message(line: String) -> Response<Body> {
    json(200, JSON, &serde_json::json!({ "message": line }))
}

impl From<FaultError> for ApiError {
    fn from(e: FaultError) -> Self {
        match e {
            FaultError::NotFound(m) => ApiError::new(404, "NotFound", m),
            FaultError::Invalid(m) => ApiError::bad_request(m),
            FaultError::Failed(m) => ApiError::internal(m),
        }
    }
}

/// Answers a drill route (see [`is_drill`]).
pub async fn serve(req: Request<Incoming>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let q = request::query(req.uri().query());
    let post = req.method() == Method::POST;
    if let (Some((node, on)), true) = (power::parse(&path), post) {
        return Ok(message(
            power::switch(&ctx.lab, &ctx.store, node, on).await?,
        ));
    }
    if let (Some((node, up)), true) = (links(&path), post) {
        return Ok(message(
            faults::set_links(&ctx.lab, &ctx.store, node, up).await?,
        ));
    }
    if path == power::PARTITION_PATH && post {
        let node = |k: &str| q.get(k).cloned().unwrap_or_default();
        let heal = request::flag(&q, "heal");
        return Ok(message(power::partition(
            &ctx.store,
            &node("a"),
            &node("b"),
            heal,
        )?));
    }
    if path == NETEM_PATH && req.method() == Method::GET {
        let items: Vec<_> = faults::list_netem(&ctx.lab, &ctx.store)
            .await
            .into_iter()
            .map(|(target, netem)| serde_json::json!({ "target": target, "netem": netem }))
            .collect();
        return Ok(json(200, JSON, &serde_json::json!({ "items": items })));
    }
    if path == NETEM_PATH && post {
        let target = q.get("target").cloned().unwrap_or_default();
        let namespace = q
            .get("namespace")
            .map_or("default", String::as_str)
            .to_string();
        let netem: Option<Netem> = if request::flag(&q, "clear") {
            None
        } else {
            let body = super::handler::read_body(req.into_body()).await?;
            Some(
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("a netem: {e}")))?,
            )
        };
        return Ok(message(
            faults::set_netem(&ctx.lab, &ctx.store, &target, &namespace, netem.as_ref()).await?,
        ));
    }
    Err(ApiError::method_not_allowed(&path))
}
