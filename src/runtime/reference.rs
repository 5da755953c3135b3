//! Image references normalized as Docker and containerd normalize them:
//! `nginx` → `docker.io/library/nginx:latest`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

pub const DEFAULT_REGISTRY: &str = "docker.io";

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("invalid image reference {input:?}: {why}");
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(bad("contains white space"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a sha256 digest has 64 hex digits"));
                }
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "repository names are lowercase letters, digits, '.', '_' and '-'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io/library/nginx` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form `docker images` shows: `nginx`, `radial/busyboxplus`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(
            n("radial/busyboxplus:curl"),
            "docker.io/radial/busyboxplus:curl"
        );
        assert_eq!(
            n("bprashanth/nginxhttps:1.0"),
            "docker.io/bprashanth/nginxhttps:1.0"
        );
        assert_eq!(n("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(n("quay.io/x/y:v1"), "quay.io/x/y:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("host:5000/repo@{d}")),
            format!("host:5000/repo@{d}")
        );
        assert_eq!(Reference::parse("nginx").unwrap().familiar_name(), "nginx");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("a b").is_err());
        assert!(Reference::parse("nginx:").is_err());
        assert!(Reference::parse("Nginx").is_err());
        assert!(Reference::parse("nginx@sha256:abc").is_err());
    }
}
