//! Whole writes through [`managed_fields`], modelled on what upstream records for the same requests.

use serde_json::{Value, json};

use super::*;

const T0: &str = "2026-11-21T12:00:00Z";
const T1: &str = "2026-11-21T12:05:00Z";
const T2: &str = "2026-11-21T12:10:00Z";

fn update<'a>(manager: &'a str, kind: &'a str, time: &'a str) -> Write<'a> {
    let api_version = if kind == "Deployment" { "apps/v1" } else { "v1" };
    Write {
        manager,
        operation: Operation::Update,
        api_version,
        kind,
        subresource: None,
        time,
        status_subresource: true,
    }
}

fn apply<'a>(manager: &'a str, kind: &'a str, time: &'a str) -> Write<'a> {
    Write { operation: Operation::Apply, ..update(manager, kind, time) }
}

/// Stores `fields` as the object's managedFields, as the API server would.
fn stored(mut object: Value, fields: &Value) -> Value {
    object["metadata"]["managedFields"] = fields.clone();
    object
}

fn entry<'a>(fields: &'a Value, manager: &str) -> &'a Value {
    fields.as_array().unwrap().iter().find(|e| e["manager"] == manager).unwrap_or(&Value::Null)
}

fn service(labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "1",
            "creationTimestamp": T0, "labels": labels},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"}},
        "status": {"loadBalancer": {}},
    })
}

#[test]
fn create_records_every_field_in_upstreams_encoding() {
    let fields = managed_fields(
        None,
        &service(json!({"app": "web"})),
        None,
        &update("kubectl-client-side-apply", "Service", T0),
    );
    assert_eq!(
        fields,
        json!([{
            "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:ports":{".":{},
                "k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},
                "f:selector":{}}},
        }])
    );
}

#[test]
fn kubectl_label_takes_the_labels_it_adds_and_overwrites() {
    let v1 = service(json!({"app": "web"}));
    let created = managed_fields(None, &v1, None, &update("kubectl-client-side-apply", "Service", T0));
    let v1 = stored(v1, &created);

    // `kubectl label svc web env=prod`: a merge patch, so the new object carries the stored managedFields.
    let mut v2 = v1.clone();
    v2["metadata"]["labels"]["env"] = json!("prod");
    let labelled = managed_fields(Some(&v1), &v2, None, &update("kubectl-label", "Service", T1));
    assert_eq!(labelled.as_array().unwrap().len(), 2);
    assert_eq!(entry(&labelled, "kubectl-client-side-apply"), &created[0]);
    let label = entry(&labelled, "kubectl-label");
    assert_eq!(label["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:env": {}}}}));
    assert_eq!(label["time"], T1);
    let v2 = stored(v2, &labelled);

    // `kubectl label --overwrite svc web app=api`: the changed label moves to kubectl-label.
    let mut v3 = v2.clone();
    v3["metadata"]["labels"]["app"] = json!("api");
    let moved = managed_fields(Some(&v2), &v3, None, &update("kubectl-label", "Service", T2));
    let csa = entry(&moved, "kubectl-client-side-apply");
    assert_eq!(csa["fieldsV1"]["f:metadata"], json!({"f:labels": {}}));
    assert_eq!(csa["time"], T0);
    let label = entry(&moved, "kubectl-label");
    assert_eq!(label["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:app": {}, "f:env": {}}}}));
    assert_eq!(label["time"], T2);
    // Sorted by time within the same operation.
    assert_eq!(moved[0]["manager"], "kubectl-client-side-apply");
}

#[test]
fn create_of_a_deployment_marks_only_what_the_zero_object_lacks() {
    let mut d = deployment(1, "nginx");
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}});
    let fields = managed_fields(None, &d, None, &update("kubectl-create", "Deployment", T0));
    assert_eq!(fields[0]["apiVersion"], "apps/v1");
    assert_eq!(
        fields[0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}, "f:selector": {},
            "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}}, "f:type": {}},
            "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
}

fn deployment(replicas: u64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 1, "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}},
    })
}

#[test]
fn apply_owns_what_it_applied_and_an_update_takes_a_changed_field() {
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
    let d1 = deployment(2, "nginx:1");
    let fields = managed_fields(None, &d1, Some(&applied), &apply("kubectl", "Deployment", T0));
    let apply_fields = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}},
    });
    assert_eq!(
        fields,
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1", "fieldsV1": apply_fields}])
    );
    let d1 = stored(d1, &fields);

    // `kubectl scale --replicas=3`: the scaler takes spec.replicas from the applier.
    let mut d2 = d1.clone();
    d2["spec"]["replicas"] = json!(3);
    let scaled = managed_fields(Some(&d1), &d2, None, &update("kubectl-scale", "Deployment", T1));
    assert_eq!(scaled[0]["operation"], "Apply");
    assert!(scaled[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(scaled[0]["fieldsV1"]["f:spec"].get("f:template").is_some());
    assert_eq!(scaled[0]["time"], T0);
    assert_eq!(scaled[1]["manager"], "kubectl-scale");
    assert_eq!(scaled[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    let d2 = stored(d2, &scaled);

    // A second applier applying the same image shares it; applying a new image takes it from kubectl.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
    let shared = managed_fields(Some(&d2), &d2, Some(&same), &apply("ci", "Deployment", T2));
    let image = ["f:spec", "f:template", "f:spec", "f:containers", "k:{\"name\":\"web\"}", "f:image"];
    let has = |e: &Value| image.iter().try_fold(e, |v, k| v.get(*k)).is_some();
    assert!(has(&entry(&shared, "kubectl")["fieldsV1"]) && has(&entry(&shared, "ci")["fieldsV1"]));
    let d3 = stored(d2.clone(), &shared);
    let mut d4 = d3.clone();
    d4["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let newer = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
    let taken = managed_fields(Some(&d3), &d4, Some(&newer), &apply("ci", "Deployment", T2));
    assert!(!has(&entry(&taken, "kubectl")["fieldsV1"]) && has(&entry(&taken, "ci")["fieldsV1"]));
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1d"],
            "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
        "status": {"phase": "Pending"},
    })
}

#[test]
fn status_writes_own_status_only_and_main_writes_never_own_it() {
    let p0 = pod();
    let created = managed_fields(None, &p0, None, &update("kubectl-run", "Pod", T0));
    assert_eq!(
        created[0]["fieldsV1"],
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:command": {}, "f:image": {}, "f:name": {},
            "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {},
                "f:protocol": {}}}}}}})
    );
    let p0 = stored(p0, &created);

    let mut p1 = p0.clone();
    p1["status"] = json!({"phase": "Running", "podIP": "10.0.0.5",
        "conditions": [{"type": "Ready", "status": "True"}]});
    p1["spec"]["containers"][0]["image"] = json!("ignored");
    let status = Write { subresource: Some("status"), ..update("kubelet", "Pod", T1) };
    let fields = managed_fields(Some(&p0), &p1, None, &status);
    let kubelet = entry(&fields, "kubelet");
    assert_eq!(kubelet["subresource"], "status");
    assert_eq!(
        kubelet["fieldsV1"],
        json!({"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
            "f:phase": {}, "f:podIP": {}}})
    );
    // The spec change did not move the image away from its owner.
    assert_eq!(entry(&fields, "kubectl-run")["fieldsV1"], created[0]["fieldsV1"]);
    // A subresource write ignores managedFields the client sent.
    let mut forged = p1.clone();
    forged["metadata"]["managedFields"] = json!([]);
    assert_eq!(managed_fields(Some(&p0), &forged, None, &status), fields);
}

#[test]
fn clients_reset_with_an_empty_list_and_rewrite_with_their_own() {
    let v1 = service(json!({"app": "web"}));
    let v1 = stored(v1.clone(), &managed_fields(None, &v1, None, &update("kubectl-client-side-apply", "Service", T0)));

    let mut reset = v1.clone();
    reset["metadata"]["managedFields"] = json!([]);
    assert_eq!(managed_fields(Some(&v1), &reset, None, &update("kubectl-edit", "Service", T1)), json!([]));
    reset["metadata"]["labels"]["env"] = json!("prod");
    let fields = managed_fields(Some(&v1), &reset, None, &update("kubectl-edit", "Service", T1));
    assert_eq!(fields.as_array().unwrap().len(), 1);
    assert_eq!(fields[0]["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:env": {}}}}));

    // kubectl's client-side to server-side apply migration rewrites the entry as an Apply.
    let mut migrated = v1.clone();
    migrated["metadata"]["managedFields"][0]["operation"] = json!("Apply");
    migrated["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
    let fields = managed_fields(Some(&v1), &migrated, None, &update("kubectl", "Service", T1));
    assert_eq!(fields, migrated["metadata"]["managedFields"]);

    // An invalid list is ignored in favour of the stored one.
    let mut invalid = v1.clone();
    invalid["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Delete"}]);
    assert!(validate(&invalid["metadata"]["managedFields"]).is_err());
    let fields = managed_fields(Some(&v1), &invalid, None, &update("kubectl", "Service", T1));
    assert_eq!(fields, v1["metadata"]["managedFields"]);
}

#[test]
fn no_op_writes_keep_entries_and_times() {
    let v1 = service(json!({"app": "web"}));
    let v1 = stored(v1.clone(), &managed_fields(None, &v1, None, &update("kubectl-client-side-apply", "Service", T0)));
    let mut same = v1.clone();
    same["metadata"]["resourceVersion"] = json!("2");
    assert_eq!(
        managed_fields(Some(&v1), &same, None, &update("other", "Service", T1)),
        v1["metadata"]["managedFields"]
    );

    // A no-op apply would bump the applier's time; upstream keeps the old one.
    let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}}});
    let first = managed_fields(Some(&v1), &v1, Some(&applied), &apply("ssa", "Service", T1));
    assert_eq!(entry(&first, "ssa")["time"], T1);
    let v2 = stored(v1.clone(), &first);
    let again = managed_fields(Some(&v2), &v2, Some(&applied), &apply("ssa", "Service", T2));
    assert_eq!(entry(&again, "ssa")["time"], T1);
}

#[test]
fn custom_resources_are_untyped_and_never_track_identity_fields() {
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "finalizers": ["example.com/cleanup"], "generation": 1},
        "spec": {"size": 3, "items": [{"name": "a"}]}, "status": {"ok": true}});
    let w = Write {
        api_version: "example.com/v1",
        kind: "Widget",
        status_subresource: false,
        ..update("ctl", "Widget", T0)
    };
    let fields = managed_fields(None, &widget, None, &w);
    assert_eq!(
        fields[0]["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"example.com/cleanup\"": {}}},
            "f:spec": {".": {}, "f:items": {}, "f:size": {}}, "f:status": {".": {}, "f:ok": {}}})
    );
}
