//! Decodes Kubernetes protobuf request bodies into the JSON objects Kubernetes would produce for them.
//!
//! Since 1.32, kubectl's typed clients (`kubectl create deployment|service|namespace|configmap|secret|…`, typed
//! deletes) send `Content-Type: application/vnd.kubernetes.protobuf`; the Skiff API server stores JSON. Data flows
//! in one direction: [`decode`] checks the `k8s\0` magic, reads the `runtime.Unknown` envelope
//! (`typeMeta{apiVersion, kind} = 1, raw = 2, contentEncoding = 3, contentType = 4`), looks the kind up in the
//! embedded schema, and `render` walks `raw` field by field, producing a `serde_json::Value` with upstream JSON
//! names, then sets `apiVersion`/`kind`.
//!
//! Design: rather than hand-writing a conversion for each of the ~200 reachable k8s-pb message types (option a), or
//! compiling `.proto` files for `prost-reflect` (which would need the upstream `generated.proto` sources vendored),
//! the schema is a small generated text file (`src/schema.txt`, written by `tools/gen_schema.py` from the field
//! tags and types in k8s-pb 0.9 and the JSON names in k8s-openapi 0.29). A ~300-line generic decoder interprets it;
//! supporting a new kind is one line in the generator. Go's JSON rules that the wire cannot express — which zero
//! values are meaningful (Go pointers) — live in `presence`. Runtime dependencies are only serde_json, base64 and
//! chrono; k8s-pb/prost are used by the tests to build real bodies.

mod presence;
mod render;
mod schema;
mod wire;

pub use wire::WireError;

use serde_json::Value;

use crate::schema::Schema;
use crate::wire::{Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf body does not start with the kubernetes magic bytes \"k8s\\x00\"")]
    BadMagic,
    #[error("malformed protobuf in {at}")]
    Malformed {
        at: String,
        #[source]
        source: WireError,
    },
    #[error("malformed protobuf: {field} should be {expected} on the wire but is {found}")]
    WireTypeMismatch { field: String, expected: &'static str, found: &'static str },
    #[error("invalid value in {at}: {reason}")]
    InvalidValue { at: String, reason: String },
    #[error("protobuf envelope carries no apiVersion/kind")]
    MissingTypeMeta,
    #[error("protobuf body uses content encoding {0:?}, which is not supported")]
    UnsupportedEncoding(String),
    #[error("protobuf bodies of kind {kind} ({api_version}) are not supported by this server; send JSON instead")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("protobuf message nesting is too deep")]
    TooDeep,
    #[error("embedded protobuf schema is broken: {0}")]
    Schema(String),
}

/// Whether a `Content-Type` header names Kubernetes protobuf (parameters such as `;charset=` are allowed).
pub fn is_protobuf_content_type(ct: &str) -> bool {
    ct.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE))
}

/// Decodes a body `k8s\0` + `runtime.Unknown{typeMeta{apiVersion,kind}, raw, contentEncoding, contentType}` into the
/// JSON object Kubernetes would produce (same field names, omitting unset fields), with `apiVersion`/`kind` set.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(MAGIC.as_slice()).ok_or(DecodeError::BadMagic)?;
    let unknown = Unknown::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedEncoding(unknown.content_encoding));
    }
    if unknown.api_version.is_empty() || unknown.kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta);
    }
    let mut object = if unknown.content_type.starts_with("application/json") {
        // Not produced by client-go, but a legal envelope: raw already is JSON.
        serde_json::from_slice(unknown.raw)
            .map_err(|e| DecodeError::InvalidValue { at: "runtime.Unknown.raw".into(), reason: e.to_string() })?
    } else {
        let schema = Schema::embedded().map_err(DecodeError::Schema)?;
        let message = schema.kind(&unknown.api_version, &unknown.kind).ok_or_else(|| DecodeError::UnsupportedKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        })?;
        render::render(schema, message, unknown.raw)?.unwrap_or_else(|| Value::Object(Default::default()))
    };
    let Value::Object(map) = &mut object else {
        return Err(DecodeError::InvalidValue { at: "runtime.Unknown.raw".into(), reason: "not an object".into() });
    };
    map.insert("apiVersion".into(), Value::String(unknown.api_version));
    map.insert("kind".into(), Value::String(unknown.kind));
    Ok(object)
}

/// `(apiVersion, kind)` pairs [`decode`] accepts; apiVersion `*` means any group version.
pub fn supported_kinds() -> Vec<(String, String)> {
    let mut kinds: Vec<_> = Schema::embedded()
        .map(|s| s.kinds().map(|(a, k)| (a.to_string(), k.to_string())).collect())
        .unwrap_or_default();
    kinds.sort();
    kinds
}

/// The `runtime.Unknown` envelope (apimachinery `pkg/runtime/generated.proto`).
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Unknown<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut out = Unknown {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        for (number, value) in fields(bytes, "runtime.Unknown")? {
            match (number, value) {
                (1, WireValue::Bytes(type_meta)) => {
                    for (n, v) in fields(type_meta, "runtime.TypeMeta")? {
                        match (n, v) {
                            (1, WireValue::Bytes(b)) => out.api_version = text(b),
                            (2, WireValue::Bytes(b)) => out.kind = text(b),
                            _ => {}
                        }
                    }
                }
                (2, WireValue::Bytes(b)) => out.raw = b,
                (3, WireValue::Bytes(b)) => out.content_encoding = text(b),
                (4, WireValue::Bytes(b)) => out.content_type = text(b),
                (1..=4, other) => {
                    return Err(DecodeError::WireTypeMismatch {
                        field: format!("runtime.Unknown field {number}"),
                        expected: "length-delimited",
                        found: other.kind(),
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn fields<'a>(bytes: &'a [u8], at: &str) -> Result<Vec<(u32, WireValue<'a>)>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(field) =
        reader.next_field().map_err(|source| DecodeError::Malformed { at: at.to_string(), source })?
    {
        out.push(field);
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_detection() {
        assert!(is_protobuf_content_type("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf_content_type("application/vnd.kubernetes.protobuf; charset=utf-8"));
        assert!(is_protobuf_content_type(" Application/VND.Kubernetes.Protobuf "));
        assert!(!is_protobuf_content_type("application/json"));
        assert!(!is_protobuf_content_type("application/vnd.kubernetes.protobuf-x"));
        assert!(!is_protobuf_content_type(""));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(decode(b""), Err(DecodeError::BadMagic)));
        assert!(matches!(decode(b"{\"kind\":\"Pod\"}"), Err(DecodeError::BadMagic)));
        // typeMeta claims 0x15 bytes but the body ends
        assert!(matches!(decode(b"k8s\0\x0a\x15\x0a\x07apps/v1"), Err(DecodeError::Malformed { .. })));
        // empty envelope: no kind
        assert!(matches!(decode(b"k8s\0"), Err(DecodeError::MissingTypeMeta)));
        // typeMeta as a varint
        assert!(matches!(decode(b"k8s\0\x08\x01"), Err(DecodeError::WireTypeMismatch { .. })));
    }

    #[test]
    fn supported_kinds_lists_the_schema_roots() {
        let kinds = supported_kinds();
        assert!(kinds.contains(&("apps/v1".into(), "Deployment".into())));
        assert!(kinds.contains(&("*".into(), "DeleteOptions".into())));
    }
}
