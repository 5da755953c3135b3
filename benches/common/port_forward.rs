//! `kubectl port-forward TARGET :REMOTE` in the background, shared by the
//! streams bench and the streams tests (included by `#[path]`).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts kubectl on the host's loopback and returns it with the local
/// port it chose (from its "Forwarding from 127.0.0.1:PORT" line). Its
/// output is read on to the end on a thread: kubectl prints a line per
/// connection, and a closed pipe would end it.
pub fn start(kubectl: &str, kubeconfig: &Path, target: &str, remote: u16) -> (Child, u16) {
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["port-forward", "--address", "127.0.0.1", target])
        .arg(format!(":{remote}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{kubectl} port-forward {target} printed nothing in 20 s"));
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"));
    (child, port)
}
