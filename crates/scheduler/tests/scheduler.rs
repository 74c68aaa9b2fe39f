//! The scheduler against an in-process API server: Nodes are registered by hand (there is no node agent) and the
//! assertions are on what a user sees through the API — `spec.nodeName`, the `PodScheduled` condition and events.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use skiff_apiserver::test_util::{TestServer, eventually, patch_node_status, register_node};

/// A test API server with the scheduler running against it.
async fn start() -> TestServer {
    let server = TestServer::start().await;
    server.spawn(skiff_scheduler::run);
    server
}

/// Registers a node and sets its Ready condition through the status subresource.
async fn node(client: &Client, name: &str, ready: &str, labels: Value, spec: Value) -> Result<()> {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let manifest = json!({"metadata": {"name": name, "labels": labels}, "spec": spec});
    register_node(client, manifest, ready_status(ready)).await?;
    Ok(())
}

async fn set_ready(client: &Client, name: &str, ready: &str) -> Result<()> {
    patch_node_status(client, name, ready_status(ready)).await?;
    Ok(())
}

fn ready_status(ready: &str) -> Value {
    json!({"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]})
}

async fn pod(client: &Client, name: &str, spec: Value) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
    let pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    pods.create(&PostParams::default(), &pod).await?;
    Ok(())
}

async fn node_of(client: &Client, name: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods.get(name).await?.spec.and_then(|s| s.node_name))
}

async fn bound(client: &Client, name: &str) -> Result<String> {
    eventually(&format!("{name} to be bound"), || node_of(client, name)).await
}

fn scheduled_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The notes of the events with `reason` about pod `name`.
async fn events(client: &Client, name: &str, reason: &str) -> Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

#[tokio::test]
async fn spreads_pods_to_the_least_loaded_node_and_reports_success() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(c, "node-b", "True", json!({}), json!({})).await?;
    node(c, "node-a", "True", json!({}), json!({})).await?;
    // A pod created with spec.nodeName set is left alone but counts towards node-a's load.
    pod(c, "pinned", json!({"nodeName": "node-a"})).await?;
    pod(c, "web-1", json!({})).await?;
    assert_eq!(bound(c, "web-1").await?, "node-b", "node-a already runs a pod");
    for name in ["web-2", "web-3", "web-4", "web-5"] {
        pod(c, name, json!({})).await?;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for name in ["web-2", "web-3", "web-4", "web-5"] {
        *per_node.entry(bound(c, name).await?).or_default() += 1;
    }
    // 1 + 1 already placed, 4 more: fewest-first makes it 3 and 3 whatever the order.
    assert_eq!(per_node.get("node-a"), Some(&2));
    assert_eq!(per_node.get("node-b"), Some(&2));

    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let web1 = eventually("PodScheduled=True", || async {
        let p = pods.get("web-1").await?;
        Ok::<_, anyhow::Error>(scheduled_condition(&p).filter(|c| c.0 == "True").map(|_| p))
    })
    .await?;
    assert_eq!(web1.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    let scheduled = eventually("a Scheduled event", || async {
        Ok::<_, anyhow::Error>(events(c, "web-1", "Scheduled").await?.into_iter().next())
    })
    .await?;
    assert_eq!(scheduled, ("Normal".to_string(), "Successfully assigned default/web-1 to node-b".to_string()));
    let ev: Api<Event> = Api::namespaced(c.clone(), "default");
    let list = ev.list(&ListParams::default()).await?;
    let any =
        list.items.iter().find(|e| e.reason.as_deref() == Some("Scheduled")).map(|e| e.reporting_controller.clone());
    assert_eq!(any, Some(Some("default-scheduler".to_string())));

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node_of(c, "pinned").await?.as_deref(), Some("node-a"));
    assert!(events(c, "pinned", "Scheduled").await?.is_empty(), "pre-bound pods are not scheduled");
    Ok(())
}

#[tokio::test]
async fn honours_node_selector_and_skips_cordoned_and_not_ready_nodes() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(c, "cordoned", "True", json!({}), json!({"unschedulable": true})).await?;
    node(c, "not-ready", "False", json!({}), json!({})).await?;
    node(
        c,
        "tainted",
        "True",
        json!({}),
        json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
    )
    .await?;
    node(c, "ssd", "True", json!({"disk": "ssd"}), json!({})).await?;
    node(c, "plain", "True", json!({}), json!({})).await?;
    for i in 0..3 {
        pod(c, &format!("fast-{i}"), json!({"nodeSelector": {"disk": "ssd"}})).await?;
    }
    for i in 0..3 {
        assert_eq!(bound(c, &format!("fast-{i}")).await?, "ssd");
    }
    for i in 0..4 {
        pod(c, &format!("any-{i}"), json!({})).await?;
    }
    let mut placed = Vec::new();
    for i in 0..4 {
        placed.push(bound(c, &format!("any-{i}")).await?);
    }
    placed.sort();
    // ssd already holds 3 pods, so the least-loaded rule sends the first three to plain, the fourth to either.
    assert!(placed.iter().all(|n| n == "plain" || n == "ssd"), "{placed:?}");
    assert!(placed.iter().filter(|n| *n == "plain").count() >= 3, "{placed:?}");

    // A pod that tolerates the taint may land on the tainted node (it is the least loaded one).
    pod(c, "db", json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]})).await?;
    assert_eq!(bound(c, "db").await?, "tainted");
    Ok(())
}

#[tokio::test]
async fn stays_pending_when_nothing_fits_then_schedules_when_a_node_becomes_ready() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(c, "n1", "True", json!({"disk": "hdd"}), json!({})).await?;
    node(c, "n2", "True", json!({"disk": "ssd"}), json!({"unschedulable": true})).await?;
    pod(c, "web-x", json!({"nodeSelector": {"disk": "ssd"}})).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let expected = "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                    1 node(s) were unschedulable.";
    let condition = eventually("PodScheduled=False", || async {
        Ok::<_, anyhow::Error>(scheduled_condition(&pods.get("web-x").await?).filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(condition, ("False".into(), Some("Unschedulable".into()), Some(expected.into())));
    let failed = eventually("FailedScheduling", || async {
        Ok::<_, anyhow::Error>(events(c, "web-x", "FailedScheduling").await?.pop())
    })
    .await?;
    assert_eq!(failed, ("Warning".to_string(), expected.to_string()));
    let p = pods.get("web-x").await?;
    assert_eq!(p.spec.and_then(|s| s.node_name), None);
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    // A matching node that is not Ready yet changes the reason but not the outcome.
    node(c, "n3", "False", json!({"disk": "ssd"}), json!({})).await?;
    let expected = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                    1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable.";
    eventually("the message to follow the nodes", || async {
        let c = scheduled_condition(&pods.get("web-x").await?);
        Ok::<_, anyhow::Error>(c.filter(|c| c.2.as_deref() == Some(expected)).map(|_| ()))
    })
    .await?;
    assert_eq!(node_of(c, "web-x").await?, None);

    // The node turning Ready schedules the waiting pod at once (well before the periodic retry).
    let started = std::time::Instant::now();
    set_ready(c, "n3", "True").await?;
    assert_eq!(bound(c, "web-x").await?, "n3");
    assert!(started.elapsed() < Duration::from_secs(5));
    eventually("PodScheduled=True", || async {
        Ok::<_, anyhow::Error>(
            scheduled_condition(&pods.get("web-x").await?).filter(|c| c.0 == "True" && c.1.is_none()),
        )
    })
    .await?;
    let scheduled =
        eventually("Scheduled", || async { Ok::<_, anyhow::Error>(events(c, "web-x", "Scheduled").await?.pop()) })
            .await?;
    assert_eq!(scheduled.1, "Successfully assigned default/web-x to n3");
    Ok(())
}

#[tokio::test]
async fn no_nodes_at_all_and_other_schedulers_pods() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    pod(c, "lonely", json!({})).await?;
    pod(c, "custom", json!({"schedulerName": "my-scheduler"})).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let condition = eventually("PodScheduled=False", || async {
        Ok::<_, anyhow::Error>(scheduled_condition(&pods.get("lonely").await?).filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(condition.2.as_deref(), Some("no nodes available to schedule pods"));
    node(c, "late", "True", json!({}), json!({})).await?;
    assert_eq!(bound(c, "lonely").await?, "late");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let custom = pods.get("custom").await?;
    assert_eq!(
        custom.spec.as_ref().and_then(|s| s.node_name.clone()),
        None,
        "another scheduler's pod is not ours to bind"
    );
    assert_eq!(scheduled_condition(&custom), None);
    Ok(())
}
