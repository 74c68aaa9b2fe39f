//! Request bodies in, responses out: the content types the API accepts (JSON, YAML, Kubernetes protobuf and the
//! four patch types), the 3 MiB body limit, and the JSON / Table responses and `Status` errors it answers with.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use skiff_api::ApiError;

/// Upstream's limit on a request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The PATCH flavours, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// The media type of a request, without parameters (a missing header counts as JSON, as upstream).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "application/json".to_string())
}

pub fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    match media_type(headers).as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the media type {other:?} is not supported for patch; use one of application/json-patch+json, \
             application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        ))),
    }
}

/// Reads a whole body, refusing more than [`MAX_BODY`] bytes with 413.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::RequestEntityTooLarge("Request entity too large: limit is 3145728".into())
        } else {
            ApiError::BadRequest(format!("reading request body: {e}"))
        }
    })
}

/// Decodes an object body of any accepted content type into JSON.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let value = match media_type(headers).as_str() {
        "application/json" | "*/*" => decode_json(bytes)?,
        "application/yaml" | "application/apply-patch+yaml" => decode_yaml(bytes)?,
        "application/vnd.kubernetes.protobuf" => skiff_protobuf::decode(bytes).map_err(|e| {
            ApiError::UnsupportedMediaType(format!("the body of the request could not be decoded: {e}"))
        })?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, \
                 application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            )));
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::BadRequest("the request body must be a JSON object".into()))
    }
}

pub fn decode_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("couldn't decode the request body: {e}")))
}

pub fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("couldn't decode the request body: {e}")))
}

/// Whether the client asked for a `meta.k8s.io` Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|accept| {
        accept.split(',').next().is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
    })
}

/// A JSON response.
pub fn json(code: StatusCode, body: &Value) -> Response {
    bytes(code, "application/json", serde_json::to_vec(body).unwrap_or_default())
}

pub fn bytes(code: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds `Warning: 299 - "..."` headers, as upstream does for field-validation warnings.
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// An error as a `Status` response.
pub fn error(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &e.to_status())
}

/// Lets handlers return `Result<Response, ApiError>`.
pub struct Failure(pub ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(&self.0)
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_tables_and_media_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wants_table(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_table(&h));
        assert_eq!(media_type(&HeaderMap::new()), "application/json");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/strategic-merge-patch+json; charset=utf-8"),
        );
        assert_eq!(patch_type(&h).unwrap(), PatchType::Strategic);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(patch_type(&h).unwrap_err().code(), 415);
        assert_eq!(decode_object(&h, b"{}").unwrap_err().code(), 415);
    }
}
