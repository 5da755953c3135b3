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
}
