//! The lab's page (`netlab ui`, src/ui) in a real browser: Debian's
//! headless Chromium, driven through the DevTools protocol
//! (tests/common/browser.rs). The page shows every pod; a pod deleted
//! through the API is replaced on the page within a second; a trace run
//! from the page lists its hops and is drawn over the picture. The
//! screenshot stays in target/artifacts/ui.png. And the page's door: a
//! link works once, only on 127.0.0.1, and the page cannot write.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn lab_yaml() -> String {
    format!(
        "{}{}---\n{MY_NGINX_SVC}",
        lab_doc(2),
        nginx_deployment("my-nginx", 2)
    )
}

/// A fresh link to the lab's page.
fn link(lab: &Lab) -> String {
    let url = lab.ok(&["ui"]).trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "netlab ui printed {url:?}"
    );
    url
}

/// (namespace, name) of every pod, from the API.
fn all_pods(lab: &Lab) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&lab.ok(&["get", "pods", "-A", "-o", "json"])).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["namespace"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The ids of the page's nginx pods in the picture, as a JS array.
const NGINX_IN_PICTURE: &str =
    "[...document.querySelectorAll('#graph g[id^=\"pod-default-my-nginx-\"]')].map(g => g.id)";

#[test]
fn the_page_follows_the_lab_and_draws_a_trace() {
    require_root();
    let lab = Lab::up(&unique("ui"), &lab_yaml());
    let mut b = Browser::open(&link(&lab), 1600, 1000);

    // Every pod, in the picture and in the table.
    let pods = all_pods(&lab);
    assert_eq!(pods.len(), 3, "2 nginx and coredns: {pods:?}");
    for (ns, name) in &pods {
        b.wait_for(
            &format!("pod {ns}/{name}"),
            Duration::from_secs(10),
            &format!(
                "!!document.getElementById('pod-{ns}-{name}') && \
                 !!document.querySelector('#pods tr[data-pod=\"{ns}/{name}\"]')"
            ),
        );
    }
    let title = b.eval("document.title");
    assert!(title.as_str().unwrap().contains(&lab.name), "{title}");

    // A pod deleted through the API: its replacement is on the page
    // within a second.
    let before: Vec<String> = serde_json::from_value(b.eval(NGINX_IN_PICTURE)).unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    let victim = before[0].trim_start_matches("pod-default-").to_string();
    let started = Instant::now();
    let out = lab.kubectl(KUBECTLS[1], &["delete", "pod", &victim, "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let known = serde_json::to_string(&before).unwrap();
    let (_, _) = b.wait_for(
        "the deleted pod's replacement",
        Duration::from_secs(5),
        &format!("{NGINX_IN_PICTURE}.some(id => !{known}.includes(id))"),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the replacement showed {took:?} after the delete (kubectl's start included)"
    );
    // And the deleted one goes, once its container has stopped.
    b.wait_for(
        "the deleted pod gone",
        Duration::from_secs(35),
        &format!("!document.getElementById('pod-default-{victim}')"),
    );

    // A trace from the page: its hops, and its path over the picture.
    b.wait_for(
        "node-1 as a source",
        Duration::from_secs(5),
        "[...document.getElementById('from').options].some(o => o.value === 'node/node-1')",
    );
    b.eval(
        "document.getElementById('from').value = 'node/node-1';\
         document.getElementById('to').value = 'my-nginx';\
         document.getElementById('trace-form').requestSubmit(); true",
    );
    let (result, _) = b.wait_for(
        "the trace's result",
        Duration::from_secs(10),
        "document.getElementById('trace-result').textContent.startsWith('result:') && \
         document.getElementById('trace-result').textContent",
    );
    assert!(
        result.as_str().unwrap().contains("connected"),
        "{result}: {}",
        b.eval("document.getElementById('trace-steps').textContent")
    );
    let kinds: Vec<String> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#trace-steps li')].map(li => li.dataset.kind)"),
    )
    .unwrap();
    for kind in ["dns", "rule", "dnat"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} hop in {kinds:?}"
        );
    }
    let lit: Vec<String> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#graph .hl')].map(e => e.id)"),
    )
    .unwrap();
    assert!(lit.contains(&"node-node-1".to_string()), "{lit:?}");
    assert!(lit.contains(&"svc-default-my-nginx".to_string()), "{lit:?}");
    assert!(
        lit.iter().any(|id| id.starts_with("pod-default-my-nginx-")),
        "the endpoint pod is not highlighted: {lit:?}"
    );
    let points =
        b.eval("document.querySelector('#trace-overlay polyline')?.getAttribute('points')");
    assert_eq!(
        points.as_str().map(|p| p.split(' ').count()),
        Some(3),
        "the path goes node → Service → pod: {points}"
    );
    // The path is drawn again with the picture when the lab changes.
    let draws = b.eval("Number(document.body.dataset.draws)");
    lab.ok(&["scale", "deployment/my-nginx", "--replicas", "3"]);
    b.wait_for(
        "the picture drawn again",
        Duration::from_secs(5),
        &format!("Number(document.body.dataset.draws) > {draws}"),
    );
    b.wait_for(
        "the trace drawn again",
        Duration::from_secs(5),
        "!!document.querySelector('#trace-overlay polyline')",
    );

    let shot = browser::artifacts().join("ui.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    drop(b);
    lab.down_clean();
}

/// (HTTP code, headers, body) of `curl` with `args`.
fn curl_http(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-m", "5"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

#[test]
fn the_link_works_once_on_loopback_and_the_page_only_reads() {
    require_root();
    let lab = Lab::up(&unique("uidoor"), &lab_doc(1));
    let url = link(&lab);
    let base = url.split("/?").next().unwrap().to_string();
    let port = base.rsplit(':').next().unwrap();

    // No session: a page that says how to get one.
    let (code, _, body) = curl_http(&[&format!("{base}/")]);
    assert_eq!(code, 401);
    assert!(body.contains("netlab ui --lab"), "{body}");
    let (code, _, _) = curl_http(&[&format!("{base}/api/v1/pods")]);
    assert_eq!(code, 401, "the API through the page needs a session");

    // Another Host (DNS rebinding): refused, even with a token.
    let (code, _, _) = curl_http(&["-H", "Host: evil.example", &url]);
    assert_eq!(code, 403);

    // The link: a session cookie, once.
    let (code, head, _) = curl_http(&[&url]);
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        head.to_lowercase().contains("httponly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let (code, _, _) = curl_http(&[&url]);
    assert_eq!(code, 401, "a link works once");

    // With the session: the page, its picture, the API (reads only).
    let (code, _, body) = curl_http(&["-b", &cookie, &format!("{base}/")]);
    assert_eq!(code, 200);
    assert!(
        body.contains(&lab.name) && body.contains("/ui/page.js"),
        "{body}"
    );
    let (code, _, body) = curl_http(&[
        "-b",
        &cookie,
        &format!("http://localhost:{port}/ui/graph.svg"),
    ]);
    assert_eq!(code, 200);
    assert!(body.contains("<svg") && body.contains("node-1"), "{body}");
    let (code, _, body) = curl_http(&["-b", &cookie, &format!("{base}/api/v1/namespaces")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"kube-system\""), "{body}");
    let (code, _, _) = curl_http(&[
        "-b",
        &cookie,
        "-X",
        "DELETE",
        &format!("{base}/api/v1/namespaces/default"),
    ]);
    assert_eq!(code, 405, "the page cannot write");
    assert!(lab.ok(&["get", "namespaces"]).contains("default"));
    // A trace the page cannot start: a clear error, as `netlab trace` says it.
    let (code, _, body) = curl_http(&[
        "-b",
        &cookie,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"from": "pod/nope", "to": "10.0.0.1"}"#,
        &format!("{base}/ui/trace"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("pod default/nope not found"), "{body}");
    lab.down_clean();
}
