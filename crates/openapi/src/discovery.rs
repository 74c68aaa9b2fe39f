//! Discovery documents built from `RESOURCES`: aggregated (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`, what
//! kubectl asks for first) and legacy (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`).
//!
//! Groups appear in `RESOURCES` order with the core group first; versions in order of first appearance, which is
//! the preference order (the first is the preferred version). Empty `shortNames`/`categories`/`subresources` are
//! omitted, as upstream's `omitempty` does.

use serde_json::{Map, Value, json};
use skiff_api::resource::{RESOURCES, ResourceType, Subresource};

/// The resources of one group/version, in `RESOURCES` order.
fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

fn gvk(kind: (&str, &str, &str)) -> Value {
    json!({"group": kind.0, "version": kind.1, "kind": kind.2})
}

fn scope(r: &ResourceType) -> &'static str {
    if r.namespaced { "Namespaced" } else { "Cluster" }
}

fn aggregated_subresource(s: &Subresource) -> Value {
    json!({"subresource": s.name, "responseKind": gvk(s.kind), "verbs": s.verbs})
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let mut out = Map::new();
    out.insert("resource".into(), json!(r.plural));
    out.insert("responseKind".into(), gvk((r.group, r.version, r.kind)));
    out.insert("scope".into(), json!(scope(r)));
    out.insert("singularResource".into(), json!(r.singular));
    out.insert("verbs".into(), json!(skiff_api::resource::VERBS));
    if !r.short_names.is_empty() {
        out.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        out.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        out.insert("subresources".into(), r.subresources.iter().map(aggregated_subresource).collect());
    }
    Value::Object(out)
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources_of(group, v).map(aggregated_resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// The aggregated discovery list of the core group (`/api`, `core == true`) or of every named group (`/apis`).
pub(crate) fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = skiff_api::resource::groups()
        .iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| aggregated_group(group, versions))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// `/api`: the core group's versions. `serverAddressByClientCIDRs` is left empty for the caller to fill.
pub(crate) fn api_versions() -> Value {
    let versions: Vec<&str> = skiff_api::resource::groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty())
        .flat_map(|(_, versions)| versions)
        .collect();
    json!({"kind": "APIVersions", "versions": versions, "serverAddressByClientCIDRs": []})
}

/// One named group's `APIGroup` body (without `kind`/`apiVersion`, as inside an `APIGroupList`).
fn group_entry(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    let preferred = entries.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": entries, "preferredVersion": preferred})
}

/// `/apis`: every named group.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = skiff_api::resource::groups()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| group_entry(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: every named group's `APIGroup`, keyed by group name.
pub(crate) fn groups() -> Vec<(String, Value)> {
    skiff_api::resource::groups()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| {
            let mut entry = group_entry(group, versions);
            if let Value::Object(obj) = &mut entry {
                obj.insert("kind".into(), json!("APIGroup"));
                obj.insert("apiVersion".into(), json!("v1"));
            }
            (group.to_string(), entry)
        })
        .collect()
}

fn legacy_resource(r: &ResourceType) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(r.plural));
    out.insert("singularName".into(), json!(r.singular));
    out.insert("namespaced".into(), json!(r.namespaced));
    out.insert("kind".into(), json!(r.kind));
    out.insert("verbs".into(), json!(skiff_api::resource::VERBS));
    if !r.short_names.is_empty() {
        out.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        out.insert("categories".into(), json!(r.categories));
    }
    Value::Object(out)
}

fn legacy_subresource(r: &ResourceType, s: &Subresource) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(format!("{}/{}", r.plural, s.name)));
    out.insert("singularName".into(), json!(""));
    out.insert("namespaced".into(), json!(r.namespaced));
    out.insert("kind".into(), json!(s.kind.2));
    out.insert("verbs".into(), json!(s.verbs));
    // Upstream names the group/version only when the subresource's kind lives elsewhere (`autoscaling/v1` Scale).
    if (s.kind.0, s.kind.1) != (r.group, r.version) {
        out.insert("group".into(), json!(s.kind.0));
        out.insert("version".into(), json!(s.kind.1));
    }
    Value::Object(out)
}

/// `/api/v1`, `/apis/<group>/<version>`: every resource of one group/version, subresources as `pods/status` rows.
pub(crate) fn resource_lists() -> Vec<((String, String), Value)> {
    let mut out = Vec::new();
    for (group, versions) in skiff_api::resource::groups() {
        for version in versions {
            let mut rows = Vec::new();
            for r in resources_of(group, version) {
                rows.push(legacy_resource(r));
                rows.extend(r.subresources.iter().map(|s| legacy_subresource(r, s)));
            }
            let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
            let list = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                              "resources": rows});
            out.push(((group.to_string(), version.to_string()), list));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// The recorded kubectl samples in `shared/`, which lies beside the repository.
    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference/kubectl-samples");

    /// A sample body kubectl 1.32 accepted (the test fails when the samples are missing).
    fn sample(name: &str) -> Option<Value> {
        let path = Path::new(SAMPLES).join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("sample {}: {e}", path.display()));
        Some(serde_json::from_str(&text).expect("samples are JSON"))
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }

    fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|item| item["versions"][0]["resources"].as_array().into_iter().flatten())
            .find(|r| r["resource"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn aggregated_core_matches_the_sample_shape() {
        let ours = aggregated(true);
        assert_eq!(ours["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(ours["items"][0]["metadata"], json!({"name": "", "creationTimestamp": null}));
        let pods = resource(&ours, "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let exec = pods["subresources"].as_array().and_then(|s| s.iter().find(|s| s["subresource"] == "exec"));
        assert_eq!(exec.map(|e| e["responseKind"]["kind"].clone()), Some(json!("PodExecOptions")));
        let Some(theirs) = sample("api_aggregated.json") else { return };
        assert_eq!(keys(&ours), keys(&theirs));
        assert_eq!(keys(&ours["items"][0]), keys(&theirs["items"][0]));
        assert_eq!(keys(&ours["items"][0]["versions"][0]), keys(&theirs["items"][0]["versions"][0]));
        for name in ["pods", "services", "events", "namespaces"] {
            let (o, t) = (resource(&ours, name), resource(&theirs, name));
            assert_eq!(keys(o), keys(t), "{name}");
            assert_eq!(o["responseKind"], t["responseKind"], "{name}");
            assert_eq!(o["scope"], t["scope"], "{name}");
            // `RESOURCES` has one verb set for all; upstream namespaces lack `deletecollection`.
            if name != "namespaces" {
                assert_eq!(o["verbs"], t["verbs"], "{name}");
            }
            for sub in o["subresources"].as_array().into_iter().flatten() {
                let theirs = t["subresources"]
                    .as_array()
                    .and_then(|s| s.iter().find(|x| x["subresource"] == sub["subresource"]));
                assert_eq!(Some(sub), theirs, "{name}/{}", sub["subresource"]);
            }
        }
    }

    #[test]
    fn aggregated_groups_follow_resources_order_and_both_event_groups_exist() {
        let ours = aggregated(false);
        let names: Vec<&str> =
            ours["items"].as_array().into_iter().flatten().filter_map(|i| i["metadata"]["name"].as_str()).collect();
        assert_eq!(names.first(), Some(&"apps"));
        assert!(!names.contains(&""));
        assert!(names.contains(&"events.k8s.io"));
        assert_eq!(resource(&ours, "events")["responseKind"]["group"], "events.k8s.io");
        assert_eq!(resource(&aggregated(true), "events")["responseKind"]["group"], "");
        let deploy = resource(&ours, "deployments");
        let scale = deploy["subresources"].as_array().and_then(|s| s.iter().find(|s| s["subresource"] == "scale"));
        assert_eq!(scale.map(|s| s["responseKind"]["group"].clone()), Some(json!("autoscaling")));
        let Some(theirs) = sample("apis_aggregated.json") else { return };
        assert_eq!(keys(&ours), keys(&theirs));
        for name in ["deployments", "replicasets", "endpointslices"] {
            let (o, t) = (resource(&ours, name), resource(&theirs, name));
            assert_eq!(keys(o), keys(t), "{name}");
            assert_eq!(o["subresources"], t["subresources"], "{name}");
        }
    }

    #[test]
    fn legacy_documents_match_the_samples() {
        let versions = api_versions();
        assert_eq!(versions["versions"], json!(["v1"]));
        let list = group_list();
        let apps = list["groups"].as_array().and_then(|g| g.iter().find(|g| g["name"] == "apps")).cloned();
        let expected = json!({"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                              "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}});
        assert_eq!(apps, Some(expected.clone()));
        let (_, group) = groups().into_iter().find(|(g, _)| g == "apps").expect("apps group");
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["preferredVersion"], expected["preferredVersion"]);

        let lists = resource_lists();
        let (_, apps_v1) = lists.iter().find(|((g, v), _)| g == "apps" && v == "v1").expect("apps/v1");
        let row = |list: &Value, name: &str| {
            list["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == name)).cloned().unwrap_or_default()
        };
        let scale = row(apps_v1, "deployments/scale");
        assert_eq!(scale["group"], "autoscaling");
        assert!(row(apps_v1, "deployments/status").get("group").is_none());
        let (_, core) = lists.iter().find(|((g, _), _)| g.is_empty()).expect("core");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(row(core, "pods/exec")["kind"], "PodExecOptions");

        if let Some(theirs) = sample("api_legacy.json") {
            assert_eq!(keys(&versions), keys(&theirs));
        }
        if let Some(theirs) = sample("apis_legacy.json") {
            assert_eq!(keys(&list), keys(&theirs));
            assert_eq!(theirs["groups"][0], expected);
        }
        if let Some(theirs) = sample("apps_v1_resourcelist.json") {
            assert_eq!(keys(apps_v1), keys(&theirs));
            for name in ["deployments", "deployments/scale", "deployments/status", "replicasets/scale"] {
                let (mut o, mut t) = (row(apps_v1, name), row(&theirs, name));
                // storageVersionHash is optional and only meaningful to storage migration.
                t.as_object_mut().map(|t| t.remove("storageVersionHash"));
                o.as_object_mut().map(|o| o.remove("storageVersionHash"));
                assert_eq!(o, t, "{name}");
            }
        }
    }
}
