//! kube-rs, the client every Skiff component uses, against the API server: CRUD, errors, selectors, watch.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::cluster::Cluster;

async fn client(c: &Cluster) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(c.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn kube_rs_crud_errors_and_watch() {
    let c = Cluster::start();
    let client = client(&c).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");

    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "api", "labels": {"tier": "back"}},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.expect("create");
    let spec = created.spec.clone().unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.43."));
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));

    // Errors come back as Kubernetes Status objects.
    match services.create(&PostParams::default(), &svc).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let bad: Service =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"ports": [{"port": 0}]}})).unwrap();
    match services.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("spec.ports[0].port"), "{}", s.message);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }

    // Label selectors.
    let listed = services.list(&ListParams::default().labels("tier=back")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let listed = services.list(&ListParams::default().labels("tier in (front)")).await.unwrap();
    assert!(listed.items.is_empty());

    // A stale replace conflicts; a patch merges.
    let mut stale = created.clone();
    services
        .patch("api", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})))
        .await
        .unwrap();
    stale.metadata.labels = Some([("tier".to_string(), "front".to_string())].into());
    match services.replace("api", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("expected Conflict, got {other:?}"),
    }

    // The runtime watcher sees objects appear and change.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("w=1")).applied_objects().boxed();
    let writer = cms.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"w": "1"}}, "data": {"v": "1"}}))
                .unwrap();
        writer.create(&PostParams::default(), &cm).await.unwrap();
        writer.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.unwrap();
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.last().map(String::as_str) != Some("2") {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await.expect("watch event in time");
        let cm = next.unwrap().unwrap();
        seen.push(cm.data.unwrap()["v"].clone());
    }
    assert_eq!(seen.first().map(String::as_str), Some("1"));

    services.delete("api", &DeleteParams::default()).await.unwrap();
    assert!(services.get_opt("api").await.unwrap().is_none());
}

#[tokio::test]
async fn kube_rs_delete_collection_and_preconditions() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("c{i}"), "labels": {"batch": if i < 3 { "a" } else { "b" }}}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("batch=a")).await.unwrap();
    let left: Vec<String> = cms
        .list(&ListParams::default().labels("batch"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, vec!["c3", "c4"]);

    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid: Some("nope".into()), resource_version: None }),
        ..Default::default()
    };
    match cms.delete("c3", &wrong_uid).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{}", s.message),
        other => panic!("expected a precondition conflict, got {other:?}"),
    }
    assert!(cms.get_opt("c3").await.unwrap().is_some());
    let dry = DeleteParams { dry_run: true, ..Default::default() };
    cms.delete("c3", &dry).await.unwrap();
    assert!(cms.get_opt("c3").await.unwrap().is_some(), "a dry-run delete removed the object");
}
