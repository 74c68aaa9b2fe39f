//! ServiceLB against an in-process API server: Nodes (with addresses and Ready conditions) and EndpointSlices are
//! written by hand, and the assertions are on `status.loadBalancer.ingress` and events, as a user sees them.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use skiff_apiserver::test_util::{TestServer, eventually, patch_node_status, register_node};

/// A test API server with the ServiceLB controller running against it.
async fn start() -> TestServer {
    let server = TestServer::start().await;
    server.spawn(skiff_servicelb::run);
    server
}

async fn node(client: &Client, name: &str, ready: &str, addresses: Value) -> Result<()> {
    let status = json!({"conditions": [{"type": "Ready", "status": ready}], "addresses": addresses});
    register_node(client, json!({"metadata": {"name": name}}), status).await?;
    Ok(())
}

async fn set_ready(client: &Client, name: &str, ready: &str) -> Result<()> {
    patch_node_status(client, name, json!({"conditions": [{"type": "Ready", "status": ready}]})).await?;
    Ok(())
}

async fn service(client: &Client, name: &str, spec: Value) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut spec = spec;
    spec["ports"] = json!([{"port": 80, "targetPort": 8080}]);
    spec["selector"] = json!({"app": name});
    let svc = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    services.create(&PostParams::default(), &svc).await?;
    Ok(())
}

/// The Service's ingress as `ip/ipMode` strings.
async fn ingress(client: &Client, name: &str) -> Result<Vec<String>> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get(name).await?;
    let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    Ok(ingress.into_iter().map(|i| format!("{}/{}", i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default())).collect())
}

async fn ingress_becomes(client: &Client, name: &str, want: &[&str]) -> Result<()> {
    let want: Vec<String> = want.iter().map(|ip| format!("{ip}/VIP")).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = ingress(client, name).await?;
        if got == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name}'s ingress is {got:?}, wanted {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn event_notes(client: &Client, name: &str, reason: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.note)
        .collect())
}

#[tokio::test]
async fn ingress_lists_ready_nodes_and_follows_them() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(
        c,
        "n1",
        "True",
        json!([{"type": "InternalIP", "address": "10.0.0.2"},
        {"type": "ExternalIP", "address": "203.0.113.5"}, {"type": "Hostname", "address": "n1"}]),
    )
    .await?;
    node(c, "n2", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}])).await?;
    node(c, "n3", "False", json!([{"type": "InternalIP", "address": "10.0.0.3"}])).await?;
    service(c, "web", json!({"type": "LoadBalancer"})).await?;
    ingress_becomes(c, "web", &["10.0.0.1", "10.0.0.2", "203.0.113.5"]).await?;
    let notes = eventually("UpdatedLoadBalancer", || async {
        Ok::<_, anyhow::Error>(Some(event_notes(c, "web", "UpdatedLoadBalancer").await?).filter(|n| !n.is_empty()))
    })
    .await?;
    assert_eq!(notes, ["Updated LoadBalancer with new IPs: [] -> [10.0.0.1 10.0.0.2 203.0.113.5]"]);

    set_ready(c, "n2", "False").await?;
    ingress_becomes(c, "web", &["10.0.0.2", "203.0.113.5"]).await?;
    set_ready(c, "n3", "True").await?;
    ingress_becomes(c, "web", &["10.0.0.2", "10.0.0.3", "203.0.113.5"]).await?;
    let nodes: Api<Node> = Api::all(c.clone());
    nodes.delete("n1", &DeleteParams::default()).await?;
    ingress_becomes(c, "web", &["10.0.0.3"]).await?;
    set_ready(c, "n3", "Unknown").await?;
    ingress_becomes(c, "web", &[]).await?;
    let warning = eventually("UnAvailableLoadBalancer", || async {
        Ok::<_, anyhow::Error>(event_notes(c, "web", "UnAvailableLoadBalancer").await?.pop())
    })
    .await?;
    assert_eq!(warning, "There are no available nodes for LoadBalancer");
    Ok(())
}

#[tokio::test]
async fn local_policy_advertises_only_nodes_with_ready_endpoints() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(c, "n1", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}])).await?;
    node(c, "n2", "True", json!([{"type": "InternalIP", "address": "10.0.0.2"}])).await?;
    // healthCheckNodePort is given explicitly: Skiff's API server validates before it allocates, so leaving it
    // out is rejected as "Required value" (upstream allocates first).
    let spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32111});
    service(c, "web", spec).await.context("create")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ingress(c, "web").await?.is_empty(), "no endpoints yet, so no node takes the traffic");

    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let slice = |ready_on_n2: bool| -> Result<EndpointSlice> {
        Ok(serde_json::from_value(json!({
        "metadata": {"name": "web-abcde", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "conditions": {"ready": ready_on_n2}, "nodeName": "n2",
             "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}},
            {"addresses": ["10.244.0.9"], "conditions": {"ready": false}, "nodeName": "n1",
             "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "default"}}
        ]}))?)
    };
    slices.create(&PostParams::default(), &slice(true)?).await?;
    ingress_becomes(c, "web", &["10.0.0.2"]).await?;

    // The endpoint on n2 stops being ready: no node has a ready endpoint any more.
    let current = slices.get("web-abcde").await?;
    let mut next = slice(false)?;
    next.metadata.resource_version = current.metadata.resource_version;
    slices.replace("web-abcde", &PostParams::default(), &next).await.context("replace")?;
    ingress_becomes(c, "web", &[]).await?;

    // Back to Cluster policy: every Ready node.
    let services: Api<Service> = Api::namespaced(c.clone(), "default");
    let patch = json!({"spec": {"externalTrafficPolicy": "Cluster"}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.context("to Cluster")?;
    ingress_becomes(c, "web", &["10.0.0.1", "10.0.0.2"]).await?;
    Ok(())
}

#[tokio::test]
async fn cleared_on_type_change_and_other_classes_left_alone() -> Result<()> {
    let h = start().await;
    let c = &h.client;
    node(c, "n1", "True", json!([{"type": "InternalIP", "address": "10.0.0.1"}])).await?;
    service(c, "ours", json!({"type": "LoadBalancer", "loadBalancerClass": "skiff.io/servicelb"})).await?;
    service(c, "theirs", json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/metal"})).await?;
    service(c, "web", json!({"type": "LoadBalancer"})).await?;
    service(c, "internal", json!({"type": "ClusterIP"})).await?;
    ingress_becomes(c, "ours", &["10.0.0.1"]).await?;
    ingress_becomes(c, "web", &["10.0.0.1"]).await?;

    let services: Api<Service> = Api::namespaced(c.clone(), "default");
    let patch = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}]}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await?;
    ingress_becomes(c, "web", &[]).await?;
    let svc = services.get("web").await?;
    assert_eq!(svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress), None);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ingress(c, "theirs").await?.is_empty(), "another class is another controller's business");
    assert!(ingress(c, "internal").await?.is_empty());
    Ok(())
}
