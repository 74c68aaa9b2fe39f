//! Namespace deletion against a real API server: content of every kind goes (bound pods once the test's kubelet
//! lets them), conditions report what remains, creates are refused meanwhile, then the namespace itself goes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/lib.rs"]
mod support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{deployment, eventually, exists, kubelet_finishes, owner, pod, replicaset};

async fn namespace(client: &Client, name: &str) -> Api<Namespace> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
    api
}

async fn configmap(client: &Client, ns: &str, name: &str) -> Result<ConfigMap, kube::Error> {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &cm).await
}

async fn service(client: &Client, ns: &str, name: &str, ip: Option<&str>) -> Result<Service, kube::Error> {
    let mut spec = json!({"selector": {"app": name}, "ports": [{"port": 80}]});
    if let Some(ip) = ip {
        spec["clusterIP"] = json!(ip);
    }
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &svc).await
}

fn condition(ns: &Namespace, type_: &str) -> Option<(String, String)> {
    let c = ns.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test]
async fn deleting_a_namespace_empties_it_then_removes_it() {
    let c = support::start().await;
    let namespaces = namespace(&c.client, "doomed").await;
    configmap(&c.client, "doomed", "settings").await.unwrap();
    let svc = service(&c.client, "doomed", "web", None).await.unwrap();
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("an allocated ClusterIP");
    let d = deployment(&c.client, "doomed", "web").await;
    let rs = replicaset(&c.client, "doomed", "web-1", vec![owner(&d, true)]).await;
    pod(&c.client, "doomed", "web-1-a", vec![owner(&rs, true)], Some("node-1")).await;
    pod(&c.client, "doomed", "loose", vec![], None).await;

    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get("doomed").await.unwrap();
    assert_eq!(terminating.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Terminating"));

    // Creating in a terminating namespace is refused.
    match configmap(&c.client, "doomed", "late").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a create in a terminating namespace must be refused, got {other:?}"),
    }

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "doomed");
    let maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "doomed");
    let services: Api<Service> = Api::namespaced(c.client.clone(), "doomed");
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "doomed");
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "doomed");
    eventually("everything but the bound pod is gone", || async {
        !exists(&maps, "settings").await
            && !exists(&services, "web").await
            && !exists(&deploys, "web").await
            && !exists(&sets, "web-1").await
            && !exists(&pods, "loose").await
    })
    .await;
    // The bound pod waits for its kubelet, and the namespace for it, saying so.
    eventually("the conditions name what remains", || async {
        let ns = namespaces.get("doomed").await.unwrap();
        condition(&ns, "NamespaceContentRemaining")
            .is_some_and(|(status, msg)| status == "True" && msg.contains("pods has 1 resource instances"))
    })
    .await;
    assert!(exists(&namespaces, "doomed").await);
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(condition(&ns, "NamespaceDeletionContentFailure").map(|c| c.0).as_deref(), Some("False"));
    assert!(ns.spec.and_then(|s| s.finalizers).is_some_and(|f| f == ["kubernetes"]));

    kubelet_finishes(&pods, "web-1-a").await;
    eventually("the namespace is removed", || async { !exists(&namespaces, "doomed").await }).await;

    // The Service's ClusterIP was released with it.
    namespace(&c.client, "next").await;
    let reused = service(&c.client, "next", "web", Some(&ip)).await.unwrap();
    assert_eq!(reused.spec.and_then(|s| s.cluster_ip), Some(ip));
}

#[tokio::test]
async fn an_empty_namespace_goes_at_once_and_live_ones_are_left_alone() {
    let c = support::start().await;
    let namespaces = namespace(&c.client, "empty").await;
    namespace(&c.client, "keep").await;
    configmap(&c.client, "keep", "stays").await.unwrap();

    namespaces.delete("empty", &DeleteParams::default()).await.unwrap();
    eventually("the empty namespace is removed", || async { !exists(&namespaces, "empty").await }).await;
    let kept = namespaces.get("keep").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert!(configmap(&c.client, "keep", "another").await.is_ok());
    let maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "keep");
    assert!(exists(&maps, "stays").await);
    assert!(kept.finalizers().is_empty());
}

#[tokio::test]
async fn content_holding_a_finalizer_keeps_the_namespace_until_released() {
    let c = support::start().await;
    let namespaces = namespace(&c.client, "held").await;
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "pinned", "finalizers": ["example.com/hold"]}, "data": {"k": "v"}}),
    )
    .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "held");
    maps.create(&PostParams::default(), &cm).await.unwrap();

    namespaces.delete("held", &DeleteParams::default()).await.unwrap();
    eventually("the finalizer is reported", || async {
        let ns = namespaces.get("held").await.unwrap();
        condition(&ns, "NamespaceFinalizersRemaining")
            .is_some_and(|(status, msg)| status == "True" && msg.contains("example.com/hold in 1 resource instances"))
    })
    .await;
    let patch = json!({"metadata": {"finalizers": null}});
    maps.patch("pinned", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    eventually("the namespace is removed", || async { !exists(&namespaces, "held").await }).await;
}
