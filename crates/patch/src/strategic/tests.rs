//! Cases ported from upstream's `strategicpatch/patch_test.go` (re-expressed on real kinds, since the merge
//! keys come from the kind's fields) plus the bodies kubectl 1.32 was observed to send.

use serde_json::{Value, json};

use super::strategic_merge_patch;
use crate::PatchError;

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn smp_pod(original_spec: Value, patch_spec: Value) -> Value {
    let out = strategic_merge_patch("v1", "Pod", &pod(original_spec), &json!({"spec": patch_spec}));
    out.unwrap_or_else(|e| panic!("patch failed: {e}"))["spec"].clone()
}

fn smp_pod_err(original_spec: Value, patch_spec: Value) -> PatchError {
    match strategic_merge_patch("v1", "Pod", &pod(original_spec), &json!({"spec": patch_spec})) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().map(|c| c["name"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn kubectl_apply_deployment_body() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-deploy", "namespace": "default", "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old\n", "deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always"}}},
        "status": {"replicas": 2}
    });
    let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new\n"}},
        "spec": {"replicas": 3, "template": {"spec": {"$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"image": "nginx:1.28", "name": "web"}]}}}});
    let out = strategic_merge_patch("apps/v1", "Deployment", &live, &patch).unwrap();
    let mut expected = live.clone();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("new\n");
    expected["spec"]["replicas"] = json!(3);
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert_eq!(out, expected);
}

#[test]
fn kubectl_apply_service_body() {
    let live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-svc"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.13", "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x\n"}},
        "spec": {"$setElementOrder/ports": [{"port": 8081}],
            "ports": [{"port": 8081, "targetPort": "http"}, {"$patch": "delete", "port": 80}]}});
    let out = strategic_merge_patch("v1", "Service", &live, &patch).unwrap();
    assert_eq!(out["spec"]["ports"], json!([{"port": 8081, "targetPort": "http"}]));
    assert_eq!(out["spec"]["clusterIP"], "10.96.0.13");
    assert_eq!(out["metadata"]["annotations"], json!({"kubectl.kubernetes.io/last-applied-configuration": "x\n"}));
}

#[test]
fn null_deletes_and_unmatched_null_is_ignored() {
    let out = smp_pod(json!({"hostname": "h", "nodeName": "n"}), json!({"hostname": null, "subdomain": null}));
    assert_eq!(out, json!({"nodeName": "n"}));
}

#[test]
fn maps_merge_recursively_and_type_changes_replace() {
    let out = smp_pod(
        json!({"nodeSelector": {"a": "1", "b": "2"}, "priority": {"weird": true}}),
        json!({"nodeSelector": {"b": "3", "c": "4"}, "priority": 5}),
    );
    assert_eq!(out, json!({"nodeSelector": {"a": "1", "b": "3", "c": "4"}, "priority": 5}));
}

#[test]
fn adds_an_item_to_a_merging_list() {
    let out = smp_pod(
        json!({"containers": [{"name": "a", "image": "x"}]}),
        json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b", "image": "y"}]}),
    );
    assert_eq!(out["containers"], json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
}

#[test]
fn merges_an_item_with_the_same_key_without_order_directive() {
    let out = smp_pod(
        json!({"containers": [{"name": "a", "image": "x", "command": ["sh"]}, {"name": "b", "image": "y"}]}),
        json!({"containers": [{"name": "b", "image": "z"}]}),
    );
    assert_eq!(out["containers"], json!([{"name": "a", "image": "x", "command": ["sh"]}, {"name": "b", "image": "z"}]));
}

#[test]
fn deletes_an_item_from_a_merging_list() {
    let out = smp_pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
        json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}], "containers": [{"$patch": "delete", "name": "b"}]}),
    );
    assert_eq!(names(&out["containers"]), ["a", "c"]);
}

#[test]
fn deletes_all_duplicate_entries() {
    let out = smp_pod(
        json!({"volumes": [{"name": "1"}, {"name": "1"}, {"name": "2", "emptyDir": {}}, {"name": "3"}, {"name": "3"}]}),
        json!({"volumes": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]}),
    );
    assert_eq!(out["volumes"], json!([{"name": "2", "emptyDir": {}}]));
}

#[test]
fn replace_directive_in_a_list_replaces_it() {
    let out = smp_pod(
        json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}),
        json!({"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}),
    );
    assert_eq!(out["containers"], json!([{"name": "c", "image": "z"}]));
}

#[test]
fn replace_and_delete_directives_on_maps() {
    let out = smp_pod(
        json!({"nodeSelector": {"a": "1", "b": "2"}, "securityContext": {"runAsUser": 1}}),
        json!({"nodeSelector": {"$patch": "replace", "c": "3"}, "securityContext": {"$patch": "delete"}}),
    );
    assert_eq!(out, json!({"nodeSelector": {"c": "3"}, "securityContext": {}}));
}

#[test]
fn set_element_order_reorders_without_changes() {
    let out = smp_pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
        json!({"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}),
    );
    assert_eq!(names(&out["containers"]), ["c", "b", "a"]);
}

#[test]
fn server_only_items_keep_their_relative_place() {
    // `b` is in the live object only; the patch reorders `c` before `a`.
    let out = smp_pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
        json!({"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "a", "image": "x"}]}),
    );
    assert_eq!(names(&out["containers"]), ["b", "c", "a"]);
    assert_eq!(out["containers"][2]["image"], "x");
}

#[test]
fn patch_order_wins_for_new_items() {
    let out = smp_pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({"containers": [{"name": "d"}, {"name": "a", "image": "x"}, {"name": "c"}]}),
    );
    // Upstream's mergeSortedSlice: a server-only item goes first only if it precedes the patch item in the
    // live list; items new to the live list never do, so they all come before `b`.
    assert_eq!(names(&out["containers"]), ["d", "a", "c", "b"]);
}

#[test]
fn set_element_order_must_match_the_patch_list() {
    let err = smp_pod_err(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "y"}, {"name": "a", "image": "x"}]}),
    );
    assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }), "{err}");
    let bad = smp_pod_err(json!({}), json!({"$setElementOrder/containers": "nope"}));
    assert_eq!(bad, PatchError::BadSetElementOrderFormat);
}

#[test]
fn nested_lists_merge_by_their_own_keys() {
    let out = smp_pod(
        json!({"containers": [{"name": "a",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]}]}),
        json!({"containers": [{"name": "a",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
            "$setElementOrder/env": [{"name": "Y"}, {"name": "X"}],
            "env": [{"name": "X", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}),
    );
    let c = &out["containers"][0];
    assert_eq!(c["ports"], json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]));
    assert_eq!(
        c["env"],
        json!([{"name": "Y", "value": "2"}, {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])
    );
    assert_eq!(c["volumeMounts"], json!([{"mountPath": "/data", "name": "d", "readOnly": true}]));
}

#[test]
fn atomic_lists_are_replaced() {
    let out = smp_pod(
        json!({"containers": [{"name": "a", "command": ["sh", "-c"], "args": ["x"], "envFrom": [{"configMapRef": {"name": "c"}}]}],
            "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "Exists"}]}),
        json!({"containers": [{"name": "a", "command": ["bash"], "envFrom": [{"secretRef": {"name": "s"}}]}],
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v"}]}),
    );
    assert_eq!(out["containers"][0]["command"], json!(["bash"]));
    assert_eq!(out["containers"][0]["args"], json!(["x"]));
    assert_eq!(out["containers"][0]["envFrom"], json!([{"secretRef": {"name": "s"}}]));
    assert_eq!(out["tolerations"], json!([{"key": "k", "operator": "Equal", "value": "v"}]));
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    // kubectl switching a Deployment from RollingUpdate to Recreate.
    let live = json!({"metadata": {"name": "d"}, "spec": {"strategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = strategic_merge_patch("apps/v1", "Deployment", &live, &patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_inside_list_items() {
    let out = smp_pod(
        json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}),
        json!({"volumes": [{"$retainKeys": ["emptyDir", "name"], "name": "v", "emptyDir": {"medium": "Memory"}}]}),
    );
    assert_eq!(out["volumes"], json!([{"name": "v", "emptyDir": {"medium": "Memory"}}, {"name": "w", "emptyDir": {}}]));
}

#[test]
fn retain_keys_rejects_fields_it_does_not_list() {
    let err = smp_pod_err(
        json!({"volumes": [{"name": "v"}]}),
        json!({"volumes": [{"$retainKeys": ["name"], "name": "v", "emptyDir": {}}]}),
    );
    assert_eq!(err, PatchError::BadRetainKeysFormat);
    let err = smp_pod_err(json!({}), json!({"securityContext": {"$retainKeys": "runAsUser"}}));
    assert_eq!(err, PatchError::BadRetainKeysFormat);
}

#[test]
fn primitive_merge_lists_union_and_delete() {
    let live = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    let out = strategic_merge_patch("v1", "Pod", &live, &json!({"metadata": {"finalizers": ["c", "a"]}})).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}});
    let out = strategic_merge_patch("v1", "Pod", &live, &patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["b", "a", "d"], "finalizers": ["d"]}});
    let out = strategic_merge_patch("v1", "Pod", &live, &patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "a", "d"]));
    let patch = json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}});
    let err = strategic_merge_patch("v1", "Pod", &live, &patch).unwrap_err();
    assert_eq!(err, PatchError::BadPrimitiveListFormat);
}

#[test]
fn node_pod_cidrs_and_addresses() {
    let live = json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}, {"type": "Hostname", "address": "n"}],
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
    let patch = json!({"spec": {"podCIDRs": ["fd00::/64"]}, "status": {
        "addresses": [{"type": "InternalIP", "address": "5.6.7.8"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    let out = strategic_merge_patch("v1", "Node", &live, &patch).unwrap();
    assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
    assert_eq!(
        out["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "5.6.7.8"}, {"type": "Hostname", "address": "n"}])
    );
    assert_eq!(out["status"]["conditions"][0], json!({"type": "Ready", "status": "True", "reason": "KubeletReady"}));
    assert_eq!(out["status"]["conditions"][1]["type"], "MemoryPressure");
}

#[test]
fn conditions_merge_by_type_in_workload_status() {
    for (api_version, kind) in
        [("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("v1", "Namespace"), ("v1", "Pod")]
    {
        let live = json!({"metadata": {"name": "x"}, "status": {"conditions": [
            {"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}});
        let out = strategic_merge_patch(api_version, kind, &live, &patch).unwrap();
        assert_eq!(out["status"]["conditions"].as_array().map(Vec::len), Some(2), "{kind}");
        assert_eq!(out["status"]["conditions"][0]["status"], "True", "{kind}");
    }
    // Endpoints subsets and EndpointSlice endpoints are atomic.
    let live =
        json!({"metadata": {"name": "e"}, "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
    let patch = json!({"endpoints": [{"addresses": ["10.0.0.3"]}]});
    let out = strategic_merge_patch("discovery.k8s.io/v1", "EndpointSlice", &live, &patch).unwrap();
    assert_eq!(out["endpoints"], json!([{"addresses": ["10.0.0.3"]}]));
}

#[test]
fn owner_references_merge_by_uid() {
    let live = json!({"metadata": {"name": "rs", "ownerReferences": [{"uid": "1", "name": "a", "controller": true}]}});
    let patch =
        json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "controller": false}]}});
    let out = strategic_merge_patch("apps/v1", "ReplicaSet", &live, &patch).unwrap();
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a", "controller": false}])
    );
}

#[test]
fn templates_inside_cronjobs_merge_containers() {
    let live = json!({"metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}}}});
    let out = strategic_merge_patch("batch/v1", "CronJob", &live, &patch).unwrap();
    let containers = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers, &json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]));
}

#[test]
fn unknown_kinds_replace_lists() {
    let live = json!({"metadata": {"name": "w", "finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
    let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}});
    let out = strategic_merge_patch("example.com/v1", "Widget", &live, &patch).unwrap();
    assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
}

#[test]
fn directives_in_values_new_to_the_original_are_stripped() {
    let out = smp_pod(
        json!({}),
        json!({"$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}]},
                {"$patch": "delete", "name": "gone"}],
            "securityContext": {"$retainKeys": ["runAsUser"], "runAsUser": 1}}),
    );
    assert_eq!(
        out,
        json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}], "securityContext": {"runAsUser": 1}})
    );
}

#[test]
fn replace_directives_strip_nested_directives() {
    let out = smp_pod(
        json!({"containers": [{"name": "a", "env": [{"name": "X"}]}], "securityContext": {"runAsUser": 1}}),
        json!({"containers": [{"name": "b", "$setElementOrder/env": [{"name": "Y"}], "env": [{"name": "Y"}]},
                {"$patch": "replace"}],
            "securityContext": {"$patch": "replace", "seLinuxOptions": {"$retainKeys": ["level"], "level": "s0"}}}),
    );
    assert_eq!(
        out,
        json!({"containers": [{"name": "b", "env": [{"name": "Y"}]}], "securityContext": {"seLinuxOptions": {"level": "s0"}}})
    );
}

#[test]
fn malformed_patches_are_errors() {
    assert_eq!(
        smp_pod_err(json!({"containers": [{"name": "a"}]}), json!({"containers": [{"image": "x"}]})),
        PatchError::NoMergeKey { item: r#"{"image":"x"}"#.into(), key: "name".into() }
    );
    assert!(matches!(
        smp_pod_err(json!({"containers": [{"name": "a"}]}), json!({"containers": [{"name": "a", "$patch": "frob"}]})),
        PatchError::UnknownDirective { .. }
    ));
    assert!(matches!(
        smp_pod_err(json!({}), json!({"securityContext": {"$patch": 7}})),
        PatchError::UnknownDirective { .. }
    ));
    assert_eq!(
        smp_pod_err(json!({"containers": [{"name": "a"}]}), json!({"containers": [{"$patch": "merge"}]})),
        PatchError::MergeDirectiveInList
    );
    assert_eq!(
        smp_pod_err(json!({"containers": [{"name": "a"}]}), json!({"containers": [["x"]]})),
        PatchError::ListOfLists
    );
    assert!(matches!(
        smp_pod_err(json!({"containers": [{"name": "a"}]}), json!({"containers": ["x"]})),
        PatchError::MixedListTypes(_)
    ));
    assert_eq!(strategic_merge_patch("v1", "Pod", &json!({}), &json!([1])), Err(PatchError::InvalidDocument));
    assert_eq!(PatchError::BadRetainKeysFormat.code(), 400);
}

#[test]
fn numbers_compare_as_go_float64() {
    // `port: 80` and `port: 80.0` are the same merge key value once decoded by Go.
    let live = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
    let patch = json!({"spec": {"ports": [{"port": 80.0, "name": "http"}]}});
    let out = strategic_merge_patch("v1", "Service", &live, &patch).unwrap();
    assert_eq!(out["spec"]["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["spec"]["ports"][0]["protocol"], "TCP");
}
