//! The agent's events are correlated as upstream's recorder does it: a repeat counts on the event already written,
//! a different message is an event of its own.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::Api;
use kube::api::ListParams;
use skiff_agent::events::{EventType, Events};
use skiff_apiserver::test_util::TestServer;

fn container(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("default".into()),
        name: Some("probed".into()),
        uid: Some("6b1c2f3e-0000-4000-8000-000000000001".into()),
        field_path: Some(format!("spec.containers{{{name}}}")),
        ..Default::default()
    }
}

#[tokio::test]
async fn repeats_count_and_new_messages_stay_apart() {
    let server = TestServer::start().await;
    let events = Events::new(server.client.clone(), "node-a".into());
    let refused = "Readiness probe failed: connection refused".to_string();
    let status = "Readiness probe failed: HTTP probe failed with statuscode: 500".to_string();
    events.publish(&container("api"), EventType::Warning, "Unhealthy", refused.clone()).await.unwrap();
    events.publish(&container("api"), EventType::Warning, "Unhealthy", status.clone()).await.unwrap();
    events.publish(&container("api"), EventType::Warning, "Unhealthy", refused.clone()).await.unwrap();
    events.publish(&container("api"), EventType::Warning, "Unhealthy", refused.clone()).await.unwrap();
    // The same message about another container is another event.
    events.publish(&container("tcp"), EventType::Warning, "Unhealthy", refused.clone()).await.unwrap();

    let listed = Api::<Event>::namespaced(server.client.clone(), "default").list(&ListParams::default()).await.unwrap();
    let mut seen: Vec<(String, String, i32)> = listed
        .items
        .iter()
        .map(|e| {
            let path = e.involved_object.field_path.clone().unwrap_or_default();
            let count = e.series.as_ref().and_then(|s| s.count).or(e.count).unwrap_or(1);
            (path, e.message.clone().unwrap_or_default(), count)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("spec.containers{api}".into(), status, 1),
            ("spec.containers{api}".into(), refused.clone(), 3),
            ("spec.containers{tcp}".into(), refused, 1),
        ]
    );
    assert!(
        listed
            .items
            .iter()
            .all(|e| e.reporting_component.as_deref() == Some("kubelet") && e.type_.as_deref() == Some("Warning"))
    );
}
