//! OpenAPI v3: the root document (`/openapi/v3`) and one document per served group/version
//! (`/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`, …).
//!
//! A group/version document is the `paths` of every resource of that group/version ([`paths`]) plus the
//! `components.schemas` they reference ([`schemas`], generated from `k8s-openapi`). The root lists each document
//! by URL with the SHA-256 of its serialized bytes as `?hash=`, which kubectl uses as its cache key.

pub(crate) mod kinds;
pub mod paths;
pub mod schemas;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use skiff_api::resource::RESOURCES;

use crate::Served;

/// The Kubernetes version the documents describe (`info.version`).
pub const INFO_VERSION: &str = "v1.33.0";

/// One group/version document, served verbatim.
pub(crate) struct GroupVersionDoc {
    /// `api/v1`, `apis/apps/v1`: the path under `/openapi/v3/`.
    pub path: String,
    pub doc: Served,
    /// Uppercase hex SHA-256 of `doc`'s bytes.
    pub hash: String,
}

/// The `/openapi/v3/…` path of a group/version: `api/v1` for the core group, `apis/<group>/<version>` otherwise.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The OpenAPI document of one group/version.
pub fn group_version_document(group: &str, version: &str) -> Value {
    let mut schemas = schemas::SchemaSet::new();
    let mut paths = Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        paths::add_resource(r, &mut schemas, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": schemas.finish()},
    })
}

/// Every served group/version document, in discovery order.
pub(crate) fn build_group_versions() -> Vec<GroupVersionDoc> {
    let mut out = Vec::new();
    for (group, versions) in skiff_api::resource::groups() {
        for version in versions {
            let doc = Served::new(group_version_document(group, version));
            let hash = sha256_upper_hex(doc.bytes());
            out.push(GroupVersionDoc { path: gv_path(group, version), doc, hash });
        }
    }
    out
}

/// The root document listing every group/version document with its hash.
pub(crate) fn root_document(docs: &[GroupVersionDoc]) -> Value {
    let paths: Map<String, Value> = docs
        .iter()
        .map(|d| {
            let url = format!("/openapi/v3/{}?hash={}", d.path, d.hash);
            (d.path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({ "paths": paths })
}

fn sha256_upper_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Documents;

    /// Every `{"$ref": …}` string anywhere in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(obj) => {
                if let Some(Value::String(target)) = obj.get("$ref") {
                    out.push(target.clone());
                }
                obj.values().for_each(|v| refs(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn gv_docs() -> Vec<(String, Value)> {
        let docs = Documents::build();
        skiff_api::resource::groups()
            .into_iter()
            .flat_map(|(g, vs)| vs.into_iter().map(move |v| gv_path(g, v)))
            .map(|path| {
                let (doc, _) = docs.openapi_group_version(&path).expect("served group/version");
                (path, doc.clone())
            })
            .collect()
    }

    #[test]
    fn root_lists_every_group_version_with_the_hash_of_its_bytes() {
        let docs = Documents::build();
        let paths = docs.openapi_root()["paths"].as_object().expect("paths");
        let expected: Vec<String> = skiff_api::resource::groups()
            .into_iter()
            .flat_map(|(g, vs)| vs.into_iter().map(move |v| gv_path(g, v)))
            .collect();
        assert_eq!(paths.len(), expected.len());
        assert!(expected.contains(&"api/v1".to_string()) && expected.contains(&"apis/apps/v1".to_string()));
        for gv in expected {
            let (bytes, hash) = docs.openapi_group_version_bytes(&gv).expect("document");
            assert_eq!(hash, sha256_upper_hex(bytes));
            assert_eq!(hash.len(), 64);
            assert!(hash.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
            assert_eq!(paths[&gv]["serverRelativeURL"], format!("/openapi/v3/{gv}?hash={hash}"));
            let reparsed: Value = serde_json::from_slice(bytes).expect("bytes are JSON");
            assert_eq!(&reparsed, docs.openapi_group_version(&gv).expect("document").0);
        }
        assert!(docs.openapi_group_version("apis/widgets.example.com/v1").is_none());
        assert!(docs.openapi_group_version("/api/v1").is_some());
    }

    /// What kubectl's `supportsQueryParamV3` does: every PATCH operation of the GVK must list the parameter.
    #[test]
    fn every_kind_has_a_patch_operation_with_field_validation_and_its_gvk() {
        let docs = gv_docs();
        for r in RESOURCES {
            let (_, doc) = docs.iter().find(|(p, _)| *p == gv_path(r.group, r.version)).expect("doc");
            let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
            let patches: Vec<&Value> = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .filter_map(|item| item.get("patch"))
                .filter(|op| op["x-kubernetes-group-version-kind"] == gvk)
                .collect();
            assert!(!patches.is_empty(), "no PATCH for {gvk}");
            for op in patches {
                let names: Vec<&str> =
                    op["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
                for wanted in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(names.contains(&wanted), "{gvk} PATCH lacks {wanted}");
                }
                assert_eq!(op["x-kubernetes-action"], "patch");
                let content = op["requestBody"]["content"].as_object().expect("content");
                let types: Vec<&str> = content.keys().map(String::as_str).collect();
                assert!(
                    types.contains(&"application/apply-patch+yaml") && types.contains(&"application/merge-patch+json")
                );
                // The crate-level decision: kubectl must compute SMP from its Go types, not from these schemas.
                assert!(!types.contains(&"application/strategic-merge-patch+json"));
            }
            // The kind's schema carries its GVK, which is how kubectl (apply, explain) finds it.
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            assert!(
                schemas
                    .values()
                    .any(|s| s["x-kubernetes-group-version-kind"].as_array().is_some_and(|l| l.contains(&gvk))),
                "no schema with GVK {gvk}"
            );
        }
    }

    #[test]
    fn crud_and_subresource_paths_follow_upstream() {
        let docs = gv_docs();
        let core = &docs.iter().find(|(p, _)| p == "api/v1").expect("core").1;
        let paths = &core["paths"];
        let services = &paths["/api/v1/namespaces/{namespace}/services"];
        assert_eq!(services["get"]["x-kubernetes-action"], "list");
        assert_eq!(services["get"]["operationId"], "listCoreV1NamespacedService");
        assert_eq!(services["post"]["x-kubernetes-action"], "post");
        assert_eq!(services["delete"]["operationId"], "deleteCoreV1CollectionNamespacedService");
        let service = &paths["/api/v1/namespaces/{namespace}/services/{name}"];
        for (method, action) in [("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete")] {
            assert_eq!(service[method]["x-kubernetes-action"], action);
        }
        assert_eq!(
            service["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Service"
        );
        assert_eq!(paths["/api/v1/services"]["get"]["operationId"], "listCoreV1ServiceForAllNamespaces");
        assert_eq!(paths["/api/v1/namespaces/{name}"]["patch"]["operationId"], "patchCoreV1Namespace");
        assert_eq!(paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["x-kubernetes-action"], "patch");
        assert_eq!(paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["x-kubernetes-action"], "connect");
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"],
            "readCoreV1NamespacedPodLog"
        );

        let apps = &docs.iter().find(|(p, _)| p == "apis/apps/v1").expect("apps").1;
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let scale_schema = &apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"];
        assert_eq!(scale_schema["x-kubernetes-group-version-kind"][0]["kind"], "Scale");
        let list = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"]["responses"]["200"];
        assert_eq!(
            list["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"
        );
    }

    #[test]
    fn every_ref_resolves_and_no_json_schema_2020_constructs_remain() {
        for (path, doc) in gv_docs() {
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let mut all = Vec::new();
            refs(&doc, &mut all);
            assert!(all.len() > 10, "{path}: suspiciously few refs");
            for target in all {
                let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{path}: {target}"));
                assert!(schemas.contains_key(name), "{path}: dangling {target}");
            }
            let text = doc.to_string();
            for forbidden in ["\"$defs\"", "\"definitions\"", "\"const\"", "\"prefixItems\"", "\"$schema\""] {
                assert!(!text.contains(forbidden), "{path}: contains {forbidden}");
            }
            fn no_type_arrays(v: &Value) -> bool {
                match v {
                    Value::Object(o) => {
                        !matches!(o.get("type"), Some(Value::Array(_))) && o.values().all(no_type_arrays)
                    }
                    Value::Array(l) => l.iter().all(no_type_arrays),
                    _ => true,
                }
            }
            assert!(no_type_arrays(&doc), "{path}: type arrays remain");
        }
    }

    #[test]
    fn schemas_are_the_real_k8s_openapi_ones() {
        let docs = gv_docs();
        let core = &docs.iter().find(|(p, _)| p == "api/v1").expect("core").1;
        let schemas = &core["components"]["schemas"];
        let ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["type"], "array");
        assert_eq!(ports["items"]["$ref"], "#/components/schemas/io.k8s.api.core.v1.ServicePort");
        assert_eq!(schemas["io.k8s.api.core.v1.ServicePort"]["properties"]["port"]["format"], "int32");
        assert_eq!(schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"], true);
        assert!(
            schemas["io.k8s.api.core.v1.Container"]["required"].as_array().is_some_and(|r| r.contains(&json!("name")))
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Status"
        );
    }
}
