//! `agnhost netexec`, after upstream `test/images/agnhost/netexec`: HTTP on `--http-port` (8080) and UDP on
//! `--udp-port` (8081, `-1` disables it).
//!
//! HTTP: `/` (`NOW: <time>`, also for unknown paths), `/clientip` (the caller's `ip:port`), `/echo?msg=&code=`,
//! `/hostname` and `/hostName`, `/healthz` (200 while the UDP server runs, else 412 — as upstream, so with
//! `--udp-port=-1` it stays 412), `/dial?host=&port=&request=&protocol=http|udp&tries=`, `/redirect?location=&code=`,
//! `/exit?code=&timeout=&wait=` and `/shutdown`. Not implemented: `/shell`, `/upload`, SCTP, TLS, `--http-override`.
//! UDP: `hostname`, `echo <msg>` (lower-cased, as upstream), `clientip`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{EXIT_SIGTERM, ImageError, RunOptions, bind_tcp, bind_udp, hostname, say};
use crate::flags::{Flags, value};

mod dial;

/// A request to end the program, from `/exit` or `/shutdown`.
#[derive(Debug, Clone, Copy)]
struct ExitRequest {
    code: u8,
    /// `None`: exit at once; otherwise stop accepting and give open connections this long.
    grace: Option<Duration>,
}

struct NetexecState {
    ready: AtomicBool,
    exit: mpsc::Sender<ExitRequest>,
}

type Params = Query<HashMap<String, String>>;

/// Serves netexec on `http` (and each UDP socket) until `stop` fires (exit 143, as a Go program without a
/// SIGTERM handler) or `/exit` or `/shutdown` asks; returns the exit code.
pub async fn serve(http: TcpListener, udp: Vec<UdpSocket>, stop: CancellationToken) -> Result<u8, ImageError> {
    let (exit_tx, mut exit_rx) = mpsc::channel(4);
    let state = Arc::new(NetexecState { ready: AtomicBool::new(false), exit: exit_tx });
    let mut udp_tasks = JoinSet::new();
    for socket in udp {
        udp_tasks.spawn(udp_server(socket, state.clone()));
    }
    let app = Router::new()
        .route("/clientip", get(client_ip))
        .route("/dial", get(dial::dial))
        .route("/echo", get(echo))
        .route("/exit", get(exit))
        .route("/healthz", get(healthz))
        .route("/hostname", get(hostname_handler))
        .route("/hostName", get(hostname_handler))
        .route("/redirect", get(redirect))
        .route("/shutdown", get(shutdown))
        .fallback(root)
        .with_state(state);
    let graceful = CancellationToken::new();
    let server = super::serve_http(http, app, graceful.clone());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map(|()| 0),
        _ = stop.cancelled() => Ok(EXIT_SIGTERM),
        request = exit_rx.recv() => {
            let Some(ExitRequest { code, grace }) = request else { return Ok(0) };
            if let Some(grace) = grace {
                graceful.cancel();
                let outcome = tokio::time::timeout(grace, &mut server).await;
                say(format!("Graceful shutdown completed with: {}", if outcome.is_ok() { "<nil>" } else { "timeout" }));
            }
            Ok(code)
        }
    }
}

async fn udp_server(socket: UdpSocket, state: Arc<NetexecState>) {
    let local = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
    say(format!("Started UDP server on {local}"));
    state.ready.store(true, Ordering::SeqCst);
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                say(format!("UDP server exited: {e}"));
                state.ready.store(false, Ordering::SeqCst);
                return;
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]).trim().to_lowercase();
        let reply = if text == "hostname" {
            Some(hostname())
        } else if let Some(msg) = text.strip_prefix("echo ") {
            Some(msg.to_string())
        } else if text == "clientip" {
            Some(client.to_string())
        } else {
            if !text.is_empty() {
                say(format!("Unknown UDP command received from {client}: {text}"));
            }
            None
        };
        if let Some(reply) = reply
            && let Err(e) = socket.send_to(reply.as_bytes(), client).await
        {
            say(format!("failed to reply to UDP client {client}: {e}"));
        }
    }
}

async fn root() -> String {
    say("GET /");
    format!("NOW: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC"))
}

async fn client_ip(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    say("GET /clientip");
    addr.to_string()
}

async fn hostname_handler() -> String {
    say("GET /hostname");
    hostname()
}

async fn healthz(State(state): State<Arc<NetexecState>>) -> StatusCode {
    say("GET /healthz");
    if state.ready.load(Ordering::SeqCst) { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED }
}

async fn echo(Query(q): Params) -> Response {
    let msg = q.get("msg").cloned().unwrap_or_default();
    let code = q.get("code").map(String::as_str).unwrap_or("");
    say(format!("GET /echo?msg={msg}&code={code}"));
    if code.is_empty() {
        return msg.into_response();
    }
    match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
        Some(status) => (status, msg).into_response(),
        None => format!("argument 'code' must be an integer or empty, got {code:?}\n").into_response(),
    }
}

async fn redirect(Query(q): Params) -> Response {
    let location = q.get("location").cloned().unwrap_or_default();
    let code = q.get("code").map(String::as_str).unwrap_or("");
    say(format!("GET /redirect?location={location}&code={code}"));
    let status = if code.is_empty() {
        Some(StatusCode::FOUND)
    } else {
        code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok())
    };
    match status {
        Some(status) => (status, [(header::LOCATION, location)]).into_response(),
        None => format!("argument 'code' must be an integer or empty, got {code:?}\n").into_response(),
    }
}

async fn exit(State(state): State<Arc<NetexecState>>, Query(q): Params) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    say(format!("GET /exit?code={}&timeout={}&wait={}", get("code"), get("timeout"), get("wait")));
    let Some(timeout) = parse_go_duration_or_zero(get("timeout")) else {
        return format!("argument 'timeout' must be a valid golang duration or empty, got {:?}\n", get("timeout"))
            .into_response();
    };
    let Some(wait) = parse_go_duration_or_zero(get("wait")) else {
        return format!("argument 'wait' must be a valid golang duration or empty, got {:?}\n", get("wait"))
            .into_response();
    };
    let code = match get("code") {
        "" => 0,
        c => match c.parse::<i64>() {
            Ok(n) => u8::try_from(n.rem_euclid(256)).unwrap_or(1),
            Err(_) => {
                return format!("argument 'code' must be an integer [0-127] or empty, got {c:?}\n").into_response();
            }
        },
    };
    tokio::time::sleep(wait).await;
    let grace = (!timeout.is_zero()).then_some(timeout);
    let _ = state.exit.send(ExitRequest { code, grace }).await;
    StatusCode::OK.into_response()
}

async fn shutdown(State(state): State<Arc<NetexecState>>) -> StatusCode {
    say("GET /shutdown");
    let _ = state.exit.send(ExitRequest { code: 0, grace: None }).await;
    StatusCode::OK
}

/// Go's `time.ParseDuration` for the forms tests use (`5s`, `1m30s`, `1.5h`, `100ms`, `0`); empty is zero.
fn parse_go_duration_or_zero(s: &str) -> Option<Duration> {
    if s.is_empty() || s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// `netexec [--http-port=8080] [--udp-port=8081] [--udp-listen-addresses=a,b] [--sctp-port=-1]`.
pub async fn main(args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    let spec = [value("http-port"), value("udp-port"), value("sctp-port"), value("udp-listen-addresses")];
    let flags = Flags::parse(args, &spec)?;
    let http_port = flags.port("http-port", 8080)?;
    let udp_port = flags.optional_port("udp-port", Some(8081))?;
    if flags.int("sctp-port", -1)? != -1 {
        return Err(ImageError::Usage("--sctp-port: SCTP is not supported by this stand-in".to_string()));
    }
    let udp_addresses: Vec<IpAddr> = match flags.string("udp-listen-addresses", "").as_str() {
        "" => vec![opts.bind],
        list => {
            let mut addrs = Vec::new();
            for a in list.split(',') {
                let ip =
                    a.trim().parse().map_err(|_| ImageError::Usage(format!("parseAddress: invalid address {a}")))?;
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
            addrs
        }
    };
    let mut udp = Vec::new();
    if let Some(port) = udp_port {
        for ip in udp_addresses {
            udp.push(bind_udp(ip, port).await?);
        }
    }
    let http = bind_tcp(opts.bind, http_port).await?;
    say(format!("Started HTTP server on port {http_port}"));
    serve(http, udp, opts.stop.clone()).await
}

#[cfg(test)]
mod tests;
