//! Admission for every kind Skiff serves: strict decoding, upstream defaulting and upstream validation, all
//! pure functions over the request body as JSON.
//!
//! The API server runs each create, update and patch through [`decode_strict`] (is the body well-typed for the
//! kind, and which fields does the schema not know?), then [`default`] (upstream `SetDefaults_*` and the
//! registry strategies' create-time preparation), then [`validate_create`] or [`validate_update`], whose
//! [`FieldError`]s carry upstream's field paths and messages so kubectl prints what it would against any
//! Kubernetes. On update, [`prepare_update`] decides which half of the object a write may change (spec through
//! the main resource, status through `/status`) and [`spec_changed`] whether `metadata.generation` moves.
//! Kind-specific rules live in one module per kind family; [`meta`] holds what every kind shares.

mod apps;
mod cluster;
mod config;
mod decode;
mod endpoints;
mod event;
pub mod json;
pub mod meta;
pub mod names;
mod pod;
mod service;

use serde_json::Value;
use skiff_api::{FieldError, ResourceType};

pub use decode::{DecodeError, decode_strict, duplicate_fields};
use meta::NameRule;

/// What the server does about fields the schema does not know (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Accept the object and say so in a `Warning` header (upstream's default).
    #[default]
    Warn,
    /// Refuse the request with 400 `strict decoding error: unknown field "spec.foo"`.
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter's value (`Ignore`, `Warn`, `Strict`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Ignore" => Some(Self::Ignore),
            "Warn" => Some(Self::Warn),
            "Strict" => Some(Self::Strict),
            _ => None,
        }
    }
}

fn name_rule(rt: &ResourceType) -> NameRule {
    match (rt.group, rt.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("", "Event") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Upstream defaulting for the kind (`SetDefaults_*` in `pkg/apis/*/v1/defaults.go`) and the parts of the
/// registry strategies' `PrepareForCreate` that fill fields in. Idempotent, so it is safe on updates too.
pub fn default(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.kind) {
        ("", "Service") => service::default(obj),
        ("", "Pod") => pod::default_pod(obj),
        ("apps", "Deployment") => apps::default_deployment(obj),
        ("apps", "ReplicaSet") => apps::default_replica_set(obj),
        ("", "Namespace") => cluster::default_namespace(obj),
        ("", "Node") => cluster::default_node(obj),
        ("", "Secret") => config::default_secret(obj),
        ("", "Endpoints") => endpoints::default_endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::default_endpoint_slice(obj),
        _ => {}
    }
}

/// The kind's own rules, without metadata.
fn validate_kind(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    match (rt.group, rt.kind) {
        ("", "Service") => service::validate(obj),
        ("", "Pod") => pod::validate_pod(obj),
        ("apps", "Deployment") => apps::validate_deployment(obj),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj),
        ("", "Namespace") => cluster::validate_namespace(obj),
        ("", "Node") => cluster::validate_node(obj),
        ("coordination.k8s.io", "Lease") => cluster::validate_lease(obj),
        ("", "ConfigMap") => config::validate_config_map(obj),
        ("", "Secret") => config::validate_secret(obj),
        ("", "Endpoints") => endpoints::validate_endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::validate_endpoint_slice(obj),
        ("", "Event") => event::validate_core(obj),
        ("events.k8s.io", "Event") => event::validate_events_v1(obj),
        _ => Vec::new(),
    }
}

/// Validation of a new object (`strategy.Validate` plus the generic metadata checks).
pub fn validate_create(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta(obj, rt.namespaced, name_rule(rt));
    errs.extend(validate_kind(rt, obj));
    errs
}

/// Validation of an update (`strategy.ValidateUpdate`): what may not change, then the new object's own rules.
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta_update(old, new);
    errs.extend(match (rt.group, rt.kind) {
        ("", "Service") => service::validate_update(old, new),
        ("", "Pod") => pod::validate_pod_update(old, new),
        ("apps", "Deployment" | "ReplicaSet") => apps::validate_update(old, new),
        ("", "Node") => cluster::validate_node_update(old, new),
        ("", "ConfigMap") => config::validate_config_map_update(old, new),
        ("", "Secret") => config::validate_secret_update(old, new),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::validate_endpoint_slice_update(old, new),
        _ => Vec::new(),
    });
    errs.extend(validate_kind(rt, new));
    errs
}

/// Create-time preparation that replaces what the client sent (`PrepareForCreate`): status is the server's.
/// Call before [`default`] on create only.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    if rt.subresource("status").is_some() && !matches!(rt.kind, "Node") {
        json::remove(obj, "status");
    }
}

/// Which half of an update is kept: `/status` writes take only status (and, for apps kinds, not labels) from
/// `new`; main-resource writes of kinds with a status subresource keep `old`'s status. Fields the server owns
/// (`uid` when omitted, `creationTimestamp`, deletion fields, `generation`) always come from `old`.
pub fn prepare_update(rt: &ResourceType, old: &Value, new: Value, subresource: Option<&str>) -> Value {
    let mut out = new;
    let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
    {
        let meta = json::child(&mut out, "metadata");
        if json::s(meta, "uid").is_empty()
            && let Some(uid) = old_meta.get("uid")
        {
            json::set(meta, "uid", uid.clone());
        }
        for f in ["creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old_meta.get(f) {
                Some(v) => json::set(meta, f, v.clone()),
                None => json::remove(meta, f),
            }
        }
    }
    let copy_from_old = |out: &mut Value, field: &str| match old.get(field) {
        Some(v) => json::set(out, field, v.clone()),
        None => json::remove(out, field),
    };
    match subresource {
        Some("status") => {
            copy_from_old(&mut out, "spec");
            if rt.group == "apps" {
                let labels = old_meta.get("labels").cloned();
                let meta = json::child(&mut out, "metadata");
                match labels {
                    Some(l) => json::set(meta, "labels", l),
                    None => json::remove(meta, "labels"),
                }
            }
        }
        Some("finalize") => copy_from_old(&mut out, "status"),
        Some(_) => {}
        None => {
            if rt.subresource("status").is_some() {
                copy_from_old(&mut out, "status");
            }
            match (rt.group, rt.kind) {
                ("", "Service") => service::prepare_update(old, &mut out),
                ("", "Namespace") => {
                    let finalizers = old.pointer("/spec/finalizers").cloned();
                    let spec = json::child(&mut out, "spec");
                    match finalizers {
                        Some(f) => json::set(spec, "finalizers", f),
                        None => json::remove(spec, "finalizers"),
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether `spec` differs between two versions (an omitted field and its zero value count as the same), which
/// for kinds with `has_generation` means `metadata.generation` must move.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    !json::same(old.get("spec"), new.get("spec"))
}

#[cfg(test)]
mod tests;
