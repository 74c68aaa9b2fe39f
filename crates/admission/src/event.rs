//! Events: the legacy rules every event passes (`legacyValidateEvent`) and the stricter ones for events
//! written through `events.k8s.io/v1`, with that API's field names.

use serde_json::Value;
use skiff_api::FieldError;

use crate::json::{has, s};
use crate::names;

const REASON_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REPORTING_INSTANCE_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn namespace(ev: &Value) -> &str {
    ev.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// Core `v1` events: the involved object's namespace must agree with the event's.
pub fn validate_core(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = namespace(ev);
    let involved_ns = ev.pointer("/involvedObject/namespace").and_then(Value::as_str).unwrap_or("");
    if namespace_mismatch(ev, ns, involved_ns) {
        errs.push(FieldError::invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"));
    }
    if has(ev, "eventTime") {
        errs.extend(required_strings(ev, "reportingComponent", "reportingInstance", "action", "reason", "message"));
    }
    for msg in names::is_dns1123_subdomain(ns) {
        errs.push(FieldError::invalid("namespace", ns, msg));
    }
    errs
}

/// Old-style events (no `eventTime`) must sit in their object's namespace (or `default` for cluster objects);
/// new-style ones about cluster objects must sit in `default` or `kube-system`.
fn namespace_mismatch(ev: &Value, ns: &str, object_ns: &str) -> bool {
    if has(ev, "eventTime") {
        object_ns.is_empty() && ns != "default" && ns != "kube-system"
    } else if object_ns.is_empty() {
        !ns.is_empty() && ns != "default"
    } else {
        ns != object_ns
    }
}

fn required_strings(
    ev: &Value,
    controller: &str,
    instance: &str,
    action: &str,
    reason: &str,
    note: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rc = s(ev, controller);
    if rc.is_empty() {
        errs.push(FieldError::required(controller, ""));
    }
    for msg in names::is_qualified_name(rc) {
        errs.push(FieldError::invalid(controller, rc, msg));
    }
    for (field, limit) in [(instance, REPORTING_INSTANCE_LIMIT), (action, ACTION_LIMIT), (reason, REASON_LIMIT)] {
        let v = s(ev, field);
        if v.is_empty() {
            errs.push(FieldError::required(field, ""));
        }
        if v.len() > limit {
            errs.push(FieldError::invalid(field, "", format!("can have at most {limit} characters")));
        }
    }
    if s(ev, note).len() > NOTE_LIMIT {
        errs.push(FieldError::invalid(note, "", format!("can have at most {NOTE_LIMIT} characters")));
    }
    errs
}

/// `events.k8s.io/v1` events (`ValidateEventCreate` for new API versions).
pub fn validate_events_v1(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = namespace(ev);
    let regarding_ns = ev.pointer("/regarding/namespace").and_then(Value::as_str).unwrap_or("");
    if namespace_mismatch(ev, ns, regarding_ns) {
        errs.push(FieldError::invalid("regarding.namespace", regarding_ns, "does not match event.namespace"));
    }
    if !has(ev, "eventTime") {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = s(ev, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid("type", "", format!("has invalid value: {ty}")));
    }
    if has(ev, "deprecatedFirstTimestamp") {
        errs.push(FieldError::invalid("deprecatedFirstTimestamp", "", "needs to be unset"));
    }
    if has(ev, "deprecatedLastTimestamp") {
        errs.push(FieldError::invalid("deprecatedLastTimestamp", "", "needs to be unset"));
    }
    errs.extend(required_strings(ev, "reportingController", "reportingInstance", "action", "reason", "note"));
    if let Some(series) = ev.get("series").filter(|v| !v.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid("series.count", "", "should be at least 2"));
        }
        if !has(series, "lastObservedTime") {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_events_check_namespaces_only() {
        let ok = json!({"metadata": {"namespace": "default"}, "involvedObject": {"namespace": "default"}});
        assert!(validate_core(&ok).is_empty());
        let bad = json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(validate_core(&bad)[0].detail, "does not match event.namespace");
    }

    #[test]
    fn new_events_need_reporting_fields() {
        let ev = json!({"metadata": {"namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z",
            "type": "Normal", "reason": "Started", "action": "Start", "reportingController": "skiff.io/kubelet",
            "reportingInstance": "node-1", "note": "started"});
        assert!(validate_events_v1(&ev).is_empty(), "{:?}", validate_events_v1(&ev));
        let errs = validate_events_v1(&json!({"metadata": {"namespace": "default"}, "type": "Odd"}));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        // An empty reportingController is both required and (twice) not a qualified name, as upstream reports it.
        assert_eq!(
            fields,
            vec![
                "eventTime",
                "type",
                "reportingController",
                "reportingController",
                "reportingController",
                "reportingInstance",
                "action",
                "reason"
            ]
        );
    }
}
