//! Image references, normalised the way Docker and containerd do it (`distribution/reference`):
//! `nginx`, `nginx:latest`, `library/nginx` and `docker.io/library/nginx:latest` name the same image.
//!
//! Rules: the first path component is a registry domain when it contains `.` or `:`, is `localhost`, or
//! has upper-case letters; otherwise the domain is `docker.io`, and a one-component Docker Hub name gets the
//! `library/` prefix. `index.docker.io` is an alias of `docker.io`. A tag follows the last `:` after the
//! last `/`; a digest follows `@`. A reference without tag or digest means the `latest` tag.

use std::fmt;

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag a reference without tag or digest stands for.
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not an image reference (upstream's kubelet reports these as `InvalidImageName`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid reference format: {reference:?}: {reason}")]
    Invalid { reference: String, reason: &'static str },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises `reference`.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid { reference: reference.to_string(), reason };
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let (algorithm, hex) = digest.split_once(':').ok_or_else(|| invalid("digest needs algorithm:hex"))?;
                let algorithm_ok = !algorithm.is_empty()
                    && algorithm.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
                let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c));
                if !algorithm_ok || !hex_ok {
                    return Err(invalid("malformed digest"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                let tag_ok = !tag.is_empty()
                    && tag.len() <= 128
                    && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    && !tag.starts_with(['.', '-']);
                if !tag_ok {
                    return Err(invalid("malformed tag"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }
        let (domain, path) = split_domain(name);
        if domain.is_empty() {
            return Err(invalid("empty registry domain"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(invalid("repository name must be lowercase letters, digits and separators"));
        }
        Ok(ImageRef { domain, path, tag, digest })
    }

    /// The registry domain (`docker.io`, `registry.k8s.io`, ...).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fully qualified repository name without tag or digest (`docker.io/library/nginx`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag as written, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The tag this reference pulls: the written one, else `latest` unless a digest pins the image.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG),
        }
    }

    /// The digest as written, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The short form people type: `nginx:1.25`, `kiamol/ch03-sleep`, `registry.k8s.io/pause:3.10`.
    pub fn familiar(&self) -> String {
        let mut out = if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix(OFFICIAL_REPO_PREFIX).unwrap_or(&self.path).to_string()
        } else {
            self.name()
        };
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

/// The fully qualified form: `docker.io/library/nginx:latest`, as `crictl images` and pod statuses show it.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = self.effective_tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_REPO_PREFIX}{path}");
    }
    (domain, path)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        ImageRef::parse(s).map(|r| r.to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn docker_hub_names_normalise_to_one_form() {
        for s in ["nginx", "nginx:latest", "library/nginx", "docker.io/library/nginx:latest", "index.docker.io/nginx"] {
            assert_eq!(full(s), "docker.io/library/nginx:latest", "{s}");
        }
        assert_eq!(full("kiamol/ch03-sleep"), "docker.io/kiamol/ch03-sleep:latest");
        assert_eq!(full("kiamol/ch03-numbers-web:v2"), "docker.io/kiamol/ch03-numbers-web:v2");
    }

    #[test]
    fn registries_ports_and_digests() {
        let r = ImageRef::parse("registry.k8s.io/e2e-test-images/agnhost:2.53").unwrap();
        assert_eq!((r.domain(), r.path(), r.tag()), ("registry.k8s.io", "e2e-test-images/agnhost", Some("2.53")));
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!((r.domain(), r.path(), r.effective_tag()), ("localhost:5000", "app", Some("latest")));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("nginx@{digest}")).unwrap();
        assert_eq!(r.effective_tag(), None);
        assert_eq!(r.digest(), Some(digest.as_str()));
        assert_eq!(r.familiar(), format!("nginx@{digest}"));
        let r = ImageRef::parse(&format!("nginx:1.25@{digest}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/nginx:1.25@{digest}"));
    }

    #[test]
    fn familiar_form_drops_the_defaults() {
        assert_eq!(ImageRef::parse("docker.io/library/nginx:1.25").unwrap().familiar(), "nginx:1.25");
        assert_eq!(ImageRef::parse("docker.io/kiamol/ch03-sleep").unwrap().familiar(), "kiamol/ch03-sleep");
        assert_eq!(ImageRef::parse("registry.k8s.io/pause:3.10").unwrap().familiar(), "registry.k8s.io/pause:3.10");
    }

    #[test]
    fn rejects_malformed_references() {
        for s in ["", "  ", "Nginx", "nginx:", "nginx:-x", "nginx@sha256:short", "a//b", "nginx/", ":tag", "ng inx"] {
            assert!(ImageRef::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert!(ImageRef::parse("my_org/my__app/x-y").is_ok());
    }
}
