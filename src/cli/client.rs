//! netlab's verbs as clients of the lab's Kubernetes API (kube-rs), as
//! kubectl is: the lab's process owns the lab, and no verb reads or writes
//! its state. Paths come from the served resource list (`api::resources`).
//!
//! The client authenticates with the lab's admin certificate (the verbs
//! run as root, who can read `/run/netlab/<lab>/pki`). When the lab's
//! process does not run (killed, or stopped with `netlab controller
//! stop`), the first verb starts it, as a supervisor would.

use crate::api::resources::Resource;
use crate::controller::daemon;
use anyhow::{anyhow, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

pub const JSON: &str = "application/json";
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// How long a verb waits for the lab's process to act on its write.
const SETTLE: Duration = Duration::from_secs(120);

pub struct Client {
    inner: kube::Client,
}

/// kube-apiserver's answer to a failed request: kubectl prints it as
/// `Error from server (Reason): message`.
#[derive(Debug, thiserror::Error)]
#[error("Error from server ({reason}): {message}")]
pub struct ApiFailure {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Client {
    /// A client of lab `lab`'s API, starting the lab's process if it is
    /// not running.
    pub async fn connect(lab: &str) -> Result<Client> {
        if !crate::store::exists(lab) {
            return Err(crate::controller::missing(lab).into());
        }
        if daemon::running(lab).is_some() {
            if let Ok(c) = Client::try_connect(lab, false).await {
                return Ok(c);
            }
        } else {
            daemon::spawn(lab).map_err(|e| anyhow!("starting the process of lab {lab}: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Client::try_connect(lab, true).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "the API of lab {lab} does not answer (see {})",
                        daemon::log_file(lab).display()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// A client; with `probe`, once the API has answered.
    async fn try_connect(lab: &str, probe: bool) -> Result<Client> {
        let addr = crate::api::address(lab).ok_or_else(|| anyhow!("no API address yet"))?;
        let pki = crate::api::pki::LabPki::read(&crate::api::pki::dir(lab))?;
        let text = super::kubeconfig::standalone(lab, &crate::api::url(addr), &pki);
        let kc = kube::config::Kubeconfig::from_yaml(&text)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let inner = kube::Client::try_from(config)?;
        let c = Client { inner };
        if probe {
            c.get("/version", JSON).await?;
        }
        Ok(c)
    }

    /// The kube-rs client, for what the plain requests here do not cover
    /// (the exec stream).
    pub fn kube(&self) -> kube::Client {
        self.inner.clone()
    }

    /// One request; a non-2xx answer becomes an `ApiFailure`.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Value, ApiFailure> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::ACCEPT, accept);
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req.body(body).expect("a valid request");
        match self.inner.request_text(req).await {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ApiFailure {
                code: 500,
                reason: "InternalError".into(),
                message: format!("the answer to {path} is not JSON: {e}"),
            }),
            Err(kube::Error::Api(s)) => Err(ApiFailure {
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            }),
            Err(e) => Err(ApiFailure {
                code: 503,
                reason: "ServiceUnavailable".into(),
                message: e.to_string(),
            }),
        }
    }

    pub async fn get(&self, path: &str, accept: &str) -> Result<Value, ApiFailure> {
        self.request(http::Method::GET, path, None, accept, Vec::new())
            .await
    }

    /// Every Node, Pod and Service of the lab, as lists (what `graph` and
    /// `trace` name things by).
    pub async fn nodes_pods_services(&self) -> Result<[Value; 3], ApiFailure> {
        Ok([
            self.get("/api/v1/nodes", JSON).await?,
            self.get("/api/v1/pods", JSON).await?,
            self.get("/api/v1/services", JSON).await?,
        ])
    }

    /// The NetworkPolicies and Namespaces (what isolates which pod).
    pub async fn policies_namespaces(&self) -> Result<[Value; 2], ApiFailure> {
        Ok([
            self.get("/apis/networking.k8s.io/v1/networkpolicies", JSON)
                .await?,
            self.get("/api/v1/namespaces", JSON).await?,
        ])
    }

    /// The object at `path`, or None when it does not exist.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, ApiFailure> {
        match self.get(path, JSON).await {
            Ok(v) => Ok(Some(v)),
            Err(f) if f.code == 404 => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// That node `node` is one of the lab's, or an error naming them.
    pub async fn require_node(&self, lab: &str, node: &str) -> Result<()> {
        let nodes = crate::api::resources::find("", "v1", "nodes").expect("served");
        let list = self.get(&path(nodes, None, None), JSON).await?;
        let names: Vec<&str> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        if !names.contains(&node) {
            anyhow::bail!(
                "nodes {node:?} not found in lab {lab} (nodes: {})",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// A pod, typed.
    pub async fn pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<k8s_openapi::api::core::v1::Pod> {
        let pods = crate::api::resources::find("", "v1", "pods").expect("served");
        let v = self
            .get(&path(pods, Some(namespace), Some(name)), JSON)
            .await?;
        Ok(serde_json::from_value(v)?)
    }

    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, ApiFailure> {
        let bytes = serde_json::to_vec(body).expect("JSON serializes");
        let out = self
            .request(method, path, Some(content_type), JSON, bytes)
            .await?;
        if !path.contains("dryRun=") {
            let revision = out["metadata"]["resourceVersion"].as_str().unwrap_or("");
            self.settle(revision, SETTLE).await?;
        }
        Ok(out)
    }

    /// The store's revision now (a list's resourceVersion). A list of one
    /// namespace by name: a `limit` that cut the list short would pin the
    /// store's state for the next page, which never comes.
    pub async fn revision(&self) -> Result<String> {
        let list = self
            .get(
                "/api/v1/namespaces?fieldSelector=metadata.name%3Ddefault",
                JSON,
            )
            .await?;
        list["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the lab's API answered a list without a resourceVersion"))
    }

    /// Waits until the lab's process has acted on a write (its pods
    /// started, or stopped and gone; rules synced): netlab's verbs return then, as
    /// they always did, where kubectl's return at once. Its errors (a pod
    /// that does not serve) are the verb's.
    pub async fn settle(&self, revision: &str, timeout: Duration) -> Result<(), ApiFailure> {
        let path = format!(
            "{}{}",
            crate::controller::settled::PATH,
            query(&[
                ("revision", revision),
                ("quiet", "true"),
                ("timeoutSeconds", &timeout.as_secs().to_string())
            ])
        );
        let out = self.get(&path, JSON).await?;
        let errors: Vec<&str> = out["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiFailure {
            code: 500,
            reason: "InternalError".into(),
            message: errors.join("\n"),
        })
    }
}

/// The path of a resource's collection (`namespace` None: all namespaces)
/// or of one object.
pub fn path(r: &Resource, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut p = match r.group {
        "" => format!("/api/{}", r.version),
        g => format!("/apis/{g}/{}", r.version),
    };
    if let (true, Some(ns)) = (r.namespaced, namespace) {
        p.push_str(&format!("/namespaces/{ns}"));
    }
    p.push('/');
    p.push_str(r.plural);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

/// `?a=b&c=d` with the values percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let pods = crate::api::resources::find("", "v1", "pods").unwrap();
        let deps = crate::api::resources::find("apps", "v1", "deployments").unwrap();
        let nodes = crate::api::resources::find("", "v1", "nodes").unwrap();
        assert_eq!(
            path(pods, Some("default"), None),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(path(pods, None, None), "/api/v1/pods");
        assert_eq!(
            path(deps, Some("x"), Some("my-nginx")),
            "/apis/apps/v1/namespaces/x/deployments/my-nginx"
        );
        assert_eq!(
            path(nodes, Some("default"), Some("node-1")),
            "/api/v1/nodes/node-1"
        );
        assert_eq!(
            query(&[("labelSelector", "run=my-nginx,a in (b)"), ("x", "")]),
            "?labelSelector=run%3Dmy-nginx%2Ca%20in%20%28b%29"
        );
    }
}
