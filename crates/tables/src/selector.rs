//! Label selectors as upstream prints them (`labels.FormatLabels`, `metav1.LabelSelectorAsSelector(...).String()`
//! and `metav1.FormatLabelSelector`). Kept here rather than borrowed from `skiff-selector` so tables depend only
//! on the API vocabulary.

use serde_json::{Map, Value};

/// Why a `metav1.LabelSelector` cannot be turned into a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    #[error("values must be non-empty for operator {0:?}")]
    MissingValues(String),
    #[error("values must be empty for operator {0:?}")]
    UnexpectedValues(String),
    #[error("invalid label key {0:?}")]
    InvalidKey(String),
    #[error("invalid label value {0:?}")]
    InvalidValue(String),
    #[error("label selector must be an object")]
    Malformed,
}

/// A `map[string]string` selector (a Service's `spec.selector`) as `k=v,…` sorted by key; `<none>` when empty.
pub fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<(&String, &str)> =
        map.into_iter().flatten().map(|(k, v)| (k, v.as_str().unwrap_or_default())).collect();
    pairs.sort();
    let joined = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    if joined.is_empty() { "<none>".to_string() } else { joined }
}

/// `LabelSelectorAsSelector(sel).String()`: requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`,
/// `k`, `!k`, joined by `,`. A missing selector (selects nothing) and an empty one (selects everything) both
/// print as the empty string.
pub fn selector_string(selector: Option<&Value>) -> Result<String, SelectorError> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else { return Ok(String::new()) };
    let selector = selector.as_object().ok_or(SelectorError::Malformed)?;
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            validate_key(key)?;
            validate_value(value)?;
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expr in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let operator = expr.get("operator").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> =
            expr.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        validate_key(key)?;
        let text = match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(SelectorError::MissingValues(operator.to_string()));
                }
                for v in &values {
                    validate_value(v)?;
                }
                values.sort_unstable();
                let op = if operator == "In" { "in" } else { "notin" };
                format!("{key} {op} ({})", values.join(","))
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(SelectorError::UnexpectedValues(operator.to_string()));
                }
                if operator == "Exists" { key.to_string() } else { format!("!{key}") }
            }
            other => return Err(SelectorError::UnknownOperator(other.to_string())),
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty and `<error>` when invalid.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(_) => "<error>".to_string(),
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = || SelectorError::InvalidKey(key.to_string());
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(invalid());
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(invalid());
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_label_name(value) { Ok(()) } else { Err(SelectorError::InvalidValue(value.to_string())) }
}

/// At most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    s.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_selector_is_sorted_key_value_pairs() {
        let sel = json!({"tier": "web", "app": "shop"});
        assert_eq!(format_labels(sel.as_object()), "app=shop,tier=web");
        assert_eq!(format_labels(json!({}).as_object()), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn label_selector_renders_every_operator_sorted_by_key() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}
            ]
        });
        assert_eq!(
            selector_string(Some(&sel)).as_deref(),
            Ok("app=web,!canary,env notin (prod),tier in (backend,frontend),zone")
        );
    }

    #[test]
    fn empty_and_missing_selectors() {
        assert_eq!(selector_string(None).as_deref(), Ok(""));
        assert_eq!(selector_string(Some(&json!({}))).as_deref(), Ok(""));
        assert_eq!(format_label_selector(Some(&json!({"matchLabels": {}}))), "<none>");
        assert_eq!(format_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))), "app=web");
    }

    #[test]
    fn invalid_selectors_are_errors() {
        let bad_op = json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]});
        assert_eq!(selector_string(Some(&bad_op)), Err(SelectorError::UnknownOperator("Near".into())));
        let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(selector_string(Some(&no_values)), Err(SelectorError::MissingValues("In".into())));
        let bad_value = json!({"matchLabels": {"app": "not valid"}});
        assert_eq!(format_label_selector(Some(&bad_value)), "<error>");
        let prefixed = json!({"matchLabels": {"app.kubernetes.io/name": "web"}});
        assert_eq!(format_label_selector(Some(&prefixed)), "app.kubernetes.io/name=web");
        assert!(selector_string(Some(&json!({"matchLabels": {"/x": "y"}}))).is_err());
    }
}
