//! The proxy scenario's objects: selector-less ClusterIP Services (`p-<i>`, port 80 named `http`) each with one
//! EndpointSlice of the benchmark's own (`managed-by: skiff-bench`, so no controller touches it) holding
//! `endpoints` Ready endpoints on [`network::PORT`], every address inside the endpoint namespace
//! ([`network::endpoint`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::network::{self, PORT};
use crate::BenchError;

/// The namespace of the benchmark's Services.
pub const NAMESPACE: &str = "default";

pub fn service_name(i: usize) -> String {
    format!("p-{i:05}")
}

fn slice_name(i: usize) -> String {
    format!("{}-bench", service_name(i))
}

/// The address of endpoint `j` of Service `i` when each has `per_service`.
pub fn initial_endpoint(i: usize, j: usize, per_service: usize) -> std::net::Ipv4Addr {
    network::endpoint(u32::try_from(i * per_service + j).unwrap_or(u32::MAX))
}

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": service_name(i), "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}]}
    }))
    .unwrap_or_default()
}

/// Service `i`'s slice with these endpoint addresses, all Ready.
pub fn slice(i: usize, addresses: &[std::net::Ipv4Addr]) -> EndpointSlice {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|a| serde_json::json!({"addresses": [a.to_string()], "conditions": {"ready": true, "serving": true}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": slice_name(i),
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": service_name(i),
                "endpointslice.kubernetes.io/managed-by": "skiff-bench",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap_or_default()
}

/// Creates Services `0..total` and their slices from `clients` concurrent clients; returns each Service's
/// ClusterIP, by index.
pub async fn create_all(
    clients: Vec<kube::Client>,
    total: usize,
    per_service: usize,
) -> Result<Vec<std::net::Ipv4Addr>, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let next = next.clone();
        workers.spawn(async move {
            let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
            let slices: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
            let mut ips = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, BenchError>(ips);
                }
                let created = services.create(&PostParams::default(), &service(i)).await?;
                let ip = created
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| BenchError::Check(format!("{} got no ClusterIP", service_name(i))))?;
                let addresses: Vec<_> = (0..per_service).map(|j| initial_endpoint(i, j, per_service)).collect();
                slices.create(&PostParams::default(), &slice(i, &addresses)).await?;
                ips.push((i, ip));
            }
        });
    }
    let mut ips = vec![std::net::Ipv4Addr::UNSPECIFIED; total];
    while let Some(joined) = workers.join_next().await {
        for (i, ip) in joined?? {
            ips[i] = ip;
        }
    }
    Ok(ips)
}

/// Writes Service `i`'s endpoints as `addresses` (one request: a merge patch replaces the list).
pub async fn set_endpoints(
    client: &kube::Client,
    i: usize,
    addresses: &[std::net::Ipv4Addr],
) -> Result<(), BenchError> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let body = serde_json::json!({"endpoints": slice(i, addresses).endpoints});
    slices.patch(&slice_name(i), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}
