//! A quick measurement (printed, not asserted) of the latency-sensitive path: a pod's Ready change written to the
//! API → the updated EndpointSlice seen by a watcher. `SKIFF_LATENCY_SERVICES` (default 100) Services × 10 pods,
//! `SKIFF_LATENCY_ROUNDS` (default 200) flips. Run with `--release -- --nocapture` for the benchmark's numbers.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "support/env.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use support::{NS, SLICE, start};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ip(service: usize, pod: usize) -> String {
    let n = service * 10 + pod;
    format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256)
}

fn status(ip: &str, ready: bool) -> serde_json::Value {
    json!({"status": {"phase": "Running", "podIP": ip,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark that prints numbers; run with `cargo test --release -- --ignored --nocapture`"]
async fn ready_change_to_slice_update_latency() {
    let services = env_number("SKIFF_LATENCY_SERVICES", 100);
    let rounds = env_number("SKIFF_LATENCY_ROUNDS", 200);
    let env = start().await;
    let setup = Instant::now();
    futures::stream::iter(0..services)
        .map(|s| {
            let api = env.services();
            async move {
                let svc = serde_json::from_value(json!({"metadata": {"name": format!("svc-{s}")},
                    "spec": {"selector": {"app": format!("app-{s}")}, "ports": [{"port": 80, "targetPort": 8080}]}}))
                .unwrap();
                api.create(&Default::default(), &svc).await.expect("service");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    futures::stream::iter((0..services).flat_map(|s| (0..10).map(move |p| (s, p))))
        .map(|(s, p)| {
            let api = env.pods();
            async move {
                let name = format!("pod-{s}-{p}");
                let pod =
                    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": format!("app-{s}")}},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}}))
                    .unwrap();
                api.create(&Default::default(), &pod).await.expect("pod");
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status(&ip(s, p), true)))
                    .await
                    .expect("status");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), NS);
    let selector = format!("endpointslice.kubernetes.io/managed-by={SLICE}");
    let total = services * 10;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = slices.list(&ListParams::default().labels(&selector)).await.unwrap();
        let ready: usize = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        if ready == total {
            break;
        }
        assert!(Instant::now() < deadline, "setup did not settle: {ready}/{total} ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("setup: {services} services x 10 pods settled in {:?}", setup.elapsed());

    // A watcher reports (ip, ready) for every endpoint of every slice event, with the time it saw it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, Instant)>();
    let watch_api = slices.clone();
    let config = watcher::Config::default().labels(&selector);
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(watch_api, config));
        while let Some(Ok(event)) = stream.next().await {
            if let watcher::Event::Apply(slice) = event {
                let now = Instant::now();
                for endpoint in &slice.endpoints {
                    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                    let _ = tx.send((endpoint.addresses[0].clone(), ready, now));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}

    let pods = env.pods();
    let mut latencies = Vec::with_capacity(rounds * 2);
    for round in 0..rounds {
        let (s, p) = ((round * 7919) % services, round % 10);
        let name = format!("pod-{s}-{p}");
        let target = ip(s, p);
        // Not ready, then ready again: both changes are measured.
        for ready in [false, true] {
            let start = Instant::now();
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status(&target, ready)))
                .await
                .expect("flip");
            let seen = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some((ip, is_ready, at)) = rx.recv().await {
                    if ip == target && is_ready == ready {
                        return at;
                    }
                }
                Instant::now()
            })
            .await
            .expect("the slice update was seen");
            latencies.push(seen.duration_since(start));
        }
    }
    watch.abort();
    latencies.sort();
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len() - 1)];
    println!(
        "Ready change -> EndpointSlice update seen by a watcher ({services} services x 10 pods, {} changes): \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}
