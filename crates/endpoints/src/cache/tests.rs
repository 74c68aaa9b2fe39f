use super::*;

fn service(name: &str, selector: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"selector": selector}
        }))
        .expect("a service"),
    )
}

fn pod(name: &str, labels: serde_json::Value) -> PodInfo {
    let pod =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "ns", "labels": labels}}))
            .expect("a pod");
    PodInfo::from_pod(&pod).expect("named")
}

#[test]
fn pod_changes_enqueue_old_and_new_services() {
    let queue = WorkQueue::default();
    let cache = Cache::new(Queues { slices: Some(queue.clone()), ..Queues::default() });
    cache.services_changed(Change::Apply(service("blue", serde_json::json!({"app": "web", "color": "blue"}))));
    cache.services_changed(Change::Apply(service("green", serde_json::json!({"app": "web", "color": "green"}))));
    cache.pods_changed(Change::Apply(pod("p", serde_json::json!({"app": "web", "color": "blue", "x": "y"}))));
    let blue = cache.service(&ObjectKey::new("ns", "blue")).expect("blue");
    assert_eq!(cache.pods_for(&blue).len(), 1);
    // Relabel the pod from blue to green: both Services must hear about it.
    cache.pods_changed(Change::Apply(pod("p", serde_json::json!({"app": "web", "color": "green"}))));
    assert!(cache.pods_for(&blue).is_empty());
    let green = cache.service(&ObjectKey::new("ns", "green")).expect("green");
    assert_eq!(cache.pods_for(&green).len(), 1);
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let key = futures::executor::block_on(queue.get());
        queue.done(&key);
        seen.insert(key.name);
    }
    assert!(seen.contains("blue") && seen.contains("green"));
}

#[test]
fn stale_slice_events_do_not_undo_recorded_writes() {
    let cache = Cache::default();
    let slice = |rv: &str| -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s-1", "namespace": "ns", "uid": "u", "resourceVersion": rv,
                "labels": {LABEL_SERVICE_NAME: "s", LABEL_MANAGED_BY: SLICE_CONTROLLER}},
            "addressType": "IPv4", "endpoints": []
        }))
        .expect("a slice")
    };
    cache.record_slice(slice("7"));
    cache.slices_changed(Change::Apply(Arc::new(slice("5"))));
    let got = cache.slices_for(&ObjectKey::new("ns", "s"), SLICE_CONTROLLER);
    assert_eq!(got[0].metadata.resource_version.as_deref(), Some("7"));
    cache.forget_slice(&slice("7"));
    cache.slices_changed(Change::Apply(Arc::new(slice("8"))));
    assert!(cache.slices_for(&ObjectKey::new("ns", "s"), SLICE_CONTROLLER).is_empty());
}
