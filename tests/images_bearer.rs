//! Bearer-token auth (Docker Hub's token flow) end to end (root): a fake
//! token-auth front of the tests' own, on a free loopback port, challenges
//! every `/v2/` request without a token it issued, hands out tokens at its
//! realm for basic credentials, and proxies authorized requests to the local
//! registry setup runs. `netlab pull` must go through the whole flow, as a
//! registry itself and as docker.io's mirror, and fail clearly without the
//! right credentials. Each test has its own front and store, so they run in
//! parallel.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USER: &str = "bob";
const PASSWORD: &str = "t0ken-s3cret";
const SERVICE: &str = "fake-registry";
const IMAGE: &str = "radial/busyboxplus";

/// One request to the realm.
#[derive(Debug, Clone)]
struct TokenRequest {
    /// The basic credentials it carried, if any.
    basic: Option<(String, String)>,
    scope: Option<String>,
    service: Option<String>,
    /// Whether it got a token (with pull access for the scope's repository
    /// only if the credentials were right).
    granted: bool,
}

/// What the front saw.
#[derive(Debug, Default)]
struct Seen {
    tokens: Vec<TokenRequest>,
    /// `METHOD path` of requests carrying a token of its own with access,
    /// proxied to the registry.
    authorized: Vec<String>,
    /// `METHOD path` of requests answered 401.
    challenged: Vec<String>,
}

#[derive(Default)]
struct State {
    seen: Seen,
    /// Issued token → the repositories it may pull.
    issued: HashMap<String, Vec<String>>,
}

/// A token-auth registry front on 127.0.0.1 (an ephemeral port) before the
/// local registry; stopped when dropped.
struct TokenRegistry {
    addr: String,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TokenRegistry {
    fn start() -> TokenRegistry {
        require_root();
        require_local_registry();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding the fake registry");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let (s, a) = (state.clone(), addr.clone());
        runtime.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &a, &s).await;
                });
            }
        });
        TokenRegistry {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.lock().unwrap().seen)
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads up to the end of a header block; `None` at EOF before one.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((String::from_utf8_lossy(&buf).into_owned(), rest)));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("header block too long"));
        }
    }
}

fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        target,
        headers,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = req.header("authorization")?.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The repository a `/v2/NAME/(manifests|blobs|tags)/…` path names.
fn repository_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .find_map(|k| rest.find(k).map(|i| rest[..i].to_string()))
}

async fn respond(
    conn: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    conn.write_all(out.as_bytes()).await?;
    conn.shutdown().await
}

/// One request per connection (every answer says `Connection: close`).
async fn serve(mut conn: TcpStream, addr: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let Some((head, _body)) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let Some(req) = parse_request(&head) else {
        return respond(&mut conn, "400 Bad Request", &[], "").await;
    };
    let path = req.target.split('?').next().unwrap_or("").to_string();
    let what = format!("{} {}", req.method, req.target);

    if path == "/token" {
        let q = query(&req.target);
        let basic = basic_credentials(&req);
        let scope = q.get("scope").cloned();
        let right = basic
            .as_ref()
            .is_some_and(|(u, p)| u == USER && p == PASSWORD);
        // Docker Hub gives anonymous callers a token too, one without
        // access to private repositories; wrong credentials get a 401.
        let granted = basic.is_none() || right;
        let token = format!("fake-{}-{}", std::process::id(), rand_suffix());
        {
            let mut s = state.lock().unwrap();
            s.seen.tokens.push(TokenRequest {
                basic: basic.clone(),
                scope: scope.clone(),
                service: q.get("service").cloned(),
                granted,
            });
            if granted {
                let repos = scope
                    .as_deref()
                    .filter(|_| right)
                    .and_then(|s| s.strip_prefix("repository:"))
                    .and_then(|s| s.rsplit_once(':'))
                    .filter(|(_, actions)| actions.split(',').any(|a| a == "pull"))
                    .map(|(repo, _)| vec![repo.to_string()])
                    .unwrap_or_default();
                s.issued.insert(token.clone(), repos);
            }
        }
        return if granted {
            let body = format!(
                r#"{{"token":"{token}","access_token":"{token}","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}}"#
            );
            respond(
                &mut conn,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                &body,
            )
            .await
        } else {
            respond(
                &mut conn,
                "401 Unauthorized",
                &[("Content-Type", "application/json".into())],
                r#"{"details":"incorrect username or password"}"#,
            )
            .await
        };
    }

    if !path.starts_with("/v2/") {
        return respond(&mut conn, "404 Not Found", &[], "").await;
    }
    let repository = repository_of(&path);
    let allowed = {
        let s = state.lock().unwrap();
        req.header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| s.issued.get(t.trim()))
            .is_some_and(|repos| match &repository {
                // `/v2/` itself: any token of its own.
                None => path == "/v2/",
                Some(r) => repos.contains(r),
            })
    };
    if !allowed || !matches!(req.method.as_str(), "GET" | "HEAD") {
        state.lock().unwrap().seen.challenged.push(what);
        let mut challenge = format!(r#"Bearer realm="http://{addr}/token",service="{SERVICE}""#);
        if let Some(r) = &repository {
            challenge.push_str(&format!(r#",scope="repository:{r}:pull""#));
        }
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return respond(
            &mut conn,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", challenge),
                ("Content-Type", "application/json".into()),
                ("Docker-Distribution-Api-Version", "registry/2.0".into()),
            ],
            if req.method == "HEAD" { "" } else { body },
        )
        .await;
    }
    state.lock().unwrap().seen.authorized.push(what);
    proxy(conn, &req, addr).await
}

/// Forwards the request to the local registry and streams its answer back,
/// saying `Connection: close`.
async fn proxy(mut conn: TcpStream, req: &Request, addr: &str) -> std::io::Result<()> {
    let mut up = TcpStream::connect(LOCAL_REGISTRY).await?;
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {LOCAL_REGISTRY}\r\nConnection: close\r\n",
        req.method, req.target
    );
    for name in ["Accept", "Range", "User-Agent", "If-None-Match"] {
        for (k, v) in req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("\r\n");
    up.write_all(out.as_bytes()).await?;
    let Some((head, rest)) = read_head(&mut up).await? else {
        return Err(std::io::Error::other("the local registry closed"));
    };
    let mut head_out = String::new();
    for line in head.trim_end().split("\r\n") {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        // Redirects within the registry stay behind the front.
        head_out.push_str(&line.replace(
            &format!("http://{LOCAL_REGISTRY}"),
            &format!("http://{addr}"),
        ));
        head_out.push_str("\r\n");
    }
    head_out.push_str("Connection: close\r\n\r\n");
    conn.write_all(head_out.as_bytes()).await?;
    conn.write_all(&rest).await?;
    tokio::io::copy(&mut up, &mut conn).await?;
    conn.shutdown().await
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}{}", N.fetch_add(1, Ordering::SeqCst))
}

// ------------------------------------------------------------ helpers

fn store_dir() -> tempfile::TempDir {
    // Not /tmp: overlayfs and trusted.* xattrs need a real filesystem.
    std::fs::create_dir_all("/var/tmp").unwrap();
    tempfile::tempdir_in("/var/tmp").unwrap()
}

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn credentials(host: &str, user: &str, password: &str) -> String {
    format!(
        "configs:\n  \"{host}\":\n    auth:\n      username: {user}\n      password: {password}\n"
    )
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn failed(out: &std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} succeeded:\n{}", stdout(out));
    stderr(out)
}

/// The front handed a token for these credentials and pull on the image,
/// then served manifests and blobs for it.
fn assert_token_flow(fake: &TokenRegistry, what: &str) {
    let scope = format!("repository:{IMAGE}:pull");
    fake.seen(|seen| {
        assert!(
            seen.challenged.iter().any(|r| r == "GET /v2/"),
            "{what}: no unauthenticated GET /v2/ challenged: {seen:#?}"
        );
        assert!(
            seen.tokens.iter().any(|t| t.granted
                && t.basic == Some((USER.into(), PASSWORD.into()))
                && t.scope.as_deref() == Some(scope.as_str())
                && t.service.as_deref() == Some(SERVICE)),
            "{what}: no token request with the credentials, scope {scope} and service {SERVICE}: {seen:#?}"
        );
        let manifests = format!("/v2/{IMAGE}/manifests/");
        let blobs = format!("/v2/{IMAGE}/blobs/sha256:");
        assert!(
            seen.authorized.iter().any(|r| r.contains(&manifests)),
            "{what}: no manifest request with the bearer token: {seen:#?}"
        );
        assert!(
            seen.authorized.iter().any(|r| r.contains(&blobs)),
            "{what}: no blob request with the bearer token: {seen:#?}"
        );
    });
}

// ------------------------------------------------------------ tests

#[test]
fn pull_through_bearer_token_flow() {
    let fake = TokenRegistry::start();
    let store = store_dir();
    let data = store.path().join("store");
    let data = data.to_str().unwrap();
    let cfg = write_config(
        store.path(),
        "registries.yaml",
        &credentials(&fake.addr, USER, PASSWORD),
    );
    let env = [
        ("NETLAB_DATA_DIR", data),
        ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
    ];
    let image = format!("{}/{IMAGE}:curl", fake.addr);
    let out = ok(&netlab_env(&["pull", &image], &env), "pull with a token");
    assert!(out.contains("pulled sha256:"), "{out}");
    assert!(out.contains(&format!("from http://{}", fake.addr)), "{out}");
    assert_token_flow(&fake, "pull");

    let list = ok(&netlab_env(&["images"], &env), "images");
    assert!(
        list.contains(&format!("{}/{IMAGE}", fake.addr)) && list.contains("curl"),
        "{list}"
    );

    // The unchanged tag is checked with a token too, and nothing transfers.
    let tokens_before = fake.seen(|s| s.tokens.len());
    let again = ok(&netlab_env(&["pull", &image], &env), "second pull");
    assert!(
        again.contains("up to date") && again.contains(" 0 B downloaded"),
        "{again}"
    );
    fake.seen(|s| {
        assert!(s.tokens.len() > tokens_before, "{s:#?}");
        assert!(
            s.authorized
                .iter()
                .any(|r| r.starts_with("HEAD ") && r.contains("/manifests/curl")),
            "the tag was not checked with the token: {s:#?}"
        );
    });
}

#[test]
fn pull_without_or_with_wrong_credentials_fails_clearly() {
    let fake = TokenRegistry::start();
    let store = store_dir();
    let data = store.path().join("store");
    let data = data.to_str().unwrap();
    let image = format!("{}/{IMAGE}:curl", fake.addr);
    let cases = [
        ("none", write_config(store.path(), "none.yaml", "")),
        (
            "wrong",
            write_config(
                store.path(),
                "wrong.yaml",
                &credentials(&fake.addr, USER, "not-the-password"),
            ),
        ),
    ];
    for (case, cfg) in &cases {
        let err = failed(
            &netlab_env(
                &["pull", &image],
                &[
                    ("NETLAB_DATA_DIR", data),
                    ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
                ],
            ),
            &format!("pull with {case} credentials"),
        );
        assert!(
            err.contains(&fake.addr),
            "{case}: registry not named: {err}"
        );
        let lower = err.to_lowercase();
        assert!(
            lower.contains("authentication failed"),
            "{case}: no word of failed authentication: {err}"
        );
        assert!(
            err.contains("configs:") && err.contains(&format!("\"{}\"", fake.addr)),
            "{case}: does not say where credentials go: {err}"
        );
        assert!(
            err.contains(cfg.as_str()),
            "{case}: does not name the config file: {err}"
        );
    }
    fake.seen(|s| {
        assert!(
            s.tokens.iter().any(|t| t.basic.is_none()),
            "no anonymous token request: {s:#?}"
        );
        assert!(
            s.tokens
                .iter()
                .any(|t| !t.granted && t.basic == Some((USER.into(), "not-the-password".into()))),
            "no refused token request with the wrong password: {s:#?}"
        );
        assert!(
            s.authorized
                .iter()
                .all(|r| !r.contains("/manifests/") && !r.contains("/blobs/")),
            "something was served without the right credentials: {s:#?}"
        );
    });
    let list = ok(
        &netlab_env(
            &["images"],
            &[
                ("NETLAB_DATA_DIR", data),
                ("NETLAB_REGISTRIES_CONFIG", cases[0].1.as_str()),
            ],
        ),
        "images",
    );
    assert!(!list.contains(&fake.addr), "{list}");
}

#[test]
fn pull_through_token_auth_mirror_of_docker_io() {
    let fake = TokenRegistry::start();
    let store = store_dir();
    let data = store.path().join("store");
    let data = data.to_str().unwrap();
    let cfg = write_config(
        store.path(),
        "registries.yaml",
        &format!(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n{}",
            fake.addr,
            credentials(&fake.addr, USER, PASSWORD)
        ),
    );
    let env = [
        ("NETLAB_DATA_DIR", data),
        ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
    ];
    let out = ok(
        &netlab_env(&["pull", &format!("{IMAGE}:curl")], &env),
        "pull through the mirror",
    );
    assert!(out.contains("pulled sha256:"), "{out}");
    assert!(out.contains(&format!("from http://{}", fake.addr)), "{out}");
    assert_token_flow(&fake, "mirror pull");
    let list = ok(&netlab_env(&["images"], &env), "images");
    assert!(list.contains(IMAGE) && list.contains("curl"), "{list}");
}
