//! DELETE of one object and of a collection, with `DeleteOptions` (preconditions, grace period, propagation
//! policy, dry run) as upstream: an object that finalizers or a graceful termination still hold is only marked
//! with `deletionTimestamp`; everything else is removed at once. Removing dependents (`ownerReferences`) is the
//! garbage collector's job, which watches these deletions.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{ApiError, ResourceType, object};

use crate::codec::{self, Failure};
use crate::convert;
use crate::handlers::read::Filter;
use crate::request::{Query, Target};
use crate::server::State;
use crate::services::Holdings;

/// The parts of `DeleteOptions` the server acts on.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From the body (JSON or empty) and the query string (which upstream also accepts).
    pub fn parse(body: &[u8], query: &Query) -> Result<Self, ApiError> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        let propagation =
            match (v["propagationPolicy"].as_str(), query.get("propagationPolicy"), v["orphanDependents"].as_bool()) {
                (Some(p), _, _) | (None, Some(p), _) => Some(p.to_string()),
                (None, None, Some(true)) => Some("Orphan".to_string()),
                (None, None, _) => None,
            };
        if let Some(p) = &propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![skiff_api::FieldError::not_supported(
                    "propagationPolicy",
                    p.as_str(),
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
        let dry_run = v["dryRun"].as_array().is_some_and(|a| a.iter().any(|d| d == "All")) || query.dry_run()?;
        Ok(Self {
            grace_period: v["gracePeriodSeconds"].as_i64().or(query.int("gracePeriodSeconds")?),
            propagation,
            uid: v["preconditions"]["uid"].as_str().map(String::from),
            resource_version: v["preconditions"]["resourceVersion"].as_str().map(String::from),
            dry_run,
        })
    }
}

pub async fn delete(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let bytes = codec::read_body(req.into_body()).await?;
    let opts = DeleteOptions::parse(&bytes, &query)?;
    let name = target.name.clone().unwrap_or_default();
    let (obj, code) = delete_one(&state, target.rt, target.namespace.as_deref(), &name, &opts).await?;
    Ok(codec::json(code, &convert::for_client(target.rt, obj)))
}

/// The grace period a pod gets: the request's, else the pod's own, else 30 s. Pods that never reached a node
/// (or already finished) have nothing to stop and go at once.
fn pod_grace(obj: &Value, opts: &DeleteOptions) -> i64 {
    let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !bound || finished {
        return 0;
    }
    opts.grace_period.or(obj["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30).max(0)
}

/// Deletes (or marks for deletion) one object; returns its last state and the status code.
pub async fn delete_one(
    state: &State,
    rt: &'static ResourceType,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(Value, StatusCode), ApiError> {
    let srt = convert::storage_type(rt);
    loop {
        let current = state.objects.get(srt, ns, name).await?;
        let obj = &current.object;
        if let Some(uid) = &opts.uid
            && object::meta_str(obj, "uid") != Some(uid.as_str())
        {
            return Err(precondition(rt, name, "UID", uid, object::meta_str(obj, "uid").unwrap_or_default()));
        }
        if let Some(rv) = &opts.resource_version
            && current.revision.to_string() != *rv
        {
            return Err(precondition(rt, name, "ResourceVersion", rv, &current.revision.to_string()));
        }
        if opts.dry_run {
            return Ok((current.object, StatusCode::OK));
        }
        let grace = if srt.kind == "Pod" && srt.group.is_empty() { pod_grace(obj, opts) } else { 0 };
        let mut finalizers = object::finalizers(obj);
        match opts.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into());
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        let namespace_held =
            srt.kind == "Namespace" && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let already_deleting = object::is_deleting(obj);
        let held = !finalizers.is_empty() || grace > 0 || namespace_held;
        if held {
            let current_grace = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if already_deleting && current_grace.is_none_or(|g| g <= grace) && finalizers == object::finalizers(obj) {
                // Nothing new to record: upstream answers 202 with the object as it is.
                return Ok((current.object, StatusCode::ACCEPTED));
            }
            let mut marked = current.object.clone();
            let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace);
            let meta = object::metadata_mut(&mut marked);
            if !already_deleting || grace == 0 {
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
            }
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            meta.insert("finalizers".into(), json!(finalizers));
            if srt.kind == "Namespace" {
                marked["status"]["phase"] = json!("Terminating");
            }
            match state.objects.update(srt, marked, current.revision).await {
                Ok(saved) => return Ok((saved, StatusCode::OK)),
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        match state.objects.delete(srt, ns, name, Some(current.revision)).await {
            Ok(deleted) => {
                if srt.kind == "Service" && srt.group.is_empty() {
                    state.services.release(&Holdings::of(&deleted)).await;
                }
                return Ok((deleted, StatusCode::OK));
            }
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn precondition(rt: &ResourceType, name: &str, what: &str, wanted: &str, actual: &str) -> ApiError {
    ApiError::Conflict {
        group: rt.group.into(),
        resource: rt.plural.into(),
        name: name.into(),
        message: format!("Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}"),
    }
}

/// DELETE on a collection: every object the selectors match, one by one; answers the list of what was deleted.
pub async fn delete_collection(
    state: Arc<State>,
    target: Target,
    query: Query,
    req: Request<Body>,
) -> Result<Response, Failure> {
    let rt = target.rt;
    let bytes = codec::read_body(req.into_body()).await?;
    let opts = DeleteOptions::parse(&bytes, &query)?;
    let filter = Filter::from_query(rt, &query)?;
    let srt = convert::storage_type(rt);
    let page = state.objects.list(srt, target.namespace.as_deref(), None, 0, 0, |o| filter.matches(o)).await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let name = object::name(&obj).unwrap_or_default().to_string();
        match delete_one(&state, rt, object::namespace(&obj), &name, &opts).await {
            Ok((gone, _)) => deleted.push(convert::for_client(rt, gone)),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let body = json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(codec::json(StatusCode::OK, &body))
}
