//! `healthCheckNodePort`s: for every `externalTrafficPolicy: Local` LoadBalancer Service the proxy answers HTTP
//! on the Service's health check port, on every node address, with how many of its endpoints are on this node
//! — 200 when there is at least one, 503 when there is none — so that a load balancer sends traffic only to nodes
//! that can serve it without a second hop. The body and headers are upstream kube-proxy's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ruleset::Ruleset;

/// What one health check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Health {
    namespace: String,
    name: String,
    local_endpoints: usize,
    proxy_healthy: bool,
}

struct Server {
    health: watch::Sender<Health>,
    stop: CancellationToken,
}

/// The running health check servers, by port.
#[derive(Default)]
pub struct HealthServers {
    servers: BTreeMap<u16, Server>,
}

impl HealthServers {
    /// Makes the servers match `ruleset` (starting, updating and stopping them); `proxy_healthy` is whether the
    /// last sync succeeded.
    pub async fn update(&mut self, ruleset: &Ruleset, proxy_healthy: bool) {
        let mut wanted: BTreeMap<u16, (Health, BTreeSet<std::net::IpAddr>)> = BTreeMap::new();
        for port in ruleset.service_ports() {
            let Some(hc) = port.health_check_node_port else { continue };
            let entry = wanted.entry(hc).or_insert_with(|| {
                let health = Health {
                    namespace: port.namespace.clone(),
                    name: port.service.clone(),
                    local_endpoints: 0,
                    proxy_healthy,
                };
                (health, BTreeSet::new())
            });
            entry.1.extend(port.endpoints.iter().filter(|e| e.local).map(|e| e.ip));
        }
        self.servers.retain(|port, server| {
            let keep = wanted.contains_key(port);
            if !keep {
                server.stop.cancel();
            }
            keep
        });
        for (port, (mut health, local)) in wanted {
            health.local_endpoints = local.len();
            match self.servers.get(&port) {
                Some(server) => {
                    server.health.send_if_modified(|h| std::mem::replace(h, health.clone()) != health);
                }
                None => match serve(port, health).await {
                    Ok(server) => {
                        self.servers.insert(port, server);
                    }
                    // Retried at the next sync.
                    Err(e) => tracing::warn!(port, error = %e, "a health check node port could not be opened"),
                },
            }
        }
    }

    /// The ports being served.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        for server in self.servers.values() {
            server.stop.cancel();
        }
    }
}

async fn serve(port: u16, health: Health) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
    let (sender, receiver) = watch::channel(health);
    let stop = CancellationToken::new();
    let app = axum::Router::new().fallback(answer).with_state(Arc::new(receiver));
    let until = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::warn!(port, error = %e, "a health check node port stopped");
        }
    });
    Ok(Server { health: sender, stop })
}

async fn answer(State(health): State<Arc<watch::Receiver<Health>>>) -> Response {
    let h = health.borrow().clone();
    let status =
        if h.local_endpoints > 0 && h.proxy_healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "service": {"namespace": h.namespace, "name": h.name},
        "localEndpoints": h.local_endpoints,
        "serviceProxyHealthy": h.proxy_healthy,
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("x-load-balancing-endpoint-weight", HeaderValue::from(h.local_endpoints));
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{IpAddr, TcpStream};

    use super::*;
    use crate::model::{Endpoint, ServicePort};
    use crate::ruleset::RulesetConfig;

    fn ruleset(health_check_node_port: u16, endpoints: &[(&str, bool)]) -> Ruleset {
        let port = |name: &str, number| ServicePort {
            namespace: "shop".into(),
            service: "web".into(),
            port_name: name.into(),
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 43, 0, 50))],
            port: number,
            node_port: Some(30000 + number),
            localhost: true,
            external_local: true,
            health_check_node_port: Some(health_check_node_port),
            endpoints: endpoints
                .iter()
                .filter_map(|(ip, local)| Some(Endpoint { ip: ip.parse().ok()?, port: 8080, local: *local }))
                .collect(),
            ..Default::default()
        };
        // Two ports of one Service share its health check port; an endpoint serving both counts once.
        Ruleset::new(&config(), vec![port("http", 80), port("https", 443)])
    }

    fn config() -> RulesetConfig {
        RulesetConfig {
            table: "skiff".into(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap_or_default(),
            service_cidr: "10.43.0.0/16".parse().unwrap_or_default(),
        }
    }

    fn get(port: u16) -> std::io::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    #[tokio::test]
    async fn the_health_check_port_reports_this_nodes_endpoints() {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.unwrap_or(32_123);
        let mut servers = HealthServers::default();
        servers.update(&ruleset(port, &[("10.42.0.2", true), ("10.42.0.3", true), ("10.42.1.2", false)]), true).await;
        assert_eq!(servers.ports(), [port]);
        let answer = tokio::task::spawn_blocking(move || get(port)).await.ok().and_then(Result::ok).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("content-type: application/json\r\n"), "{answer}");
        assert!(answer.contains("x-load-balancing-endpoint-weight: 2\r\n"), "{answer}");
        assert!(
            answer.ends_with(
                r#"{"localEndpoints":2,"service":{"name":"web","namespace":"shop"},"serviceProxyHealthy":true}"#
            ),
            "{answer}"
        );

        // Only remote endpoints left: 503, so the load balancer skips this node.
        servers.update(&ruleset(port, &[("10.42.1.2", false)]), true).await;
        let answer = tokio::task::spawn_blocking(move || get(port)).await.ok().and_then(Result::ok).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
        assert!(answer.contains(r#""localEndpoints":0"#), "{answer}");

        // The Service goes: so does its port.
        let empty = Ruleset::new(&config(), Vec::<ServicePort>::new());
        servers.update(&empty, true).await;
        assert!(servers.ports().is_empty());
        let mut closed = false;
        for _ in 0..100 {
            if tokio::task::spawn_blocking(move || get(port)).await.is_ok_and(|r| r.is_err()) {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(closed, "the health check port closes");
    }
}
