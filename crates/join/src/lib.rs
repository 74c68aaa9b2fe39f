//! How a machine joins a cluster as a node, shared by the API server and `skiff agent --server … --token …`.
//!
//! The join token is k3s's secure format, `K10<sha256 of the cluster CA, hex>::server:<secret>`: the hash pins
//! the CA (the agent fetches `/cacerts` without trusting anything, and goes on only when the hash matches), the
//! secret authenticates the join (`POST` [`JOIN_PATH`] with it as a bearer token). The answer ([`Joined`]) gives
//! the node its own API credential ([`node_token`]: `node:<name>:<HMAC-SHA256(secret, name)>`, which the API
//! server checks by recomputing it, so every server sharing the secret accepts it), the token the API server
//! presents to the node's streaming server ([`stream_token`]), and a streaming server certificate signed by the
//! cluster CA for the node's name and address.
//!
//! Hand-written here, and why: this is Skiff's own bootstrap protocol (k3s's is internal to k3s); it only
//! formats and derives tokens, with the `hmac` and `sha2` crates doing the cryptography.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Where a node fetches the cluster CA (no credentials; k3s serves the same path).
pub const CACERTS_PATH: &str = "/cacerts";
/// Where a node joins.
pub const JOIN_PATH: &str = "/v1-skiff/join";

/// What a joining node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    pub node_ip: std::net::IpAddr,
}

/// What the server gives a node that joined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The node's bearer token for the API.
    pub token: String,
    /// The token the API server presents to the node's streaming server.
    pub stream_token: String,
    /// The streaming server's certificate and key (PEM), signed by the cluster CA.
    pub serving_cert: String,
    pub serving_key: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 of the CA's PEM.
pub fn ca_hash(ca_pem: &str) -> String {
    hex(&Sha256::digest(ca_pem.as_bytes()))
}

/// The join token for a cluster with this CA and join secret.
pub fn join_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", ca_hash(ca_pem))
}

/// A join token's parts: the CA hash and the secret.
pub fn parse_join_token(token: &str) -> Result<(&str, &str), String> {
    let malformed =
        || "a join token looks like K10<CA hash>::server:<secret> (as `skiff server` prints it)".to_string();
    let rest = token.trim().strip_prefix("K10").ok_or_else(malformed)?;
    let (hash, credential) = rest.split_once("::").ok_or_else(malformed)?;
    let secret = credential.strip_prefix("server:").ok_or_else(malformed)?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return Err(malformed());
    }
    Ok((hash, secret))
}

fn mac(secret: &str, purpose: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(purpose.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The API credential of node `name`.
pub fn node_token(secret: &str, name: &str) -> String {
    format!("node:{name}:{}", mac(secret, &format!("node:{name}")))
}

/// Whether `token` is a node credential this secret issued; the node's name when it is.
pub fn node_of<'a>(secret: &str, token: &'a str) -> Option<&'a str> {
    let name = token.strip_prefix("node:")?.rsplit_once(':')?.0;
    constant_time_eq(&node_token(secret, name), token).then_some(name)
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token the API server presents to every node's streaming server.
pub fn stream_token(secret: &str) -> String {
    mac(secret, "stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_pins_the_ca_and_carries_the_secret() {
        let token = join_token("-----BEGIN CERTIFICATE-----\nx\n", "s3cret");
        let (hash, secret) = parse_join_token(&token).expect("a token");
        assert_eq!((hash, secret), (ca_hash("-----BEGIN CERTIFICATE-----\nx\n").as_str(), "s3cret"));
        for bad in ["", "K10abc::server:x", "nope", &token.replace("::server:", "::node:"), &token[..70]] {
            assert!(parse_join_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_tokens_are_checked_by_recomputing_them() {
        let token = node_token("secret", "node-2");
        assert_eq!(node_of("secret", &token), Some("node-2"));
        assert_eq!(node_of("other", &token), None, "another cluster's secret");
        assert_eq!(node_of("secret", &token.replace("node-2", "node-3")), None, "a name it was not issued for");
        assert_eq!(node_of("secret", "node:node-2:00"), None);
        assert_ne!(stream_token("secret"), stream_token("other"));
    }
}
