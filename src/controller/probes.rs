//! Readiness probes as the kubelet runs them: `httpGet` and `tcpSocket`
//! from the pod's node (the kubelet's network view), `exec` inside the
//! container. A probe's outcome, with its thresholds, decides the READY
//! column and whether the pod is in its Services' endpoints.

use crate::net::NetNs;
use crate::paths;
use crate::runtime::Runc;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Runs one probe once; true on success.
pub async fn run_once(
    lab: &str,
    node: &str,
    namespace: &str,
    pod: &str,
    pod_ip: Ipv4Addr,
    container: &Container,
    probe: &Probe,
) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let Some(port) = resolve_port(&http.port, container) else {
            return false;
        };
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let addr = SocketAddr::from((pod_ip, port));
        return in_node(lab, node, move || http_get(addr, &host, &path, timeout)).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, container) else {
            return false;
        };
        let addr = SocketAddr::from((pod_ip, port));
        return in_node(lab, node, move || {
            TcpStream::connect_timeout(&addr, timeout).is_ok()
        })
        .await;
    }
    if let Some(exec) = &probe.exec {
        let args = exec.command.clone().unwrap_or_default();
        if args.is_empty() {
            return false;
        }
        let id = paths::container_id(namespace, pod, &container.name);
        let mut cmd = Runc::new(&paths::runc_root(lab)).exec_command(&id, &args, false);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = match tokio::process::Command::from(cmd).spawn() {
            Ok(c) => c,
            Err(_) => return false,
        };
        return match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        };
    }
    false
}

async fn in_node(lab: &str, node: &str, f: impl FnOnce() -> bool + Send + 'static) -> bool {
    let Ok(ns) = NetNs::open(&paths::node_netns(lab, node)) else {
        return false;
    };
    tokio::task::spawn_blocking(move || ns.run(f).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// A number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// A minimal HTTP/1.0 GET: success is a status from 200 to 399, as the kubelet counts it.
fn http_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kube-probe/netlab\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap_or(0);
    status_ok(&head[..n])
}

fn status_ok(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

/// Consecutive results of one container's probe, and when it last ran.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    pub successes: i32,
    pub failures: i32,
    pub last: Option<std::time::Instant>,
}

impl Tracker {
    /// Records a result; returns the readiness it implies, if it decides one.
    pub fn observe(&mut self, ok: bool, probe: &Probe) -> Option<bool> {
        self.last = Some(std::time::Instant::now());
        if ok {
            self.successes += 1;
            self.failures = 0;
            (self.successes >= probe.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures >= probe.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }

    pub fn due(&self, probe: &Probe, started: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        if let Some(t) = started {
            if (chrono::Utc::now() - t).to_std().unwrap_or_default() < initial {
                return false;
            }
        }
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.last.is_none_or(|l| l.elapsed() >= period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_ranges() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_ok(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_ok(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_ok(b""));
    }

    #[test]
    fn thresholds() {
        let probe = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(1),
            ..Default::default()
        };
        let mut t = Tracker::default();
        assert_eq!(t.observe(true, &probe), Some(true));
        assert_eq!(t.observe(false, &probe), None);
        assert_eq!(t.observe(false, &probe), Some(false));
        assert_eq!(t.observe(true, &probe), Some(true));
    }
}
