//! The public API end to end: decode, default and validate each kind as the API server does.

use serde_json::{Value, json};
use skiff_api::resource::{lookup, lookup_kind};

use super::*;

fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
    lookup_kind(api_version, kind).expect("served kind")
}

/// decode_strict → default → validate_create, returning the error fields.
fn admit(rt: &ResourceType, mut obj: Value) -> (Value, Vec<String>) {
    assert_eq!(decode_strict(rt, &obj), Ok(vec![]), "{} decodes", rt.kind);
    prepare_create(rt, &mut obj);
    default(rt, &mut obj);
    let errs = validate_create(rt, &obj).into_iter().map(|e| e.to_string()).collect();
    (obj, errs)
}

#[test]
fn minimal_objects_of_every_kind_are_admitted() {
    let ns = |_kind: &str, extra: Value| {
        let mut o = json!({"metadata": {"name": "x", "namespace": "default"}});
        if let (Value::Object(o), Value::Object(e)) = (&mut o, extra) {
            o.extend(e);
        }
        o
    };
    let cases = vec![
        (rt("v1", "Namespace"), json!({"metadata": {"name": "team-a"}})),
        (rt("v1", "Node"), json!({"metadata": {"name": "node-1"}})),
        (rt("v1", "Pod"), ns("Pod", json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}}))),
        (rt("v1", "Service"), ns("Service", json!({"spec": {"ports": [{"port": 80}]}}))),
        (
            rt("v1", "Endpoints"),
            ns("Endpoints", json!({"subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}]})),
        ),
        (rt("v1", "ConfigMap"), ns("ConfigMap", json!({"data": {"a": "b"}}))),
        (rt("v1", "Secret"), ns("Secret", json!({"stringData": {"a": "b"}}))),
        (rt("v1", "ServiceAccount"), ns("ServiceAccount", json!({}))),
        (rt("v1", "Event"), ns("Event", json!({"involvedObject": {"kind": "Pod", "namespace": "default"}}))),
        (
            rt("events.k8s.io/v1", "Event"),
            ns(
                "Event",
                json!({"eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal", "reason": "R",
                "action": "A", "reportingController": "skiff.io/x", "reportingInstance": "i"}),
            ),
        ),
        (
            rt("apps/v1", "Deployment"),
            ns(
                "Deployment",
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
        ),
        (
            rt("apps/v1", "ReplicaSet"),
            ns(
                "ReplicaSet",
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
        ),
        (
            rt("discovery.k8s.io/v1", "EndpointSlice"),
            ns(
                "EndpointSlice",
                json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"]}], "ports": [{"port": 80}]}),
            ),
        ),
        (
            rt("coordination.k8s.io/v1", "Lease"),
            ns("Lease", json!({"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}})),
        ),
    ];
    assert_eq!(cases.len(), skiff_api::RESOURCES.len());
    for (rt, obj) in cases {
        let (_, errs) = admit(rt, obj);
        assert!(errs.is_empty(), "{}: {errs:?}", rt.kind);
    }
}

#[test]
fn cluster_scoped_kinds_refuse_namespaces_and_names_follow_the_kind() {
    let (_, errs) = admit(rt("v1", "Node"), json!({"metadata": {"name": "n", "namespace": "default"}}));
    assert_eq!(errs, vec!["metadata.namespace: Forbidden: not allowed on this type"]);
    let (_, errs) = admit(rt("v1", "Namespace"), json!({"metadata": {"name": "a.b"}}));
    assert_eq!(errs, vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]);
    let (_, errs) = admit(rt("v1", "ConfigMap"), json!({"metadata": {"name": "a.b", "namespace": "default"}}));
    assert!(errs.is_empty());
    let (_, errs) = admit(rt("v1", "Event"), json!({"metadata": {"name": "Pod.A_b", "namespace": "default"}}));
    assert!(errs.is_empty(), "core events only need path-segment names: {errs:?}");
    let (_, errs) = admit(rt("v1", "Event"), json!({"metadata": {"name": "a/b", "namespace": "default"}}));
    assert_eq!(errs, vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]);
}

#[test]
fn update_keeps_server_fields_and_splits_spec_from_status() {
    let pods = lookup("", "v1", "pods").expect("pods");
    let old = json!({"metadata": {"name": "p", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1},
        "spec": {"nodeName": "a"}, "status": {"phase": "Running"}});
    let new = json!({"metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"nodeName": "b"}, "status": {"phase": "Failed"}});
    let main = prepare_update(pods, &old, new.clone(), None);
    assert_eq!(main["metadata"]["uid"], "u1");
    assert_eq!(main["metadata"]["creationTimestamp"], "2024-01-01T00:00:00Z");
    assert_eq!(main["metadata"]["generation"], 1);
    assert_eq!(main["metadata"]["labels"]["x"], "y");
    assert_eq!(main["spec"]["nodeName"], "b");
    assert_eq!(main["status"]["phase"], "Running");
    let status = prepare_update(pods, &old, new.clone(), Some("status"));
    assert_eq!(status["spec"]["nodeName"], "a");
    assert_eq!(status["status"]["phase"], "Failed");
    let cms = lookup("", "v1", "configmaps").expect("configmaps");
    let cm = prepare_update(cms, &json!({"data": {"a": "1"}}), json!({"data": {"a": "2"}}), None);
    assert_eq!(cm["data"]["a"], "2");
}

#[test]
fn apps_status_writes_keep_labels_and_namespaces_keep_finalizers() {
    let deploy = rt("apps/v1", "Deployment");
    let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
    let new = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 5}, "status": {"replicas": 1}});
    let out = prepare_update(deploy, &old, new, Some("status"));
    assert_eq!(out["metadata"]["labels"]["a"], "1");
    assert_eq!(out["spec"]["replicas"], 1);
    assert_eq!(out["status"]["replicas"], 1);
    let ns = rt("v1", "Namespace");
    let old = json!({"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    let out = prepare_update(ns, &old, json!({"spec": {"finalizers": []}}), None);
    assert_eq!(out["spec"]["finalizers"], json!(["kubernetes"]));
    let out = prepare_update(
        ns,
        &old,
        json!({"spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
        Some("finalize"),
    );
    assert_eq!(out["spec"]["finalizers"], json!([]));
    assert_eq!(out["status"]["phase"], "Active");
}

#[test]
fn spec_changes_ignore_omitted_zero_values() {
    assert!(!spec_changed(&json!({"spec": {"a": 1, "b": null, "c": {}}}), &json!({"spec": {"a": 1}})));
    assert!(spec_changed(&json!({"spec": {"a": 1}}), &json!({"spec": {"a": 2}})));
    assert!(!spec_changed(
        &json!({"spec": {"a": 1}, "status": {"x": 1}}),
        &json!({"spec": {"a": 1}, "status": {"x": 2}})
    ));
}

#[test]
fn updates_check_immutable_metadata_and_kind_rules() {
    let svc = rt("v1", "Service");
    let (old, errs) = admit(
        svc,
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "1"},
        "spec": {"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}}),
    );
    assert!(errs.is_empty(), "{errs:?}");
    let mut new = old.clone();
    new["metadata"]["name"] = json!("web2");
    new["spec"]["clusterIP"] = json!("10.0.0.6");
    let new = prepare_update(svc, &old, new, None);
    let errs: Vec<String> = validate_update(svc, &old, &new).into_iter().map(|e| e.field).collect();
    assert_eq!(errs, vec!["metadata.name", "spec.clusterIPs[0]"]);
}

#[test]
fn field_validation_parses_query_values() {
    assert_eq!(FieldValidation::parse("Strict"), Some(FieldValidation::Strict));
    assert_eq!(FieldValidation::parse("strict"), None);
    assert_eq!(FieldValidation::default(), FieldValidation::Warn);
}
