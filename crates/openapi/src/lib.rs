//! The self-description documents the API server serves verbatim: OpenAPI v3 (`/openapi/v3`, one document per
//! group/version) and discovery (aggregated `apidiscovery.k8s.io/v2` for `/api` and `/apis`, and the legacy
//! `APIVersions`/`APIGroupList`/`APIGroup`/`APIResourceList` bodies).
//!
//! Data flows one way: `skiff_api::resource::RESOURCES` (the one table of served resources) → builders in
//! [`discovery`] and [`openapi`] (schemas generated from `k8s-openapi`'s `schemars` impls, converted to OpenAPI
//! 3.0) → [`Documents::build`], called once at start-up, which keeps every document both as a `serde_json::Value`
//! and as pre-serialized [`Bytes`] so that serving is a cheap clone.
//!
//! kubectl reads these documents for three things. Its default `--validate=strict` looks, in the GV document, for
//! a PATCH operation carrying the object's `x-kubernetes-group-version-kind` and a `fieldValidation` parameter
//! (every PATCH operation of that GVK must have it: kubectl stops at the first one it meets). `kubectl explain`
//! walks `components.schemas` from the schema carrying the GVK. And client-side `kubectl apply` computes its
//! strategic merge patch from the OpenAPI schema **only if** the PATCH operation advertises
//! `application/strategic-merge-patch+json`.
//!
//! Design decision: PATCH operations do **not** advertise `application/strategic-merge-patch+json`.
//! `k8s-openapi`'s schemas carry no `x-kubernetes-patch-merge-key`/`x-kubernetes-patch-strategy`, and a schema
//! without them makes kubectl treat lists such as `containers` or Service `ports` as atomic, computing a patch
//! the server (which merges by key) would apply wrongly. Without the content type kubectl falls back to its
//! compiled-in Go types, which carry the upstream patch tags, and sends the same patch a real cluster receives.
//! The server still accepts strategic merge patches; this only changes how kubectl computes them.
//!
//! The root lists each group/version document with `?hash=` the uppercase hex SHA-256 of its bytes (kubectl's
//! cache key; serve it as the `ETag` too). `examples/serve_documents.rs` serves only these documents, for trying
//! `kubectl explain`, `api-resources` or `apply --dry-run=client` against them.

pub mod discovery;
pub mod openapi;

use bytes::Bytes;
use serde_json::Value;

/// The `Content-Type` of aggregated discovery responses. kubectl keys on it: the same body sent as plain
/// `application/json` is parsed as legacy discovery and the core group disappears.
pub const AGGREGATED_DISCOVERY_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// A document as a value and as the bytes to send.
#[derive(Debug, Clone)]
pub struct Served {
    value: Value,
    bytes: Bytes,
}

impl Served {
    fn new(value: Value) -> Self {
        // `Value`'s `Display` is its compact JSON serialization and cannot fail.
        let bytes = Bytes::from(value.to_string());
        Served { value, bytes }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The serialized document; cloning is a reference-count bump.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Every document, built once.
#[derive(Debug, Clone)]
pub struct Documents {
    openapi_root: Served,
    group_versions: Vec<(String, Served, String)>,
    aggregated_core: Served,
    aggregated_groups: Served,
    legacy_api_versions: Served,
    legacy_group_list: Served,
    legacy_groups: Vec<(String, Served)>,
    legacy_resource_lists: Vec<((String, String), Served)>,
}

impl Default for Documents {
    fn default() -> Self {
        Self::build()
    }
}

impl Documents {
    /// Builds every document from `RESOURCES`. Takes a few tens of milliseconds; call it once.
    pub fn build() -> Self {
        let gv_docs = openapi::build_group_versions();
        let openapi_root = Served::new(openapi::root_document(&gv_docs));
        Documents {
            openapi_root,
            group_versions: gv_docs.into_iter().map(|d| (d.path, d.doc, d.hash)).collect(),
            aggregated_core: Served::new(discovery::aggregated(true)),
            aggregated_groups: Served::new(discovery::aggregated(false)),
            legacy_api_versions: Served::new(discovery::api_versions()),
            legacy_group_list: Served::new(discovery::group_list()),
            legacy_groups: discovery::groups().into_iter().map(|(g, v)| (g, Served::new(v))).collect(),
            legacy_resource_lists: discovery::resource_lists()
                .into_iter()
                .map(|(gv, v)| (gv, Served::new(v)))
                .collect(),
        }
    }

    /// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
    pub fn openapi_root(&self) -> &Value {
        self.openapi_root.value()
    }

    pub fn openapi_root_bytes(&self) -> &Bytes {
        self.openapi_root.bytes()
    }

    /// `GET /openapi/v3/<gv>` (`api/v1`, `apis/apps/v1`; a leading `/` is ignored): the document and its hash
    /// (use it as the `ETag`). `None` for a group/version that is not served.
    pub fn openapi_group_version(&self, gv_path: &str) -> Option<(&Value, &str)> {
        self.find_gv(gv_path).map(|(doc, hash)| (doc.value(), hash))
    }

    /// As [`Documents::openapi_group_version`], pre-serialized.
    pub fn openapi_group_version_bytes(&self, gv_path: &str) -> Option<(&Bytes, &str)> {
        self.find_gv(gv_path).map(|(doc, hash)| (doc.bytes(), hash))
    }

    fn find_gv(&self, gv_path: &str) -> Option<(&Served, &str)> {
        let gv_path = gv_path.trim_start_matches('/');
        self.group_versions.iter().find(|(path, _, _)| path == gv_path).map(|(_, doc, hash)| (doc, hash.as_str()))
    }

    /// `GET /api` with the aggregated Accept: the core group as an `APIGroupDiscoveryList`. Serve it with
    /// [`AGGREGATED_DISCOVERY_CONTENT_TYPE`].
    pub fn aggregated_core(&self) -> &Value {
        self.aggregated_core.value()
    }

    pub fn aggregated_core_bytes(&self) -> &Bytes {
        self.aggregated_core.bytes()
    }

    /// `GET /apis` with the aggregated Accept: every named group, in `RESOURCES` order.
    pub fn aggregated_groups(&self) -> &Value {
        self.aggregated_groups.value()
    }

    pub fn aggregated_groups_bytes(&self) -> &Bytes {
        self.aggregated_groups.bytes()
    }

    /// `GET /api` (legacy): `APIVersions` with an empty `serverAddressByClientCIDRs`; see
    /// [`Documents::legacy_api_versions_for`] to fill it.
    pub fn legacy_api_versions(&self) -> &Value {
        self.legacy_api_versions.value()
    }

    pub fn legacy_api_versions_bytes(&self) -> &Bytes {
        self.legacy_api_versions.bytes()
    }

    /// `APIVersions` naming the address clients reach the server at (`127.0.0.1:6443`), as upstream sends.
    pub fn legacy_api_versions_for(&self, server_address: &str) -> Value {
        let mut value = self.legacy_api_versions.value().clone();
        value["serverAddressByClientCIDRs"] =
            serde_json::json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]);
        value
    }

    /// `GET /apis` (legacy): `APIGroupList`.
    pub fn legacy_group_list(&self) -> &Value {
        self.legacy_group_list.value()
    }

    pub fn legacy_group_list_bytes(&self) -> &Bytes {
        self.legacy_group_list.bytes()
    }

    /// `GET /apis/<group>`: `APIGroup`; `None` for an unknown group (and for the core group, which has no such path).
    pub fn legacy_group(&self, group: &str) -> Option<&Value> {
        self.find_group(group).map(Served::value)
    }

    pub fn legacy_group_bytes(&self, group: &str) -> Option<&Bytes> {
        self.find_group(group).map(Served::bytes)
    }

    fn find_group(&self, group: &str) -> Option<&Served> {
        self.legacy_groups.iter().find(|(g, _)| g == group).map(|(_, doc)| doc)
    }

    /// `GET /api/v1` (`group == ""`) or `/apis/<group>/<version>`: `APIResourceList`; `None` if not served.
    pub fn legacy_resource_list(&self, group: &str, version: &str) -> Option<&Value> {
        self.find_resource_list(group, version).map(Served::value)
    }

    pub fn legacy_resource_list_bytes(&self, group: &str, version: &str) -> Option<&Bytes> {
        self.find_resource_list(group, version).map(Served::bytes)
    }

    fn find_resource_list(&self, group: &str, version: &str) -> Option<&Served> {
        self.legacy_resource_lists.iter().find(|((g, v), _)| g == group && v == version).map(|(_, doc)| doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_find_served_documents_and_bytes_match_values() {
        let docs = Documents::build();
        assert_eq!(docs.aggregated_core()["kind"], "APIGroupDiscoveryList");
        let reparsed: Value = serde_json::from_slice(docs.aggregated_groups_bytes()).expect("json");
        assert_eq!(&reparsed, docs.aggregated_groups());
        assert_eq!(docs.legacy_group("apps").map(|g| g["kind"].clone()), Some(serde_json::json!("APIGroup")));
        assert!(docs.legacy_group("").is_none());
        assert!(docs.legacy_group("widgets.example.com").is_none());
        let core = docs.legacy_resource_list("", "v1").expect("core list");
        assert_eq!(core["groupVersion"], "v1");
        assert!(docs.legacy_resource_list("apps", "v1beta1").is_none());
        assert_eq!(docs.legacy_resource_list_bytes("apps", "v1").map(|b| b.is_empty()), Some(false));
        let filled = docs.legacy_api_versions_for("127.0.0.1:6443");
        assert_eq!(filled["serverAddressByClientCIDRs"][0]["serverAddress"], "127.0.0.1:6443");
        assert_eq!(docs.legacy_api_versions()["serverAddressByClientCIDRs"], serde_json::json!([]));
        assert_eq!(
            AGGREGATED_DISCOVERY_CONTENT_TYPE,
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/reference/kubectl-samples/core_agg.hdr"
            ))
            .expect("the recorded discovery header beside the repository")
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: ").map(str::to_string))
            .expect("a Content-Type line")
        );
    }

    #[test]
    fn building_twice_gives_the_same_hashes() {
        let (a, b) = (Documents::build(), Documents::build());
        assert_eq!(a.openapi_root(), b.openapi_root());
    }
}
