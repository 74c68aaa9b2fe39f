//! The pod-template hash that names a Deployment's ReplicaSets (upstream's `controller.ComputeHash`): FNV-32a
//! over the template (here its JSON encoding, which is stable for a given template) and the Deployment's
//! `collisionCount`, the decimal sum rendered with `rand.SafeEncodeString`'s consonant-and-digit alphabet.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Upstream's `rand.SafeEncodeString` alphabet: no vowels (no accidental words), no `0`, `1`, `3`.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-32a, as Go's `hash/fnv.New32a`.
#[derive(Debug, Clone, Copy)]
struct Fnv32a(u32);

impl Fnv32a {
    const fn new() -> Self {
        Self(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// Maps every byte onto the safe alphabet (upstream's `rand.SafeEncodeString`).
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()])).collect()
}

/// The `pod-template-hash` of a template: stable for a given template and collision count, different when
/// either changes.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::new();
    // Serializing a typed struct cannot fail (string keys only); an empty encoding would still hash.
    hasher.write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        // Upstream writes an 8-byte buffer holding the little-endian u32.
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.cast_unsigned().to_le_bytes());
        hasher.write(&bytes);
    }
    safe_encode(&hasher.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv32a_matches_go() {
        // Known vectors of FNV-1a 32: "" and "a".
        let mut h = Fnv32a::new();
        assert_eq!(h.0, 0x811c_9dc5);
        h.write(b"a");
        assert_eq!(h.0, 0xe40c_292c);
    }

    #[test]
    fn safe_encode_of_digits() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '9' is 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
    }

    #[test]
    fn hash_is_stable_and_changes_with_template_and_collisions() {
        let a = compute_hash(&template("nginx:1"), None);
        assert_eq!(a, compute_hash(&template("nginx:1"), None));
        assert_ne!(a, compute_hash(&template("nginx:2"), None));
        assert_ne!(a, compute_hash(&template("nginx:1"), Some(1)));
        assert!(a.len() >= 6 && a.len() <= 10, "{a}");
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
    }
}
