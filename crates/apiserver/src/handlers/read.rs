//! GET of one object and LIST of a collection, as JSON or as a `meta.k8s.io` Table.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use skiff_api::{ApiError, ResourceType, object};
use skiff_selector::{FieldSelector, LabelSelector};
use skiff_tables::{IncludeObject, TableOptions};

use crate::codec::{self, Failure};
use crate::convert;
use crate::request::{Query, Target};
use crate::server::State;

/// The filters of a list or watch: label and field selectors.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    rt: &'static ResourceType,
}

impl Filter {
    pub fn from_query(rt: &'static ResourceType, query: &Query) -> Result<Self, ApiError> {
        let labels = query
            .get("labelSelector")
            .map(|s| s.parse::<LabelSelector>().map_err(|e| ApiError::BadRequest(e.to_string())))
            .transpose()?;
        let fields = match query.get("fieldSelector") {
            Some(s) => {
                let f = s.parse::<FieldSelector>().map_err(|e| ApiError::BadRequest(e.to_string()))?;
                f.validate_for(rt.group, rt.plural).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Self { labels, fields, rt })
    }

    /// Whether an object (in its stored form) passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|l| l.matches(&object::labels(obj)))
            && self.fields.as_ref().is_none_or(|f| f.matches(self.rt.group, self.rt.plural, obj))
    }

    pub fn exact_name(&self) -> Option<&str> {
        self.fields.as_ref().and_then(FieldSelector::exact_name)
    }
}

/// Renders objects (already in the client's version) as a Table.
pub fn table(rt: &ResourceType, items: &[Value], query: &Query, rv: String, continue_token: Option<String>) -> Value {
    let include_object = match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    let opts = TableOptions {
        include_object,
        resource_version: rv,
        continue_token,
        now: chrono::Utc::now(),
        no_headers: false,
    };
    skiff_tables::table(rt, items, &opts)
}

pub async fn get(state: &Arc<State>, target: &Target, headers: &HeaderMap) -> Result<Response, Failure> {
    let name = target.name.as_deref().unwrap_or_default();
    let stored = state.objects.get(target.rt, target.namespace.as_deref(), name).await?;
    let obj = convert::for_client(target.rt, stored.object);
    if codec::wants_table(headers) {
        let rv = object::resource_version(&obj).unwrap_or_default().to_string();
        let t = table(target.rt, std::slice::from_ref(&obj), &Query::default(), rv, None);
        return Ok(codec::json(StatusCode::OK, &t));
    }
    Ok(codec::json(StatusCode::OK, &obj))
}

/// A `continue` token: the revision the list was read at and the last key returned.
fn encode_continue(revision: i64, key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(token: &str, rt: &ResourceType) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let key = v["start"].as_str().ok_or_else(bad)?;
    if !key.starts_with(&rt.storage_prefix()) {
        return Err(bad());
    }
    Ok((rev, key.to_string()))
}

pub async fn list(
    state: &Arc<State>,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let rt = target.rt;
    let filter = Filter::from_query(rt, query)?;
    let limit = query.int("limit")?.unwrap_or(0).max(0) as usize;
    let (revision, start_after) = match query.get("continue") {
        Some(token) => {
            let (rev, key) = decode_continue(token, rt)?;
            (rev, Some(key))
        }
        None => match (query.get("resourceVersion"), query.get("resourceVersionMatch")) {
            (Some(rv), Some("Exact")) => {
                (rv.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid resource version {rv:?}")))?, None)
            }
            _ => (0, None),
        },
    };
    let ns = target.namespace.as_deref();
    let page = match (filter.exact_name(), start_after.is_none() && revision == 0 && ns.is_some() || !rt.namespaced) {
        (Some(name), true) => {
            // `metadata.name=x` in a namespace: one key, read directly.
            let rev =
                state.objects.store().current_revision().await.map_err(|e| crate::storage::map_err(rt, name, e))?;
            let items = state.objects.try_get(rt, ns, name).await?.map(|s| s.object).filter(|o| filter.matches(o));
            crate::storage::Page { items: items.into_iter().collect(), revision: rev, continue_after: None }
        }
        _ => state.objects.list(rt, ns, start_after, limit, revision, |o| filter.matches(o)).await.map_err(
            |e| match e {
                ApiError::Expired(_) if query.get("continue").is_some() => ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a \
                     new list without the continue parameter."
                        .into(),
                ),
                e => e,
            },
        )?,
    };
    let continue_token = page.continue_after.as_deref().map(|k| encode_continue(page.revision, k));
    let items: Vec<Value> = page.items.into_iter().map(|o| convert::for_client(rt, o)).collect();
    if codec::wants_table(headers) {
        let t = table(rt, &items, query, page.revision.to_string(), continue_token);
        return Ok(codec::json(StatusCode::OK, &t));
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    let body = json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(codec::json(StatusCode::OK, &body))
}
