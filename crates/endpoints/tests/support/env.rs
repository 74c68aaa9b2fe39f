//! Shared by the integration tests: an in-process API server with the three controllers running against it, and
//! helpers that play the kubelet (pod status) and poll the API with a bound.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_apiserver::test_util::TestServer;
use tokio_util::sync::CancellationToken;

pub const NS: &str = "default";

pub struct Env {
    pub server: TestServer,
    pub client: kube::Client,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start() -> Env {
    let env = start_without_controllers().await;
    env.run_controllers();
    env
}

/// A server only; call [`Env::run_controllers`] to start the controllers later.
pub async fn start_without_controllers() -> Env {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let server = TestServer::start().await;
    let client = server.client.clone();
    Env { server, client, shutdown: CancellationToken::new() }
}

impl Env {
    pub fn run_controllers(&self) {
        tokio::spawn(skiff_endpoints::run(self.client.clone(), self.shutdown.clone()));
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn endpoints(&self) -> Api<Endpoints> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_service(&self, spec: Value) -> Service {
        self.services()
            .create(&PostParams::default(), &serde_json::from_value(spec).expect("a service"))
            .await
            .expect("create service")
    }

    /// A pod bound to `node-1` with `labels` and container `ports` (a JSON list).
    pub async fn create_pod(&self, name: &str, labels: Value, ports: Value) -> Pod {
        self.create_pod_with(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx", "ports": ports}]}}))
            .await
    }

    pub async fn create_pod_with(&self, pod: Value) -> Pod {
        self.pods()
            .create(&PostParams::default(), &serde_json::from_value(pod).expect("a pod"))
            .await
            .expect("create pod")
    }

    /// Plays the kubelet: Running with `ip`, Ready or not.
    pub async fn set_status(&self, name: &str, ip: &str, ready: bool) {
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]}});
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch status");
    }

    pub async fn delete_pod_now(&self, name: &str) {
        let _ = self.pods().delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
    }

    /// This Service's slices managed by `manager`.
    pub async fn slices_of(&self, service: &str, manager: &str) -> Vec<EndpointSlice> {
        let selector = format!("kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={manager}");
        self.slices().list(&ListParams::default().labels(&selector)).await.expect("list slices").items
    }

    /// `(ip, ready, serving, terminating)` of every endpoint in this Service's controller-managed slices, sorted.
    pub async fn slice_endpoints(&self, service: &str) -> Vec<(String, bool, bool, bool)> {
        let mut out: Vec<_> = self
            .slices_of(service, SLICE)
            .await
            .iter()
            .flat_map(|s| s.endpoints.clone())
            .map(|e| {
                let c = e.conditions.unwrap_or_default();
                (e.addresses[0].clone(), c.ready == Some(true), c.serving == Some(true), c.terminating == Some(true))
            })
            .collect();
        out.sort();
        out
    }

    /// Ready and not-ready IPs of this Service's Endpoints, sorted; `None` when there is no Endpoints object.
    pub async fn endpoint_ips(&self, service: &str) -> Option<(Vec<String>, Vec<String>)> {
        let endpoints = self.endpoints().get_opt(service).await.expect("get endpoints")?;
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for subset in endpoints.subsets.iter().flatten() {
            ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
            not_ready.extend(subset.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        }
        ready.sort();
        ready.dedup();
        not_ready.sort();
        not_ready.dedup();
        Some((ready, not_ready))
    }
}

pub const SLICE: &str = "endpointslice-controller.k8s.io";
pub const MIRROR: &str = "endpointslicemirroring-controller.k8s.io";

/// Polls `check` every 20 ms for up to 10 s until it returns `Some`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `(ip, ready, serving, terminating)`.
pub fn ep(ip: &str, ready: bool, serving: bool, terminating: bool) -> (String, bool, bool, bool) {
    (ip.to_string(), ready, serving, terminating)
}
