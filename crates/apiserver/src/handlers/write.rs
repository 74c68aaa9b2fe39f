//! Create, update (PUT) and patch: every write goes through the same steps as upstream's registry — type and
//! name checks, strict decoding, system metadata, defaulting, validation, Service address allocation — and is
//! stored with one compare-and-swap. Updates and patches that did not pin a `resourceVersion` retry on conflict
//! against the fresh object, so concurrent writers never lose each other's changes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_admission::{DecodeError, FieldValidation};
use skiff_api::{ApiError, ResourceType, object};

use crate::codec::{self, Failure, PatchType};
use crate::convert;
use crate::request::{Query, Target};
use crate::server::State;
use crate::services::Holdings;

/// How many times a write that did not pin a `resourceVersion` retries after losing a compare-and-swap.
const RETRIES: usize = 16;

/// The outcome of a write: the stored object, the HTTP status, and field-validation warnings.
pub struct Written {
    pub object: Value,
    pub code: StatusCode,
    pub warnings: Vec<String>,
}

impl Written {
    pub fn respond(self, rt: &ResourceType) -> Response {
        let obj = convert::for_client(rt, self.object);
        codec::with_warnings(codec::json(self.code, &obj), &self.warnings)
    }
}

pub async fn create(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let headers = req.headers().clone();
    let bytes = codec::read_body(req.into_body()).await?;
    let obj = codec::decode_object(&headers, &bytes)?;
    let duplicates = duplicate_fields(&headers, &bytes, &query)?;
    let mut written = create_object(&state, &target, &query, obj, None).await?;
    written.warnings.extend(duplicates);
    Ok(written.respond(target.rt))
}

pub async fn update(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let headers = req.headers().clone();
    let bytes = codec::read_body(req.into_body()).await?;
    let body = codec::decode_object(&headers, &bytes)?;
    let duplicates = duplicate_fields(&headers, &bytes, &query)?;
    let create_on_missing = target.subresource.is_none() && allows_create_on_update(target.rt);
    let mut written = guarded_write(&state, &target, &query, create_on_missing, None, |_| Ok(body.clone())).await?;
    written.warnings.extend(duplicates);
    Ok(written.respond(target.rt))
}

pub async fn patch(state: Arc<State>, target: Target, query: Query, req: Request<Body>) -> Result<Response, Failure> {
    let headers = req.headers().clone();
    let kind = codec::patch_type(&headers)?;
    let bytes = codec::read_body(req.into_body()).await?;
    let patch = match kind {
        PatchType::Apply => codec::decode_yaml(&bytes)?,
        _ => codec::decode_json(&bytes)?,
    };
    if kind == PatchType::Apply && query.field_manager().is_none() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![skiff_api::FieldError::required("fieldManager", "is required for apply patch")],
        )
        .into());
    }
    let rt = target.rt;
    let applied = (kind == PatchType::Apply).then_some(&patch);
    // As upstream, a patch is a precondition on the resourceVersion only when it sets one; otherwise it applies
    // to the latest version and is retried on conflict.
    let pins = patch_pins_version(kind, &patch);
    let written = guarded_write(&state, &target, &query, kind == PatchType::Apply, applied, |current| {
        let mut new = apply_patch(rt, kind, current, &patch)?;
        if !pins && current.is_some() {
            object::set_meta_str(&mut new, "resourceVersion", None);
        }
        Ok(new)
    })
    .await?;
    Ok(written.respond(rt))
}

/// Whether a patch names a resourceVersion (then a conflict is the client's to resolve).
fn patch_pins_version(kind: PatchType, patch: &Value) -> bool {
    match kind {
        PatchType::Json => patch.as_array().is_some_and(|ops| {
            ops.iter().any(|op| op["path"] == "/metadata/resourceVersion" && op["op"] != "test" && op["op"] != "remove")
        }),
        _ => patch["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()),
    }
}

/// One patch applied to the client's view of the object (`None`: the object does not exist yet).
pub fn apply_patch(
    rt: &ResourceType,
    kind: PatchType,
    current: Option<&Value>,
    patch: &Value,
) -> Result<Value, ApiError> {
    let bad = |e: skiff_patch::PatchError| patch_error(rt, e);
    let api_version = rt.api_version();
    match (kind, current) {
        (PatchType::Apply, current) => skiff_patch::apply_patch(&api_version, rt.kind, current, patch).map_err(bad),
        (_, None) => Err(ApiError::Internal("patch of a missing object".into())),
        (PatchType::Json, Some(cur)) => skiff_patch::json_patch(cur, patch).map_err(bad),
        (PatchType::Merge, Some(cur)) => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest("a merge patch must be a JSON object".into()));
            }
            Ok(skiff_patch::json_merge_patch(cur, patch))
        }
        (PatchType::Strategic, Some(cur)) => {
            skiff_patch::strategic_merge_patch(&api_version, rt.kind, cur, patch).map_err(bad)
        }
    }
}

/// A patch that is malformed is a 400; one that is well-formed but cannot be applied is a 422 on `patch`.
pub fn patch_error(rt: &ResourceType, e: skiff_patch::PatchError) -> ApiError {
    if e.code() == 422 {
        let cause = skiff_api::FieldError {
            kind: skiff_api::FieldErrorKind::Invalid,
            field: "patch".into(),
            value: None,
            detail: e.to_string(),
        };
        ApiError::invalid(rt.group, rt.kind, "", vec![cause])
    } else {
        ApiError::BadRequest(e.to_string())
    }
}

/// Upstream lets PUT create Endpoints and Leases (their controllers write them that way).
fn allows_create_on_update(rt: &ResourceType) -> bool {
    matches!((rt.group, rt.plural), ("", "endpoints") | ("coordination.k8s.io", "leases") | ("", "events"))
}

/// The body's `apiVersion`/`kind`, when given, must be the URL's.
fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    if !api_version.is_empty() && api_version != rt.api_version() {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

/// Places the object in the URL's namespace (cluster-scoped kinds have none).
fn place_in_namespace(rt: &ResourceType, target: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if !rt.namespaced {
        object::set_meta_str(obj, "namespace", None);
        return Ok(());
    }
    let ns = target
        .namespace
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest(format!("{} must be created or changed inside a namespace", rt.plural)))?;
    match object::namespace(obj) {
        Some(given) if !given.is_empty() && given != ns => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        )),
        _ => {
            object::set_meta_str(obj, "namespace", Some(ns));
            Ok(())
        }
    }
}

fn field_validation(query: &Query) -> Result<FieldValidation, ApiError> {
    match query.get("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}; supported values: Ignore, Warn, Strict"
        ))),
    }
}

/// Duplicate keys in a JSON body (lost once parsed): an error under `Strict`, warnings under `Warn`.
fn duplicate_fields(headers: &axum::http::HeaderMap, bytes: &[u8], query: &Query) -> Result<Vec<String>, ApiError> {
    let mode = field_validation(query)?;
    if matches!(mode, FieldValidation::Ignore) || codec::media_type(headers) != "application/json" {
        return Ok(vec![]);
    }
    let found = skiff_admission::duplicate_fields(bytes).unwrap_or_default();
    let messages: Vec<String> = found.iter().map(|f| format!("duplicate field \"{f}\"")).collect();
    match mode {
        _ if messages.is_empty() => Ok(vec![]),
        FieldValidation::Strict => Err(ApiError::BadRequest(format!("strict decoding error: {}", messages.join(", ")))),
        _ => Ok(messages),
    }
}

/// Unknown and duplicate fields: an error under `Strict`, warnings under `Warn`, nothing under `Ignore`.
/// A value of the wrong type is always an error.
fn strict_decode(rt: &ResourceType, obj: &Value, query: &Query) -> Result<Vec<String>, ApiError> {
    let mode = field_validation(query)?;
    let unknown = match skiff_admission::decode_strict(rt, obj) {
        Ok(unknown) => unknown,
        Err(DecodeError::Type(msg)) => return Err(ApiError::BadRequest(msg)),
        Err(other) => return Err(ApiError::BadRequest(other.to_string())),
    };
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match mode {
        _ if messages.is_empty() => Ok(vec![]),
        FieldValidation::Strict => Err(ApiError::BadRequest(format!("strict decoding error: {}", messages.join(", ")))),
        FieldValidation::Warn => Ok(messages),
        FieldValidation::Ignore => Ok(vec![]),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `generateName` becomes a name: the prefix and five random characters, as upstream.
fn generate_name(obj: &mut Value) {
    if object::name(obj).is_some_and(|n| !n.is_empty()) {
        return;
    }
    let Some(prefix) = object::meta_str(obj, "generateName").map(String::from) else { return };
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    let base: String = prefix.chars().take(58).collect();
    object::set_meta_str(obj, "name", Some(&format!("{base}{suffix}")));
}

/// System metadata and status of a new object (upstream `BeforeCreate` and the strategies' `PrepareForCreate`).
pub(crate) fn prepare_for_create(rt: &ResourceType, obj: &mut Value) {
    let meta = object::metadata_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    if rt.has_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    let Some(map) = obj.as_object_mut() else { return };
    match (rt.group, rt.kind) {
        ("", "Service") => {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
        ("", "Pod") => {
            map.insert("status".into(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
        }
        ("", "Namespace") => {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        ("apps", _) => {
            map.remove("status");
        }
        _ => {}
    }
}

/// Records who set which fields in `metadata.managedFields` (`skiff-fields`), as upstream's field manager does.
fn track_fields(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    applied: Option<&Value>,
    query: &Query,
    subresource: Option<&str>,
) {
    let api_version = rt.api_version();
    let time = now();
    let write = skiff_fields::Write {
        manager: query.field_manager().unwrap_or("unknown"),
        operation: if applied.is_some() { skiff_fields::Operation::Apply } else { skiff_fields::Operation::Update },
        api_version: &api_version,
        kind: rt.kind,
        subresource,
        time: &time,
        status_subresource: rt.subresource("status").is_some(),
    };
    let managed = skiff_fields::managed_fields(old, new, applied, &write);
    let meta = object::metadata_mut(new);
    if managed.as_array().is_none_or(Vec::is_empty) {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), managed);
    }
}

/// Fields of `metadata` that only the server sets, carried from the stored object into an update.
fn carry_system_meta(old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_default();
    let meta = object::metadata_mut(new);
    for field in ["uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("selfLink");
}

async fn ensure_namespace_open(state: &State, ns: &str) -> Result<(), ApiError> {
    let rt = skiff_api::resource::lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::Internal("no namespaces".into()))?;
    let stored = state.objects.get(rt, None, ns).await?;
    if object::is_deleting(&stored.object) {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

fn is_service(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "services"
}

fn invalid(rt: &ResourceType, obj: &Value, causes: Vec<skiff_api::FieldError>) -> ApiError {
    ApiError::invalid(rt.group, rt.kind, object::name(obj).unwrap_or_default(), causes)
}

/// Creates one object from a client's body.
pub async fn create_object(
    state: &State,
    target: &Target,
    query: &Query,
    obj: Value,
    applied: Option<&Value>,
) -> Result<Written, ApiError> {
    let rt = target.rt;
    check_type_meta(rt, &obj)?;
    let mut obj = convert::for_storage(rt, obj);
    let srt = convert::storage_type(rt);
    place_in_namespace(rt, target, &mut obj)?;
    generate_name(&mut obj);
    if let Some(ns) = object::namespace(&obj).map(String::from) {
        ensure_namespace_open(state, &ns).await?;
    }
    let warnings = strict_decode(srt, &obj, query)?;
    prepare_for_create(srt, &mut obj);
    skiff_admission::prepare_create(srt, &mut obj);
    skiff_admission::default(srt, &mut obj);
    // Addresses are allocated before validation, as upstream does, so that validation sees them (a
    // LoadBalancer with `externalTrafficPolicy: Local` must have its health-check node port).
    let claimed = if is_service(srt) { state.services.allocate(&mut obj, None).await?.0 } else { Holdings::default() };
    let causes = skiff_admission::validate_create(srt, &obj);
    if !causes.is_empty() {
        state.services.release(&claimed).await;
        return Err(invalid(srt, &obj, causes));
    }
    track_fields(rt, None, &mut obj, applied, query, None);
    if query.dry_run()? {
        state.services.release(&claimed).await;
        return Ok(Written { object: obj, code: StatusCode::CREATED, warnings });
    }
    match state.objects.create(srt, obj).await {
        Ok(saved) => Ok(Written { object: saved, code: StatusCode::CREATED, warnings }),
        Err(e) => {
            state.services.release(&claimed).await;
            Err(e)
        }
    }
}

/// Whether two stored forms differ in anything but `resourceVersion`.
fn differs(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        object::set_meta_str(&mut v, "resourceVersion", None);
        v
    };
    strip(a) != strip(b)
}

/// Whether a deleting object has nothing left holding it: no finalizers, and no pending graceful termination.
pub fn ready_to_remove(obj: &Value) -> bool {
    let spec_finalizers = obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    let kind = obj["kind"].as_str().unwrap_or_default();
    object::is_deleting(obj)
        && object::finalizers(obj).is_empty()
        && !(kind == "Namespace" && spec_finalizers)
        && obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
}

/// Read-modify-write of one object. `mutate` receives the client's view of the stored object (`None` when it
/// does not exist and `create_on_missing` allows creating it) and returns the object to store.
pub async fn guarded_write(
    state: &State,
    target: &Target,
    query: &Query,
    create_on_missing: bool,
    applied: Option<&Value>,
    mutate: impl Fn(Option<&Value>) -> Result<Value, ApiError>,
) -> Result<Written, ApiError> {
    let rt = target.rt;
    let srt = convert::storage_type(rt);
    let name = target.name.as_deref().unwrap_or_default();
    let ns = target.namespace.as_deref();
    let sub = target.subresource.map(|s| s.name).filter(|s| *s != "scale");
    let dry_run = query.dry_run()?;
    for _ in 0..RETRIES {
        let Some(current) = state.objects.try_get(srt, ns, name).await? else {
            if !create_on_missing {
                return Err(ApiError::not_found(rt.group, rt.plural, name));
            }
            let mut obj = mutate(None)?;
            match object::name(&obj) {
                Some(n) if n != name => return Err(name_mismatch(n, name)),
                _ => object::set_meta_str(&mut obj, "name", Some(name)),
            }
            object::set_meta_str(&mut obj, "resourceVersion", None);
            return create_object(state, target, query, obj, applied).await;
        };
        let view = convert::for_client(rt, current.object.clone());
        let new = mutate(Some(&view))?;
        check_type_meta(rt, &new)?;
        let mut new = convert::for_storage(rt, new);
        match object::name(&new) {
            Some(n) if n != name => return Err(name_mismatch(n, name)),
            _ => object::set_meta_str(&mut new, "name", Some(name)),
        }
        place_in_namespace(rt, target, &mut new)?;
        let pinned = object::resource_version(&new).map(String::from);
        if pinned.as_deref().is_some_and(|rv| rv != current.revision.to_string()) {
            return Err(ApiError::stale(rt.group, rt.plural, name));
        }
        let warnings = strict_decode(srt, &new, query)?;
        let mut new = skiff_admission::prepare_update(srt, &current.object, new, sub);
        carry_system_meta(&current.object, &mut new);
        if srt.has_generation && skiff_admission::spec_changed(&current.object, &new) {
            let generation = current.object["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object::metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        skiff_admission::default(srt, &mut new);
        let (claimed, freed) = if is_service(srt) && sub.is_none() {
            state.services.allocate(&mut new, Some(&current.object)).await?
        } else {
            (Holdings::default(), Holdings::default())
        };
        let causes = skiff_admission::validate_update(srt, &current.object, &new);
        if !causes.is_empty() {
            state.services.release(&claimed).await;
            return Err(invalid(srt, &new, causes));
        }
        let tracked_sub = target.subresource.map(|s| s.name);
        track_fields(rt, Some(&current.object), &mut new, applied, query, tracked_sub);
        if !differs(&current.object, &new) {
            state.services.release(&claimed).await;
            return Ok(Written { object: current.object, code: StatusCode::OK, warnings });
        }
        if dry_run {
            state.services.release(&claimed).await;
            return Ok(Written { object: new, code: StatusCode::OK, warnings });
        }
        match state.objects.update(srt, new, current.revision).await {
            Ok(saved) => {
                state.services.release(&freed).await;
                if ready_to_remove(&saved) {
                    let rev = saved["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok());
                    match state.objects.delete(srt, ns, name, rev).await {
                        Ok(_) | Err(ApiError::NotFound { .. }) => state.services.release(&Holdings::of(&saved)).await,
                        Err(e) => {
                            tracing::warn!(name, error = %e, "removing a finalized object failed; a later write will")
                        }
                    }
                }
                return Ok(Written { object: saved, code: StatusCode::OK, warnings });
            }
            Err(ApiError::Conflict { .. }) if pinned.is_none() => {
                state.services.release(&claimed).await;
            }
            Err(e) => {
                state.services.release(&claimed).await;
                return Err(e);
            }
        }
    }
    Err(ApiError::Conflict {
        group: rt.group.into(),
        resource: rt.plural.into(),
        name: name.into(),
        message: format!("too many concurrent writes to {} {name:?}; try again", rt.qualified_plural()),
    })
}

fn name_mismatch(body: &str, url: &str) -> ApiError {
    ApiError::BadRequest(format!("the name of the object ({body}) does not match the name on the URL ({url})"))
}

#[cfg(test)]
mod patch_precondition_tests {
    use super::*;

    #[test]
    fn only_a_patch_that_names_a_resource_version_pins_it() {
        assert!(!patch_pins_version(PatchType::Merge, &json!({"spec": {"paused": true}})));
        assert!(patch_pins_version(PatchType::Merge, &json!({"metadata": {"resourceVersion": "7"}})));
        assert!(patch_pins_version(PatchType::Strategic, &json!({"metadata": {"resourceVersion": "7"}})));
        assert!(!patch_pins_version(
            PatchType::Json,
            &json!([{"op": "replace", "path": "/spec/template", "value": {}}])
        ));
        assert!(patch_pins_version(
            PatchType::Json,
            &json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}])
        ));
    }
}
