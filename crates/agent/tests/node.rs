//! The agent registers its Node as Ready with a heartbeat Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use skiff_agent::node::{NodeInfo, run};
use skiff_apiserver::test_util::TestServer;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn registers_a_ready_node_with_a_lease() {
    let server = TestServer::start().await;
    let stop = CancellationToken::new();
    let info = NodeInfo {
        name: "node-a".into(),
        address: "10.0.0.7".parse().unwrap(),
        agent_port: 10250,
        control_plane: true,
    };
    tokio::spawn(run(server.client.clone(), info, skiff_agent::node::HEARTBEAT, stop.clone()));
    let nodes: Api<Node> = Api::all(server.client.clone());
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-node-lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let node = nodes.get_opt("node-a").await.unwrap();
        let lease = leases.get_opt("node-a").await.unwrap();
        let ready = node.as_ref().and_then(|n| {
            n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status == "True")
        });
        if let (Some(true), Some(lease)) = (ready, lease) {
            let node = node.unwrap();
            let labels = node.metadata.labels.unwrap();
            assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
            let status = node.status.unwrap();
            assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
            assert_eq!(status.addresses.unwrap()[0].address, "10.0.0.7");
            assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("node-a"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node never became Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}
