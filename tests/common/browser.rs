//! A headless Chromium (Debian's `chromium`) driven through the DevTools
//! protocol over its WebSocket: the page's tests and benchmark open the
//! lab's page, read its DOM by evaluating JavaScript, and take
//! screenshots. No WebDriver: the protocol is a few JSON messages.
#![allow(dead_code)] // shared by tests/ui.rs and benches/convergence.rs

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub const CHROMIUM: &str = "/usr/bin/chromium";

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Fields drop in this order: the socket before its runtime, Chromium
/// before its profile.
pub struct Browser {
    ws: Socket,
    rt: tokio::runtime::Runtime,
    _child: Process,
    _profile: tempfile::TempDir,
    next: u64,
}

/// `GET path` on the DevTools HTTP endpoint: the body (by its
/// Content-Length: Chromium keeps the connection open, and answers
/// HTTP/1.0 with nothing).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|n| body.len() >= n) {
                return Ok(body.to_string());
            }
        }
    }
    Ok(String::new())
}

/// Chromium, ended (TERM: it ends its own helper processes; killed, it
/// might leave them behind) when this goes.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child this struct owns.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts Chromium on `url` (window `width`×`height`) and attaches to
    /// its page. Panics, saying what to install, when there is no Chromium.
    pub fn open(url: &str, width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)"
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("a log");
        let child = Process(
            Command::new(CHROMIUM)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--remote-debugging-port=0",
                    &format!("--window-size={width},{height}"),
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("chromium starts"),
        );
        // Chromium writes the port it listens on into the profile.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&active)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse().ok())
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start: {}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let page = loop {
            let list: Value = http_get(port, "/json/list")
                .ok()
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            let page =
                list.as_array().into_iter().flatten().find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| !u.is_empty())
                });
            if let Some(ws) = page.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                break ws.to_string();
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            std::thread::sleep(Duration::from_millis(50));
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ws = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the DevTools socket");
            tokio_tungstenite::client_async(page.as_str(), tcp)
                .await
                .expect("the DevTools WebSocket")
                .0
        });
        Browser {
            _child: child,
            _profile: profile,
            rt,
            ws,
            next: 0,
        }
    }

    /// One DevTools command: its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        let ws = &mut self.ws;
        self.rt.block_on(async {
            ws.send(Message::Text(msg.into())).await.expect("send");
            loop {
                let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
                    .await
                    .expect("chromium answers")
                    .expect("the socket is open")
                    .expect("a message");
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                    return v["result"].clone();
                }
            }
        })
    }

    /// The value of JavaScript `expression` in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (every 10 ms, at most
    /// `timeout`): its value, and how long it took.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
    ) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let v = self.eval(expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return (v, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "the page: {what} not within {timeout:?}; its status: {}",
                self.eval("document.getElementById('status')?.textContent")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A PNG of the whole page, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("an image"))
            .expect("base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// Where tests keep what they make for people to look at (screenshots):
/// `target/artifacts`.
pub fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("artifacts")
}
