//! Whole-Table tests: envelope, row objects per `includeObject`, headers, and the dispatch by resource.

use serde_json::{Value, json};
use skiff_api::resource::lookup;

use super::*;
use crate::printers::tests::{at, now};

fn rt(group: &str, version: &str, plural: &str) -> &'static ResourceType {
    match lookup(group, version, plural) {
        Some(rt) => rt,
        None => panic!("resource {group}/{version}/{plural} missing from RESOURCES"),
    }
}

fn opts(include_object: IncludeObject) -> TableOptions {
    TableOptions { include_object, resource_version: "105".into(), continue_token: None, now: now(), no_headers: false }
}

/// The `kubernetes` Service of `kubectl-samples/services_table.json`.
fn kubernetes_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"},
                     "uid": "70b26b6c-c2df-4f1e-aeb5-0f3c32106786", "creationTimestamp": at(1),
                     "generation": 1, "resourceVersion": "105"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        "status": {"loadBalancer": {}}
    })
}

#[test]
fn service_table_matches_the_recorded_sample() {
    let svc = kubernetes_service();
    let t = table(rt("", "v1", "services"), std::slice::from_ref(&svc), &opts(IncludeObject::Metadata));
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "105"}));
    let names: Vec<&str> =
        t["columnDefinitions"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    assert_eq!(t["columnDefinitions"][6]["priority"], 1);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][1]["format"], "");
    assert!(t["columnDefinitions"][5]["description"].as_str().is_some_and(|d| d.starts_with("CreationTimestamp")));
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "1s", "<none>"])
    );
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": svc["metadata"]})
    );
    assert!(t["rows"][0].get("conditions").is_none());
}

#[test]
fn include_object_modes() {
    let svc = kubernetes_service();
    let services = rt("", "v1", "services");
    let full = table(services, std::slice::from_ref(&svc), &opts(IncludeObject::Object));
    assert_eq!(full["rows"][0]["object"], svc);
    let none = table(services, std::slice::from_ref(&svc), &opts(IncludeObject::None));
    assert!(none["rows"][0].get("object").is_none());
    assert_eq!(none["rows"][0]["cells"][0], "kubernetes");

    // A stored object without type meta gets it from the resource.
    let mut bare = svc.clone();
    bare.as_object_mut().map(|m| (m.remove("apiVersion"), m.remove("kind")));
    let t = table(services, &[bare], &opts(IncludeObject::Object));
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "v1");
    assert_eq!(t["rows"][0]["object"]["kind"], "Service");
}

#[test]
fn include_object_parsing() {
    assert_eq!("None".parse(), Ok(IncludeObject::None));
    assert_eq!("Metadata".parse(), Ok(IncludeObject::Metadata));
    assert_eq!("".parse(), Ok(IncludeObject::Metadata));
    assert_eq!("Object".parse(), Ok(IncludeObject::Object));
    let err = "object".parse::<IncludeObject>();
    assert_eq!(err, Err(TableError::UnknownIncludeObject("object".into())));
    assert_eq!(err.map_err(|e| e.to_string()), Err("unrecognized includeObject value: \"object\"".into()));
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn no_headers_and_list_metadata() {
    let o = TableOptions {
        no_headers: true,
        continue_token: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ".into()),
        resource_version: String::new(),
        ..opts(IncludeObject::Metadata)
    };
    let t = table(rt("", "v1", "services"), &[kubernetes_service()], &o);
    assert_eq!(t["columnDefinitions"], Value::Null);
    assert_eq!(t["metadata"], json!({"continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"}));
    assert_eq!(t["rows"][0]["cells"][0], "kubernetes");
}

#[test]
fn empty_list_still_has_columns() {
    let t = table(rt("apps", "v1", "deployments"), &[], &opts(IncludeObject::Metadata));
    assert_eq!(t["rows"], json!([]));
    assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(8));
}

#[test]
fn pod_rows_carry_conditions() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-x", "creationTimestamp": at(60)},
                     "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Succeeded"}});
    let t = table(rt("", "v1", "pods"), &[pod], &opts(IncludeObject::None));
    assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["job-x", "0/1", "Succeeded", "0", "60s", "<none>", "<none>", "<none>", "<none>"])
    );
}

#[test]
fn every_served_resource_has_matching_column_and_cell_counts() {
    let sample = json!({"metadata": {"name": "x", "creationTimestamp": at(10)}});
    for rt in skiff_api::RESOURCES {
        let t = table(rt, std::slice::from_ref(&sample), &opts(IncludeObject::None));
        let columns = t["columnDefinitions"].as_array().map(Vec::len);
        let cells = t["rows"][0]["cells"].as_array().map(Vec::len);
        assert_eq!(columns, cells, "{}", rt.plural);
        let name_columns = t["columnDefinitions"].as_array().into_iter().flatten().filter(|c| c["format"] == "name");
        assert_eq!(name_columns.count(), 1, "{}", rt.plural);
    }
}

#[test]
fn both_event_apis_print_the_same_columns() {
    let core = table(rt("", "v1", "events"), &[], &opts(IncludeObject::None));
    let new = table(rt("events.k8s.io", "v1", "events"), &[], &opts(IncludeObject::None));
    assert_eq!(core["columnDefinitions"], new["columnDefinitions"]);
    assert_eq!(core["columnDefinitions"][0]["name"], "Last Seen");
}

#[test]
fn unknown_kinds_get_the_default_table() {
    let mut custom = *rt("", "v1", "configmaps");
    custom.group = "example.com";
    custom.kind = "Widget";
    let widget = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-04-30T08:15:00Z"}});
    let t = table(&custom, &[widget, json!({"metadata": {"name": "w2"}})], &opts(IncludeObject::None));
    assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(t["rows"][0]["cells"], json!(["w1", "2024-04-30T08:15:00Z"]));
    assert_eq!(t["rows"][1]["cells"], json!(["w2", "0001-01-01T00:00:00Z"]));
}
