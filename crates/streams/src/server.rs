//! The agent's HTTPS endpoint (the kubelet's port 10250): kubelet-shaped paths, bearer-token authentication,
//! and the TLS + HTTP/1.1 listener with upgrades that exec and port-forward need.
//!
//! Routes (as upstream's kubelet, so the API server builds the same URLs):
//! `GET /containerLogs/{ns}/{pod}/{container}`, `GET /exec/{ns}/{pod}[/{uid}]/{container}?command=…&input=1&
//! output=1&error=1&tty=1`, `GET|POST /portForward/{ns}/{pod}[/{uid}]`, and `GET /healthz` (no token).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use futures::TryStreamExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{Backend, BackendError, ExecRequest, PodRef};
use crate::{exec, logs, portforward};

struct Shared {
    backend: Arc<dyn Backend>,
    tokens: Vec<String>,
}

type Params = HashMap<String, String>;
type QueryPairs = Vec<(String, String)>;

/// The router: every route but `/healthz` needs `Authorization: Bearer <one of tokens>`.
pub fn router(backend: Arc<dyn Backend>, tokens: Vec<String>) -> Router {
    let shared = Arc::new(Shared { backend, tokens });
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec_handler))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec_handler))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route("/portForward/{namespace}/{pod}/{uid}", any(port_forward))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

async fn authenticate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = token.is_some_and(|t| shared.tokens.iter().any(|known| constant_time_eq(known.as_bytes(), t.as_bytes())));
    if !ok {
        return status_response(401, "Unauthorized", "Unauthorized");
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn status_response(code: u16, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &BackendError) -> Response {
    status_response(e.code(), e.reason(), &e.to_string())
}

fn pod_ref(p: &Params) -> PodRef {
    PodRef {
        namespace: p.get("namespace").cloned().unwrap_or_default(),
        name: p.get("pod").cloned().unwrap_or_default(),
        uid: p.get("uid").cloned(),
    }
}

fn flag(query: &QueryPairs, keys: &[&str]) -> bool {
    query.iter().any(|(k, v)| keys.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true"))
}

async fn container_logs(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<Params>,
    Query(query): Query<QueryPairs>,
) -> Response {
    let pod = pod_ref(&p);
    let container = p.get("container").cloned().unwrap_or_default();
    let options = match logs::options(&query) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    match shared.backend.logs(&pod, &container, options).await {
        Ok(stream) => {
            let body = Body::from_stream(stream.map_err(std::io::Error::other));
            let mut resp = Response::new(body);
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        Err(e) => error_response(&e),
    }
}

async fn exec_handler(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<Params>,
    Query(query): Query<QueryPairs>,
    req: Request,
) -> Response {
    let req_exec = ExecRequest {
        pod: pod_ref(&p),
        container: p.get("container").cloned().unwrap_or_default(),
        command: query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect(),
        stdin: flag(&query, &["input", "stdin"]),
        stdout: flag(&query, &["output", "stdout"]),
        stderr: flag(&query, &["error", "stderr"]),
        tty: flag(&query, &["tty"]),
    };
    if req_exec.command.is_empty() {
        return error_response(&BackendError::BadRequest(
            "you must specify at least one command for the container".into(),
        ));
    }
    if !(req_exec.stdin || req_exec.stdout || req_exec.stderr) {
        return error_response(&BackendError::BadRequest(
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        ));
    }
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.protocols(exec::PROTOCOLS),
        Err(_) => return upgrade_required(&exec::PROTOCOLS.join(", ")),
    };
    if ws.selected_protocol().is_none() {
        return upgrade_required(&exec::PROTOCOLS.join(", "));
    }
    let span = tracing::debug_span!("exec", pod = %req_exec.pod.name, container = %req_exec.container);
    let backend = shared.backend.clone();
    ws.on_upgrade(move |socket| exec::serve(socket, backend, req_exec).instrument(span))
}

fn upgrade_required(protocols: &str) -> Response {
    status_response(
        400,
        "BadRequest",
        &format!("this endpoint needs a WebSocket upgrade with one of the subprotocols: {protocols}"),
    )
}

async fn port_forward(State(shared): State<Arc<Shared>>, Path(p): Path<Params>, req: Request) -> Response {
    let pod = pod_ref(&p);
    let backend = shared.backend.clone();
    let span = tracing::debug_span!("port_forward", pod = %pod.name);
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if upgrade.eq_ignore_ascii_case("websocket") {
        let (mut parts, _body) = req.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws.protocols([portforward::WEBSOCKET_PROTOCOL]),
            Err(_) => return upgrade_required(portforward::WEBSOCKET_PROTOCOL),
        };
        if ws.selected_protocol().is_none() {
            return upgrade_required(portforward::WEBSOCKET_PROTOCOL);
        }
        return ws.on_upgrade(move |socket| portforward::serve_websocket(socket, backend, pod).instrument(span));
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let mut req = req;
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(
            async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        if let Err(e) = portforward::session::run(TokioIo::new(upgraded), backend, pod).await {
                            tracing::debug!(error = %e, "port-forward session ended with an error");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
                }
            }
            .instrument(span),
        );
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert("X-Stream-Protocol-Version", HeaderValue::from_static(portforward::STREAM_PROTOCOL));
        return resp;
    }
    upgrade_required(portforward::WEBSOCKET_PROTOCOL)
}

/// A running stream server; dropping it stops accepting and closes open sessions.
pub struct StreamServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StreamServer {
    /// Binds `addr` and serves `router` over TLS.
    pub async fn start(addr: SocketAddr, tls: Arc<rustls::ServerConfig>, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, tls, router, async {
            let _ = stopped.await;
        }));
        tracing::info!(address = %local_addr, "stream server listening");
        Ok(Self { local_addr, stop: Some(stop), task: Some(task) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops and waits until the listener and its connections are gone.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Accepts TLS connections on `listener` until `shutdown` resolves; then aborts the open connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let token = CancellationToken::new();
    let serving =
        skiff_https::serve(listener, TlsAcceptor::from(tls), router, token.clone(), skiff_https::Drain::Abort);
    tokio::pin!(serving, shutdown);
    tokio::select! {
        () = &mut serving => {}
        () = &mut shutdown => {
            token.cancel();
            serving.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BoxDuplex, ExecSession, LogOptions, LogStream};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Lines;

    #[async_trait::async_trait]
    impl Backend for Lines {
        async fn exec(&self, _: ExecRequest) -> Result<ExecSession, BackendError> {
            Err(BackendError::BadRequest("no exec".into()))
        }
        async fn port_forward(&self, _: &PodRef, _: u16) -> Result<BoxDuplex, BackendError> {
            Err(BackendError::BadRequest("no port-forward".into()))
        }
        async fn logs(&self, pod: &PodRef, container: &str, o: LogOptions) -> Result<LogStream, BackendError> {
            if pod.name != "web" {
                return Err(BackendError::NotFound(format!("pod {} not found", pod.name)));
            }
            let text = format!("{}/{}/{container} tail={:?}\n", pod.namespace, pod.name, o.tail_lines);
            Ok(Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(text))])))
        }
    }

    async fn get(uri: &str, token: Option<&str>) -> (StatusCode, String) {
        let app = router(Arc::new(Lines), vec!["secret".into()]);
        let mut req = axum::http::Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn only_known_bearer_tokens_get_through() {
        let (status, body) = get("/containerLogs/default/web/main", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"reason\":\"Unauthorized\""));
        assert_eq!(get("/containerLogs/default/web/main", Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get("/healthz", None).await, (StatusCode::OK, "ok".to_string()));
    }

    #[tokio::test]
    async fn logs_stream_the_backend_and_errors_are_statuses() {
        let ok = get("/containerLogs/default/web/main?tailLines=3", Some("secret")).await;
        assert_eq!(ok, (StatusCode::OK, "default/web/main tail=Some(3)\n".to_string()));
        let (status, body) = get("/containerLogs/default/gone/main", Some("secret")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("pod gone not found"));
        assert_eq!(get("/containerLogs/default/web/main?tailLines=x", Some("secret")).await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn exec_without_a_websocket_upgrade_is_refused() {
        let (status, body) = get("/exec/default/web/main?command=true&output=1", Some("secret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("v5.channel.k8s.io"));
        let (status, body) = get("/exec/default/web/main?output=1", Some("secret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("at least one command"));
    }
}
