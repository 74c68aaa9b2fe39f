//! The proxy from `pods/{log,exec,portforward}` to the node agent running the pod, as upstream's API server
//! proxies to the kubelet: find the pod's node, take the node's `InternalIP` and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, connect over TLS verified against the cluster CA
//! (`<data dir>/tls/ca.crt`, which also signs the agents' serving certificates), authenticate with the admin
//! bearer token, and forward the request to the kubelet-shaped path. A `101 Switching Protocols` answer (exec's
//! WebSocket, port-forward's WebSocket or SPDY) is relayed to the client and both upgraded connections are then
//! spliced byte for byte; any other answer streams back as it comes (`logs -f`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::ApiError;

use crate::codec::Failure;
use crate::request::{Query, Target};
use crate::server::State;

/// The kubelet's default port, for nodes that do not publish one.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers that belong to one hop, or that the proxy sets itself. `Connection` and `Upgrade` are kept:
/// the agent must see the upgrade request.
const DROPPED_REQUEST_HEADERS: [&str; 8] = [
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "proxy-authorization",
    "keep-alive",
];

/// Where to send one stream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub host: String,
    pub port: u16,
    /// The agent's path and query (`/exec/default/web/main?command=sh&output=1`).
    pub path: String,
}

impl Location {
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The node's address for its agent: InternalIP first, then ExternalIP, then Hostname; and the agent's port.
pub fn agent_address(node: &Value) -> Result<(String, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str()).filter(|a| !a.is_empty())
        })
        .ok_or_else(|| ApiError::BadRequest(format!("node {name} has no address to reach its node agent")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The container a log or exec request is for, checked against the pod as upstream does.
pub fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names(pod, "containers");
    match requested {
        Some(name) => {
            let known = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|field| names(pod, field).iter().any(|n| n == name));
            if known {
                Ok(name.to_string())
            } else {
                Err(ApiError::BadRequest(format!("container {name} is not valid for pod {pod_name}")))
            }
        }
        None => match containers.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ApiError::BadRequest(format!("pod {pod_name} does not have a container"))),
            many => {
                let mut message = format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    many.join(" ")
                );
                let init = names(pod, "initContainers");
                if !init.is_empty() {
                    message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(ApiError::BadRequest(message))
            }
        },
    }
}

/// The agent URL for `sub` of `pod` on `node` (upstream's `LogLocation`, `ExecLocation`, `PortForwardLocation`).
pub fn location(pod: &Value, node: &Value, sub: &str, query: &Query) -> Result<Location, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let (host, port) = agent_address(node)?;
    let mut params = form_urlencoded::Serializer::new(String::new());
    let path = match sub {
        "log" => {
            let c = container(pod, query.get("container"))?;
            for key in ["follow", "previous", "timestamps"] {
                if query.flag(key) {
                    params.append_pair(key, "true");
                }
            }
            for key in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
                if let Some(v) = query.get(key) {
                    params.append_pair(key, v);
                }
            }
            format!("/containerLogs/{ns}/{name}/{c}")
        }
        "exec" => {
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(ApiError::BadRequest(format!(
                    "cannot exec into a container in a completed pod; current phase is {phase}"
                )));
            }
            let c = container(pod, query.get("container"))?;
            // The kubelet's parameter names (upstream's ExecStdinParam and friends).
            for (key, param) in [("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")] {
                if query.flag(key) {
                    params.append_pair(param, "1");
                }
            }
            for command in query.all("command") {
                params.append_pair("command", &command);
            }
            format!("/exec/{ns}/{name}/{c}")
        }
        "portforward" => {
            for port in query.all("ports") {
                params.append_pair("ports", &port);
            }
            format!("/portForward/{ns}/{name}")
        }
        other => {
            return Err(ApiError::NotFound {
                group: String::new(),
                resource: format!("pods/{other}"),
                name: name.into(),
            });
        }
    };
    let params = params.finish();
    let path = if params.is_empty() { path } else { format!("{path}?{params}") };
    Ok(Location { host, port, path })
}

fn dial_error(loc: &Location, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("error dialing backend: dial tcp {}: {e}", loc.authority()))
}

/// A TLS connection to the agent, verified against the cluster CA.
async fn connect(
    state: &State,
    loc: &Location,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
    let ca_path = state.config.data_dir.join("tls").join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|e| ApiError::Internal(format!("reading {}: {e}", ca_path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        let cert = cert.map_err(|e| ApiError::Internal(format!("cluster CA: {e}")))?;
        roots.add(cert).map_err(|e| ApiError::Internal(format!("cluster CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = rustls::pki_types::ServerName::try_from(loc.host.clone())
        .map_err(|e| ApiError::Internal(format!("node address {:?}: {e}", loc.host)))?;
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect((loc.host.as_str(), loc.port)))
        .await
        .map_err(|_| dial_error(loc, "i/o timeout"))?
        .map_err(|e| dial_error(loc, e))?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| ApiError::Internal(format!("error dialing backend: tls: {e}")))
}

/// Proxies one `pods/{log,exec,portforward}` request to the pod's node agent.
pub async fn proxy(
    state: Arc<State>,
    target: Target,
    query: Query,
    mut req: Request<Body>,
) -> Result<Response, Failure> {
    let sub = target.subresource.map(|s| s.name).unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let pod = state.objects.get(target.rt, target.namespace.as_deref(), &name).await?.object;
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = skiff_api::resource::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not a known resource".into()))?;
    let node = state.objects.get(nodes, None, node_name).await?.object;
    let loc = location(&pod, &node, sub, &query)?;
    tracing::debug!(sub, pod = %name, node = node_name, agent = %loc.authority(), "proxying to the node agent");

    let tls = connect(&state, &loc).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node agent connection ended with an error");
        }
    });

    let mut upstream = Request::builder().method(req.method().clone()).uri(loc.path.as_str());
    for (key, value) in req.headers() {
        if !DROPPED_REQUEST_HEADERS.contains(&key.as_str()) {
            upstream = upstream.header(key, value);
        }
    }
    let upstream = upstream
        .header(header::HOST, loc.authority())
        .header(header::AUTHORIZATION, format!("Bearer {}", skiff_join::stream_token(&state.join_secret)))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(format!("building the node agent request: {e}")))?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = sender
        .send_request(upstream)
        .await
        .map_err(|e| ApiError::Internal(format!("error talking to the node agent: {e}")))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "stream upgrade failed");
                    return;
                }
            };
            let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                tracing::debug!(error = %e, "stream relay ended with an error");
            }
        });
        let mut out = Response::new(Body::empty());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        return Ok(out);
    }
    let (mut parts, body) = resp.into_parts();
    for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade"] {
        parts.headers.remove(hop);
    }
    if !parts.headers.contains_key(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], phase: &str) -> Value {
        let cs: Vec<Value> = containers.iter().map(|n| json!({"name": n, "image": "x"})).collect();
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "n1", "containers": cs},
               "status": {"phase": phase}})
    }

    fn node() -> Value {
        json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}})
    }

    #[test]
    fn exec_goes_to_the_kubelet_path_with_kubelet_parameter_names() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=exit+3&container=main&stdout=true&stderr=true&stdin=true",
        ));
        let loc = location(&pod(&["main"], "Running"), &node(), "exec", &q).unwrap();
        assert_eq!(loc.host, "10.0.0.5");
        assert_eq!(loc.port, 10251);
        assert_eq!(loc.path, "/exec/default/web/main?input=1&output=1&error=1&command=sh&command=-c&command=exit+3");
        let done = location(&pod(&["main"], "Succeeded"), &node(), "exec", &q).unwrap_err();
        assert!(done.to_string().contains("completed pod"));
    }

    #[test]
    fn logs_and_port_forward_locations() {
        let q = Query::parse(Some("follow=true&tailLines=2"));
        let loc = location(&pod(&["main"], "Running"), &node(), "log", &q).unwrap();
        assert_eq!(loc.path, "/containerLogs/default/web/main?follow=true&tailLines=2");
        let loc = location(&pod(&["main"], "Running"), &node(), "portforward", &Query::parse(None)).unwrap();
        assert_eq!(loc.path, "/portForward/default/web");
    }

    #[test]
    fn containers_are_checked_like_upstream() {
        let two = pod(&["a", "b"], "Running");
        assert_eq!(container(&pod(&["a"], "Running"), None).unwrap(), "a");
        let e = container(&two, None).unwrap_err();
        assert_eq!(e.to_string(), "a container name must be specified for pod web, choose one of: [a b]");
        assert_eq!(container(&two, Some("c")).unwrap_err().to_string(), "container c is not valid for pod web");
    }

    #[test]
    fn nodes_without_a_port_use_the_kubelet_default() {
        let n = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
        assert_eq!(agent_address(&n).unwrap(), ("127.0.0.1".to_string(), DEFAULT_KUBELET_PORT));
        assert!(agent_address(&json!({"metadata": {"name": "n"}})).is_err());
    }
}
