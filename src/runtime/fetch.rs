//! Bounded transfers from a registry, which may lie: a body is read in
//! chunks and refused as soon as it passes what was declared for it (a
//! blob's descriptor size) or containerd's cap for manifests and configs
//! (`untrusted::JSON_LIMIT`), so a hostile registry costs at most that much
//! memory or disk; and a transfer that makes no progress for
//! `stall_timeout()` fails instead of hanging the pull.
//!
//! Manifests are fetched here rather than through `oci-client`, which reads
//! a manifest body whole before looking at it; the credentials are the ones
//! `oci-client` negotiated (its bearer token, or basic auth).

use futures::{Stream, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How long a transfer may make no progress (no header, no byte).
pub fn stall_timeout() -> Duration {
    std::env::var("NETLAB_REGISTRY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(30))
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what}: the registry sent more than {limit} bytes ({why}): refused")]
    TooLarge {
        what: String,
        limit: u64,
        why: &'static str,
    },
    #[error("{what}: the registry sent nothing for {}s: the transfer stalled", .after.as_secs_f64())]
    Stalled { what: String, after: Duration },
    #[error("{what}: {message}")]
    Transfer { what: String, message: String },
    #[error("{what}: HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
}

/// Awaits `f`, failing if it takes longer than `after`.
pub async fn within<T>(
    what: &str,
    after: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<T, FetchError> {
    tokio::time::timeout(after, f)
        .await
        .map_err(|_| FetchError::Stalled {
            what: what.into(),
            after,
        })
}

/// Copies `stream` into `out`, refusing more than `limit` bytes and a
/// stream that stalls for `stall`; returns the bytes copied.
pub async fn copy_capped<B, E, S, W>(
    what: &str,
    stall: Duration,
    mut stream: S,
    limit: u64,
    why: &'static str,
    out: &mut W,
) -> Result<u64, FetchError>
where
    B: AsRef<[u8]>,
    E: std::fmt::Display,
    S: Stream<Item = Result<B, E>> + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut n = 0u64;
    let transfer = |message: String| FetchError::Transfer {
        what: what.into(),
        message,
    };
    while let Some(chunk) = within(what, stall, stream.next()).await? {
        let chunk = chunk.map_err(|e| transfer(e.to_string()))?;
        let bytes = chunk.as_ref();
        if n + bytes.len() as u64 > limit {
            return Err(FetchError::TooLarge {
                what: what.into(),
                limit,
                why,
            });
        }
        n += bytes.len() as u64;
        out.write_all(bytes)
            .await
            .map_err(|e| transfer(e.to_string()))?;
    }
    out.flush().await.map_err(|e| transfer(e.to_string()))?;
    Ok(n)
}

/// Credentials for a request of our own to a registry.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Bearer(String),
    Basic(String, String),
}

/// GETs a manifest (by tag or digest) from `url`, at most `limit` bytes.
pub async fn manifest(
    http: &reqwest::Client,
    url: &str,
    accept: &[&str],
    credentials: &Credentials,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    let what = format!("manifest {url}");
    let mut req = http.get(url).header("Accept", accept.join(", "));
    req = match credentials {
        Credentials::None => req,
        Credentials::Bearer(t) => req.bearer_auth(t),
        Credentials::Basic(u, p) => req.basic_auth(u, Some(p)),
    };
    let stall = stall_timeout();
    let response = within(&what, stall, req.send())
        .await?
        .map_err(|e| FetchError::Transfer {
            what: what.clone(),
            message: super::store::error_chain(&e),
        })?;
    let status = response.status();
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge {
            what,
            limit,
            why: "a manifest is at most 4 MiB, as containerd allows",
        });
    }
    let mut body = Vec::new();
    copy_capped(
        &what,
        stall,
        response.bytes_stream(),
        limit,
        "a manifest is at most 4 MiB, as containerd allows",
        &mut body,
    )
    .await?;
    if !status.is_success() {
        let text = registry_errors(&body)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
        return Err(FetchError::Status {
            what,
            status: status.as_u16(),
            message: text,
        });
    }
    Ok(body)
}

/// The messages of a registry's error envelope
/// (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`).
fn registry_errors(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let messages: Vec<String> = v["errors"]
        .as_array()?
        .iter()
        .map(|e| {
            let message = e["message"].as_str().unwrap_or("");
            match e["code"].as_str() {
                Some(code) => format!("{message} ({code})"),
                None => message.to_string(),
            }
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn chunks(n: usize, size: usize) -> impl Stream<Item = Result<Vec<u8>, String>> + Unpin {
        futures::stream::iter((0..n).map(move |_| Ok(vec![0u8; size])))
    }

    #[test]
    fn registry_errors_are_read() {
        assert_eq!(
            registry_errors(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .unwrap(),
            "manifest unknown (MANIFEST_UNKNOWN)"
        );
        assert!(registry_errors(b"<html>").is_none());
    }

    #[tokio::test]
    async fn copies_up_to_the_limit() {
        let mut out = Vec::new();
        let n = copy_capped("blob", T, chunks(4, 25), 100, "declared", &mut out)
            .await
            .unwrap();
        assert_eq!((n, out.len()), (100, 100));
    }

    #[tokio::test]
    async fn stops_at_the_first_chunk_past_the_limit() {
        let mut out = Vec::new();
        // An endless stream: the copy must stop by itself.
        let endless = futures::stream::repeat_with(|| Ok::<_, String>(vec![0u8; 64]));
        let err = copy_capped("blob", T, endless, 100, "its descriptor says 100", &mut out)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 100, .. }),
            "{err}"
        );
        assert!(out.len() <= 100, "{} bytes written", out.len());
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn a_stalled_stream_fails() {
        let stalled = futures::stream::pending::<Result<Vec<u8>, String>>();
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        let err = copy_capped(
            "blob",
            Duration::from_millis(200),
            stalled,
            100,
            "x",
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::Stalled { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
