//! The only place in netlab that runs `nft`.
//!
//! A transaction is fed to `nft -f -` in a child process that joins the
//! node's network namespace right before exec (`NetNs::tokio_command`).
//! nft sends the whole file as one netlink batch, so a transaction is
//! applied completely or not at all.

use std::pin::Pin;
use std::process::Stdio;

use tokio::io::AsyncWrite;

use super::error::ProxyError;
use crate::net::NetNs;

const NFT: &str = "nft";

/// Apply `transaction` (nft text, one command per line) inside `ns`.
pub async fn apply(ns: &NetNs, transaction: &str) -> Result<(), ProxyError> {
    apply_as(ns, "applying nft transaction", transaction).await
}

/// [`apply`], naming the operation (`"full sync"`, ...) in errors.
pub(crate) async fn apply_as(
    ns: &NetNs,
    op: &'static str,
    transaction: &str,
) -> Result<(), ProxyError> {
    // A table in the host's own namespace would filter the host's traffic.
    ns.check_not_host().map_err(|source| ProxyError::Netns {
        op,
        netns: ns.name().to_string(),
        source,
    })?;
    let spawn_err = |source| ProxyError::Spawn {
        op,
        netns: ns.name().to_string(),
        source,
    };
    let mut child = ns
        .tokio_command(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Write while nft runs: it reads all of its input before it answers,
    // but a big transaction does not fit in the pipe.
    let write = async move {
        let res = write_all(&mut stdin, transaction.as_bytes()).await;
        drop(stdin);
        res
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    let output = output.map_err(spawn_err)?;
    if output.status.success() {
        // A failed write with a successful exit cannot happen (nft would
        // have seen a truncated file); report it anyway.
        return written.map_err(spawn_err);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let offending = offending_lines(&stderr, transaction);
    let services = services_in(&offending);
    Err(ProxyError::Nft {
        op,
        netns: ns.name().to_string(),
        stderr: if stderr.is_empty() {
            format!("exit status {}", output.status)
        } else {
            stderr
        },
        offending,
        services,
    })
}

/// `AsyncWriteExt::write_all` without tokio's `io-util` feature.
async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// nft reports errors as `/dev/stdin:<line>:<col>: Error: ...`; quote
/// those lines of the transaction (deduplicated, in order).
fn offending_lines(stderr: &str, transaction: &str) -> Vec<String> {
    let lines: Vec<&str> = transaction.lines().collect();
    let mut numbers: Vec<usize> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("/dev/stdin:")?.1;
            rest.split(':').next()?.parse::<usize>().ok()
        })
        .collect();
    numbers.dedup();
    numbers
        .into_iter()
        .filter_map(|n| Some(format!("line {n}: {}", lines.get(n.checked_sub(1)?)?)))
        .collect()
}

/// The services (`namespace/name`) whose objects the lines mention: every
/// per-service object name is `<kind>-<hash>-<namespace>/<name>/...`.
fn services_in(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in lines.iter().flat_map(|l| l.split_whitespace()) {
        let word = word.trim_start_matches('@');
        let kinds = ["service-", "external-", "local-", "endpoint-", "affinity-"];
        let Some(rest) = kinds.iter().find_map(|k| word.strip_prefix(k)) else {
            continue;
        };
        let Some((hash, readable)) = rest.split_once('-') else {
            continue;
        };
        if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let mut parts = readable.split('/');
        if let (Some(ns), Some(name)) = (parts.next(), parts.next()) {
            let svc = format!("{ns}/{name}");
            if !out.contains(&svc) {
                out.push(svc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_offending_lines_and_their_services() {
        let tx = "add table ip netlab\nadd rule ip netlab service-0123abcd-default/web/tcp/http goto nosuch\n";
        let stderr =
            "/dev/stdin:2:60-65: Error: Could not process rule: No such file or directory\n\
                      add rule ...\n          ^^^^^";
        let lines = offending_lines(stderr, tx);
        assert_eq!(
            lines,
            ["line 2: add rule ip netlab service-0123abcd-default/web/tcp/http goto nosuch"]
        );
        assert_eq!(services_in(&lines), ["default/web"]);
    }

    #[test]
    fn ignores_lines_out_of_range_and_base_objects() {
        assert!(offending_lines("/dev/stdin:9:1: Error: x", "one line\n").is_empty());
        assert!(
            services_in(&["line 1: add chain ip netlab service-endpoints-check".into()]).is_empty()
        );
    }
}
