//! Object names the way Kubernetes makes them: `my-nginx-<pod-template-hash>-<5 chars>`.

use rand::Rng;
use serde::Serialize;

/// Kubernetes' alphabet for generated names: no vowels (no words), no
/// look-alike characters (0/o, 1/l, 3/e).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: every byte mapped into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` label: FNV-32a over the template, then the
/// Deployment's `collisionCount` as 4 little-endian bytes when it has one,
/// the decimal sum safe-encoded: `controller.ComputeHash`. Kubernetes feeds
/// FNV the template as `spew` prints the Go struct (`DeepHashObject`);
/// here it is the template's JSON, so the hash has Kubernetes' shape and
/// alphabet and is stable, but is not the same number a real cluster
/// computes for the same template.
pub fn pod_template_hash<T: Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let mut json = serde_json::to_vec(template).expect("templates serialize");
    if let Some(c) = collision_count {
        json.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv1a32(&json).to_string())
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c9dc5;
    for b in bytes {
        hash ^= *b as u32;
        hash = hash.wrapping_mul(0x01000193);
    }
    hash
}

/// `<owner>-<5 safe characters>`: a name from `generateName`.
pub fn generated(prefix: &str, rng: &mut impl Rng) -> String {
    format!("{prefix}-{}", random_suffix(rng))
}

/// The random 5-character suffix of generated names (`generateName`).
pub fn random_suffix(rng: &mut impl Rng) -> String {
    (0..5)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// A random generator seeded from `seed` (FNV-64a of it): for pure code
/// that names new objects as `generateName` does, and must name them the
/// same way every time it runs on the same input.
pub fn seeded_rng(seed: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    rand::rngs::StdRng::seed_from_u64(hash)
}

/// The rule an object's `metadata.name` follows in kube-apiserver's
/// validation (`apimachinery/pkg/util/validation`): most kinds take a DNS
/// subdomain, Services a DNS-1035 label, Namespaces an RFC 1123 label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Rfc1123Label,
    Dns1035Label,
}

impl NameRule {
    /// The rule of a resource, by its plural (`services`, `namespaces`, …).
    pub fn of(plural: &str) -> NameRule {
        match plural {
            "services" => NameRule::Dns1035Label,
            "namespaces" => NameRule::Rfc1123Label,
            _ => NameRule::Subdomain,
        }
    }

    /// What is wrong with `name`, in kube-apiserver's words (empty when it
    /// is valid). Each message follows `Invalid value: "<name>": `.
    pub fn check(self, name: &str) -> Vec<String> {
        let label = |s: &str, first_letter: bool| {
            let b = s.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && (b[0].is_ascii_lowercase() || (!first_letter && b[0].is_ascii_digit()))
                && b[b.len() - 1] != b'-'
        };
        let (max, ok, shape) = match self {
            NameRule::Subdomain => (
                253,
                name.split('.').all(|p| label(p, false)),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
            NameRule::Rfc1123Label => (
                63,
                label(name, false),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ),
            NameRule::Dns1035Label => (
                63,
                label(name, true),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ),
        };
        let mut out = Vec::new();
        if name.len() > max {
            out.push(format!("must be no more than {max} characters"));
        }
        if !ok {
            out.push(shape.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let a = pod_template_hash(&serde_json::json!({"x": 1}), None);
        assert_eq!(a, pod_template_hash(&serde_json::json!({"x": 1}), None));
        assert_ne!(a, pod_template_hash(&serde_json::json!({"x": 2}), None));
        // A collision count changes the hash (a new name for the same template).
        let c = pod_template_hash(&serde_json::json!({"x": 1}), Some(1));
        assert_ne!(a, c);
        assert_ne!(c, pod_template_hash(&serde_json::json!({"x": 1}), Some(2)));
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert!(c.bytes().all(|b| ALPHANUMS.contains(&b)));
        let s = random_suffix(&mut rand::rng());
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn names_are_checked_as_kube_apiserver_checks_them() {
        assert!(NameRule::Subdomain.check("my-nginx.v1").is_empty());
        assert!(NameRule::Subdomain.check("1abc").is_empty());
        let e = NameRule::Subdomain.check("My_Pod");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("a lowercase RFC 1123 subdomain must consist of"),
            "{e:?}"
        );
        assert!(
            e[0].ends_with(r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
            "{e:?}"
        );
        assert_eq!(NameRule::Subdomain.check("a.-b").len(), 1);
        assert!(NameRule::Dns1035Label.check("my-svc").is_empty());
        assert!(NameRule::Dns1035Label.check("1svc")[0].starts_with("a DNS-1035 label"));
        assert!(!NameRule::Dns1035Label.check("a.b").is_empty());
        assert!(NameRule::Rfc1123Label.check("1ns").is_empty());
        assert_eq!(
            NameRule::Rfc1123Label.check(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
        assert_eq!(NameRule::of("services"), NameRule::Dns1035Label);
        assert_eq!(NameRule::of("configmaps"), NameRule::Subdomain);
    }
}
