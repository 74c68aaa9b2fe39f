//! Which fields each resource can be selected by, and how their values are read from a stored object.
//!
//! Upstream registers a field label conversion function per kind (`pkg/apis/core/v1/conversion.go`) and
//! falls back to `metadata.name`/`metadata.namespace` (`runtime.DefaultMetaV1FieldSelectorConversion`) for
//! every other kind. Values come from each registry's `ToSelectableFields`: strings as they are, booleans
//! and integers formatted as Go does, and `""` for anything missing.

use serde_json::Value;

/// The selectable fields of one resource.
pub(super) struct Selectable {
    fields: &'static [&'static str],
    /// Whether the kind has its own conversion function (which decides the error message).
    custom: bool,
}

impl Selectable {
    pub(super) fn supports(&self, field: &str) -> bool {
        self.fields.contains(&field)
    }

    pub(super) fn unsupported_message(&self, field: &str) -> String {
        if self.custom {
            format!("field label not supported: {field}")
        } else {
            format!("{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
        }
    }
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];

const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Old clients' name for spec.nodeName.
    "spec.host",
];

const EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

pub(super) fn selectable(group: &str, plural: &str) -> Selectable {
    let custom = |fields| Selectable { fields, custom: true };
    match (group, plural) {
        ("", "pods") => custom(POD),
        ("", "events") | ("events.k8s.io", "events") => custom(EVENT),
        ("", "nodes") => custom(&["metadata.name", "spec.unschedulable"]),
        ("", "namespaces") => custom(&["status.phase", "metadata.name"]),
        ("", "secrets") => custom(&["type", "metadata.namespace", "metadata.name"]),
        ("", "services") => custom(&["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"]),
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            custom(&["metadata.name", "metadata.namespace", "status.replicas"])
        }
        _ => Selectable { fields: META, custom: false },
    }
}

/// The value of a selectable field of `obj`, as upstream's `ToSelectableFields` would render it.
pub(super) fn field_value(group: &str, plural: &str, obj: &Value, field: &str) -> String {
    match (group, plural, field) {
        ("", "pods", "spec.host") => text(obj, "spec.nodeName"),
        ("", "pods", "spec.hostNetwork") => boolean(obj, "spec.hostNetwork"),
        ("", "pods", "status.podIP") => {
            let first = obj.pointer("/status/podIPs/0/ip").and_then(Value::as_str);
            first.map_or_else(|| text(obj, "status.podIP"), str::to_string)
        }
        ("", "nodes", "spec.unschedulable") => boolean(obj, "spec.unschedulable"),
        ("", "replicationcontrollers", "status.replicas") | ("apps", "replicasets", "status.replicas") => {
            obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0).to_string()
        }
        ("", "events", "source") => {
            let component = text(obj, "source.component");
            if component.is_empty() { text(obj, "reportingComponent") } else { component }
        }
        ("events.k8s.io", "events", _) => events_v1_value(obj, field),
        _ => text(obj, field),
    }
}

/// `events.k8s.io/v1` Events are selected by the core Event's labels; these are where its fields live.
fn events_v1_value(obj: &Value, field: &str) -> String {
    if let Some(rest) = field.strip_prefix("involvedObject.") {
        return text(obj, &format!("regarding.{rest}"));
    }
    match field {
        "reportingComponent" => text(obj, "reportingController"),
        "source" => {
            let component = text(obj, "deprecatedSource.component");
            if component.is_empty() { text(obj, "reportingController") } else { component }
        }
        other => text(obj, other),
    }
}

fn lookup<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, key| v.get(key))
}

/// A field as a selector compares it: strings as they are, numbers and booleans printed, else `""`.
fn text(obj: &Value, dotted: &str) -> String {
    match lookup(obj, dotted) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A boolean field, `false` when missing (Go's zero value).
fn boolean(obj: &Value, dotted: &str) -> String {
    lookup(obj, dotted).and_then(Value::as_bool).unwrap_or(false).to_string()
}
