//! Issue 3's endpoint behaviours, end to end through the API: the selector AND rule, ready / not ready /
//! terminating, named target ports, multi-port Services, publishNotReadyAddresses, hostname and subdomain, the
//! 100-per-slice split, blue/green selector edits, and mirroring's skip label.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "support/env.rs"]
mod support;

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{MIRROR, SLICE, ep, eventually, start, start_without_controllers, strings};

/// `(name, port, protocol)`.
type Port = (String, i32, String);
/// `(address, hostname, ready, nodeName)`.
type Seen = (String, Option<String>, Option<bool>, Option<String>);

#[tokio::test]
async fn selector_is_an_and_over_labels_in_the_namespace() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web", "tier": "front"},
        "ports": [{"port": 80}]}}))
        .await;
    env.create_pod("extra", json!({"app": "web", "tier": "front", "version": "v2"}), json!([])).await;
    env.create_pod("missing", json!({"app": "web"}), json!([])).await;
    env.create_pod("wrong", json!({"app": "web", "tier": "back"}), json!([])).await;
    for (name, ip) in [("extra", "10.0.0.1"), ("missing", "10.0.0.2"), ("wrong", "10.0.0.3")] {
        env.set_status(name, ip, true).await;
    }
    let got =
        eventually("one endpoint", || async { Some(env.slice_endpoints("web").await).filter(|e| !e.is_empty()) }).await;
    assert_eq!(got, [ep("10.0.0.1", true, true, false)]);
    let (ready, not_ready) = env.endpoint_ips("web").await.expect("endpoints");
    assert_eq!((ready, not_ready), (strings(&["10.0.0.1"]), vec![]));
    // Unnamed port: the slice port's name is present and empty (kubectl describe needs it).
    let slice = &env.slices_of("web", SLICE).await[0];
    let raw = serde_json::to_value(slice).unwrap();
    assert_eq!(raw["ports"][0]["name"], json!(""));
    assert_eq!(raw["ports"][0]["port"], json!(80));
}

#[tokio::test]
async fn ready_not_ready_terminating_and_gone() {
    let env = start().await;
    env.create_service(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    env.create_pod("p", json!({"app": "web"}), json!([])).await;
    // No IP yet: no endpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.slice_endpoints("web").await.is_empty());

    env.set_status("p", "10.0.0.1", false).await;
    let want = [ep("10.0.0.1", false, false, false)];
    eventually("not ready", || async { (env.slice_endpoints("web").await == want).then_some(()) }).await;
    let endpoints = eventually("not-ready endpoints", || async {
        env.endpoints().get_opt("web").await.unwrap().filter(|e| e.subsets.as_ref().is_some_and(|s| !s.is_empty()))
    })
    .await;
    let not_ready = endpoints.subsets.clone().unwrap()[0].not_ready_addresses.clone().expect("not ready");
    assert_eq!(not_ready[0].ip, "10.0.0.1");
    // The pod's Ready transition is the change this write reflects.
    let annotations = endpoints.metadata.annotations.unwrap_or_default();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"), "{annotations:?}");

    env.set_status("p", "10.0.0.1", true).await;
    let want = [ep("10.0.0.1", true, true, false)];
    eventually("ready", || async { (env.slice_endpoints("web").await == want).then_some(()) }).await;
    eventually("ready endpoints", || async {
        (env.endpoint_ips("web").await == Some((strings(&["10.0.0.1"]), vec![]))).then_some(())
    })
    .await;

    // Deleting a bound pod marks it terminating: not ready, still serving, terminating; gone from Endpoints.
    env.pods().delete("p", &DeleteParams::default()).await.expect("delete");
    let want = [ep("10.0.0.1", false, true, true)];
    eventually("terminating", || async { (env.slice_endpoints("web").await == want).then_some(()) }).await;
    eventually("gone from endpoints", || async {
        (env.endpoint_ips("web").await == Some((vec![], vec![]))).then_some(())
    })
    .await;

    // The kubelet (the test) finishes the deletion.
    env.delete_pod_now("p").await;
    eventually("removed", || async { env.slice_endpoints("web").await.is_empty().then_some(()) }).await;
    let slices = env.slices_of("web", SLICE).await;
    assert_eq!(slices.len(), 1, "an empty placeholder stays");
}

#[tokio::test]
async fn named_target_port_resolved_per_pod_and_multi_port() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9100, "targetPort": 9100},
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}}))
        .await;
    env.create_pod(
        "a",
        json!({"app": "web"}),
        json!([{"name": "http", "containerPort": 8080},
        {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]),
    )
    .await;
    env.create_pod("b", json!({"app": "web"}), json!([{"name": "http", "containerPort": 9090}])).await;
    env.set_status("a", "10.0.0.1", true).await;
    env.set_status("b", "10.0.0.2", true).await;
    let got = eventually("two slices", || async {
        let mut got: Vec<(String, Vec<Port>)> = env
            .slices_of("web", SLICE)
            .await
            .iter()
            .filter(|s| !s.endpoints.is_empty())
            .map(|s| {
                let mut ports: Vec<_> = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone().unwrap(), p.port.unwrap(), p.protocol.clone().unwrap()))
                    .collect();
                ports.sort();
                (s.endpoints[0].addresses[0].clone(), ports)
            })
            .collect();
        got.sort();
        Some(got).filter(|g| g.len() == 2)
    })
    .await;
    let port = |n: &str, p: i32, proto: &str| (n.to_string(), p, proto.to_string());
    assert_eq!(
        got[0],
        ("10.0.0.1".into(), vec![port("dns", 5353, "UDP"), port("http", 8080, "TCP"), port("metrics", 9100, "TCP")])
    );
    assert_eq!(got[1], ("10.0.0.2".into(), vec![port("http", 9090, "TCP"), port("metrics", 9100, "TCP")]));
}

#[tokio::test]
async fn headless_publish_not_ready_with_hostname_and_subdomain() {
    let env = start().await;
    env.create_service(json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"},
        "publishNotReadyAddresses": true, "ports": [{"port": 5432}]}}))
        .await;
    env.create_pod_with(json!({"metadata": {"name": "db-0", "labels": {"app": "db"}},
        "spec": {"nodeName": "node-1", "hostname": "db-0", "subdomain": "db", "containers": [{"name": "c", "image": "pg"}]}}))
        .await;
    env.create_pod_with(json!({"metadata": {"name": "db-1", "labels": {"app": "db"}},
        "spec": {"nodeName": "node-1", "hostname": "db-1", "subdomain": "other", "containers": [{"name": "c", "image": "pg"}]}}))
        .await;
    env.set_status("db-0", "10.0.0.1", false).await;
    env.set_status("db-1", "10.0.0.2", false).await;
    let slices = eventually("two endpoints", || async {
        Some(env.slices_of("db", SLICE).await).filter(|s| s.iter().map(|s| s.endpoints.len()).sum::<usize>() == 2)
    })
    .await;
    let labels = slices[0].metadata.labels.clone().unwrap();
    assert_eq!(labels.get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    let mut seen: Vec<Seen> = slices[0]
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.hostname.clone(),
                e.conditions.as_ref().and_then(|c| c.ready),
                e.node_name.clone(),
            )
        })
        .collect();
    seen.sort();
    let node = Some("node-1".to_string());
    assert_eq!(
        seen,
        [
            ("10.0.0.1".into(), Some("db-0".into()), Some(true), node.clone()),
            ("10.0.0.2".into(), None, Some(true), node.clone())
        ]
    );
    let endpoints = eventually("endpoints", || async {
        env.endpoints().get_opt("db").await.unwrap().filter(|e| e.subsets.as_ref().is_some_and(|s| !s.is_empty()))
    })
    .await;
    assert!(endpoints.metadata.labels.unwrap().contains_key("service.kubernetes.io/headless"));
    let addresses = endpoints.subsets.unwrap()[0].addresses.clone().expect("ready with publishNotReadyAddresses");
    assert_eq!(addresses[0].hostname.as_deref(), Some("db-0"));
    assert_eq!(addresses[0].node_name.as_deref(), Some("node-1"));
}

#[tokio::test]
async fn two_hundred_fifty_pods_make_three_slices() {
    let env = start().await;
    env.create_service(
        json!({"metadata": {"name": "big"}, "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..250 {
        let pods = env.pods();
        tasks.spawn(async move {
            let name = format!("big-{i}");
            let pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "big"}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}}))
            .unwrap();
            pods.create(&Default::default(), &pod).await.expect("create");
            let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
            let status = json!({"status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
        });
    }
    while tasks.join_next().await.is_some() {}
    let sizes = eventually("250 endpoints", || async {
        let slices = env.slices_of("big", SLICE).await;
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        Some(sizes).filter(|s| s.iter().sum::<usize>() == 250)
    })
    .await;
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    let (ready, _) = env.endpoint_ips("big").await.expect("endpoints");
    assert_eq!(ready.len(), 250);

    // Settled: nothing keeps rewriting the slices.
    let versions = |slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice>| {
        let mut v: Vec<_> = slices.into_iter().map(|s| (s.metadata.name, s.metadata.resource_version)).collect();
        v.sort();
        v
    };
    let before = versions(env.slices_of("big", SLICE).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(before, versions(env.slices_of("big", SLICE).await));
}

#[tokio::test]
async fn blue_green_selector_edit_moves_endpoints() {
    let env = start().await;
    env.create_pod("blue", json!({"app": "web", "color": "blue"}), json!([])).await;
    env.create_pod("green", json!({"app": "web", "color": "green"}), json!([])).await;
    env.set_status("blue", "10.0.0.1", true).await;
    env.set_status("green", "10.0.0.2", true).await;
    env.create_service(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web", "color": "blue"},
        "ports": [{"port": 80}]}}))
        .await;
    let blue = [ep("10.0.0.1", true, true, false)];
    eventually("blue", || async { (env.slice_endpoints("web").await == blue).then_some(()) }).await;
    let patch = json!({"spec": {"selector": {"app": "web", "color": "green"}}});
    env.services().patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("switch");
    let green = [ep("10.0.0.2", true, true, false)];
    eventually("green", || async { (env.slice_endpoints("web").await == green).then_some(()) }).await;
    eventually("green endpoints", || async {
        (env.endpoint_ips("web").await == Some((strings(&["10.0.0.2"]), vec![]))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn skip_mirror_and_selector_services_are_not_mirrored() {
    let env = start().await;
    // The API server's own `kubernetes` Endpoints carry skip-mirror.
    env.create_service(json!({"metadata": {"name": "numbers-api"}, "spec": {"ports": [{"port": 80}]}})).await;
    let endpoints = serde_json::from_value(json!({"metadata": {"name": "numbers-api"},
        "subsets": [{"addresses": [{"ip": "192.168.123.234"}], "ports": [{"port": 80}]}]}))
    .unwrap();
    env.endpoints().create(&Default::default(), &endpoints).await.expect("create");
    eventually("mirrored", || async { (!env.slices_of("numbers-api", MIRROR).await.is_empty()).then_some(()) }).await;
    // Labelling the Endpoints skip-mirror removes the mirrored slices.
    let patch = json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}});
    env.endpoints().patch("numbers-api", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("label");
    eventually("unmirrored", || async { env.slices_of("numbers-api", MIRROR).await.is_empty().then_some(()) }).await;
    assert!(env.slices_of("kubernetes", MIRROR).await.is_empty());
}

#[tokio::test]
async fn at_startup_endpoints_without_a_service_are_deleted_and_existing_state_is_adopted() {
    let env = start_without_controllers().await;
    let orphan = serde_json::from_value(json!({"metadata": {"name": "orphan"},
        "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"port": 80}]}]}))
    .unwrap();
    env.endpoints().create(&Default::default(), &orphan).await.expect("create");
    env.create_service(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    env.create_pod("p", json!({"app": "web"}), json!([])).await;
    env.set_status("p", "10.0.0.1", true).await;
    env.run_controllers();
    eventually("orphan deleted", || async { env.endpoints().get_opt("orphan").await.unwrap().is_none().then_some(()) })
        .await;
    let want = [ep("10.0.0.1", true, true, false)];
    eventually("web's slice", || async { (env.slice_endpoints("web").await == want).then_some(()) }).await;
    // The `kubernetes` Endpoints (skip-mirror, with a Service) survive and are not mirrored.
    assert!(env.endpoints().get_opt("kubernetes").await.unwrap().is_some());
    assert!(env.slices_of("kubernetes", MIRROR).await.is_empty());
}
