//! `metadata` checks shared by every kind (upstream `ValidateObjectMeta` / `ValidateObjectMetaUpdate`), label
//! and annotation syntax, and label selectors (validation and matching).

use serde_json::Value;
use skiff_api::FieldError;

use crate::json::{arr, obj, s, str_map};
use crate::names;

/// How a kind's names are checked (upstream's per-kind `ValidateNameFunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// Anything usable as a URL path segment (kinds with no rule of their own, such as core events).
    PathSegment,
}

impl NameRule {
    /// The messages for a name, or for a `generateName` prefix (which may end in `-`).
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let name = if prefix && self != NameRule::PathSegment { name.trim_end_matches('-') } else { name };
        match self {
            NameRule::Dns1123Subdomain => names::is_dns1123_subdomain(name),
            NameRule::Dns1123Label => names::is_dns1123_label(name),
            NameRule::Dns1035Label => names::is_dns1035_label(name),
            NameRule::PathSegment => names::is_path_segment_name(name),
        }
    }
}

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `ValidateObjectMeta`: name (or generateName), namespace presence, labels, annotations, owner references and
/// finalizers.
pub fn validate_object_meta(obj_: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj_.get("metadata").unwrap_or(&Value::Null);
    let name = s(meta, "name");
    let generate_name = s(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid("metadata.generateName", generate_name, msg));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    let namespace = s(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in names::is_dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid("metadata.generation", g, "must be greater than or equal to 0"));
    }
    errs.extend(validate_labels(&str_map(meta, "labels"), "metadata.labels"));
    errs.extend(validate_annotations(&str_map(meta, "annotations"), "metadata.annotations"));
    errs.extend(validate_owner_references(arr(meta, "ownerReferences")));
    for f in arr(meta, "finalizers") {
        let f = f.as_str().unwrap_or("");
        errs.extend(validate_finalizer_name(f, "metadata.finalizers"));
    }
    errs
}

/// A finalizer must be a qualified name, and either fully qualified or one of the standard ones.
pub fn validate_finalizer_name(name: &str, path: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> =
        names::is_qualified_name(name).into_iter().map(|m| FieldError::invalid(path, name, m)).collect();
    if errs.is_empty() && !name.contains('/') && name != "kubernetes" {
        errs.push(FieldError::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

fn validate_owner_references(refs: &[Value]) -> Vec<FieldError> {
    let path = "metadata.ownerReferences";
    let mut errs = Vec::new();
    let mut controllers = Vec::new();
    for r in refs {
        for (field, what) in [("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if s(r, field).is_empty() {
                errs.push(FieldError::invalid(format!("{path}.{field}"), "", format!("{what} must not be empty")));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(format!("{}/{}", s(r, "kind"), s(r, "name")));
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            path,
            Value::Array(refs.to_vec()),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: what may never change, then the create-time checks of the new metadata.
pub fn validate_object_meta_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let old_meta = old.get("metadata").unwrap_or(&Value::Null);
    let new_meta = new.get("metadata").unwrap_or(&Value::Null);
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let (o, n) = (s(old_meta, field), s(new_meta, field));
        if o != n {
            errs.push(FieldError::invalid(format!("metadata.{field}"), n, "field is immutable"));
        }
    }
    errs.extend(validate_labels(&str_map(new_meta, "labels"), "metadata.labels"));
    errs.extend(validate_annotations(&str_map(new_meta, "annotations"), "metadata.annotations"));
    errs.extend(validate_owner_references(arr(new_meta, "ownerReferences")));
    errs
}

/// Label keys are qualified names and values are label values; errors carry the map's path.
pub fn validate_labels(labels: &[(&str, &str)], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(validate_label_name(k, path));
        for msg in names::is_label_value(v) {
            errs.push(FieldError::invalid(path, *v, msg));
        }
    }
    errs
}

pub fn validate_label_name(key: &str, path: &str) -> Vec<FieldError> {
    names::is_qualified_name(key).into_iter().map(|m| FieldError::invalid(path, key, m)).collect()
}

/// A name that must be a DNS-1123 label and unique among its siblings (container, volume and port names):
/// upstream's `IsDNS1123Label` messages unless the name is empty (callers that require one say so first), then
/// `field.Duplicate` if `seen` already holds it, else it joins `seen`.
pub(crate) fn validate_unique_dns1123_label<'a>(name: &'a str, path: &str, seen: &mut Vec<&'a str>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !name.is_empty() {
        errs.extend(names::is_dns1123_label(name).into_iter().map(|m| FieldError::invalid(path, name, m)));
    }
    if seen.contains(&name) {
        errs.push(FieldError::duplicate(path, name));
    } else {
        seen.push(name);
    }
    errs
}

pub fn validate_annotations(annotations: &[(&str, &str)], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, *k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// `metav1.LabelSelector` syntax (`ValidateLabelSelector`).
pub fn validate_label_selector(sel: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(&str_map(sel, "matchLabels"), &format!("{path}.matchLabels"));
    for (i, req) in arr(sel, "matchExpressions").iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = arr(req, "values");
        match s(req, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{at}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{at}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(format!("{at}.operator"), op, "not a valid selector operator")),
        }
        errs.extend(validate_label_name(s(req, "key"), &format!("{at}.key")));
        for (j, v) in values.iter().enumerate() {
            for msg in names::is_label_value(v.as_str().unwrap_or("")) {
                errs.push(FieldError::invalid(format!("{at}.values[{j}]"), v.clone(), msg));
            }
        }
    }
    errs
}

/// Whether a selector selects nothing in particular (no labels, no expressions).
pub fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, "matchLabels").is_none_or(|m| m.is_empty()) && arr(sel, "matchExpressions").is_empty()
}

/// Whether `labels` satisfy a `metav1.LabelSelector`.
pub fn selector_matches(sel: &Value, labels: &[(&str, &str)]) -> bool {
    let get = |k: &str| labels.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let by_labels = str_map(sel, "matchLabels").iter().all(|(k, v)| get(k) == Some(*v));
    by_labels
        && arr(sel, "matchExpressions").iter().all(|req| {
            let values: Vec<&str> = arr(req, "values").iter().filter_map(Value::as_str).collect();
            let have = get(s(req, "key"));
            match s(req, "operator") {
                "In" => have.is_some_and(|v| values.contains(&v)),
                "NotIn" => have.is_none_or(|v| !values.contains(&v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_required_and_checked_per_rule() {
        let errs = validate_object_meta(&json!({"metadata": {"namespace": "default"}}), true, NameRule::Dns1035Label);
        assert_eq!(errs[0].to_string(), "metadata.name: Required value: name or generateName is required");
        let errs = validate_object_meta(
            &json!({"metadata": {"name": "1web", "namespace": "d"}}),
            true,
            NameRule::Dns1035Label,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");
        let ok = json!({"metadata": {"name": "a.b", "namespace": "d"}});
        assert!(validate_object_meta(&ok, true, NameRule::Dns1123Subdomain).is_empty());
        assert!(!validate_object_meta(&ok, true, NameRule::Dns1123Label).is_empty());
        let generated = json!({"metadata": {"name": "web-x1", "generateName": "web-", "namespace": "d"}});
        assert!(validate_object_meta(&generated, true, NameRule::Dns1035Label).is_empty());
    }

    #[test]
    fn namespace_rules_follow_scope() {
        let e =
            validate_object_meta(&json!({"metadata": {"name": "n", "namespace": "x"}}), false, NameRule::Dns1123Label);
        assert_eq!(e[0].to_string(), "metadata.namespace: Forbidden: not allowed on this type");
        let e = validate_object_meta(&json!({"metadata": {"name": "n"}}), true, NameRule::Dns1123Subdomain);
        assert_eq!(e[0].to_string(), "metadata.namespace: Required value");
    }

    #[test]
    fn sibling_names_are_labels_and_unique() {
        let mut seen = Vec::new();
        assert!(validate_unique_dns1123_label("web", "c[0].name", &mut seen).is_empty());
        let dup = validate_unique_dns1123_label("web", "c[1].name", &mut seen);
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].to_string(), "c[1].name: Duplicate value: \"web\"");
        let bad = validate_unique_dns1123_label("Web", "c[2].name", &mut seen);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().starts_with("c[2].name: Invalid value: \"Web\": a lowercase RFC 1123 label"));
        // An empty name is not checked as a label, but two of them are still duplicates (EndpointSlice ports).
        assert!(validate_unique_dns1123_label("", "p[0].name", &mut seen).is_empty());
        assert_eq!(
            validate_unique_dns1123_label("", "p[1].name", &mut seen)[0].to_string(),
            "p[1].name: Duplicate value: \"\""
        );
        assert_eq!(seen, ["web", "Web", ""]);
    }

    #[test]
    fn labels_and_annotations() {
        let o = json!({"metadata": {"name": "n", "labels": {"a/b/c": "x", "ok": "bad value"},
                                     "annotations": {"UPPER.example.com/x": "fine"}}});
        let errs = validate_object_meta(&o, false, NameRule::Dns1123Label);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.field == "metadata.labels"));
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let o = json!({"metadata": {"name": "n", "annotations": {"k": big}}});
        let errs = validate_object_meta(&o, false, NameRule::Dns1123Label);
        assert_eq!(errs[0].to_string(), "metadata.annotations: Too long: must have at most 262144 bytes");
    }

    #[test]
    fn immutable_metadata() {
        let old = json!({"metadata": {"name": "a", "uid": "1", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let new = json!({"metadata": {"name": "b", "uid": "1", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let errs = validate_object_meta_update(&old, &new);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].to_string(), "metadata.name: Invalid value: \"b\": field is immutable");
    }

    #[test]
    fn selectors_validate_and_match() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "canary", "operator": "DoesNotExist"}]});
        assert!(validate_label_selector(&sel, "spec.selector").is_empty());
        assert!(selector_matches(&sel, &[("app", "web"), ("tier", "fe")]));
        assert!(!selector_matches(&sel, &[("app", "web"), ("tier", "fe"), ("canary", "1")]));
        assert!(!selector_matches(&sel, &[("app", "db"), ("tier", "fe")]));
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Is"}]});
        let errs = validate_label_selector(&bad, "spec.selector");
        assert_eq!(errs[0].field, "spec.selector.matchExpressions[0].values");
        assert_eq!(
            errs[1].to_string(),
            "spec.selector.matchExpressions[1].operator: Invalid value: \"Is\": not a valid selector operator"
        );
        assert!(selector_is_empty(&json!({})) && !selector_is_empty(&sel));
    }
}
