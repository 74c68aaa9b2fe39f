//! Shared test plumbing: a server with both controllers running, polling, and a fake kubelet.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_apiserver::test_util::{self, TestServer};

/// A test API server; the controllers spawned against it stop when it is dropped.
pub type Cluster = TestServer;

/// A test API server with the ReplicaSet and Deployment controllers running against it.
pub async fn start() -> Cluster {
    let server = TestServer::start().await;
    server.spawn(skiff_workloads::replicaset::run);
    server.spawn(skiff_workloads::deployment::run);
    server
}

/// Polls `f` every 20 ms for up to 10 s until it returns `Some`; panics when it never does.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = test_util::eventually(what, || {
        let f = f();
        async move { Ok::<_, test_util::TimedOut>(f.await) }
    });
    match found.await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

pub fn pods(c: &Cluster) -> Api<Pod> {
    Api::namespaced(c.client.clone(), "default")
}

pub fn sets(c: &Cluster) -> Api<ReplicaSet> {
    Api::namespaced(c.client.clone(), "default")
}

pub fn deployments(c: &Cluster) -> Api<Deployment> {
    Api::namespaced(c.client.clone(), "default")
}

pub async fn list_pods(c: &Cluster, selector: &str) -> Vec<Pod> {
    pods(c).list(&ListParams::default().labels(selector)).await.unwrap().items
}

/// Live (not terminating) pods matching `selector`.
pub async fn live_pods(c: &Cluster, selector: &str) -> Vec<Pod> {
    list_pods(c, selector).await.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Plays the kubelet: the pod runs and is Ready.
pub async fn mark_ready(c: &Cluster, name: &str) {
    let now = Timestamp::now().to_string();
    let patch = json!({"status": {"phase": "Running", "podIP": "10.0.0.9",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    pods(c).patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

/// Marks every live, not yet ready pod matching `selector` Ready; returns how many.
pub async fn ready_all(c: &Cluster, selector: &str) -> usize {
    let mut n = 0;
    for p in live_pods(c, selector).await.iter().filter(|p| !is_ready(p)) {
        mark_ready(c, &p.name_any()).await;
        n += 1;
    }
    n
}

/// Plays the kubelet for terminating pods: removes them for good.
pub async fn finish_terminating(c: &Cluster, selector: &str) {
    for p in list_pods(c, selector).await.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
        let _ = pods(c).delete(&p.name_any(), &DeleteParams::default().grace_period(0)).await;
    }
}

pub async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

pub fn deployment_json(name: &str, replicas: i32, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    })
}

pub async fn set_image(c: &Cluster, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    deployments(c).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

pub fn annotation(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key).cloned())
}

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The ReplicaSets owned by Deployment `name`, oldest revision first.
pub async fn owned_sets(c: &Cluster, name: &str) -> Vec<ReplicaSet> {
    let mut all: Vec<ReplicaSet> = sets(c)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|r| r.kind == "Deployment" && r.name == name))
        .collect();
    all.sort_by_key(|rs| {
        annotation(&rs.metadata, "deployment.kubernetes.io/revision").and_then(|r| r.parse::<i64>().ok())
    });
    all
}

/// Event notes with `reason` about the object named `name` (core/v1 view).
pub async fn event_notes(c: &Cluster, name: &str, reason: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}
