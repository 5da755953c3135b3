//! `GET pods/NAME/log`: the container's stdout and stderr as the lab keeps
//! them (CRI records in rotated files, oldest first, then the live one),
//! whole or followed, in a chunked `text/plain` body, with the kubelet's
//! `tailLines`, `limitBytes`, `timestamps`, `sinceSeconds` and `sinceTime`.

use super::Container;
use crate::api::handler::{self, Body};
use crate::api::request;
use crate::api::status::ApiError;
use crate::runtime::{crilog, logs};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use hyper::Response;
use std::collections::HashMap;

pub fn serve(
    ctx: &handler::Ctx,
    c: Container,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let number = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{k}: {v:?} is not a number")))
            })
            .transpose()
    };
    let tail = number("tailLines")?.unwrap_or(-1);
    let options = crilog::Options {
        timestamps: request::flag(q, "timestamps"),
        since: since(q, number("sinceSeconds")?)?,
    };
    let limit = number("limitBytes")?.filter(|n| *n > 0).map(|n| n as usize);
    if c.builtin_dns {
        // Its server runs in the lab's process: what that process said of it.
        let log = crate::controller::daemon::log_file(&ctx.lab);
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: String = text
            .lines()
            .filter(|l| l.contains("cluster DNS"))
            .map(|l| format!("{l}\n"))
            .collect();
        let body = crilog::render(lines.as_bytes(), tail, options);
        return Ok(text_body(
            http_body_util::Full::new(Bytes::from(body)).boxed_unsync(),
        ));
    }
    let path = crate::paths::container_log(&ctx.lab, &c.namespace, &c.pod, &c.name);
    if request::flag(q, "previous") {
        // The run before the last restart, whole (nothing more comes).
        let all = std::fs::read(logs::previous(&path)).map_err(|_| {
            ApiError::bad_request(format!(
                "previous terminated container \"{}\" in pod \"{}\" not found",
                c.name, c.pod
            ))
        })?;
        let mut text = crilog::render(&all, tail, options);
        if let Some(limit) = limit {
            text.truncate(limit);
        }
        return Ok(text_body(
            http_body_util::Full::new(Bytes::from(text)).boxed_unsync(),
        ));
    }
    std::fs::File::open(&path).map_err(|_| c.waiting())?;
    let all = logs::read_all(&path, logs::DEFAULT)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
    let mut first = crilog::render(&all, tail, options.clone());
    if let Some(limit) = limit {
        first.truncate(limit);
        if !request::flag(q, "follow") || first.len() == limit {
            return Ok(text_body(
                http_body_util::Full::new(Bytes::from(first)).boxed_unsync(),
            ));
        }
    }
    if !request::flag(q, "follow") {
        return Ok(text_body(
            http_body_util::Full::new(Bytes::from(first)).boxed_unsync(),
        ));
    }
    // Followed: what there is, then what comes, until the pod goes away
    // (or is replaced by one of the same name).
    let mut follower = logs::Follower::from_end(path.clone(), options);
    let (tx, rx) =
        futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let store = ctx.store.clone();
    let mut left = limit.map(|l| l - first.len());
    tokio::spawn(async move {
        use futures::SinkExt;
        let mut tx = tx;
        if tx.send(Ok(Frame::data(Bytes::from(first)))).await.is_err() {
            return;
        }
        loop {
            follower.wait().await;
            let here = {
                let snapshot = store.snapshot();
                snapshot
                    .state
                    .pod(&c.namespace, &c.pod)
                    .is_some_and(|p| p.metadata.uid.as_deref() == Some(c.uid.as_str()))
            };
            let mut chunk = follower.read();
            if let Some(l) = &mut left {
                chunk.truncate(*l);
                *l -= chunk.len();
            }
            // Empty: only the start of a line, or lines from before `since`.
            if !chunk.is_empty()
                && (tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() || left == Some(0))
            {
                return;
            }
            if !here || !path.exists() {
                return;
            }
        }
    });
    Ok(text_body(
        http_body_util::StreamBody::new(rx).boxed_unsync(),
    ))
}

/// The stored time `sinceSeconds` or `sinceTime` asks for (at most one).
fn since(q: &HashMap<String, String>, seconds: Option<i64>) -> Result<Option<String>, ApiError> {
    let time = q.get("sinceTime");
    match (seconds, time) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(s), None) if s < 1 => Err(ApiError::bad_request(format!(
            "sinceSeconds: Invalid value: {s}: must be greater than 0"
        ))),
        (Some(s), None) => Ok(Some(crilog::stamp(
            chrono::Utc::now() - chrono::Duration::seconds(s),
        ))),
        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| Some(crilog::stamp(t.with_timezone(&chrono::Utc))))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "sinceTime: {t:?} is not an RFC 3339 time ({e}), e.g. 2026-12-04T10:00:00Z"
                ))
            }),
        (None, None) => Ok(None),
    }
}

fn text_body(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .header("Cache-Control", "no-cache, private")
        .body(body)
        .expect("a valid response")
}
