//! Reading and writing the generic parts of an object held as JSON (`metadata.name`, labels,
//! `resourceVersion`, …). The API server handles every kind the same way through these, and only admission
//! looks at kind-specific fields.

use serde_json::{Map, Value};

/// `metadata` of an object, created empty when missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(map) = obj else { unreachable!("made an object above") };
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// A string field of `metadata` (`name`, `namespace`, `uid`, `resourceVersion`, …).
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|rv| !rv.is_empty())
}

/// Sets or (with `None`) removes a string field of `metadata`.
pub fn set_meta_str(obj: &mut Value, field: &str, value: Option<&str>) {
    let meta = metadata_mut(obj);
    match value {
        Some(v) => {
            meta.insert(field.to_string(), Value::String(v.to_string()));
        }
        None => {
            meta.remove(field);
        }
    }
}

/// The labels of an object (empty when it has none).
pub fn labels(obj: &Value) -> Map<String, Value> {
    map_field(obj, "labels")
}

pub fn annotations(obj: &Value) -> Map<String, Value> {
    map_field(obj, "annotations")
}

fn map_field(obj: &Value, field: &str) -> Map<String, Value> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Follows a dotted path (`spec.nodeName`) through objects.
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, key| v.get(key))
}

/// Sets `apiVersion` and `kind`, which every single-object response must carry.
pub fn set_type_meta(obj: &mut Value, api_version: &str, kind: &str) {
    if let Value::Object(map) = obj {
        map.insert("apiVersion".into(), Value::String(api_version.into()));
        map.insert("kind".into(), Value::String(kind.into()));
    }
}

/// Whether the object is marked for deletion.
pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes_metadata() {
        let mut obj = json!({"kind": "Service"});
        set_meta_str(&mut obj, "name", Some("web"));
        set_meta_str(&mut obj, "resourceVersion", Some("7"));
        assert_eq!(name(&obj), Some("web"));
        assert_eq!(resource_version(&obj), Some("7"));
        set_meta_str(&mut obj, "resourceVersion", None);
        assert_eq!(resource_version(&obj), None);
        assert!(labels(&obj).is_empty());
        assert_eq!(path(&json!({"spec": {"nodeName": "n1"}}), "spec.nodeName"), Some(&json!("n1")));
    }
}
