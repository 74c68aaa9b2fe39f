//! The node's cluster DNS server (`skiff-dns`) and its place behind the `kube-dns` Service: the server listens
//! on the node's address, port 53 (UDP and TCP), with its metrics on port 9153; once it answers, the agent
//! publishes an EndpointSlice for `kube-system/kube-dns` naming this node's address. The Service has
//! `internalTrafficPolicy: Local`, so each node's pods reach their own node's server. The slice stays when the
//! agent stops, as a pod's endpoint stays while its kubelet restarts: the proxy's rules keep pointing at the
//! node, whose server is back as soon as the agent is.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The DNS Service's namespace and name, as upstream names them.
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// The `managed-by` of the slices agents publish (the EndpointSlice controller leaves them alone).
const MANAGED_BY: &str = "skiff-agent";
pub const DNS_PORT: u16 = 53;
pub const METRICS_PORT: u16 = 9153;

/// The DNS server's settings, from the agent's.
#[derive(Debug, Clone)]
pub struct NodeDns {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub domain: String,
    /// Upstream resolvers for names outside the cluster domain (the node's resolv.conf).
    pub upstreams: Vec<SocketAddr>,
    /// Called first on each thread the DNS server starts.
    pub thread_start: Option<fn()>,
}

fn slice_name(node: &str) -> String {
    format!("{SERVICE}-{node}")
}

/// This node's endpoint of the DNS Service.
fn endpoint_slice(dns: &NodeDns) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(&dns.node_name), "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
        },
        "addressType": if dns.node_ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{
            "addresses": [dns.node_ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": dns.node_name,
        }],
        "ports": [
            {"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
        ],
    })
}

/// Serves the process's metrics at `/metrics` on `address` until `stop`, as the API server's `/metrics` does.
async fn serve_metrics(address: SocketAddr, stop: CancellationToken) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([(axum::http::header::CONTENT_TYPE, skiff_metrics::CONTENT_TYPE)], skiff_metrics::render())
        }),
    );
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await
}

/// Runs the node's DNS server until `stop`, published behind the DNS Service while it serves.
pub async fn run(client: kube::Client, dns: NodeDns, stop: CancellationToken) {
    let config = skiff_dns::DnsConfig {
        listen: SocketAddr::new(dns.node_ip, DNS_PORT),
        zone: skiff_dns::ZoneConfig { domain: dns.domain.clone(), ..Default::default() },
        upstreams: dns.upstreams.clone(),
        thread_start: dns.thread_start,
    };
    let server = match skiff_dns::start(client.clone(), config, stop.clone()).await {
        Ok(Some(server)) => server,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, address = %dns.node_ip, "cluster DNS cannot listen; pods will not resolve names");
            return;
        }
    };
    let metrics_stop = stop.clone();
    let metrics_at = SocketAddr::new(dns.node_ip, METRICS_PORT);
    let metrics = tokio::spawn(async move {
        if let Err(e) = serve_metrics(metrics_at, metrics_stop).await {
            tracing::warn!(error = %e, "the DNS metrics listener failed");
        }
    });
    let slices: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    let name = slice_name(&dns.node_name);
    let params = PatchParams::apply(MANAGED_BY).force();
    // Published until it sticks (the API may be briefly away); the server answers meanwhile.
    let publish = async {
        loop {
            match slices.patch(&name, &params, &Patch::Apply(endpoint_slice(&dns))).await {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "publishing the DNS endpoint failed; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = publish => {}
    }
    server.wait().await;
    let _ = metrics.await;
}
