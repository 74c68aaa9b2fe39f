//! The request pipeline: authenticate, then route by path to discovery, OpenAPI, health, or a resource verb.
//!
//! Resource requests are parsed into a [`Target`] and dispatched by method and subresource to the verb modules:
//! [`read`] (get, list), [`watch`], [`write`] (create, update, patch — one guarded read-modify-write loop),
//! [`delete`], and [`subresources`] (scale, binding, and the node-agent streams).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use serde_json::json;
use skiff_api::ApiError;

use crate::codec::{self, Failure};
use crate::request::{Query, Target, parse_target};
use crate::server::State;

pub mod delete;
pub mod discovery;
pub mod join;
pub mod proxy;
pub mod read;
pub mod subresources;
pub mod watch;
pub mod write;

/// Paths anyone may read without a token (upstream's `system:public-info-viewer`).
fn is_public(path: &str) -> bool {
    // (The join path checks the join secret itself.)
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz" | skiff_join::CACERTS_PATH | skiff_join::JOIN_PATH)
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// The single entry point of every HTTP request.
pub async fn dispatch(AxumState(state): AxumState<Arc<State>>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let span = tracing::debug_span!("request", %method, path);
    let _enter = span.enter();
    if !is_public(&path) && !state.authenticate(req.headers()) {
        return codec::error(&ApiError::Unauthorized);
    }
    match route(state, req).await {
        Ok(resp) => resp,
        Err(Failure(e)) => {
            if e.code() >= 500 {
                tracing::warn!(%method, path, error = %e, "request failed");
            }
            codec::error(&e)
        }
    }
}

async fn route(state: Arc<State>, req: Request<Body>) -> Result<Response, Failure> {
    let path = req.uri().path().to_string();
    if path == skiff_join::CACERTS_PATH || path == skiff_join::JOIN_PATH {
        return join::serve(&state, req).await;
    }
    if let Some(resp) = discovery::serve(&state, &req, &path)? {
        return Ok(resp);
    }
    let Some(target) = parse_target(&path)? else {
        return Err(ApiError::NotFound {
            group: String::new(),
            resource: String::new(),
            name: "the server could not find the requested resource".into(),
        }
        .into());
    };
    let mut query = Query::parse(req.uri().query());
    // Writes without a fieldManager are recorded under the client's name, as upstream does.
    let agent = req.headers().get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let manager = agent.split('/').next().filter(|m| !m.is_empty()).unwrap_or("unknown").to_string();
    query.set_default("fieldManager", &manager);
    resource(state, target, query, req).await
}

async fn resource(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let method = req.method().clone();
    let sub = target.subresource.map(|s| s.name);
    let has_name = target.name.is_some();
    let watching = target.watch_prefix || query.flag("watch");
    match (method, has_name, sub) {
        (Method::GET, _, _) if watching => watch::watch(state, target, query, req.headers()).await,
        (Method::GET, false, None) => read::list(&state, &target, &query, req.headers()).await,
        (Method::GET, true, None | Some("status")) => read::get(&state, &target, req.headers()).await,
        (Method::GET | Method::PUT | Method::PATCH, true, Some("scale")) => {
            subresources::scale(state, target, query, req).await
        }
        (_, true, Some("log" | "exec" | "portforward")) => subresources::node_stream(state, target, query, req).await,
        (Method::POST, true, Some("binding")) => subresources::binding(state, target, query, req).await,
        (Method::POST, false, None) => write::create(state, target, query, req).await,
        (Method::PUT, true, None | Some("status" | "finalize")) => write::update(state, target, query, req).await,
        (Method::PATCH, true, None | Some("status")) => write::patch(state, target, query, req).await,
        (Method::DELETE, true, None) => delete::delete(state, target, query, req).await,
        (Method::DELETE, false, None) => delete::delete_collection(state, target, query, req).await,
        (method, _, _) => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            target.rt.qualified_plural()
        ))
        .into()),
    }
}

/// `/healthz`, `/livez`, `/readyz`: `ok` once the server is serving (checks in `?verbose` form like upstream).
pub fn health(path: &str, verbose: bool) -> Response {
    let body = if verbose {
        let name = path.trim_start_matches('/').split('/').next().unwrap_or("healthz");
        format!("[+]ping ok\n[+]etcd ok\n{name} check passed\n")
    } else {
        "ok".to_string()
    };
    codec::bytes(StatusCode::OK, "text/plain; charset=utf-8", body)
}

/// `/version`: the Kubernetes release this server implements. kubectl's dispatcher picks its client by `minor`.
pub fn version() -> Response {
    codec::json(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0+skiff",
            "gitCommit": env!("CARGO_PKG_VERSION"),
            "gitTreeState": "clean",
            "buildDate": "2026-11-21T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
        }),
    )
}
