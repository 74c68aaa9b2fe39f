//! netexec's `/dial`: ask another endpoint `tries` times over HTTP or UDP and report what came back as
//! `{"responses": [...], "errors": [...]}` (each key only when non-empty; as upstream, `responses` is left
//! out when the last try failed). Conformance tests use it to check Service reachability from inside a pod.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::UdpSocket;

use super::Params;
use crate::servers::say;

/// Deadline of one try, as upstream.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn dial(Query(q): Params) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let (host, port, request, protocol) = (get("host"), get("port"), get("request"), get("protocol"));
    say(format!("GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={}", get("tries")));
    let tries = match get("tries") {
        "" => 1,
        t => match t.parse::<u32>() {
            Ok(n) => n,
            Err(e) => return bad_request(format!("tries parameter is invalid. {e}")),
        },
    };
    if request.is_empty() {
        return bad_request("request parameter not specified.".to_string());
    }
    let protocol = protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "" | "http" | "udp") {
        return bad_request(format!("unsupported protocol. {protocol}"));
    }
    let addr = match resolve(host, port).await {
        Ok(addr) => addr,
        Err(e) => return bad_request(format!("host and/or port param are invalid. {e}")),
    };
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last_ok = false;
    for _ in 0..tries {
        let outcome = if protocol == "udp" { dial_udp(request, addr).await } else { dial_http(request, addr).await };
        match outcome {
            Ok(r) => {
                last_ok = !r.is_empty();
                responses.push(r);
            }
            Err(e) => {
                last_ok = false;
                errors.push(e);
            }
        }
    }
    let mut output: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if last_ok {
        output.insert("responses", responses);
    }
    if !errors.is_empty() {
        output.insert("errors", errors);
    }
    match serde_json::to_string(&output) {
        Ok(json) => json.into_response(),
        Err(e) => (StatusCode::EXPECTATION_FAILED, format!("response could not be serialized. {e}")).into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

async fn resolve(host: &str, port: &str) -> std::io::Result<SocketAddr> {
    let port: u16 = port.parse().map_err(|_| std::io::Error::other(format!("invalid port {port:?}")))?;
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("no address for {host}")))
}

async fn dial_http(request: &str, addr: SocketAddr) -> Result<String, String> {
    let url = format!("http://{addr}/{}", request.trim_start_matches('/'));
    match crate::fetch::get(&url, TRY_TIMEOUT).await {
        Ok((_, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Err(e) => Err(format!("{e}")),
    }
}

async fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let local = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| format!("udp dial failed. err:{e}"))?;
    socket.connect(addr).await.map_err(|e| format!("udp dial failed. err:{e}"))?;
    socket.send(request.as_bytes()).await.map_err(|e| format!("udp connection write failed. err:{e}"))?;
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(TRY_TIMEOUT, socket.recv(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Ok(_)) => Err("reading from udp connection failed. err:'empty reply'".to_string()),
        Ok(Err(e)) => Err(format!("reading from udp connection failed. err:'{e}'")),
        Err(_) => Err("reading from udp connection failed. err:'i/o timeout'".to_string()),
    }
}
