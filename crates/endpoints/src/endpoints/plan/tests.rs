use super::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}}, "spec": spec}),
    )
    .expect("a service")
}

fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Arc<PodInfo> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": http_port}]}]},
        "status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .expect("a pod");
    Arc::new(PodInfo::from_pod(&pod).expect("named"))
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|a| a.ip.as_str()).collect()
}

#[test]
fn ready_and_not_ready_addresses_with_refs() {
    let svc = service(
        json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
    );
    let pods = [pod("b", "10.0.0.2", false, 8080), pod("a", "10.0.0.1", true, 8080)];
    let subsets = desired_subsets(&svc, &pods);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
    let port = &subsets[0].ports.as_ref().expect("ports")[0];
    assert_eq!((port.port, port.name.as_deref(), port.protocol.as_deref()), (8080, None, Some("TCP")));
    let first = &subsets[0].addresses.as_ref().expect("ready")[0];
    assert_eq!(first.node_name.as_deref(), Some("node-1"));
    let target = first.target_ref.as_ref().expect("a target");
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref(), target.uid.as_deref()),
        (Some("Pod"), Some("a"), Some("uid-a"))
    );
}

#[test]
fn publish_not_ready_addresses_makes_everything_ready() {
    let svc = service(json!({"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "web"}}));
    let subsets = desired_subsets(&svc, &[pod("a", "10.0.0.1", false, 80)]);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
    assert!(subsets[0].not_ready_addresses.is_none());
    assert!(subsets[0].ports.is_none(), "a headless Service without ports gets a port-less subset");
}

#[test]
fn pods_with_different_named_port_numbers_split_into_subsets() {
    let svc = service(json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "raw", "port": 81, "targetPort": 9000}]}));
    let subsets = desired_subsets(&svc, &[pod("a", "10.0.0.1", true, 8080), pod("b", "10.0.0.2", true, 8081)]);
    // Port 9000 is offered by both; 8080 and 8081 by one each.
    assert_eq!(subsets.len(), 3);
    let shared = subsets.iter().find(|s| s.ports.as_ref().is_some_and(|p| p[0].port == 9000)).expect("shared port");
    assert_eq!(ips(&shared.addresses), ["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn plan_skips_writes_when_nothing_changed_and_labels_headless() {
    let svc = service(json!({"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let pods = [pod("a", "10.0.0.1", true, 80)];
    let created = plan(&svc, &pods, None, None).expect("a create");
    let labels = created.metadata.labels.clone().expect("labels");
    assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert!(plan(&svc, &pods, Some(&created), None).is_none());
    let none_ready = [pod("a", "10.0.0.1", false, 80)];
    let updated = plan(&svc, &none_ready, Some(&created), None).expect("an update");
    assert_eq!(ips(&updated.subsets.expect("subsets")[0].not_ready_addresses), ["10.0.0.1"]);
}

#[test]
fn no_pods_means_no_subsets() {
    let svc = service(json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let created = plan(&svc, &[], None, None).expect("a create");
    assert_eq!(created.subsets, Some(vec![]));
}

#[test]
fn truncated_at_a_thousand_ready_first() {
    let svc = service(json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let pods: Vec<_> =
        (0..1100).map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 250, i % 250), i < 990, 80)).collect();
    let endpoints = plan(&svc, &pods, None, None).expect("a create");
    let annotations = endpoints.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations.get(ANNOTATION_OVER_CAPACITY).map(String::as_str), Some("truncated"));
    let subsets = endpoints.subsets.expect("subsets");
    assert_eq!(address_count(&subsets), MAX_CAPACITY);
    assert_eq!(subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>(), 990);
}
