//! Watch: a chunked stream of `{"type": …, "object": …}` lines, with upstream's `resourceVersion` semantics.
//!
//! Unset or `"0"` starts with synthetic `ADDED` events for everything that exists, then follows changes; a
//! concrete revision replays every change after it (or answers a `410 Expired` ERROR event when it was
//! compacted). Selectors are applied to both the old and the new state of each change, so an object that stops
//! matching is seen as `DELETED` and one that starts matching as `ADDED`. Bookmarks, `timeoutSeconds`,
//! `sendInitialEvents` and Table output are supported.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use skiff_api::{ApiError, ResourceType, object};
use skiff_store::Event;

use crate::codec::{self, Failure};
use crate::convert;
use crate::handlers::read::{Filter, table};
use crate::request::{Query, Target};
use crate::server::State;
use crate::storage::Objects;

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

struct Encoder {
    rt: &'static ResourceType,
    table: bool,
    query: Query,
}

impl Encoder {
    fn line(&self, kind: &str, obj: Value) -> Bytes {
        let obj = convert::for_client(self.rt, obj);
        let obj = if self.table {
            let rv = object::resource_version(&obj).unwrap_or_default().to_string();
            table(self.rt, std::slice::from_ref(&obj), &self.query, rv, None)
        } else {
            obj
        };
        let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta});
        let mut bytes = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    fn error(e: &ApiError) -> Bytes {
        let mut bytes = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

/// What a store change looks like through a filter: at most one watch event.
fn translate(event: &Event, filter: &Filter, key: Option<&str>) -> Result<Option<(&'static str, Value)>, ApiError> {
    if key.is_some_and(|k| k != event.key()) {
        return Ok(None);
    }
    let revision = event.revision().to_string();
    match event {
        Event::Put { kv, prev } => {
            let new = Objects::decode(kv)?;
            let old = prev.as_ref().map(Objects::decode).transpose()?;
            let (now, before) = (filter.matches(&new), old.as_ref().is_some_and(|o| filter.matches(o)));
            Ok(match (now, before) {
                (true, true) => Some(("MODIFIED", new)),
                (true, false) => Some(("ADDED", new)),
                (false, true) => old.map(|mut o| {
                    object::set_meta_str(&mut o, "resourceVersion", Some(&revision));
                    ("DELETED", o)
                }),
                (false, false) => None,
            })
        }
        Event::Delete { prev, .. } => {
            let mut old = Objects::decode(prev)?;
            object::set_meta_str(&mut old, "resourceVersion", Some(&revision));
            Ok(filter.matches(&old).then_some(("DELETED", old)))
        }
    }
}

pub async fn watch(state: Arc<State>, target: Target, query: Query, headers: &HeaderMap) -> Result<Response, Failure> {
    let rt = target.rt;
    let srt = convert::storage_type(rt);
    let filter = Filter::from_query(rt, &query)?;
    let ns = target.namespace.clone();
    let exact_key = target.name.as_deref().map(|n| srt.storage_key(ns.as_deref(), n));
    let prefix = exact_key.clone().unwrap_or_else(|| srt.storage_list_prefix(ns.as_deref()));
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents") == Some("true");
    let timeout = match query.int("timeoutSeconds")? {
        Some(s) => Duration::from_secs(s.max(0) as u64),
        None => Duration::from_secs(rand::rng().random_range(1800..3600)),
    };
    let encoder = Encoder { rt, table: codec::wants_table(headers), query: query.clone() };

    // Where the stream starts, and what it says first.
    let mut initial = Vec::new();
    let from = match query.get("resourceVersion") {
        Some(rv) if rv != "0" && !send_initial => {
            rv.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid resource version {rv:?}")))? + 1
        }
        _ => {
            let page = state
                .objects
                .list(srt, ns.as_deref(), None, 0, 0, |o| {
                    filter.matches(o) && exact_key.as_deref().is_none_or(|k| Some(k) == key_of(srt, o).as_deref())
                })
                .await?;
            initial = page.items;
            page.revision + 1
        }
    };
    let mut last_revision = from - 1;
    let shutdown = state.shutdown.clone();
    let store = state.objects.store().clone();

    let body = async_stream::stream! {
        for obj in initial {
            yield Ok::<Bytes, std::convert::Infallible>(encoder.line("ADDED", obj));
        }
        if send_initial {
            yield Ok(encoder.bookmark(last_revision, true));
        }
        let mut changes = match store.watch(&prefix, from).await {
            Ok(s) => s,
            Err(e) => {
                yield Ok(Encoder::error(&crate::storage::map_err(srt, "", e)));
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => break,
                _ = ticker.tick(), if bookmarks => yield Ok(encoder.bookmark(last_revision, false)),
                next = changes.next() => match next {
                    Some(Ok(event)) => {
                        last_revision = event.revision();
                        match translate(&event, &filter, exact_key.as_deref()) {
                            Ok(Some((kind, obj))) => yield Ok(encoder.line(kind, obj)),
                            Ok(None) => {}
                            Err(e) => { yield Ok(Encoder::error(&e)); break; }
                        }
                    }
                    Some(Err(e)) => {
                        yield Ok(Encoder::error(&crate::storage::map_err(srt, "", e)));
                        break;
                    }
                    None => break,
                },
            }
        }
    };
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn key_of(rt: &ResourceType, obj: &Value) -> Option<String> {
    Some(rt.storage_key(object::namespace(obj), object::name(obj)?))
}
