//! The fixed, non-resource paths: health, version, discovery (aggregated and legacy) and OpenAPI v3. The
//! documents themselves are built once by `skiff-openapi`; this module only picks and serves them.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use skiff_api::ApiError;

use crate::codec::{self, Failure};
use crate::handlers::{health, version};
use crate::server::State;

fn wants_aggregated(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2"))
}

fn aggregated(doc: &Value) -> Response {
    let mut resp = codec::json(StatusCode::OK, doc);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(skiff_openapi::AGGREGATED_DISCOVERY_CONTENT_TYPE));
    resp
}

fn found(doc: Option<&Value>, what: &str) -> Result<Option<Response>, Failure> {
    match doc {
        Some(doc) => Ok(Some(codec::json(StatusCode::OK, doc))),
        None => Err(ApiError::NotFound { group: String::new(), resource: String::new(), name: what.into() }.into()),
    }
}

/// Serves `path` if it is one of the fixed paths; `Ok(None)` hands it on to the resource router.
pub fn serve(state: &State, req: &Request<Body>, path: &str) -> Result<Option<Response>, Failure> {
    if req.method() != Method::GET {
        return Ok(None);
    }
    let docs = &state.docs;
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let verbose = req.uri().query().is_some_and(|q| q.contains("verbose"));
    match segs.as_slice() {
        ["version"] => Ok(Some(version())),
        // Every component's metrics in this process (the proxy's, when the node agent runs inside the server).
        ["metrics"] => Ok(Some(codec::bytes(StatusCode::OK, skiff_metrics::CONTENT_TYPE, skiff_metrics::render()))),
        [check, ..] if matches!(*check, "healthz" | "livez" | "readyz") => {
            if *check == "readyz" && !state.is_ready() {
                return Err(ApiError::ServiceUnavailable("the API server is starting".into()).into());
            }
            Ok(Some(health(path, verbose)))
        }
        ["api"] if wants_aggregated(req) => Ok(Some(aggregated(docs.aggregated_core()))),
        ["api"] => Ok(Some(codec::json(StatusCode::OK, docs.legacy_api_versions()))),
        ["api", version] => found(docs.legacy_resource_list("", version), path),
        ["apis"] if wants_aggregated(req) => Ok(Some(aggregated(docs.aggregated_groups()))),
        ["apis"] => Ok(Some(codec::json(StatusCode::OK, docs.legacy_group_list()))),
        ["apis", group] => found(docs.legacy_group(group), path),
        ["apis", group, version] => found(docs.legacy_resource_list(group, version), path),
        ["openapi", "v3"] => Ok(Some(codec::json(StatusCode::OK, docs.openapi_root()))),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            match docs.openapi_group_version(&gv) {
                Some((doc, hash)) => {
                    let mut resp = codec::json(StatusCode::OK, doc);
                    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                        resp.headers_mut().insert(header::ETAG, etag);
                    }
                    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                    Ok(Some(resp))
                }
                None => found(None, path),
            }
        }
        ["openapi", "v2"] | ["swagger.json"] => found(None, path),
        _ => Ok(None),
    }
}
