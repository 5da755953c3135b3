//! Where images come from: registry mirrors and credentials, as containerd
//! (through k3s's `registries.yaml`) has them. For each registry, the
//! mirrors' endpoints are tried in order, then the registry itself.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5001":
//!     auth: {username: alice, password: secret}
//! ```
//!
//! Sources, the later replacing the earlier registry by registry: the
//! config file (`/etc/netlab/registries.yaml`, or `NETLAB_REGISTRIES_CONFIG`),
//! the Lab document's `spec.registries`, then `--registry-mirror` /
//! `NETLAB_REGISTRY_MIRRORS` (`docker.io=http://127.0.0.1:5000,…`).
//! An endpoint without a scheme speaks HTTPS, except on loopback where a
//! local registry speaks plain HTTP (as Docker treats 127.0.0.0/8).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/netlab/registries.yaml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

/// Credentials for one registry host: a user and password (basic auth, or
/// exchanged for a bearer token when the registry asks for one, as Docker
/// Hub does), or a ready identity token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Auth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `base64(user:password)`, as in Docker's config.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// `identity_token` in k3s's registries.yaml, `identitytoken` in
    /// containerd's config.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "identity_token",
        alias = "identitytoken"
    )]
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({:?}, <redacted>)", self.username)
    }
}

/// How to reach one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
    /// Whether it is a mirror (else the registry itself).
    pub mirror: bool,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("registry mirror {0:?}: write REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000")]
    Flag(String),
    #[error("registry endpoint {0:?}: write [http[s]://]host[:port], without a path")]
    Endpoint(String),
}

impl Registries {
    /// The config file: `NETLAB_REGISTRIES_CONFIG` or `/etc/netlab/registries.yaml`;
    /// none is an empty config.
    pub fn config_path() -> PathBuf {
        std::env::var_os("NETLAB_REGISTRIES_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    pub fn load(path: &Path) -> Result<Registries, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registries::default()),
            Err(e) => {
                return Err(RegistriesError::File {
                    path: path.into(),
                    message: e.to_string(),
                })
            }
        };
        let r: Registries = if text.trim().is_empty() {
            Registries::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| RegistriesError::File {
                path: path.into(),
                message: e.to_string(),
            })?
        };
        r.validate().map_err(|e| RegistriesError::File {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(r)
    }

    /// Every endpoint must parse.
    pub fn validate(&self) -> Result<(), RegistriesError> {
        for m in self.mirrors.values() {
            for e in &m.endpoint {
                parse_endpoint(e, true)?;
            }
        }
        Ok(())
    }

    /// `docker.io=http://127.0.0.1:5000` flags (one endpoint each; repeat a
    /// registry for several, in order).
    pub fn from_flags(flags: &[String]) -> Result<Registries, RegistriesError> {
        let mut r = Registries::default();
        for f in flags.iter().filter(|f| !f.trim().is_empty()) {
            let (registry, url) = f
                .split_once('=')
                .ok_or_else(|| RegistriesError::Flag(f.clone()))?;
            let (registry, url) = (registry.trim(), url.trim());
            if registry.is_empty() || url.is_empty() {
                return Err(RegistriesError::Flag(f.clone()));
            }
            parse_endpoint(url, true)?;
            r.mirrors
                .entry(registry.to_string())
                .or_default()
                .endpoint
                .push(url.to_string());
        }
        Ok(r)
    }

    /// Mirrors given as registry → endpoints (the Lab document's).
    pub fn from_mirrors(
        mirrors: &BTreeMap<String, Vec<String>>,
    ) -> Result<Registries, RegistriesError> {
        let r = Registries {
            mirrors: mirrors
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Mirror {
                            endpoint: v.clone(),
                        },
                    )
                })
                .collect(),
            configs: BTreeMap::new(),
        };
        r.validate()?;
        Ok(r)
    }

    /// Mirrors as registry → endpoints (to keep in a lab's config).
    pub fn mirror_map(&self) -> BTreeMap<String, Vec<String>> {
        self.mirrors
            .iter()
            .map(|(k, v)| (k.clone(), v.endpoint.clone()))
            .collect()
    }

    /// `self` with `higher`'s mirrors and configs replacing its own,
    /// registry by registry.
    pub fn overlay(mut self, higher: &Registries) -> Registries {
        for (k, v) in &higher.mirrors {
            self.mirrors.insert(k.clone(), v.clone());
        }
        for (k, v) in &higher.configs {
            self.configs.insert(k.clone(), v.clone());
        }
        self
    }

    /// The endpoints to try for `registry`, in order: its mirrors, then itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .mirrors
            .get(registry)
            .into_iter()
            .flat_map(|m| m.endpoint.iter())
            .filter_map(|e| parse_endpoint(e, true).ok())
            .collect();
        if let Ok(own) = parse_endpoint(registry, false) {
            if !out.iter().any(|e| e.host == own.host) {
                out.push(own);
            }
        }
        out
    }

    /// Credentials for a registry host, if configured.
    pub fn auth(&self, host: &str) -> Option<&Auth> {
        self.configs.get(host).and_then(|c| c.auth.as_ref())
    }
}

/// `http://127.0.0.1:5000` → host `127.0.0.1:5000`, plain HTTP.
fn parse_endpoint(text: &str, mirror: bool) -> Result<Endpoint, RegistriesError> {
    let bad = || RegistriesError::Endpoint(text.to_string());
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, text),
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let plain_http = match scheme {
        Some("http") => true,
        Some("https") => false,
        Some(_) => return Err(bad()),
        None => is_loopback(host),
    };
    Ok(Endpoint {
        host: host.to_string(),
        plain_http,
        mirror,
    })
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_then_the_registry() {
        let r = Registries::from_flags(&["docker.io=http://127.0.0.1:5000".into()]).unwrap();
        let e = r.endpoints("docker.io");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].url(), "http://127.0.0.1:5000");
        assert!(e[0].mirror);
        assert_eq!(e[1].url(), "https://docker.io");
        assert!(!e[1].mirror);
        assert_eq!(r.endpoints("quay.io")[0].url(), "https://quay.io");
    }

    #[test]
    fn loopback_speaks_http() {
        let r = Registries::default();
        assert_eq!(
            r.endpoints("127.0.0.1:5000")[0].url(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            r.endpoints("localhost:5000")[0].url(),
            "http://localhost:5000"
        );
        assert_eq!(r.endpoints("[::1]:5000")[0].url(), "http://[::1]:5000");
        assert_eq!(
            r.endpoints("example.com:5000")[0].url(),
            "https://example.com:5000"
        );
    }

    #[test]
    fn k3s_file_format_and_overlay() {
        let file: Registries = serde_yaml_ng::from_str(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\nconfigs:\n  \"127.0.0.1:5001\":\n    auth: {username: a, password: b}\n",
        )
        .unwrap();
        assert_eq!(
            file.auth("127.0.0.1:5001").unwrap().username.as_deref(),
            Some("a")
        );
        let flag = Registries::from_flags(&["docker.io=127.0.0.1:6000".into()]).unwrap();
        let merged = file.overlay(&flag);
        assert_eq!(
            merged.endpoints("docker.io")[0].url(),
            "http://127.0.0.1:6000"
        );
        assert!(merged.auth("127.0.0.1:5001").is_some());
        assert!(format!("{:?}", merged.auth("127.0.0.1:5001")).contains("redacted"));
    }

    #[test]
    fn identity_token_as_k3s_and_containerd_spell_it() {
        for key in ["identity_token", "identityToken", "identitytoken"] {
            let file: Registries = serde_yaml_ng::from_str(&format!(
                "configs:\n  \"127.0.0.1:5001\":\n    auth: {{{key}: tok}}\n"
            ))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(
                file.auth("127.0.0.1:5001")
                    .unwrap()
                    .identity_token
                    .as_deref(),
                Some("tok"),
                "{key}"
            );
        }
    }

    #[test]
    fn bad_flags() {
        assert!(Registries::from_flags(&["docker.io".into()]).is_err());
        assert!(Registries::from_flags(&["docker.io=ftp://x".into()]).is_err());
        assert!(Registries::from_flags(&["docker.io=http://x/path".into()]).is_err());
    }
}
