//! Upstream sig-network conformance scenarios for Endpoints and EndpointSlices (`test/e2e/network/
//! endpointslice.go`, `endpointslicemirroring.go`, `endpoints.go`), ported against the in-process API server with
//! the controllers running. Numbers refer to /work/shared/reference/service-conformance.md.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "support/env.rs"]
mod support;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{MIRROR, SLICE, eventually, start, strings};

/// 9: "should create Endpoints and EndpointSlices for Pods matching a Service", including recreation of deleted
/// slices.
#[tokio::test]
async fn conformance_09_endpoints_and_slices_for_matching_pods() {
    let env = start().await;
    let pod1 = env
        .create_pod(
            "pod1",
            json!({"pod1": "on", "shared12": "on"}),
            json!([{"name": "example-name", "containerPort": 3000}]),
        )
        .await;
    let pod2 = env
        .create_pod(
            "pod2",
            json!({"pod2": "on", "shared12": "on"}),
            json!([{"name": "example-name", "containerPort": 3001}, {"name": "other-port", "containerPort": 3002}]),
        )
        .await;
    env.set_status("pod1", "10.0.0.1", false).await;
    env.set_status("pod2", "10.0.0.2", false).await;
    env.create_service(json!({"metadata": {"name": "example-int-port"}, "spec": {"selector": {"pod1": "on"},
        "publishNotReadyAddresses": true, "ports": [{"name": "example", "port": 80, "targetPort": 3000, "protocol": "TCP"}]}}))
        .await;
    env.create_service(json!({"metadata": {"name": "example-named-port"}, "spec": {"selector": {"shared12": "on"},
        "publishNotReadyAddresses": true, "ports": [{"name": "http", "port": 80, "targetPort": "example-name", "protocol": "TCP"}]}}))
        .await;
    env.create_service(json!({"metadata": {"name": "example-no-match"}, "spec": {"selector": {"pod3": "on"},
        "publishNotReadyAddresses": true, "ports": [{"name": "example-no-match", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}))
        .await;

    // A single matching pod.
    let (ready, _) = eventually("example-int-port endpoints", || async {
        env.endpoint_ips("example-int-port").await.filter(|(r, _)| !r.is_empty())
    })
    .await;
    assert_eq!(ready, strings(&["10.0.0.1"]));
    let slices = eventually("example-int-port slice", || async {
        Some(env.slices_of("example-int-port", SLICE).await).filter(|s| s.iter().any(|s| !s.endpoints.is_empty()))
    })
    .await;
    assert_eq!(slices.len(), 1);
    let port = &slices[0].ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some("example"), Some(3000), Some("TCP")));
    let target = slices[0].endpoints[0].target_ref.as_ref().expect("a target");
    assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("pod1")));
    assert_eq!(target.uid, pod1.metadata.uid);
    assert_eq!(
        slices[0].endpoints[0].conditions.as_ref().and_then(|c| c.ready),
        Some(true),
        "publishNotReadyAddresses"
    );

    // Matching pods with a named port: one slice per resolved port number, two subsets.
    let check_named = || async {
        let slices = env.slices_of("example-named-port", SLICE).await;
        let mut ports: Vec<(i32, String)> = slices
            .iter()
            .filter(|s| !s.endpoints.is_empty())
            .map(|s| {
                let port = s.ports.as_ref().and_then(|p| p.first()).and_then(|p| p.port).unwrap_or_default();
                let pod = s.endpoints[0].target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
                (port, pod)
            })
            .collect();
        ports.sort();
        Some(ports).filter(|p| p.len() == 2)
    };
    let ports = eventually("named-port slices", check_named).await;
    assert_eq!(ports, [(3000, "pod1".to_string()), (3001, "pod2".to_string())]);
    let endpoints = eventually("named-port endpoints", || async {
        env.endpoints()
            .get_opt("example-named-port")
            .await
            .unwrap()
            .filter(|e| e.subsets.as_ref().is_some_and(|s| s.len() == 2))
    })
    .await;
    let subsets = endpoints.subsets.expect("subsets");
    assert!(subsets.iter().all(|s| s.ports.as_ref().is_some_and(|p| p[0].name.as_deref() == Some("http"))));
    let _ = pod2;

    // No matching pods: an Endpoints without subsets and one slice without endpoints or ports.
    let empty =
        eventually("no-match endpoints", || async { env.endpoints().get_opt("example-no-match").await.unwrap() }).await;
    assert!(empty.subsets.unwrap_or_default().is_empty());
    let slices = eventually("no-match slice", || async {
        Some(env.slices_of("example-no-match", SLICE).await).filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty() && slices[0].ports.clone().unwrap_or_default().is_empty());

    // Deleted slices come back.
    for slice in env.slices_of("example-named-port", SLICE).await {
        env.slices()
            .delete(slice.metadata.name.as_deref().unwrap(), &DeleteParams::default())
            .await
            .expect("delete slice");
    }
    let ports = eventually("recreated named-port slices", check_named).await;
    assert_eq!(ports.len(), 2);
}

/// 10: "should create and delete Endpoints and EndpointSlices for a Service with a selector specified".
#[tokio::test]
async fn conformance_10_service_with_selector_matching_nothing() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "example-empty-selector"}, "spec": {
        "selector": {"does-not-match-anything": "endpoints-and-endpoint-slices-should-still-be-created"},
        "ports": [{"name": "example", "port": 80, "protocol": "TCP"}]}}))
        .await;
    eventually("endpoints", || async { env.endpoints().get_opt("example-empty-selector").await.unwrap() }).await;
    let slices = eventually("a slice", || async {
        Some(env.slices_of("example-empty-selector", SLICE).await).filter(|s| !s.is_empty())
    })
    .await;
    assert!(slices[0].endpoints.is_empty());
    env.services().delete("example-empty-selector", &DeleteParams::default()).await.expect("delete service");
    eventually("endpoints deleted", || async {
        env.endpoints().get_opt("example-empty-selector").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("slices deleted", || async {
        let list =
            env.slices().list(&ListParams::default().labels("kubernetes.io/service-name=example-empty-selector")).await;
        list.unwrap().items.is_empty().then_some(())
    })
    .await;
}

/// 13: "should support a Service with multiple ports specified in multiple EndpointSlices".
#[tokio::test]
async fn conformance_13_multiple_ports_in_multiple_slices() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "example-custom-endpoints"}, "spec": {"selector": {"app": "multi"},
        "ports": [{"name": "example-port-1", "port": 80, "targetPort": "port-a"},
                  {"name": "example-port-2", "port": 81, "targetPort": "port-b"}]}}))
        .await;
    env.create_pod("pod1", json!({"app": "multi"}), json!([{"name": "port-a", "containerPort": 3000}])).await;
    env.create_pod("pod2", json!({"app": "multi"}), json!([{"name": "port-b", "containerPort": 3001}])).await;
    env.set_status("pod1", "10.0.0.1", true).await;
    env.set_status("pod2", "10.0.0.2", true).await;
    let got = eventually("two single-port slices", || async {
        let mut got: Vec<(String, i32, String)> = env
            .slices_of("example-custom-endpoints", SLICE)
            .await
            .iter()
            .filter(|s| s.endpoints.len() == 1 && s.ports.as_ref().is_some_and(|p| p.len() == 1))
            .map(|s| {
                let port = &s.ports.as_ref().unwrap()[0];
                (
                    port.name.clone().unwrap_or_default(),
                    port.port.unwrap_or_default(),
                    s.endpoints[0].addresses[0].clone(),
                )
            })
            .collect();
        got.sort();
        Some(got).filter(|g| g.len() == 2)
    })
    .await;
    assert_eq!(
        got,
        [("example-port-1".into(), 3000, "10.0.0.1".into()), ("example-port-2".into(), 3001, "10.0.0.2".into())]
    );
}

/// 14: "should support a Service with multiple endpoint IPs specified in multiple EndpointSlices": a Service
/// without a selector with hand-made slices; the controllers leave them alone and add none.
#[tokio::test]
async fn conformance_14_hand_made_slices_of_a_selectorless_service() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "example-custom-endpoints"}, "spec": {
        "ports": [{"name": "port80", "port": 80}, {"name": "port81", "port": 81}]}}))
        .await;
    for (name, ip, port) in [("e2e-custom-slice", "10.1.2.3", 80), ("e2e-custom-slice2", "10.2.3.4", 81)] {
        let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/service-name": "example-custom-endpoints", "endpointslice.kubernetes.io/managed-by": "e2e-test"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip]}], "ports": [{"name": format!("port{port}"), "port": port}]}))
        .unwrap();
        env.slices().create(&PostParams::default(), &slice).await.expect("create slice");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let list = env
        .slices()
        .list(&ListParams::default().labels("kubernetes.io/service-name=example-custom-endpoints"))
        .await
        .unwrap();
    let mut names: Vec<_> = list.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["e2e-custom-slice", "e2e-custom-slice2"]);
    assert!(env.endpoints().get_opt("example-custom-endpoints").await.unwrap().is_none());
}

/// 15: "EndpointSliceMirroring should mirror a custom Endpoints resource through create update and delete".
#[tokio::test]
async fn conformance_15_mirroring_create_update_delete() {
    let env = start().await;
    env.create_service(
        json!({"metadata": {"name": "example-custom-endpoints"}, "spec": {"ports": [{"name": "example", "port": 80}]}}),
    )
    .await;
    let endpoints: Endpoints = serde_json::from_value(json!({"metadata": {"name": "example-custom-endpoints"},
        "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"name": "example", "port": 80, "protocol": "TCP"}]}]}))
    .unwrap();
    env.endpoints().create(&PostParams::default(), &endpoints).await.expect("create endpoints");
    let mirrored = |ip: &'static str, port: i32| {
        let env = &env;
        move || async move {
            let slices = env.slices_of("example-custom-endpoints", MIRROR).await;
            let slice = slices.first()?;
            let ok = slices.len() == 1
                && slice.endpoints.len() == 1
                && slice.endpoints[0].addresses == [ip]
                && slice.ports.as_ref().is_some_and(|p| p.len() == 1 && p[0].port == Some(port));
            ok.then(|| slice.clone())
        }
    };
    let slice = eventually("mirrored slice", mirrored("10.1.2.3", 80)).await;
    let owner = &slice.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.kind, "Endpoints");
    assert_eq!(slice.address_type, "IPv4");

    let update = json!({"subsets": [{"addresses": [{"ip": "10.2.3.4"}], "ports": [{"name": "example", "port": 8080, "protocol": "TCP"}]}]});
    env.endpoints()
        .patch("example-custom-endpoints", &PatchParams::default(), &Patch::Merge(&update))
        .await
        .expect("update");
    eventually("mirrored update", mirrored("10.2.3.4", 8080)).await;

    env.endpoints().delete("example-custom-endpoints", &DeleteParams::default()).await.expect("delete endpoints");
    eventually("mirrored slices deleted", || async {
        env.slices_of("example-custom-endpoints", MIRROR).await.is_empty().then_some(())
    })
    .await;
}

/// 16: "Endpoints should test the lifecycle of an Endpoint": a hand-written Endpoints without a Service lives
/// through create, patch and delete untouched by the controllers.
#[tokio::test]
async fn conformance_16_endpoint_lifecycle() {
    let env = start().await;
    let endpoints: Endpoints =
        serde_json::from_value(json!({"metadata": {"name": "testservice", "labels": {"test-endpoint-static": "true"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}))
        .unwrap();
    env.endpoints().create(&PostParams::default(), &endpoints).await.expect("create");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = env.endpoints().list(&ListParams::default().labels("test-endpoint-static=true")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let patch = json!({"metadata": {"labels": {"test-service": "patched"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080}]}]});
    env.endpoints().patch("testservice", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got = env.endpoints().get("testservice").await.expect("still there");
    let subset = &got.subsets.expect("subsets")[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.0.0.25");
    assert!(env.slices_of("testservice", MIRROR).await.is_empty(), "no Service: nothing mirrored");
    env.endpoints()
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("test-endpoint-static=true"))
        .await
        .unwrap();
    assert!(env.endpoints().get_opt("testservice").await.unwrap().is_none());
}
