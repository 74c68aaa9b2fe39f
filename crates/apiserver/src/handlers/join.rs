//! The node join endpoints (`skiff_join`): the cluster CA for anyone, at `/cacerts`; and, for a caller holding
//! the join secret, a node's credentials at `POST /v1-skiff/join` — its API token, the token the API server
//! presents to its streaming server, and that server's certificate, signed here by the cluster CA.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use skiff_api::ApiError;

use crate::codec::{self, Failure};
use crate::server::{State, bearer};

pub async fn serve(state: &State, req: Request<Body>) -> Result<Response, Failure> {
    let path = req.uri().path();
    if path == skiff_join::CACERTS_PATH {
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed(format!("{} {path}", req.method())).into());
        }
        return Ok(codec::bytes(StatusCode::OK, "application/x-pem-file", state.ca_pem.clone()));
    }
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!("{} {path}", req.method())).into());
    }
    let secret = &state.join_secret;
    if !bearer(req.headers()).is_some_and(|presented| skiff_join::constant_time_eq(presented, secret)) {
        tracing::warn!("a node tried to join with a wrong token");
        return Err(ApiError::Unauthorized.into());
    }
    let bytes = codec::read_body(req.into_body()).await?;
    let request: skiff_join::JoinRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("a join request is {{\"nodeName\", \"nodeIP\"}}: {e}")))?;
    if request.node_name.is_empty() {
        return Err(ApiError::BadRequest("nodeName must not be empty".into()).into());
    }
    // The CA's key stays on disk; it is read only for a join.
    let key_path = state.config.data_dir.join("tls").join("ca.key");
    let ca_key = std::fs::read_to_string(&key_path)
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", key_path.display())))?;
    let (serving_cert, serving_key) = skiff_streams::tls::issue_serving_cert(
        &state.ca_pem,
        &ca_key,
        std::slice::from_ref(&request.node_name),
        &[request.node_ip],
    )
    .map_err(|e| ApiError::Internal(format!("signing the node's serving certificate: {e}")))?;
    tracing::info!(node = request.node_name, address = %request.node_ip, "a node joined");
    let joined = skiff_join::Joined {
        token: skiff_join::node_token(secret, &request.node_name),
        stream_token: skiff_join::stream_token(secret),
        serving_cert,
        serving_key,
    };
    Ok(codec::json(StatusCode::OK, &serde_json::to_value(joined).unwrap_or_default()))
}
