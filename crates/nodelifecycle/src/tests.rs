use super::*;
use serde_json::json;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("a time")
}

fn node(name: &str, heartbeat: i64, taint_added: Option<i64>) -> Node {
    let taints: Vec<_> = taint_added
        .map(|t| json!({"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": at(t).to_string()}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": at(0).to_string()},
        "spec": {"taints": taints},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": at(heartbeat).to_string(),
             "lastTransitionTime": at(0).to_string()},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": at(heartbeat).to_string()},
        ]},
    }))
    .expect("a node")
}

fn lease(name: &str, renewed: i64) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "renewTime": format!("{}", at(renewed))},
    }))
    .expect("a lease")
}

fn pod(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c"}], "tolerations": tolerations},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]},
    }))
    .expect("a pod")
}

/// The toleration the API server's defaulting gives every pod.
fn defaulted() -> serde_json::Value {
    json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
}

fn options() -> Options {
    Options { grace: Duration::from_secs(40), period: Duration::from_secs(5) }
}

#[test]
fn a_node_heard_from_within_the_grace_period_is_left_alone() {
    let n = node("node-1", 0, None);
    let l = lease("node-1", 30);
    let p = pod("web", "node-1", json!([]));
    // The Lease counts as much as the status: 30 s after the last renewal, well inside 40 s.
    assert_eq!(plan(&[&n], &[&l], &[&p], at(60), &options()), vec![]);
}

#[test]
fn a_silent_node_turns_unknown_and_tainted_and_its_ready_pods_not_ready() {
    let n = node("node-1", 0, None);
    let l = lease("node-1", 10);
    let p = pod("web", "node-1", defaulted());
    let elsewhere = pod("api", "node-2", defaulted());
    let actions = plan(&[&n], &[&l], &[&p, &elsewhere], at(51), &options());
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::MarkUnreachable { node, conditions, taints } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(node, "node-1");
    let ready = conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("Unknown", Some("NodeStatusUnknown")));
    assert_eq!(ready.last_heartbeat_time, Some(Time(at(0))), "the last heartbeat is kept");
    assert!(conditions.iter().all(|c| c.status == "Unknown"), "{conditions:?}");
    assert_eq!(taints.len(), 1);
    assert_eq!((taints[0].key.as_str(), taints[0].effect.as_str()), (TAINT_UNREACHABLE, "NoExecute"));
    let Action::PodNotReady { name, conditions, .. } = &actions[1] else { panic!("{actions:?}") };
    assert_eq!(name, "web");
    let statuses: Vec<_> = conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert_eq!(statuses, [("Ready", "False"), ("PodScheduled", "True")]);
}

#[test]
fn pods_are_evicted_after_their_toleration_and_a_returning_node_loses_the_taint() {
    let n = node("node-1", 0, Some(50));
    // What the API server's defaulting gives every pod.
    let default = pod(
        "web",
        "node-1",
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
    );
    let none = pod("bare", "node-1", json!([]));
    let short = pod(
        "short",
        "node-1",
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]),
    );
    let forever = pod("forever", "node-1", json!([{"operator": "Exists"}]));
    let pods = [&default, &short, &forever, &none];
    let evicted = |now: i64| -> Vec<String> {
        plan(&[&n], &[], &pods, at(now), &options())
            .into_iter()
            .filter_map(|a| if let Action::Evict { name, .. } = a { Some(name) } else { None })
            .collect()
    };
    assert_eq!(evicted(55), ["bare"], "no toleration: at once");
    assert_eq!(evicted(60), ["short", "bare"]);
    assert_eq!(evicted(350), ["web", "short", "bare"]);
    assert_eq!(evicted(100_000), ["web", "short", "bare"], "a toleration without seconds tolerates for ever");

    let back = node("node-1", 400, Some(50));
    assert_eq!(
        plan(&[&back], &[], &pods, at(401), &options()),
        vec![Action::Trust { node: "node-1".into(), taints: vec![] }]
    );
}
