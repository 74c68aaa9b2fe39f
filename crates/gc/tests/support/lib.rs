//! Shared helpers for the integration tests: a test API server with the controllers running against it, objects
//! built by hand (ownerReferences set by the test, as the workload controllers would), and bounded polling.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_apiserver::test_util::{self, TestServer};

/// A test API server; the controllers spawned against it stop when it is dropped.
pub type Cluster = TestServer;

/// A test API server with the garbage collector and the namespace controller running against it.
pub async fn start() -> Cluster {
    let server = TestServer::start().await;
    server.spawn(skiff_gc::run);
    server
}

/// A test API server without controllers (to start them later).
pub async fn start_idle() -> (Cluster, impl FnOnce()) {
    let server = TestServer::start().await;
    let (c, s) = (server.client.clone(), server.controllers());
    let go = move || {
        tokio::spawn(skiff_gc::run(c, s));
    };
    (server, go)
}

/// Polls `check` every 20 ms for up to 10 s; panics when it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let holds = test_util::eventually(what, || {
        let check = check();
        async move { Ok::<_, test_util::TimedOut>(check.await.then_some(())) }
    });
    if let Err(e) = holds.await {
        panic!("{e}");
    }
}

pub fn owner<K: Resource<DynamicType = ()>>(obj: &K, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: obj.name_any(),
        uid: obj.uid().expect("a stored object has a uid"),
        controller: Some(controller),
        block_owner_deletion: Some(true),
    }
}

fn template(app: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

pub async fn deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template(name)},
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &d).await.unwrap()
}

pub async fn replicaset(client: &Client, ns: &str, name: &str, owners: Vec<OwnerReference>) -> ReplicaSet {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template(name)},
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &rs).await.unwrap()
}

/// A pod; `node` binds it (its deletion then waits for a kubelet, which the test plays).
pub async fn pod(client: &Client, ns: &str, name: &str, owners: Vec<OwnerReference>, node: Option<&str>) -> Pod {
    let mut spec = template(name)["spec"].clone();
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}, "ownerReferences": owners},
        "spec": spec,
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &p).await.unwrap()
}

pub async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_some()
}

/// Plays the kubelet: a pod marked for deletion is removed with grace 0.
pub async fn kubelet_finishes(api: &Api<Pod>, name: &str) {
    let dp = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
    eventually("the pod is marked for deletion", || async {
        api.get_opt(name).await.unwrap().is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let _ = api.delete(name, &dp).await;
}
