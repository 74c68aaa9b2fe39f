//! Nodes registered with the API get distinct pod CIDRs from the cluster CIDR.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use skiff_apiserver::test_util::TestServer;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_node_gets_its_own_range() {
    let _ = tracing_subscriber::fmt().with_env_filter("skiff_nodeipam=debug,kube=debug").with_test_writer().try_init();
    let server = TestServer::start().await;
    let stop = CancellationToken::new();
    tokio::spawn(skiff_nodeipam::run(server.client.clone(), "10.42.0.0/16".parse().unwrap(), stop.clone()));
    let nodes: Api<Node> = Api::all(server.client.clone());
    for name in ["a", "b", "c"] {
        let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let cidrs = loop {
        let list = nodes.list(&Default::default()).await.unwrap();
        let cidrs: Vec<String> = list.items.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
        if cidrs.len() == 3 {
            break cidrs;
        }
        assert!(Instant::now() < deadline, "ranges not assigned: {cidrs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut sorted = cidrs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, vec!["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]);
    stop.cancel();
}
