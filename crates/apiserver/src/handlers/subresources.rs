//! Subresources with their own shapes: `scale` (an `autoscaling/v1` Scale over a Deployment or ReplicaSet),
//! `binding` (a pod's assignment to a node), and the node-agent streams (`log`, `exec`, `portforward`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{ApiError, FieldError, object};
use skiff_selector::LabelSelector;

use crate::codec::{self, Failure, PatchType};
use crate::handlers::write::guarded_write;
use crate::request::{Query, Target};
use crate::server::State;

/// The Scale view of a Deployment or ReplicaSet.
pub fn to_scale(obj: &Value) -> Value {
    let selector = LabelSelector::from_json(&obj["spec"]["selector"]).map(|s| s.to_string()).unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// Writes a changed Scale back into its object.
fn from_scale(current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let name = object::name(current).unwrap_or_default();
    let replicas = match &scale["spec"]["replicas"] {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| ApiError::BadRequest(format!("spec.replicas must be an integer, got {v}")))?,
    };
    if replicas < 0 || replicas > i64::from(i32::MAX) {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![FieldError::invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
        ));
    }
    let mut obj = current.clone();
    obj["spec"]["replicas"] = json!(replicas);
    match object::resource_version(scale) {
        Some(rv) => object::set_meta_str(&mut obj, "resourceVersion", Some(rv)),
        None => object::set_meta_str(&mut obj, "resourceVersion", None),
    }
    Ok(obj)
}

pub async fn scale(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let name = target.name.clone().unwrap_or_default();
    let method = req.method().clone();
    if method == Method::GET {
        let stored = state.objects.get(target.rt, target.namespace.as_deref(), &name).await?;
        return Ok(codec::json(StatusCode::OK, &to_scale(&stored.object)));
    }
    let headers = req.headers().clone();
    let bytes = codec::read_body(req.into_body()).await?;
    let written = if method == Method::PUT {
        let body = codec::decode_object(&headers, &bytes)?;
        guarded_write(&state, &target, &query, false, None, |cur| from_scale(cur.unwrap_or(&Value::Null), &body))
            .await?
    } else {
        let kind = codec::patch_type(&headers)?;
        let patch = codec::decode_json(&bytes)?;
        guarded_write(&state, &target, &query, false, None, |cur| {
            let current = cur.unwrap_or(&Value::Null);
            let scale = to_scale(current);
            let bad = |e: skiff_patch::PatchError| crate::handlers::write::patch_error(target.rt, e);
            let patched = match kind {
                PatchType::Json => skiff_patch::json_patch(&scale, &patch).map_err(bad)?,
                PatchType::Merge => skiff_patch::json_merge_patch(&scale, &patch),
                PatchType::Strategic => {
                    skiff_patch::strategic_merge_patch("autoscaling/v1", "Scale", &scale, &patch).map_err(bad)?
                }
                PatchType::Apply => {
                    skiff_patch::apply_patch("autoscaling/v1", "Scale", Some(&scale), &patch).map_err(bad)?
                }
            };
            // A patch pins the version only if it changed it.
            let mut patched = patched;
            if object::resource_version(&patched) == object::resource_version(&scale) {
                object::set_meta_str(&mut patched, "resourceVersion", None);
            }
            from_scale(current, &patched)
        })
        .await?
    };
    Ok(codec::json(StatusCode::OK, &to_scale(&written.object)))
}

/// `POST pods/{name}/binding`: assigns an unassigned pod to a node (the scheduler's write).
pub async fn binding(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let headers = req.headers().clone();
    let bytes = codec::read_body(req.into_body()).await?;
    let body = codec::decode_object(&headers, &bytes)?;
    let node = body["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::invalid("", "Binding", "", vec![FieldError::required("target.name", "")]))?;
    let name = target.name.clone().unwrap_or_default();
    if query.dry_run()? {
        state.objects.get(target.rt, target.namespace.as_deref(), &name).await?;
    }
    // A binding is not a spec update (pod specs are immutable): it sets one field with a compare-and-swap.
    loop {
        let current = state.objects.get(target.rt, target.namespace.as_deref(), &name).await?;
        if let Some(existing) = current.object["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "pods".into(),
                name: name.clone(),
                message: format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{existing}\""
                ),
            }
            .into());
        }
        if object::is_deleting(&current.object) {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "pods".into(),
                name: name.clone(),
                message: format!("pod {name} is being deleted, cannot be assigned to a host"),
            }
            .into());
        }
        if query.dry_run()? {
            break;
        }
        let mut pod = current.object.clone();
        pod["spec"]["nodeName"] = json!(node);
        // As upstream's binding: the pod is now scheduled.
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let scheduled =
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let mut conditions: Vec<Value> = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(scheduled);
        pod["status"]["conditions"] = json!(conditions);
        match state.objects.update(target.rt, pod, current.revision).await {
            Ok(_) => break,
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(codec::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `log`, `exec` and `portforward` are served by the node agent running the pod: proxied to it.
pub async fn node_stream(
    state: Arc<State>,
    target: Target,
    query: Query,
    req: Request<Body>,
) -> Result<Response, Failure> {
    crate::handlers::proxy::proxy(state, target, query, req).await
}
