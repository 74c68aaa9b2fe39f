//! The four PATCH bodies the Kubernetes API accepts, applied to objects held as JSON, with no I/O.
//!
//! The API server reads the stored object, picks the function for the request's `Content-Type` and stores
//! what comes back (after defaulting and validation):
//! - `application/merge-patch+json` → [`json_merge_patch`] (RFC 7396; `kubectl label/annotate/scale`, CRDs);
//! - `application/json-patch+json` → [`json_patch`] (RFC 6902 through the `json-patch` crate);
//! - `application/strategic-merge-patch+json` → [`strategic_merge_patch`], upstream's
//!   `k8s.io/apimachinery/pkg/util/strategicpatch` semantics (what `kubectl apply` sends), driven by the merge
//!   keys of the built-in kinds in [`schema`];
//! - `application/apply-patch+yaml` → [`apply_patch`], a minimum viable server-side apply: create, or merge
//!   like a strategic merge patch without ever deleting what the applied object does not mention.
//!
//! Errors are [`PatchError`]s; [`PatchError::code`] says which HTTP status upstream answers with.

mod apply;
mod schema;
mod strategic;

use serde_json::Value;

pub use apply::apply_patch;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied. Messages follow upstream's `mergepatch` errors where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch (or the original) is not a JSON object.
    #[error("invalid JSON document")]
    InvalidDocument,
    /// A value has the wrong JSON type for where it is (a list where a map is needed, …).
    #[error("expected a {expected}, but received a {received}")]
    BadArgType { expected: &'static str, received: &'static str },
    /// An item of a list merged by key lacks the key.
    #[error("map: {item} does not contain declared merge key: {key}")]
    NoMergeKey { item: String, key: String },
    /// `$patch` has a value other than `replace`, `delete` (or `merge` in a list).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective { directive: String, map: String },
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    #[error("cannot merge lists without merge key for type map")]
    MissingMergeKey,
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The items of the patch list are not in the order `$setElementOrder` gives.
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    /// The body of an `application/json-patch+json` request is not a list of operations.
    #[error("{0}")]
    InvalidJsonPatch(String),
    /// A JSON patch operation failed (a `test` that did not match, a path that does not exist, …).
    #[error("{0}")]
    JsonPatchFailed(String),
}

impl PatchError {
    /// The HTTP status upstream answers with: 400 for a malformed patch body, 422 when a well-formed patch
    /// cannot be applied to this object.
    pub fn code(&self) -> u16 {
        match self {
            Self::InvalidDocument
            | Self::BadPrimitiveListFormat
            | Self::BadRetainKeysFormat
            | Self::BadSetElementOrderFormat
            | Self::InvalidJsonPatch(_) => 400,
            _ => 422,
        }
    }
}

/// Applies an `application/merge-patch+json` body (RFC 7396): objects merge recursively, `null` deletes a
/// key, anything else (lists included) replaces.
pub fn json_merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies an `application/json-patch+json` body (RFC 6902). All operations apply or none does.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
}

/// Whether `kind` has compiled-in patch metadata. Upstream refuses strategic merge patches (415) for kinds
/// without it, i.e. custom resources; [`strategic_merge_patch`] itself treats such kinds as plain objects.
pub fn supports_strategic_merge(api_version: &str, kind: &str) -> bool {
    schema::root_type(api_version, kind).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7396() {
        // The RFC's own example (appendix A).
        let original = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"], "content": "This will be unchanged"});
        let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null},
            "tags": ["example"]});
        assert_eq!(
            json_merge_patch(&original, &patch),
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
        assert_eq!(json_merge_patch(&json!({"a": 1}), &json!([1])), json!([1]));
        assert_eq!(json_merge_patch(&json!("x"), &json!({"a": {"b": null, "c": 1}})), json!({"a": {"c": 1}}));
    }

    #[test]
    fn kubectl_scale_and_label_are_merge_patches() {
        let deploy = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1}});
        let out = json_merge_patch(&deploy, &json!({"spec": {"replicas": 3}, "metadata": {"labels": {"tier": "fe"}}}));
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "tier": "fe"}));
    }

    #[test]
    fn json_patch_applies_all_operations() {
        let original = json!({"spec": {"replicas": 1, "template": {"metadata": {"annotations": {"a": "1"}}}}});
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "add", "path": "/spec/paused", "value": true},
            {"op": "remove", "path": "/spec/template/metadata/annotations/a"},
        ]);
        assert_eq!(
            json_patch(&original, &patch).unwrap(),
            json!({"spec": {"replicas": 2, "paused": true, "template": {"metadata": {"annotations": {}}}}})
        );
    }

    #[test]
    fn json_patch_failures_are_reported() {
        let original = json!({"spec": {"replicas": 1}});
        let failed_test = json_patch(&original, &json!([{"op": "test", "path": "/spec/replicas", "value": 5}]));
        assert!(matches!(failed_test, Err(PatchError::JsonPatchFailed(_))));
        assert_eq!(failed_test.unwrap_err().code(), 422);
        let missing = json_patch(&original, &json!([{"op": "remove", "path": "/spec/nope"}]));
        assert!(matches!(missing, Err(PatchError::JsonPatchFailed(_))));
        let malformed = json_patch(&original, &json!({"op": "add"}));
        assert!(matches!(malformed, Err(PatchError::InvalidJsonPatch(_))));
        assert_eq!(malformed.unwrap_err().code(), 400);
        let bad_op = json_patch(&original, &json!([{"op": "frobnicate", "path": "/a"}]));
        assert!(matches!(bad_op, Err(PatchError::InvalidJsonPatch(_))));
    }

    #[test]
    fn only_built_in_kinds_support_strategic_merge() {
        assert!(supports_strategic_merge("apps/v1", "Deployment"));
        assert!(supports_strategic_merge("v1", "ConfigMap"));
        assert!(!supports_strategic_merge("stable.example.com/v1", "CronTab"));
    }
}
