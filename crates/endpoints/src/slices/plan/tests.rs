use super::*;
use crate::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"}, "spec": spec}))
        .expect("a service")
}

fn pod(name: &str, ip: &str, ready: bool, terminating: bool, http_port: i32) -> Arc<PodInfo> {
    let mut meta = json!({"name": name, "namespace": "ns", "uid": format!("uid-{name}")});
    if terminating {
        meta["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"nodeName": "node-1", "hostname": name, "subdomain": "web",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": http_port}]}]},
        "status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .expect("a pod");
    Arc::new(PodInfo::from_pod(&pod).expect("named"))
}

fn pods(n: usize) -> Vec<Arc<PodInfo>> {
    (0..n).map(|i| pod(&format!("p{i:03}"), &format!("10.0.{}.{}", i / 200, i % 200 + 1), true, false, 8080)).collect()
}

/// Gives planned creates names and resourceVersions, as the API would.
fn apply(plan: Plan, existing: Vec<Arc<EndpointSlice>>) -> Vec<Arc<EndpointSlice>> {
    let mut out: BTreeMap<String, Arc<EndpointSlice>> =
        existing.into_iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s)).collect();
    for slice in &plan.delete {
        out.remove(slice.metadata.name.as_deref().unwrap_or_default());
    }
    for mut slice in plan.update {
        slice.metadata.resource_version = Some("2".into());
        out.insert(slice.metadata.name.clone().unwrap_or_default(), Arc::new(slice));
    }
    for (i, mut slice) in plan.create.into_iter().enumerate() {
        let name = format!("web-{}{i}", out.len());
        slice.metadata.name = Some(name.clone());
        slice.metadata.resource_version = Some("1".into());
        out.insert(name, Arc::new(slice));
    }
    out.into_values().collect()
}

fn svc_named_port() -> Service {
    service(
        json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
    )
}

#[test]
fn endpoints_carry_conditions_refs_hostname_and_named_ports() {
    let svc = svc_named_port();
    let plan = plan(&svc, &[pod("a", "10.0.0.1", true, false, 8080)], &[], None, 100);
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    let labels = slice.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
    assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(SLICE_CONTROLLER));
    let owner = &slice.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Service", "svc-uid", Some(true)));
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some(""), Some(8080), Some("TCP")));
    let endpoint = &slice.endpoints[0];
    let conditions = endpoint.conditions.as_ref().expect("conditions");
    assert_eq!((conditions.ready, conditions.serving, conditions.terminating), (Some(true), Some(true), Some(false)));
    assert_eq!(endpoint.hostname.as_deref(), Some("a"));
    assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
    assert_eq!(endpoint.target_ref.as_ref().and_then(|r| r.uid.as_deref()), Some("uid-a"));
}

#[test]
fn terminating_and_not_ready_conditions() {
    let svc = svc_named_port();
    let cases =
        [(true, true, (false, true, true)), (false, false, (false, false, false)), (false, true, (false, false, true))];
    for (ready, terminating, want) in cases {
        let plan = plan(&svc, &[pod("a", "10.0.0.1", ready, terminating, 8080)], &[], None, 100);
        let c = plan.create[0].endpoints[0].conditions.clone().expect("conditions");
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(want.0), Some(want.1), Some(want.2)),
            "{ready} {terminating}"
        );
    }
    let mut publish = svc_named_port();
    if let Some(spec) = publish.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let plan = plan(&publish, &[pod("a", "10.0.0.1", false, true, 8080)], &[], None, 100);
    let c = plan.create[0].endpoints[0].conditions.clone().expect("conditions");
    assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(false), Some(true)));
}

#[test]
fn pods_with_different_port_numbers_land_in_different_slices() {
    let svc = svc_named_port();
    let pods = [pod("a", "10.0.0.1", true, false, 8080), pod("b", "10.0.0.2", true, false, 9090)];
    let plan = plan(&svc, &pods, &[], None, 100);
    assert_eq!(plan.create.len(), 2);
    let mut numbers: Vec<i32> = plan.create.iter().filter_map(|s| s.ports.as_ref()?.first()?.port).collect();
    numbers.sort();
    assert_eq!(numbers, [8080, 9090]);
}

#[test]
fn at_most_max_per_slice_and_stable_when_nothing_changes() {
    let svc = svc_named_port();
    let all = pods(250);
    let first = plan(&svc, &all, &[], None, 100);
    let mut sizes: Vec<usize> = first.create.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    let slices = apply(first, Vec::new());
    let again = plan(&svc, &all, &slices, None, 100);
    assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(), "{again:?}");
}

#[test]
fn a_ready_change_updates_only_the_slice_holding_the_pod() {
    let svc = svc_named_port();
    let mut all = pods(250);
    let slices = apply(plan(&svc, &all, &[], None, 100), Vec::new());
    all[7] = pod("p007", "10.0.0.8", false, false, 8080);
    let next = plan(&svc, &all, &slices, None, 100);
    assert!(next.create.is_empty() && next.delete.is_empty());
    assert_eq!(next.update.len(), 1);
    let changed = next.update[0].endpoints.iter().find(|e| e.addresses == ["10.0.0.8"]).expect("the pod's endpoint");
    assert_eq!(changed.conditions.as_ref().and_then(|c| c.ready), Some(false));
}

#[test]
fn no_pods_leaves_one_placeholder_and_keeps_it() {
    let svc = svc_named_port();
    let slices = apply(plan(&svc, &pods(3), &[], None, 100), Vec::new());
    let emptied = plan(&svc, &[], &slices, None, 100);
    // The last slice with endpoints is recycled into the placeholder.
    assert!(emptied.create.is_empty() && emptied.delete.is_empty());
    assert_eq!(emptied.update.len(), 1);
    assert!(emptied.update[0].endpoints.is_empty());
    assert_eq!(emptied.update[0].ports.as_ref().map(Vec::len), Some(0));
    let slices = apply(emptied, slices);
    let again = plan(&svc, &[], &slices, None, 100);
    assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(), "{again:?}");
}

#[test]
fn slices_of_another_owner_are_replaced() {
    let svc = svc_named_port();
    let slices = apply(plan(&svc, &pods(2), &[], None, 100), Vec::new());
    let mut recreated = svc.clone();
    recreated.metadata.uid = Some("new-uid".into());
    let next = plan(&recreated, &pods(2), &slices, None, 100);
    assert_eq!(next.delete.len(), 1);
    assert_eq!(next.create.len(), 1);
    let owner = &next.create[0].metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.uid, "new-uid");
}
