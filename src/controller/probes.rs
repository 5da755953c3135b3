//! Probes as the kubelet runs them: `httpGet` and `tcpSocket` from the
//! pod's node (the kubelet's network view), `exec` inside the container;
//! and the kill that follows a failed liveness or startup probe. What a
//! result means (thresholds, the startup gate, kills) is decided in
//! `liveness.rs`.

use crate::net::NetNs;
use crate::paths;
use crate::runtime::Runc;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs one probe once: Ok on success, else the failure as the kubelet's
/// event words it.
pub async fn run_once(
    lab: &str,
    node: &str,
    namespace: &str,
    pod: &str,
    pod_ip: Ipv4Addr,
    container: &Container,
    probe: &Probe,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, container)?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        // `host` is where to connect (the pod's address by default), as
        // the kubelet dials it.
        let to = host.parse::<Ipv4Addr>().unwrap_or(pod_ip);
        let addr = SocketAddr::from((to, port));
        return in_node(lab, node, move || http_get(addr, &host, &path, timeout)).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, container)?;
        let addr = SocketAddr::from((pod_ip, port));
        return in_node(lab, node, move || {
            TcpStream::connect_timeout(&addr, timeout)
                .map(drop)
                .map_err(|e| format!("dial tcp {addr}: {}", dial_error(&e)))
        })
        .await;
    }
    if let Some(exec) = &probe.exec {
        let args = exec.command.clone().unwrap_or_default();
        if args.is_empty() {
            return Err("exec probe without a command".into());
        }
        let id = paths::container_id(namespace, pod, &container.name);
        let pid_file = tempfile::NamedTempFile::new_in(paths::lab_dir(lab))
            .map_err(|e| format!("running {args:?}: {e}"))?
            .into_temp_path();
        let mut cmd = Runc::new(&paths::runc_root(lab)).exec_bounded(&id, &args, &pid_file);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("running {args:?}: {e}"))?;
        let output = child.wait_with_output();
        tokio::pin!(output);
        let ran = tokio::time::timeout(timeout, &mut output).await;
        if ran.is_err() {
            // Out of time: the command is killed in the container, and
            // `runc exec` reaps it and ends.
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut output).await;
            }
        }
        return match ran {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                // The kubelet reports what the command printed.
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = text.trim();
                Err(if text.is_empty() {
                    format!(
                        "command {:?} exited with {}",
                        args.join(" "),
                        out.status.code().unwrap_or(-1)
                    )
                } else {
                    text.to_string()
                })
            }
            Ok(Err(e)) => Err(format!("running {args:?}: {e}")),
            Err(_) => Err(format!(
                "command {:?} timed out after {}s",
                args.join(" "),
                timeout.as_secs()
            )),
        };
    }
    Err("the probe has no handler netlab runs (httpGet, tcpSocket, exec)".into())
}

/// Go's wording of a refused or timed-out dial, as the kubelet's messages show it.
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// A container the prober is killing or has killed: kept until the
/// controller records its death, so that `lastState.terminated` carries the
/// exit code the runtime would report (137 after SIGKILL), not "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed {
    /// The last signal sent.
    pub signal: i32,
    /// The wait status of the dead process, when the kernel tells it
    /// (`PIDFD_INFO_EXIT`, Linux 6.15+).
    pub status: Option<i32>,
    /// The kill is over: the process is gone.
    pub done: bool,
}

/// The prober's kills by container id, shared with the kill tasks.
#[derive(Debug, Clone, Default)]
pub struct Kills(Arc<Mutex<HashMap<String, Killed>>>);

impl Kills {
    fn set(&self, id: &str, k: Killed) {
        self.0.lock().expect("kills").insert(id.to_string(), k);
    }

    /// The exit code of a dead container, if the prober killed it: waits
    /// (at most 2 s) for the kill to finish, since the controller may see
    /// the death before the kill task has read the exit status.
    pub async fn exit_code(&self, id: &str) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let k = *self.0.lock().expect("kills").get(id)?;
            if k.done || std::time::Instant::now() >= deadline {
                self.0.lock().expect("kills").remove(id);
                return Some(exit_code(k.status, k.signal));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The exit code a runtime reports for a wait status (128 + the signal for
/// a process killed by one, as containerd and shells say it); without the
/// status, the signal that was sent last is what killed it.
pub fn exit_code(status: Option<i32>, last_signal: i32) -> i32 {
    match status {
        Some(st) if libc::WIFSIGNALED(st) => 128 + libc::WTERMSIG(st),
        Some(st) => libc::WEXITSTATUS(st),
        None => 128 + last_signal,
    }
}

/// Kills a container the kubelet's way after a failed liveness or startup
/// probe: the image's stop signal, then SIGKILL when the grace period runs
/// out. Signals go through a pidfd of the process that failed, so a
/// container restarted meanwhile (same id) is never hit. Its death is then
/// noticed, and it is restarted, by the controller's ordinary path, which
/// takes its exit code from `kills`.
pub async fn kill(lab: &str, id: &str, stop_signal: &str, grace: Duration, kills: Kills) {
    let runc = Runc::new(&paths::runc_root(lab));
    let Ok(state) = runc.state(id).await else {
        return;
    };
    if state.status != "running" {
        return;
    }
    let Ok(pidfd) = crate::runtime::exits::pidfd_open(state.pid) else {
        return; // already gone
    };
    let signal = nix::sys::signal::Signal::from_str(stop_signal)
        .unwrap_or(nix::sys::signal::Signal::SIGTERM);
    let mut killed = Killed {
        signal: signal as i32,
        status: None,
        done: false,
    };
    kills.set(id, killed);
    send(&pidfd, signal);
    let _ = super::down::wait_gone_within(&[state.pid], grace).await;
    if crate::runtime::runc::process_alive(state.pid) {
        killed.signal = nix::sys::signal::Signal::SIGKILL as i32;
        kills.set(id, killed);
        send(&pidfd, nix::sys::signal::Signal::SIGKILL);
        let _ = super::down::wait_gone_within(&[state.pid], Duration::from_secs(5)).await;
    }
    killed.status = crate::runtime::exits::wait_status(&pidfd).await;
    killed.done = true;
    kills.set(id, killed);
}

fn send(pidfd: &OwnedFd, signal: nix::sys::signal::Signal) {
    // SAFETY: pidfd_send_signal with a pidfd we own, a valid signal number,
    // no siginfo and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

async fn in_node(
    lab: &str,
    node: &str,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let ns = NetNs::open(&paths::node_netns(lab, node))
        .map_err(|e| format!("entering node {node}: {e}"))?;
    tokio::task::spawn_blocking(move || ns.run(f).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?
}

/// A number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let found = match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    found.ok_or_else(|| match port {
        IntOrString::Int(n) => format!("invalid port number: {n}"),
        IntOrString::String(name) => format!("unknown port name {name:?}"),
    })
}

/// A minimal HTTP/1.0 GET: success is a status from 200 to 399, as the kubelet counts it.
fn http_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<(), String> {
    let url = format!("http://{addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: {}", dial_error(&e)))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kube-probe/netlab\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| {
        format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers): {e}")
    })?;
    match status_code(&head[..n]) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
        None => Err(format!("Get \"{url}\": malformed HTTP response")),
    }
}

fn status_code(head: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(head);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_killed_containers_as_the_runtime_reports_them() {
        // SIGKILL: 137, whether the kernel told the status or not.
        assert_eq!(exit_code(Some(libc::SIGKILL), libc::SIGKILL), 137);
        assert_eq!(exit_code(None, libc::SIGKILL), 137);
        // Killed by its stop signal: 128 + it (SIGTERM 143, SIGQUIT 131).
        assert_eq!(exit_code(Some(libc::SIGTERM), libc::SIGTERM), 143);
        assert_eq!(exit_code(None, libc::SIGQUIT), 131);
        // It caught the signal and exited by itself: its own code.
        assert_eq!(exit_code(Some(0), libc::SIGQUIT), 0);
        assert_eq!(exit_code(Some(3 << 8), libc::SIGTERM), 3);
    }

    #[tokio::test]
    async fn exit_code_of_a_kill_waits_for_it_to_finish() {
        let kills = Kills::default();
        assert_eq!(kills.exit_code("never-killed").await, None);
        let killing = Killed {
            signal: libc::SIGTERM,
            status: None,
            done: false,
        };
        kills.set("c", killing);
        let k = kills.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            k.set(
                "c",
                Killed {
                    signal: libc::SIGKILL,
                    status: Some(libc::SIGKILL),
                    done: true,
                },
            );
        });
        assert_eq!(kills.exit_code("c").await, Some(137));
        assert_eq!(kills.exit_code("c").await, None, "taken once");
    }

    #[test]
    fn http_status_codes() {
        let table: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 200 OK\r\n", Some(200)),
            (b"HTTP/1.0 302 Found\r\n", Some(302)),
            (b"HTTP/1.1 404 Not Found\r\n", Some(404)),
            (b"", None),
        ];
        for (head, want) in table {
            assert_eq!(status_code(head), *want);
        }
    }

    #[test]
    fn ports_by_number_or_name() {
        let c: Container =
            serde_yaml_ng::from_str("name: c\nports: [{name: http, containerPort: 8080}]").unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("x".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }
}
